"""A plan in tabs: overview, phases with their needs (the tablecloth), sub-goals,
activities, actors (grid; comparison between phases), involvement, decisions,
notes, conflicts and history (filters, stepping through time)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Static, TabbedContent, TabPane

from core.projections.positions import key_between
from tui_client.tui.actors import ActorCompareScreen, actor_grid, phase_ends
from tui_client.tui.bindings import localise
from tui_client.tui.cells import EDIT_ERRORS, cell_text, form_fields, form_text
from tui_client.tui.dialogs import ConfirmDialog, FormDialog, ResolveDialog
from tui_client.tui.field_editor import FieldEditor
from tui_client.tui.form_editor import FormEditor
from tui_client.tui.history import (
    HISTORY_ROWS,
    AsOfScreen,
    HistoryFilter,
    entity_labels,
    fill_history,
)
from tui_client.tui.history_load import HistoryLoad, read_history
from tui_client.tui.layout import ENTITY_TABS, PLAN_FIELDS
from tui_client.tui.report import ReportScreen
from tui_client.tui.shown_table import Row, ShownTable
from tui_client.tui.status_line import status_bar

if TYPE_CHECKING:
    from tui_client.tui.app import ViddaApp


def slot(keys: list[str | None], index: int) -> str:
    """A position key that sorts the moved item at `index` among the other
    items' `keys` (in order). Two devices may have picked the same key: then
    it goes just past the tied group, the nearest place a key can say."""
    before = keys[index - 1] if index > 0 else None
    after = keys[index] if index < len(keys) else None
    if before is not None and after is not None and before >= after:
        later = [k for k in keys[index:] if k is not None and k > before]
        after = later[0] if later else None
    return key_between(before, after)


def span(fields: dict[str, Any], which: str) -> str:
    """A phase's planned or actual dates, start → end."""
    return f"{cell_text(fields.get(which + '_start'))} → {cell_text(fields.get(which + '_end'))}"


class PlanScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "back"),
        Binding("e", "edit", "edit"),
        Binding("a", "add", "add"),
        Binding("x", "remove", "remove"),
        Binding("c", "complete", "complete"),
        Binding("r", "resolve", "resolve"),
        Binding("k", "add_need('knowledge')", "need_knowledge"),
        Binding("p", "add_need('process')", "need_process"),
        Binding("greater_than_sign", "to_phase(1)", "next_phase"),
        Binding("less_than_sign", "to_phase(-1)", "previous_phase"),
        Binding("shift+up", "reorder(-1)", "move_up"),
        Binding("shift+down", "reorder(1)", "move_down"),
        Binding("v", "compare_actors", "compare"),
        Binding("R", "report", "report", show=False),  # F1 and the palette list it
        Binding("f", "filter_history", "filter"),
        Binding("t", "time_travel", "time_travel"),
    ]

    def __init__(self, plan: bytes) -> None:
        super().__init__()
        self.plan = plan
        self.data: dict[str, Any] = {}
        self.phase_rows: list[tuple[str, str]] = []  # (kind, id) per row of the phases table
        self.history_rows: list[dict[str, Any]] = []  # rows shown, newest first (filtered)
        self.history_all: list[dict[str, Any]] | None = None  # None: not (yet) read / stale
        self.history_load: HistoryLoad | None = None  # being read (or read), None: stale
        self.history_drawn = -1  # how many rows were read when the table was drawn
        self.history_full = False  # it shows HISTORY_ROWS rows (the newest: final)
        self.when_read: list[Any] = []  # run once the history is read
        self.history_steps: list[dict[str, Any]] = []  # one per event, newest first
        self.step_of: dict[str, int] = {}  # event id (hex) -> its step
        self.history_filter = HistoryFilter()
        self.stale: set[str] = set()  # tabs to redraw when shown
        # The line and the form that edit in place (kept: `check_action` asks
        # them on every key and footer update, a query would walk the screen).
        self.field_editor, self.form_editor = FieldEditor(), FormEditor()
        # Per entity tab: the labels of referenced entities and each row's
        # cells by entity id, with the entity view they came from (the view
        # memo keeps an untouched entity's view, the very same dict).
        self.row_cache: dict[str, tuple[dict[str, Any], dict[str, tuple[Any, list[str]]]]] = {}

    def compose(self) -> ComposeResult:
        t = self.app.t  # type: ignore[attr-defined]
        yield Header()
        with TabbedContent(id="tabs"):
            with TabPane(t("overview"), id="tab-overview"):
                yield ShownTable(id="overview")
            with TabPane(t("phases"), id="tab-phases"):
                yield ShownTable(id="phases")
            for group, (_kind, _cols) in ENTITY_TABS.items():
                with TabPane(t(group), id=f"tab-{group}"):
                    yield ShownTable(id=group)
                    if group == "actors":
                        yield Static(id="actor-grid")
            with TabPane(t("conflicts"), id="tab-conflicts"):
                yield ShownTable(id="conflicts")
            with TabPane(t("history"), id="tab-history"):
                yield Label("", id="history-filter")
                yield DataTable(id="history", cursor_type="row")
        yield status_bar(self.field_editor, self.form_editor)

    async def on_mount(self) -> None:
        await self.reload()

    async def reload(self) -> None:
        """Read the plan again and redraw what is on screen: the overview
        always (small), the other tabs when shown (a plan with hundreds of
        activities, actors and needs redraws one table per edit)."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        if localise(self, t):
            self.relabel()
        had_conflicts = bool(self.data.get("conflicts"))
        self.data = await app.workspace.view(self.plan)
        if had_conflicts != bool(self.data["conflicts"]):
            self.refresh_bindings()  # `r` comes or goes
        f = self.data["fields"]
        self.sub_title = f"{f.get('municipality', '')} · {f.get('title', '')}"
        self._fill_overview()
        self.stale = {"phases", *ENTITY_TABS, "conflicts", "history"}
        self.forget_history()
        await self._fill(self._active().removeprefix("tab-"))
        app.refresh_status()

    def relabel(self) -> None:
        """Tab titles and key descriptions in the language of the moment."""
        t = self.app.t  # type: ignore[attr-defined]
        tabs = self.query_one("#tabs", TabbedContent)
        for name in ("overview", "phases", *ENTITY_TABS, "conflicts", "history"):
            tabs.get_tab(f"tab-{name}").label = t(name)
        for editor in (self.field_editor, self.form_editor):  # their Escape key, if open
            localise(editor, t)
        self.refresh_bindings()

    async def _fill(self, group: str) -> None:
        if group not in self.stale:
            return
        self.stale.discard(group)
        if group == "phases":
            self._fill_phases()
        elif group in ENTITY_TABS:
            self._fill_entities(group)
        elif group == "conflicts":
            self._fill_conflicts()
        elif group == "history":
            self.show_history()

    def _fill_overview(self) -> None:
        t = self.app.t  # type: ignore[attr-defined]
        f = self.data["fields"]
        marks = set(self.data.get("plan_conflicts", []))
        rows = [
            (name, (t(f"field_{name}") + (" ⚠" if name in marks else ""), cell_text(f.get(name))))
            for name in PLAN_FIELDS
        ]
        self.query_one("#overview", ShownTable).show((t("field"), t("value")), rows)

    def _fill_phases(self) -> None:
        t = self.app.t  # type: ignore[attr-defined]
        self.phase_rows = []
        rows: list[Row] = []
        needs: dict[Any, list[dict[str, Any]]] = {}
        for need in self.data["needs"]:
            needs.setdefault(need["fields"].get("phase"), []).append(need)
        for number, phase in enumerate(self.data["phases"], 1):
            pf = phase["fields"]
            rows.append(
                (
                    phase["id"],
                    (
                        f"{number}. {cell_text(pf.get('name'))}"
                        + (" ⚠" if phase.get("conflicts") else ""),
                        cell_text(pf.get("status")),
                        span(pf, "planned"),
                        span(pf, "actual"),
                    ),
                )
            )
            self.phase_rows.append(("phase", phase["id"]))
            for need in needs.get(phase["id"], []):
                nf = need["fields"]
                rows.append(
                    (
                        need["id"],
                        (
                            f"    {t('need_' + str(nf.get('kind')))}: {cell_text(nf.get('text'))}"
                            + (" ⚠" if need.get("conflicts") else ""),
                            cell_text(nf.get("status")),
                            "",
                            "",
                        ),
                    )
                )
                self.phase_rows.append(("need", need["id"]))
        columns = (t("phase"), t("status"), t("planned"), t("actual"))
        self.query_one("#phases", ShownTable).show(columns, rows)

    def _fill_entities(self, group: str) -> None:
        t = self.app.t  # type: ignore[attr-defined]
        labels = {
            "phase": {x["id"]: x["fields"].get("name", "") for x in self.data["phases"]},
            "activity": {x["id"]: x["fields"].get("title", "") for x in self.data["activities"]},
            "sub_goal": {x["id"]: x["fields"].get("text", "") for x in self.data["sub_goals"]},
        }
        cols = ENTITY_TABS[group][1]
        rows: list[Row] = []
        was_labels, was_rows = self.row_cache.get(group, (None, {}))
        same_labels = was_labels == labels
        cached: dict[str, tuple[Any, list[str]]] = {}
        for ent in self.data[group]:
            found = was_rows.get(ent["id"])
            if same_labels and found is not None and found[0] is ent:
                cells = found[1]
            else:
                ef = ent["fields"]
                cells = []
                for c in cols:
                    value = ef.get(c)
                    if c in labels and value:
                        value = labels[c].get(value, value)
                    mark = " ⚠" if c in ent.get("conflicts", ()) else ""
                    cells.append(cell_text(value) + mark)
            cached[ent["id"]] = (ent, cells)
            rows.append((ent["id"], cells))
        self.row_cache[group] = (labels, cached)
        self.query_one(f"#{group}", ShownTable).show([t(f"col_{c}") for c in cols], rows)
        if group == "actors":
            self.query_one("#actor-grid", Static).update(actor_grid(self.data["actors"], t))

    def _fill_conflicts(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        rows: list[Row] = []
        for i, c in enumerate(self.data["conflicts"]):
            values = " | ".join(cell_text(v["value"]) for v in c["values"])
            who = ", ".join(
                app.workspace.names.get(v["author"], v["author"][:8]) for v in c["values"]
            )
            rows.append((str(i), (f"{c['kind']} · {c['field']}", values, who)))
        self.query_one("#conflicts", ShownTable).show((t("what"), t("value"), t("who")), rows)

    def forget_history(self) -> None:
        """The plan changed: the history read (or being read) is stale."""
        self.workers.cancel_group(self, "history")
        self.history_load, self.history_all = None, None
        self.when_read = []

    def read_history(self) -> HistoryLoad:
        """Start reading the history in a worker (once per change of the plan):
        the table fills with the newest rows first, a progress line above it,
        keys keep working meanwhile."""
        if self.history_load is None:
            app: ViddaApp = self.app  # type: ignore[assignment]
            load = self.history_load = HistoryLoad(self.plan)
            self.history_drawn, self.history_full = -1, False
            self.run_worker(
                read_history(app.workspace.log, load, self._history_read, first=HISTORY_ROWS),
                name="history",
                group="history",
                exclusive=True,
            )
        return self.history_load

    def _history_read(self, load: HistoryLoad) -> None:
        """Progress of the worker: the line above the table; the table once
        the newest rows are there, and again at the end if it was not full."""
        if load is not self.history_load or not self.query("#history-filter"):
            return  # a stale reading, or the screen is closing
        if load.done:
            app: ViddaApp = self.app  # type: ignore[assignment]
            self.history_all, self.history_steps = load.rows, load.steps
            self.step_of = {s["event"]: i for i, s in enumerate(load.steps)}
            app.workspace.timelines[self.plan] = load.events
            self.show_history()
            todo, self.when_read = self.when_read, []
            for then in todo:
                then()
        elif self.history_drawn < HISTORY_ROWS <= len(load.rows):
            self.show_history()  # the newest rows are in
        else:
            self._history_label()

    def show_history(self) -> None:
        """The history tab: the rows read so far that the filter lets through
        (the newest `HISTORY_ROWS` in the table)."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        load = self.read_history()
        if load.done and self.history_full:
            self._history_label()
            return  # the newest rows are on screen already
        names, labels = app.workspace.names, entity_labels(self.data)
        keep = self.history_filter
        every = load.rows
        self.history_rows = [r for r in every if keep.matches(r, labels, names)] if keep else every
        table = self.query_one("#history", DataTable)
        row = table.cursor_row
        fill_history(table, self.history_rows, names, labels, app.t)
        if self.history_rows:
            table.move_cursor(row=min(row, table.row_count - 1))
        self.history_drawn = len(load.rows)
        self.history_full = len(self.history_rows) >= HISTORY_ROWS
        self._history_label()

    def _history_label(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        load = self.history_load
        shown = min(len(self.history_rows), HISTORY_ROWS)
        text = self.history_filter.describe(app.t, shown, len(self.history_rows))
        if load is not None and not load.done:
            text = f"{app.t('reading_history', percent=load.percent)} · {text}"
        self.query_one("#history-filter", Label).update(text)

    @on(TabbedContent.TabActivated)
    async def tab_shown(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()  # the keys of this tab
        await self._fill(str(event.pane.id).removeprefix("tab-"))

    # Keys that act on one tab only are shown (and work) on that tab.
    ONLY_ON: ClassVar[dict[str, tuple[str, ...]]] = {
        "complete": ("activities",),
        "reorder": ("activities",),
        "to_phase": ("activities", "phases"),
        "add_need": ("phases",),
        "compare_actors": ("actors",),
        "filter_history": ("history",),
        "time_travel": ("history",),
        "remove": ("phases", *ENTITY_TABS),
        "edit": ("overview", "phases", *ENTITY_TABS),
    }

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        tabs = self.ONLY_ON.get(action)
        if tabs is not None and self.is_mounted:
            if self._editing():
                return False  # a line or form is open: keys go to it (Escape closes it)
            return self._active().removeprefix("tab-") in tabs
        if action == "resolve":
            return bool(self.data.get("conflicts"))
        return True

    def _editing(self) -> bool:
        """A field or a form is open in place."""
        return self.field_editor.is_open or self.form_editor.is_open

    def action_back(self) -> None:
        self.forget_history()  # stop reading it, and folding it for time travel
        self.app.workers.cancel_group(self.app, "fold")
        app: ViddaApp = self.app  # type: ignore[assignment]
        app.workspace.folds.pop(self.plan, None)
        self.app.pop_screen()

    def _active(self) -> str:
        return self.query_one("#tabs", TabbedContent).active

    async def action_edit(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        active = self._active()
        if active == "tab-overview":
            row = self.query_one("#overview", DataTable).cursor_row
            kind, entity, field = "plan", self.plan, PLAN_FIELDS[row]
            current = self.data["fields"].get(field)
        elif active == "tab-phases" and self.phase_rows:
            row = self.query_one("#phases", DataTable).cursor_row
            kind, hex_id = self.phase_rows[row]
            entity = bytes.fromhex(hex_id)
            field = "status" if kind == "phase" else "text"
            current = self._entity(kind, hex_id)["fields"].get(field)
        elif active.removeprefix("tab-") in ENTITY_TABS:
            await self._edit_entity(active.removeprefix("tab-"))
            return
        else:
            return

        async def save(text: str) -> bool:
            return await self._write(app.workspace.set_field(self.plan, kind, entity, field, text))

        self.field_editor.open(app.t(f"field_{field}"), form_text(current), save)

    def _entity(self, kind: str, hex_id: str) -> dict[str, Any]:
        group = {"phase": "phases", "need": "needs", "activity": "activities"}[kind]
        return next(e for e in self.data[group] if e["id"] == hex_id)

    def _current_phase(self) -> str | None:
        """The phase of the selected row of the phases table."""
        if not self.phase_rows:
            return None
        row = self.query_one("#phases", DataTable).cursor_row
        kind, hex_id = self.phase_rows[row]
        if kind == "phase":
            return hex_id
        phase = self._entity("need", hex_id)["fields"].get("phase")
        return str(phase) if phase else None

    def action_add_need(self, kind: str) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        if self._active() != "tab-phases":
            return
        phase = self._current_phase()

        async def save(text: str) -> bool:
            if not text.strip():
                return True  # nothing to add: the line just closes
            texts = {"kind": kind, "text": text}
            if phase:
                texts["phase"] = phase
            return await self._write(app.workspace.add(self.plan, "need", texts))

        self.field_editor.open(app.t(f"need_{kind}"), "", save)

    async def action_to_phase(self, step: int) -> None:
        """Move the selected need (phases tab, the tablecloth) or activity
        (activities tab) to the next or previous phase."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        active = self._active()
        if active == "tab-phases" and self.phase_rows:
            row = self.query_one("#phases", DataTable).cursor_row
            kind, hex_id = self.phase_rows[row]
            if kind != "need":
                return
        elif active == "tab-activities" and self.data["activities"]:
            row = self.query_one("#activities", DataTable).cursor_row
            kind, hex_id = "activity", self.data["activities"][row]["id"]
        else:
            return
        order = [p["id"] for p in self.data["phases"]]
        here = self._entity(kind, hex_id)["fields"].get("phase")
        index = order.index(here) if here in order else -1
        target = index + step
        if not 0 <= target < len(order):
            return
        phase = bytes.fromhex(order[target])
        entity = bytes.fromhex(hex_id)
        await self._write(
            app.workspace.set_values(self.plan, kind, entity, {"phase": phase}), select=hex_id
        )

    async def action_reorder(self, step: int) -> None:
        """Move the selected activity up or down the list: a new fractional
        position between its new neighbours (one ActivityMoved event)."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        if self._active() != "tab-activities":
            return
        acts = self.data["activities"]
        row = self.query_one("#activities", DataTable).cursor_row
        target = row + step
        if not acts or not 0 <= target < len(acts):
            return
        keys = [a["fields"].get("position") for i, a in enumerate(acts) if i != row]
        position = slot(keys, target)
        entity = bytes.fromhex(acts[row]["id"])
        await self._write(
            app.workspace.set_values(self.plan, "activity", entity, {"position": position}),
            select=acts[row]["id"],
        )

    def action_remove(self) -> None:
        """Remove the selected entity of the active tab, after a yes."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        group = self._active().removeprefix("tab-")
        if group == "phases" and self.phase_rows:
            kind, hex_id = self.phase_rows[self.query_one("#phases", DataTable).cursor_row]
            fields = self._entity(kind, hex_id)["fields"]
            label = cell_text(fields.get("name") or fields.get("text"))
        elif group in ENTITY_TABS and self.data.get(group):
            kind = ENTITY_TABS[group][0]
            ent = self.data[group][self.query_one(f"#{group}", DataTable).cursor_row]
            hex_id = ent["id"]
            label = entity_labels({"plan": "", "fields": {}, group: [ent]})[hex_id]
        else:
            return

        async def done(yes: bool | None) -> None:
            if yes:
                await self._write(app.workspace.remove(self.plan, kind, bytes.fromhex(hex_id)))

        self.app.push_screen(ConfirmDialog(app.t("confirm_remove", what=label)), done)

    def action_time_travel(self) -> None:
        """The whole plan as it was after the selected history event."""
        if self._active() != "tab-history" or not self.history_rows:
            return
        app: ViddaApp = self.app  # type: ignore[assignment]
        if self.history_all is None:  # steps are counted over the whole history
            app.notify(app.t("history_loading"))
            return
        row = self.history_rows[self.query_one("#history", DataTable).cursor_row]
        steps, index = self.history_steps, self.step_of[row["event"]]
        names, labels = app.workspace.names, entity_labels(self.data)
        keep = self.history_filter

        def shown(step: dict[str, Any]) -> bool:
            return any(keep.matches(c, labels, names) for c in step["changes"])

        self.app.push_screen(AsOfScreen(self.plan, steps, index, shown if keep else None))

    def action_filter_history(self) -> None:
        """Filter the history by entity, author and event type (parts of names)."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        if self._active() != "tab-history":
            return
        t, now = app.t, self.history_filter
        fields = [(f, t(f"filter_{f}")) for f in ("entity", "author", "type")]
        values = {"entity": now.entity, "author": now.author, "type": now.type}

        async def done(chosen: dict[str, str] | None) -> None:
            if chosen is None:
                return
            self.history_filter = HistoryFilter(**{k: v.strip() for k, v in chosen.items()})
            self.history_full = False
            self.show_history()

        self.app.push_screen(FormDialog(t("filter_title"), fields, values=values), done)

    async def action_compare_actors(self) -> None:
        """The actor analysis at the end of the last finished phase against now."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        if self._active() != "tab-actors":
            return
        if self.history_all is None:  # compared once the history is read
            load = self.read_history()
            self.when_read.append(lambda: self.call_later(self.action_compare_actors))

            def still_reading() -> None:
                if not load.done and load is self.history_load:
                    app.notify(app.t("history_loading"))

            self.set_timer(0.5, still_reading)  # said only when it takes a while
            return
        ends = phase_ends(self.history_steps, entity_labels(self.data))
        if not ends:
            app.notify(app.t("no_phase_done"))
            return
        self.app.push_screen(ActorCompareScreen(self.plan, ends))

    def action_report(self) -> None:
        """The plan's research report (what `vidda report PLAN` prints)."""
        self.app.push_screen(ReportScreen(self.plan))

    async def action_add(self) -> None:
        """Add an entity of the active tab's kind (activities, actors, …):
        a form in place, above the status line."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        group = self._active().removeprefix("tab-")
        if group not in ENTITY_TABS:
            group = "activities"
        kind = ENTITY_TABS[group][0]
        fields = [(f, app.t(f"col_{f}")) for f in form_fields(kind)]

        async def save(values: dict[str, str]) -> bool:
            texts = {k: v for k, v in values.items() if v.strip()}
            if not texts:
                return True  # nothing to add: the form just closes
            return await self._write(app.workspace.add(self.plan, kind, self._numbers(texts)))

        await self.form_editor.open(f"{app.t('add')}: {app.t(group)}", fields, save)

    async def _edit_entity(self, group: str) -> None:
        """Every field of the selected entity in one form in place; changed
        ones are saved."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        entities = self.data.get(group) or []
        if not entities:
            return
        row = self.query_one(f"#{group}", DataTable).cursor_row
        ent = entities[row]
        kind = ENTITY_TABS[group][0]
        before = {f: form_text(ent["fields"].get(f)) for f in form_fields(kind)}
        fields = [(f, app.t(f"col_{f}")) for f in form_fields(kind)]

        async def save(values: dict[str, str]) -> bool:
            changed = {k: v for k, v in values.items() if v != before.get(k, "")}
            if not changed:
                return True
            return await self._write(
                app.workspace.set_fields(
                    self.plan, kind, bytes.fromhex(ent["id"]), self._numbers(changed)
                )
            )

        await self.form_editor.open(f"{app.t('edit')}: {app.t(group)}", fields, save, values=before)

    def _numbers(self, texts: dict[str, str]) -> dict[str, str]:
        """Let people name a phase, activity or sub-goal by its number as shown."""
        out = dict(texts)
        for field, group in (
            ("phase", "phases"),
            ("activity", "activities"),
            ("sub_goal", "sub_goals"),
        ):
            value = out.get(field, "").strip()
            if value.isdigit() and 1 <= int(value) <= len(self.data[group]):
                out[field] = self.data[group][int(value) - 1]["id"]
        return out

    async def action_complete(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        if self._active() != "tab-activities" or not self.data.get("activities"):
            return
        table = self.query_one("#activities", DataTable)
        activity = bytes.fromhex(self.data["activities"][table.cursor_row]["id"])
        await self._write(
            app.workspace.set_field(self.plan, "activity", activity, "status", "done")
        )

    def action_resolve(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        found = self.data.get("conflicts", [])
        if not found:
            return
        index = 0
        if self._active() == "tab-conflicts":
            index = self.query_one("#conflicts", DataTable).cursor_row
        conflict = found[index]

        async def done(choice: Any) -> None:
            if choice is None:
                return
            how, value = choice
            entity = bytes.fromhex(conflict["entity"])
            if how == "text":
                from tui_client.cli_plan import typed_values

                state = await app.workspace.state(self.plan)
                value = typed_values(state, conflict["kind"], {conflict["field"]: value})[
                    conflict["field"]
                ]
            await self._write(
                app.workspace.resolve(self.plan, conflict["kind"], entity, conflict["field"], value)
            )

        self.app.push_screen(ResolveDialog(conflict, app.workspace.names), done)

    async def _write(self, edit: Any, select: str | None = None) -> bool:
        """Append (durably) first, then show; `select`: keep the cursor on that
        entity wherever it moved to. False if the edit was refused (said in a
        notification; nothing written)."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        try:
            event = await edit
        except EDIT_ERRORS as exc:
            app.notify(str(exc), severity="error")
            return False
        app.notify(app.t("saved", event=event.id.hex()[:12]))
        app.local_change()
        await self.reload()
        if select is not None:
            group = self._active().removeprefix("tab-")
            if group == "phases":
                rows = [hex_id for _, hex_id in self.phase_rows]
            else:
                rows = [e["id"] for e in self.data.get(group, [])]
            if select in rows:
                self.query_one(f"#{group}", DataTable).move_cursor(row=rows.index(select))
        return True
