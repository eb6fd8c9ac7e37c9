"""History: the time line of a plan's changes, its filters, and stepping
through time (the whole plan as it was after one event).

A history row is one field change (`core.projections.history.Change` as
plain data, plus the server's receive time where this device knows it).
Stepping goes by events: `event_steps` folds the rows of one event into one
step. The jumps are pure functions over the steps (newest first, so "back"
is a larger index): one event (of those the filter lets through), one day
(to the last event of the previous/next day with events), one phase (to the
previous/next event that changed a phase's status).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Header, Label

from core.events.envelope import Event
from core.projections.plan_state import PlanState, evolve, restore, snapshot
from core.projections.plan_view import conflicts, entities_of, entity_view
from core.store.checkpoints import gc_paused
from core.store.event_log import EventLog
from core.store.time_travel import checkpoints_ready, key_of, state_as_of
from tui_client.tui.bindings import localise
from tui_client.tui.cells import cell_text
from tui_client.tui.history_load import TimelineFold
from tui_client.tui.layout import PLAN_FIELDS
from tui_client.tui.status_line import status_bar

if TYPE_CHECKING:
    from tui_client.tui.app import ViddaApp
    from tui_client.tui.i18n import Translator


# The history table shows the newest rows (a DataTable of 100k rows takes a
# minute to fill); the filter and the steps of time travel see every row.
HISTORY_ROWS = 2_000


@dataclass(frozen=True)
class HistoryFilter:
    """Case-insensitive parts of an entity's name (or id prefix), an author's
    name (or key prefix) and an event type; empty parts match everything."""

    entity: str = ""
    author: str = ""
    type: str = ""

    def __bool__(self) -> bool:
        return bool(self.entity or self.author or self.type)

    def matches(self, row: dict[str, Any], labels: dict[str, str], names: dict[str, str]) -> bool:
        if self.type and self.type.casefold() not in str(row["type"]).casefold():
            return False
        if self.author:
            who = (names.get(row["author"], "") + " " + row["author"]).casefold()
            if self.author.casefold() not in who:
                return False
        if self.entity:
            entity = row.get("entity") or ""
            label = labels.get(entity, "").casefold()
            wanted = self.entity.casefold()
            if wanted not in label and not (entity and entity.startswith(wanted)):
                return False
        return True

    def describe(self, t: Translator, shown: int, total: int) -> str:
        parts = [
            f"{t(name)}: {value}"
            for name, value in (
                ("filter_entity", self.entity),
                ("filter_author", self.author),
                ("filter_type", self.type),
            )
            if value
        ]
        text = t("filtered", parts=" · ".join(parts)) if parts else t("filter_hint")
        if shown < total:
            text += " · " + t("newest_rows", shown=shown, total=total)
        return text


def entity_labels(data: dict[str, Any]) -> dict[str, str]:
    """Entity id (hex) -> what people call it (name, title or text)."""
    labels = {data["plan"]: str(data["fields"].get("title", ""))}
    for key, value in data.items():
        if not isinstance(value, list) or key in ("conflicts", "edited_after_removal"):
            continue
        for ent in value:
            if isinstance(ent, dict) and "fields" in ent:
                f = ent["fields"]
                labels[ent["id"]] = str(f.get("name") or f.get("title") or f.get("text") or "")
    return labels


def event_steps(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One step per event, newest first, from history rows (newest first)."""
    steps: list[dict[str, Any]] = []
    for row in rows:
        if steps and steps[-1]["event"] == row["event"]:
            steps[-1]["changes"].append(row)
        else:
            steps.append({**row, "changes": [row]})
    return steps


def step_event(steps: list[dict[str, Any]], index: int, delta: int, keep: Any = None) -> int:
    """The next step `delta` away (+1 back, -1 forward) that `keep` lets through."""
    j = index + delta
    while 0 <= j < len(steps):
        if keep is None or keep(steps[j]):
            return j
        j += delta
    return index


def _day(step: dict[str, Any]) -> str:
    return str(step["time"])[:10]


def step_day(steps: list[dict[str, Any]], index: int, delta: int) -> int:
    """The last event of the previous (+1) or next (-1) day that has events."""
    here = _day(steps[index])
    if delta > 0:
        for j in range(index + 1, len(steps)):
            if _day(steps[j]) < here:
                return j
        return index
    target = None
    for j in range(index - 1, -1, -1):
        if target is None and _day(steps[j]) > here:
            target = _day(steps[j])
        if target is not None and _day(steps[j]) != target:
            return j + 1
    return 0 if target is not None else index


