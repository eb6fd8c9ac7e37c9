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

from core.events.bodies import Body
from core.events.envelope import Event
from core.projections.plan_state import EntityState, PlanState, evolve
from core.projections.plan_view import entity_conflicts, entity_view, views_of
from core.store.checkpoints import gc_paused
from core.store.event_log import EventLog
from core.store.time_travel import checkpoints_ready, key_of, state_as_of
from tui_client.tui.bindings import localise
from tui_client.tui.cells import cell_text
from tui_client.tui.history_load import TimelineFold
from tui_client.tui.layout import PLAN_FIELDS
from tui_client.tui.shown_table import Row, ShownTable
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
    """What the time-travel screen shows of a past state (the plan's fields,
    its phases and actors, how many activities, the conflicts), the rest of
    `plan_view.view` left out: stepping stays fast on a large plan."""
    return AsOfTracker(state).data


class AsOfTracker:
    """`as_of_view` of a state kept up to date while events are folded into
    it: an event touches one entity, so only that entity's part is derived
    again (its conflicts; the plan's fields, the phases, one actor or the
    activity count), and `data` is a new dict only when something shown
    changed. Folding a
    thousand events and keeping the view after each is then about as cheap
    as folding them."""

    def __init__(self, state: PlanState) -> None:
        self.state = state
        self.phases: dict[bytes, EntityState] = {}
        self.actors: dict[bytes, dict[str, Any]] = {}
        self.activities: set[bytes] = set()
        self.conflicts: dict[tuple[str, bytes], list[dict[str, Any]]] = {}
        for key, ent in state.entities.items():
            found = entity_conflicts(ent)
            if found:
                self.conflicts[key] = found
            kind, eid = key
            if kind == "phase":
                self.phases[eid] = ent
            elif kind == "actor" and not ent.removed:
                self.actors[eid] = entity_view(ent)
            elif kind == "activity" and not ent.removed:
                self.activities.add(eid)
        plan = state.entity("plan", state.plan)
        self.data: dict[str, Any] = {
            "plan": state.plan.hex(),
            "fields": entity_view(plan)["fields"] if plan else {},
            "phases": self._phases(),
            "actors": self._actors(),
            "activity_count": len(self.activities),
            "conflicts": self._conflicts(),
        }

    def _phases(self) -> list[dict[str, Any]]:
        return views_of(self.phases.values())

    def _actors(self) -> list[dict[str, Any]]:
        return [view for _, view in sorted(self.actors.items())]

    def _conflicts(self) -> list[dict[str, Any]]:
        return [c for _, found in sorted(self.conflicts.items()) for c in found]

    def evolve(self, event: Event) -> None:
        """Fold `event` into the state and bring `data` up to date."""
        state = self.state
        evolve(state, event)
        body = event.body
        if not isinstance(body, Body):
            return  # an unknown type: counted, nothing shown changes
        kind = body.entity_kind()
        eid = body.entity_id(state.plan)
        ent = state.entities.get((kind, eid))
        if ent is None:  # not folded (membership, say)
            return
        data = self.data
        found = entity_conflicts(ent)
        if found or (kind, eid) in self.conflicts:
            if found:
                self.conflicts[(kind, eid)] = found
            else:
                del self.conflicts[(kind, eid)]
            self.data = data = {**data, "conflicts": self._conflicts()}
        if kind == "plan":
            self.data = {**data, "fields": entity_view(ent)["fields"]}
        elif kind == "phase":
            self.phases[eid] = ent
            self.data = {**data, "phases": self._phases()}
        elif kind == "actor":
            if ent.removed:
                self.actors.pop(eid, None)
            else:
                self.actors[eid] = entity_view(ent)
            self.data = {**data, "actors": self._actors()}
        elif kind == "activity" and ent.removed != (eid not in self.activities):
            if ent.removed:
                self.activities.discard(eid)
            else:
                self.activities.add(eid)
            self.data = {**data, "activity_count": len(self.activities)}


