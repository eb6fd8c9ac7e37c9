"""The actor analysis: the influence × interest grid, and the analysis as it
was at the end of one phase compared with another phase's end (or now).

"Redo it between phases": a phase ends with the (last) event that set its
status to done; the analysis then is the plan as of that event
(`core.store.time_travel.state_as_of`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label

from core.events.hlc import wall_ms
from core.projections.plan_view import view
from core.store.time_travel import state_as_of
from tui_client.tui.bindings import localise
from tui_client.tui.cells import cell_text
from tui_client.tui.status_line import status_bar

if TYPE_CHECKING:
    from tui_client.tui.app import ViddaApp
    from tui_client.tui.i18n import Translator

COMPARED = ("category", "participation", "influence", "interest", "stance", "bellwether")
Key = tuple[int, bytes, int]


def actor_grid(actors: list[dict[str, Any]], t: Translator) -> str:
    """Influence (rows, high first) × interest (columns): how many actors sit
    in each cell, then who they are, cell by cell."""
    cells: dict[tuple[int, int], list[str]] = {}
    for a in actors:
        f = a["fields"]
        if isinstance(f.get("influence"), int) and isinstance(f.get("interest"), int):
            name = str(f.get("name", "")) + ("*" if f.get("bellwether") else "")
            cells.setdefault((f["influence"], f["interest"]), []).append(name)
    lines = [t("grid_title")]
    for influence in (3, 2, 1, 0):
        counts = [
            str(len(cells.get((influence, i), []))) if cells.get((influence, i)) else "·"
            for i in range(4)
        ]
        lines.append(f"  {influence} │ " + "  ".join(c.rjust(3) for c in counts))
    lines.append("    └" + "─" * 21)
    lines.append("       " + "  ".join(str(i).rjust(3) for i in range(4)))
    for (influence, interest), names in sorted(cells.items(), reverse=True):
        lines.append(f"  {influence}×{interest}: {', '.join(names)}")
    return "\n".join(lines)


def compare_actors(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> list[tuple[str, str, Any, Any]]:
    """(actor, field, then, now) for every classification that changed; an
    actor new since then has field "+", one gone has "-"."""
    old = {a["id"]: a["fields"] for a in before}
    new = {a["id"]: a["fields"] for a in after}
    out: list[tuple[str, str, Any, Any]] = []
    for actor in after:
        f = actor["fields"]
        name = str(f.get("name", ""))
        if actor["id"] not in old:
            out.append((name, "+", None, None))
            continue
        for field in COMPARED:
            if old[actor["id"]].get(field) != f.get(field):
                out.append((name, field, old[actor["id"]].get(field), f.get(field)))
    out.extend((str(f.get("name", "")), "-", None, None) for i, f in old.items() if i not in new)
    return out


def phase_ends(steps: list[dict[str, Any]], labels: dict[str, str]) -> list[tuple[str, Key]]:
    """(phase name, time-line key of its end), oldest first. A phase ends
    with the save that marked it done: the last event stamped in the same
    millisecond as that change (a form's events, a plan created with its
    first phases done). A phase done twice (reopened) ends at the last."""
    ends: dict[str, tuple[str, Key]] = {}
    for i in range(len(steps) - 1, -1, -1):  # steps are newest first
        for c in steps[i]["changes"]:
            if c.get("kind") == "phase" and c.get("field") == "status" and c.get("new") == "done":
                j = i
                while j > 0 and wall_ms(int(steps[j - 1]["hlc"])) == wall_ms(int(steps[i]["hlc"])):
                    j -= 1
                last = steps[j]
                key = (int(last["hlc"]), bytes.fromhex(last["author"]), int(last["seq"]))
                ends[c["entity"]] = (labels.get(c["entity"], c["entity"][:8]), key)
    return sorted(ends.values(), key=lambda e: e[1])


class ActorCompareScreen(Screen[None]):
    """The actor analysis then and now: `[`/`]` an earlier/later phase end
    as "then", `{`/`}` as "now"; the last choice is the present."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "back"),
        Binding("left_square_bracket", "move('then', -1)", "then_back"),
        Binding("right_square_bracket", "move('then', 1)", "then_forward"),
        Binding("left_curly_bracket", "move('now', -1)", "now_back"),
        Binding("right_curly_bracket", "move('now', 1)", "now_forward"),
    ]

    def __init__(self, plan: bytes, ends: list[tuple[str, Key]]) -> None:
        super().__init__()
        self.plan = plan
        self.points: list[tuple[str, Key | None]] = [*ends, ("", None)]
        self.then_at = max(0, len(self.points) - 2)
        self.now_at = len(self.points) - 1
        self.rows: list[tuple[str, str, Any, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="compare-title")
        yield DataTable(id="compare", cursor_type="row")
        yield status_bar()

    async def on_mount(self) -> None:
        await self.show()

    async def _actors(self, key: Key | None) -> list[dict[str, Any]]:
        app: ViddaApp = self.app  # type: ignore[assignment]
        if key is None:
            state = await app.workspace.state(self.plan)
        else:
            state = await state_as_of(app.workspace.log, self.plan, key)
        actors: list[dict[str, Any]] = view(state)["actors"]
        return actors

    def _point_label(self, index: int) -> str:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        name, key = self.points[index]
        return t("now_label") if key is None else t("phase_end", phase=name)

    async def show(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        if localise(self, t):
            self.refresh_bindings()
        before = await self._actors(self.points[self.then_at][1])
        after = await self._actors(self.points[self.now_at][1])
        self.rows = compare_actors(before, after)
        self.query_one("#compare-title", Label).update(
            t(
                "compare_title",
                then=self._point_label(self.then_at),
                now=self._point_label(self.now_at),
            )
            + ("" if self.rows else " · " + t("no_changes"))
        )
        table = self.query_one("#compare", DataTable)
        table.clear(columns=True)
        table.add_columns(t("col_name"), t("field"), t("then"), t("now_label"))
        for name, field, old, new in self.rows:
            if field in ("+", "-"):
                table.add_row(name, t("actor_new" if field == "+" else "actor_gone"), "", "")
            else:
                table.add_row(name, t(f"col_{field}"), cell_text(old), cell_text(new))
        app.refresh_status()

    async def action_move(self, which: str, delta: int) -> None:
        then, now = self.then_at, self.now_at
        if which == "then":
            then = min(max(0, then + delta), now)
        else:
            now = min(max(then, now + delta), len(self.points) - 1)
        if (then, now) != (self.then_at, self.now_at):
            self.then_at, self.now_at = then, now
            await self.show()

    def action_back(self) -> None:
        self.app.pop_screen()