def is_phase_mark(step: dict[str, Any]) -> bool:
    return any(c.get("kind") == "phase" and c.get("field") == "status" for c in step["changes"])


def step_phase(steps: list[dict[str, Any]], index: int, delta: int) -> int:
    """The previous (+1) or next (-1) event that changed a phase's status."""
    return step_event(steps, index, delta, is_phase_mark)


def step_key(step: dict[str, Any]) -> tuple[int, bytes, int]:
    return (int(step["hlc"]), bytes.fromhex(step["author"]), int(step["seq"]))


def as_of_view(state: PlanState) -> dict[str, Any]:
    """What the time-travel screen shows of a past state, the rest of
    `plan_view.view` left out (stepping stays fast on a large plan)."""
    plan = state.entity("plan", state.plan)
    return {
        "plan": state.plan.hex(),
        "fields": entity_view(plan)["fields"] if plan else {},
        "phases": entities_of(state, "phase"),
        "actors": entities_of(state, "actor"),
        "activity_count": sum(
            1 for (k, _), e in state.entities.items() if k == "activity" and not e.removed
        ),
        "conflicts": conflicts(state),
    }


class Stepper:
    """States along a plan's time line for stepping through it.

    The first state near a point comes from the log (`state_as_of`: nearest
    checkpoint plus the events after it, up to a few thousand folds on a big
    plan); it is taken `ANCHOR` events *before* the point and folded forward
    in memory, and kept as an anchor (a pruned snapshot). Steps back and
    forth near it restore the anchor and fold at most `ANCHOR` events, so
    stepping event by event stays fast; a jump far away reads the log again."""

    ANCHOR = 250

    def __init__(
        self, log: EventLog, plan: bytes, events: list[Event], fold: TimelineFold | None = None
    ) -> None:
        self.log, self.plan, self.events = log, plan, events
        self.position = {ev.id.hex(): i for i, ev in enumerate(events)}
        self.anchors: dict[int, bytes] = {}
        # Without the log's time-line checkpoints: the time line folded in
        # memory (a worker), instead of `state_as_of` building them first.
        self.fold = fold

    def ready(self, event: str) -> bool:
        """Whether `state_at(event)` is quick now (else: wait for the fold)."""
        pos = self.position[event]
        if self.fold is None or any(pos - self.ANCHOR <= a <= pos for a in self.anchors):
            return True
        return self.fold.nearest(max(0, pos - self.ANCHOR)) is not None

    async def state_at(self, event: str) -> PlanState:
        """The plan after the event with this id (hex), as `state_as_of`."""
        pos = self.position[event]
        below = [a for a in self.anchors if pos - self.ANCHOR <= a <= pos]
        if below:
            start = max(below)
            state = restore(self.anchors[start])
        else:
            start = max(0, pos - self.ANCHOR)
            found = self.fold.nearest(start) if self.fold is not None else None
            if found is None:
                state = await state_as_of(self.log, self.plan, key_of(self.events[start]))
            else:
                at, state = found
                with gc_paused():
                    for ev in self.events[at + 1 : start + 1]:
                        evolve(state, ev)
            self.anchors[start] = snapshot(state, prune=True)
        with gc_paused():
            for ev in self.events[start + 1 : pos + 1]:
                evolve(state, ev)
        return state


def fill_history(
    table: DataTable[str],
    rows: list[dict[str, Any]],
    names: dict[str, str],
    labels: dict[str, str],
    t: Translator,
) -> None:
    """The history table: when (device clock, and server where known), who,
    what, old → new (a reference to another entity by its name)."""

    def shown(value: Any) -> str:
        return (
            labels.get(value, "") or cell_text(value)
            if isinstance(value, str)
            else cell_text(value)
        )

    table.clear(columns=True)
    table.add_columns(t("when"), t("server"), t("who"), t("what"), t("old_new"))
    for i, row in enumerate(rows[:HISTORY_ROWS]):
        who = names.get(row["author"], row["author"][:8])
        what = row["type"] + (f" · {row['field']}" if row.get("field") else "")
        old = " | ".join(shown(v) for v in row.get("old") or [])
        new = shown(row.get("new")) if row.get("field") else (row.get("note") or "")
        change = f"{old} → {new}" if old else new
        server = str(row.get("server") or "")[:19]
        table.add_row(row["time"][:19], server, who, what, change[:60], key=str(i))