class Stepper:
    """What the time-travel screen shows after each event of a plan's time
    line, for stepping through it.

    The view at a position comes from a fold: from the nearest state before
    it (an anchor of the in-memory `TimelineFold`, every 1,000 events, or
    the log's `state_as_of` `ANCHOR` events before it), every event up to
    the position folded with an `AsOfTracker`, which keeps the view after
    each. So the first step into a stretch of the time line folds up to
    1,000 events once; the steps back through that stretch are look-ups,
    and steps forward past the newest folded event fold one event each (the
    state folded last is kept)."""

    ANCHOR = 250

    def __init__(
        self, log: EventLog, plan: bytes, events: list[Event], fold: TimelineFold | None = None
    ) -> None:
        self.log, self.plan, self.events = log, plan, events
        self.position = {ev.id.hex(): i for i, ev in enumerate(events)}
        self.views: dict[int, dict[str, Any]] = {}  # position -> the view after that event
        self.head: tuple[int, AsOfTracker] | None = None  # the state folded last, and where
        # Without the log's time-line checkpoints: the time line folded in
        # memory (a worker), instead of `state_as_of` building them first.
        self.fold = fold

    def _ahead(self, pos: int) -> bool:
        """The state folded last is before `pos`, near enough to fold on."""
        return self.head is not None and self.head[0] < pos <= self.head[0] + TimelineFold.STEP

    def ready(self, event: str) -> bool:
        """Whether `view_at(event)` is quick now (else: wait for the fold)."""
        pos = self.position[event]
        if self.fold is None or pos in self.views or self._ahead(pos):
            return True
        return self.fold.nearest(pos) is not None

    async def view_at(self, event: str) -> dict[str, Any]:
        """`as_of_view` of the plan after the event with this id (hex)."""
        pos = self.position[event]
        found = self.views.get(pos)
        if found is not None:
            return found
        if self._ahead(pos):
            assert self.head is not None
            at, tracker = self.head
        else:
            base = self.fold.nearest(pos) if self.fold is not None else None
            if base is None:
                at = max(0, pos - self.ANCHOR)
                state = await state_as_of(self.log, self.plan, key_of(self.events[at]))
            else:
                at, state = base
            tracker = AsOfTracker(state)
            if at >= 0:
                self.views[at] = tracker.data
        views = self.views
        with gc_paused():
            for i in range(at + 1, pos + 1):
                tracker.evolve(self.events[i])
                views[i] = tracker.data
        self.head = (pos, tracker)
        return tracker.data


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
        yield ShownTable(id="asof")
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
            self.data = await self.stepper.view_at(step["event"])
        else:  # the time line was not read (or changed since): ask the log
            state = await state_as_of(app.workspace.log, self.plan, step_key(step))
            self.data = as_of_view(state)
        who = app.workspace.names.get(step["author"], step["author"][:8])
        self.query_one("#when", Label).update(  # one line of fixed size: no layout
            f"{t('as_of')} {step['time'][:19]} · {who} · {step['type']} "
            f"({len(self.steps) - self.index}/{len(self.steps)})",
            layout=False,
        )
        fields = self.data["fields"]
        rows: list[Row] = [
            (name, (t(f"field_{name}"), cell_text(fields.get(name)))) for name in PLAN_FIELDS
        ]
        for number, phase in enumerate(self.data["phases"], 1):
            pf = phase["fields"]
            rows.append(
                (
                    f"phase-{number}",
                    (f"{t('phase')} {number}", f"{pf.get('name', '')}: {pf.get('status')}"),
                )
            )
        rows.append(("activities", (t("activities"), str(self.data["activity_count"]))))
        rows.append(("actors", (t("actors"), str(len(self.data["actors"])))))
        # Only the cells that changed since the last step are drawn again.
        self.query_one("#asof", ShownTable).show((t("field"), t("value")), rows)
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