class AsOfScreen(Screen[None]):
    """Step through time: the whole plan as it was after one event.
    `[`/`]` one event back/forward (of those the filter shows), `{`/`}` one
    day, `<`/`>` one phase; Escape back to the present."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "now"),
        Binding("left_square_bracket", "step(1)", "event_back"),
        Binding("right_square_bracket", "step(-1)", "event_forward"),
        Binding("left_curly_bracket", "day(1)", "day_back"),
        Binding("right_curly_bracket", "day(-1)", "day_forward"),
        Binding("less_than_sign", "phase(1)", "phase_back"),
        Binding("greater_than_sign", "phase(-1)", "phase_forward"),
    ]

    def __init__(
        self,
        plan: bytes,
        steps: list[dict[str, Any]],
        index: int,
        keep: Any = None,
    ) -> None:
        super().__init__()
        self.plan, self.steps, self.index, self.keep = plan, steps, index, keep
        self.stepper: Stepper | None = None
        self.data: dict[str, Any] = {}
        self.shown = False  # the step at `index` is on screen
        self.waiting: Timer | None = None  # to show the step once the fold got there

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="when")
        yield DataTable(id="asof", cursor_type="row")
        yield status_bar()

    async def on_mount(self) -> None:
        await self.show()

    async def show(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        if localise(self, t):
            self.refresh_bindings()
        self.shown = False
        step = self.steps[self.index]
        if self.waiting is not None:
            self.waiting.stop()
            self.waiting = None
        if self.stepper is None:
            events = app.workspace.timelines.get(self.plan) or []
            fold = None
            if events and not await checkpoints_ready(app.workspace.log, self.plan):
                fold = app.workspace.timeline_fold(self.plan, events)
                if not fold.started:
                    fold.started = True
                    app.run_worker(fold.run(), name="fold", group="fold", exclusive=True)
            self.stepper = Stepper(app.workspace.log, self.plan, events, fold)
        fold = self.stepper.fold
        if (
            fold
            and step["event"] in self.stepper.position
            and not self.stepper.ready(step["event"])
        ):
            self.query_one("#when", Label).update(t("preparing_time_travel", percent=fold.percent))
            self.waiting = self.set_timer(0.1, self.show)  # keys work meanwhile
            return
        if step["event"] in self.stepper.position:
            state = await self.stepper.state_at(step["event"])
        else:  # the time line was not read (or changed since): ask the log
            state = await state_as_of(app.workspace.log, self.plan, step_key(step))
        self.data = as_of_view(state)
        who = app.workspace.names.get(step["author"], step["author"][:8])
        self.query_one("#when", Label).update(
            f"{t('as_of')} {step['time'][:19]} · {who} · {step['type']} "
            f"({len(self.steps) - self.index}/{len(self.steps)})"
        )
        table = self.query_one("#asof", DataTable)
        table.clear(columns=True)
        table.add_columns(t("field"), t("value"))
        for name in PLAN_FIELDS:
            table.add_row(t(f"field_{name}"), cell_text(self.data["fields"].get(name)), key=name)
        for number, phase in enumerate(self.data["phases"], 1):
            pf = phase["fields"]
            table.add_row(f"{t('phase')} {number}", f"{pf.get('name', '')}: {pf.get('status')}")
        table.add_row(t("activities"), str(self.data["activity_count"]), key="activities")
        table.add_row(t("actors"), str(len(self.data["actors"])), key="actors")
        self.shown = True
        app.refresh_status()

    async def _go(self, target: int) -> None:
        if target != self.index:
            self.index = target
            await self.show()

    async def action_step(self, delta: int) -> None:
        await self._go(step_event(self.steps, self.index, delta, self.keep))

    async def action_day(self, delta: int) -> None:
        await self._go(step_day(self.steps, self.index, delta))

    async def action_phase(self, delta: int) -> None:
        await self._go(step_phase(self.steps, self.index, delta))

    def action_back(self) -> None:
        self.app.pop_screen()
