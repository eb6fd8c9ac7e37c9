"""`vidda` in a terminal: the Textual app.

Screens: the plan list, a plan (overview, activities, conflicts, history),
modal dialogs for editing and resolving. The sync engine runs as a worker
in the background (never blocking typing) when a server is known; its state
is always visible in the status line. `l` switches Bokmål/English.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Label,
    Static,
    TabbedContent,
    TabPane,
)

from core.commands.edits import EditError
from core.events.envelope import EventError
from core.events.ids import IdError
from core.events.schema import ENTITY_FIELDS, FieldError
from core.projections.plan_view import view
from core.replication.client import SyncStatus
from core.store.time_travel import state_as_of
from tui_client.home import Home, HomeError
from tui_client.tui.dialogs import (
    EditDialog,
    FormDialog,
    ResolveDialog,
    SettingsScreen,
    SetupScreen,
    UnlockScreen,
)
from tui_client.tui.i18n import Translator
from tui_client.tui.workspace import Workspace

EDIT_ERRORS = (EditError, EventError, FieldError, IdError, HomeError, ValueError)

PLAN_FIELDS = (
    "title",
    "municipality",
    "societal_goal",
    "societal_goal_horizon",
    "desired_result",
    "desired_result_due",
    "desired_result_assessment",
    "q_who_are_we",
    "q_knowledge_base",
    "q_where_to",
    "q_what_we_do",
    "q_resources",
    "q_actors",
    "status",
)


# tab id -> (entity kind, columns shown); every field is editable in the form
ENTITY_TABS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sub_goals": ("sub_goal", ("text", "due", "status")),
    "activities": ("activity", ("phase", "title", "kind", "date", "responsible", "status")),
    "actors": (
        "actor",
        ("name", "category", "participation", "influence", "interest", "stance", "bellwether"),
    ),
    "involvement": ("involvement", ("activity", "category", "participants")),
    "decisions": ("decision", ("date", "body", "case_ref", "text")),
    "notes": ("note", ("text",)),
}


def form_fields(kind: str) -> list[str]:
    return [f for f in ENTITY_FIELDS[kind] if f != "position"]


def _form_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


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


def _text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "–"
    return str(value)


class StatusLine(Static):
    """Sync state, events pending, last contact: always visible."""

    def render_status(self, app: ViddaApp) -> None:
        t = app.t
        st = app.sync_status
        if st is None:
            self.update(t("sync_line", state=t("no_server"), pending=app.pending, last="–"))
            return
        last = (
            time.strftime("%H:%M:%S", time.localtime(st.last_synced_ms / 1000))
            if st.last_synced_ms
            else t("never")
        )
        line = t("sync_line", state=t(st.state), pending=st.pending, last=last)
        if st.error:
            line += f" · {st.error}"
        self.update(line)


# --- screens -----------------------------------------------------------------------------------


class PlansScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new_plan", "Ny plan"),
        Binding("d", "demo", "Eksempel"),
        Binding("enter", "open", "Åpne", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="empty")
        yield DataTable(id="plans", cursor_type="row")
        yield StatusLine(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        await self.refresh_plans()

    async def refresh_plans(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        table = self.query_one("#plans", DataTable)
        table.clear(columns=True)
        table.add_columns(
            t("municipality"), t("title"), t("phases"), t("pending"), t("conflicts"), t("events")
        )
        self.summaries = await app.workspace.summaries()
        for s in self.summaries:
            table.add_row(
                s.municipality,
                s.title,
                f"{s.phases_done}/{s.phases}",
                str(s.pending),
                str(s.conflicts) if s.conflicts else "",
                str(s.events),
                key=s.plan.hex(),
            )
        self.query_one("#empty", Label).update("" if self.summaries else t("no_plans"))
        app.refresh_status()

    @on(DataTable.RowSelected, "#plans")
    def open_row(self, event: DataTable.RowSelected) -> None:
        assert event.row_key.value is not None
        self.app.push_screen(PlanScreen(bytes.fromhex(event.row_key.value)))

    def action_open(self) -> None:
        table = self.query_one("#plans", DataTable)
        if self.summaries:
            self.app.push_screen(PlanScreen(self.summaries[table.cursor_row].plan))

    def action_new_plan(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t

        async def done(values: dict[str, str] | None) -> None:
            if not values:
                return
            try:
                await app.workspace.new_plan(values["title"], values["municipality"])
            except EDIT_ERRORS as exc:
                app.notify(str(exc), severity="error")
            await self.refresh_plans()

        self.app.push_screen(
            FormDialog(
                t("new_plan"),
                [("municipality", t("municipality")), ("title", t("title"))],
            ),
            done,
        )

    async def action_demo(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        await app.workspace.add_demo()
        await self.refresh_plans()


class PlanScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Tilbake"),
        Binding("e", "edit", "Endre"),
        Binding("a", "add", "Legg til"),
        Binding("c", "complete", "Fullfør aktivitet"),
        Binding("r", "resolve", "Løs konflikt"),
        Binding("k", "add_need('knowledge')", "Kunnskapsbehov"),
        Binding("p", "add_need('process')", "Prosessbehov"),
        Binding("greater_than_sign", "move_need(1)", "Behov →"),
        Binding("less_than_sign", "move_need(-1)", "← Behov"),
        Binding("t", "time_travel", "Planen da"),
    ]

    def __init__(self, plan: bytes) -> None:
        super().__init__()
        self.plan = plan
        self.data: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        t = self.app.t  # type: ignore[attr-defined]
        yield Header()
        with TabbedContent(id="tabs"):
            with TabPane(t("overview"), id="tab-overview"):
                yield DataTable(id="overview", cursor_type="row")
            with TabPane(t("phases"), id="tab-phases"):
                yield DataTable(id="phases", cursor_type="row")
            for group, (_kind, _cols) in ENTITY_TABS.items():
                with TabPane(t(group), id=f"tab-{group}"):
                    yield DataTable(id=group, cursor_type="row")
                    if group == "actors":
                        yield Static(id="actor-grid")
            with TabPane(t("conflicts"), id="tab-conflicts"):
                yield DataTable(id="conflicts", cursor_type="row")
            with TabPane(t("history"), id="tab-history"):
                yield DataTable(id="history", cursor_type="row")
        yield StatusLine(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        await self.reload()

    async def reload(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        self.data = await app.workspace.view(self.plan)
        f = self.data["fields"]
        marks = set(self.data.get("plan_conflicts", []))
        self.sub_title = f"{f.get('municipality', '')} · {f.get('title', '')}"
        ov = self.query_one("#overview", DataTable)
        ov.clear(columns=True)
        ov.add_columns(t("field"), t("value"))
        for name in PLAN_FIELDS:
            mark = " ⚠" if name in marks else ""
            ov.add_row(t(f"field_{name}") + mark, _text(f.get(name)), key=name)
        phases = {p["id"]: p["fields"].get("name", "") for p in self.data["phases"]}
        self.phase_rows: list[tuple[str, str]] = []  # (kind, id) per row of the phases table
        ph = self.query_one("#phases", DataTable)
        ph.clear(columns=True)
        ph.add_columns(t("phase"), t("status"), t("planned"), t("actual"))
        for number, phase in enumerate(self.data["phases"], 1):
            pf = phase["fields"]
            ph.add_row(
                f"{number}. {_text(pf.get('name'))}" + (" ⚠" if phase.get("conflicts") else ""),
                _text(pf.get("status")),
                f"{_text(pf.get('planned_start'))} → {_text(pf.get('planned_end'))}",
                f"{_text(pf.get('actual_start'))} → {_text(pf.get('actual_end'))}",
            )
            self.phase_rows.append(("phase", phase["id"]))
            for need in self.data["needs"]:
                nf = need["fields"]
                if nf.get("phase") == phase["id"]:
                    ph.add_row(
                        f"    {t('need_' + str(nf.get('kind')))}: {_text(nf.get('text'))}",
                        _text(nf.get("status")),
                        "",
                        "",
                    )
                    self.phase_rows.append(("need", need["id"]))
        labels = {
            "phase": phases,
            "activity": {x["id"]: x["fields"].get("title", "") for x in self.data["activities"]},
            "sub_goal": {x["id"]: x["fields"].get("text", "") for x in self.data["sub_goals"]},
        }
        for group, (_kind, cols) in ENTITY_TABS.items():
            table = self.query_one(f"#{group}", DataTable)
            table.clear(columns=True)
            table.add_columns(*(t(f"col_{c}") for c in cols))
            for ent in self.data[group]:
                ef = ent["fields"]
                cells = []
                for c in cols:
                    value = ef.get(c)
                    if c in labels and value:
                        value = labels[c].get(value, value)
                    cells.append(_text(value) + (" ⚠" if c in ent.get("conflicts", ()) else ""))
                table.add_row(*cells, key=ent["id"])
        self.query_one("#actor-grid", Static).update(actor_grid(self.data["actors"], t))
        conf = self.query_one("#conflicts", DataTable)
        conf.clear(columns=True)
        conf.add_columns(t("what"), t("value"), t("who"))
        for i, c in enumerate(self.data["conflicts"]):
            values = " | ".join(_text(v["value"]) for v in c["values"])
            who = ", ".join(
                app.workspace.names.get(v["author"], v["author"][:8]) for v in c["values"]
            )
            conf.add_row(f"{c['kind']} · {c['field']}", values, who, key=str(i))
        hist = self.query_one("#history", DataTable)
        hist.clear(columns=True)
        hist.add_columns(t("when"), t("who"), t("what"), t("value"))
        self.history_rows = list(reversed(await app.workspace.history(self.plan)))
        for row in self.history_rows:
            who = app.workspace.names.get(row["author"], row["author"][:8])
            what = row["type"] + (f" · {row['field']}" if row.get("field") else "")
            hist.add_row(row["time"][:19], who, what, _text(row.get("new"))[:60])
        app.refresh_status()

    def action_back(self) -> None:
        self.app.pop_screen()

    def _active(self) -> str:
        return self.query_one("#tabs", TabbedContent).active

    def action_edit(self) -> None:
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
            self._edit_entity(active.removeprefix("tab-"))
            return
        else:
            return

        async def done(text: str | None) -> None:
            if text is None:
                return
            await self._write(app.workspace.set_field(self.plan, kind, entity, field, text))

        label = app.t(f"field_{field}")
        self.app.push_screen(EditDialog(label, "" if current is None else str(current)), done)

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

        async def done(text: str | None) -> None:
            if not text:
                return
            texts = {"kind": kind, "text": text}
            if phase:
                texts["phase"] = phase
            await self._write(app.workspace.add(self.plan, "need", texts))

        self.app.push_screen(EditDialog(app.t(f"need_{kind}"), ""), done)

    async def action_move_need(self, step: int) -> None:
        """The tablecloth: move the selected need to the next or previous phase."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        if self._active() != "tab-phases" or not self.phase_rows:
            return
        row = self.query_one("#phases", DataTable).cursor_row
        kind, hex_id = self.phase_rows[row]
        if kind != "need":
            return
        order = [p["id"] for p in self.data["phases"]]
        here = self._entity("need", hex_id)["fields"].get("phase")
        index = order.index(here) if here in order else -1
        target = index + step
        if not 0 <= target < len(order):
            return
        need = bytes.fromhex(hex_id)
        await self._write(app.workspace.set_field(self.plan, "need", need, "phase", order[target]))

    def action_time_travel(self) -> None:
        """The whole plan as it was after the selected history event."""
        if self._active() != "tab-history" or not self.history_rows:
            return
        row = self.query_one("#history", DataTable).cursor_row
        self.app.push_screen(AsOfScreen(self.plan, self.history_rows, row))

    def action_add(self) -> None:
        """Add an entity of the active tab's kind (activities, actors, …)."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        group = self._active().removeprefix("tab-")
        if group not in ENTITY_TABS:
            group = "activities"
        kind = ENTITY_TABS[group][0]
        fields = [(f, app.t(f"col_{f}")) for f in form_fields(kind)]

        async def done(values: dict[str, str] | None) -> None:
            if not values:
                return
            texts = {k: v for k, v in values.items() if v.strip()}
            await self._write(app.workspace.add(self.plan, kind, self._numbers(texts)))

        self.app.push_screen(FormDialog(f"{app.t('add')}: {app.t(group)}", fields), done)

    def _edit_entity(self, group: str) -> None:
        """Every field of the selected entity in one form; changed ones are saved."""
        app: ViddaApp = self.app  # type: ignore[assignment]
        entities = self.data.get(group) or []
        if not entities:
            return
        row = self.query_one(f"#{group}", DataTable).cursor_row
        ent = entities[row]
        kind = ENTITY_TABS[group][0]
        before = {f: _form_text(ent["fields"].get(f)) for f in form_fields(kind)}
        fields = [(f, app.t(f"col_{f}")) for f in form_fields(kind)]

        async def done(values: dict[str, str] | None) -> None:
            if not values:
                return
            changed = {k: v for k, v in values.items() if v != before.get(k, "")}
            if changed:
                await self._write(
                    app.workspace.set_fields(
                        self.plan, kind, bytes.fromhex(ent["id"]), self._numbers(changed)
                    )
                )

        self.app.push_screen(
            FormDialog(f"{app.t('edit')}: {app.t(group)}", fields, values=before), done
        )

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

    async def _write(self, edit: Any) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        try:
            event = await edit
        except EDIT_ERRORS as exc:
            app.notify(str(exc), severity="error")
            return
        app.notify(app.t("saved", event=event.id.hex()[:12]))
        app.local_change()
        await self.reload()


class AsOfScreen(Screen[None]):
    """Step through time: the plan as it was after one event of its history.
    `[` one event back, `]` one forward, Escape back to the present."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Nå"),
        Binding("left_square_bracket", "step(1)", "← Hendelse"),
        Binding("right_square_bracket", "step(-1)", "Hendelse →"),
    ]

    def __init__(self, plan: bytes, rows: list[dict[str, Any]], index: int) -> None:
        super().__init__()
        self.plan, self.rows, self.index = plan, rows, index  # rows: newest first
        self.data: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="when")
        yield DataTable(id="asof", cursor_type="row")
        yield StatusLine(id="status")
        yield Footer()

    async def on_mount(self) -> None:
        await self.show()

    async def show(self) -> None:
        app: ViddaApp = self.app  # type: ignore[assignment]
        t = app.t
        row = self.rows[self.index]
        key = (int(row["hlc"]), bytes.fromhex(row["author"]), int(row["seq"]))
        state = await state_as_of(app.workspace.log, self.plan, key)
        self.data = view(state)
        who = app.workspace.names.get(row["author"], row["author"][:8])
        self.query_one("#when", Label).update(
            f"{t('as_of')} {row['time'][:19]} · {who} · {row['type']} "
            f"({len(self.rows) - self.index}/{len(self.rows)})"
        )
        table = self.query_one("#asof", DataTable)
        table.clear(columns=True)
        table.add_columns(t("field"), t("value"))
        for name in PLAN_FIELDS:
            table.add_row(t(f"field_{name}"), _text(self.data["fields"].get(name)), key=name)
        for group in ("phases", "activities", "actors"):
            table.add_row(t(group), str(len(self.data[group])), key=group)
        app.refresh_status()

    async def action_step(self, delta: int) -> None:
        target = self.index + delta
        if 0 <= target < len(self.rows):
            self.index = target
            await self.show()

    def action_back(self) -> None:
        self.app.pop_screen()


# --- the app -------------------------------------------------------------------------------------


class ViddaApp(App[None]):
    TITLE = "vidda"
    CSS = """
    #dialog { width: 80; height: auto; max-height: 100%; padding: 1 2; border: thick $accent;
              background: $surface; overflow-y: auto; }
    EditDialog, FormDialog, ResolveDialog { align: center middle; }
    #status { dock: bottom; height: 1; background: $panel; color: $text; padding: 0 1; }
    #empty { padding: 1 2; }
    SetupScreen, UnlockScreen { align: center middle; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Avslutt"),
        Binding("l", "language", "English/Norsk"),
        Binding("f1", "help", "Hjelp"),
        Binding("s", "sync_now", "Synk nå"),
        Binding("f2", "settings", "Innstillinger"),
    ]
    pending: reactive[int] = reactive(0)

    def __init__(self, home: Home, *, lang: str = "nb", sync: bool = True) -> None:
        super().__init__()
        self.home = home
        self.t = Translator(lang)
        self.workspace: Workspace
        self.sync_status: SyncStatus | None = None
        self._engine: Any = None
        self._sync_task: asyncio.Task[None] | None = None
        self._received = 0  # events the engine had received when we last looked
        self._sync = sync

    async def on_mount(self) -> None:
        self.title = self.t("app_title")
        self.theme = "textual-light"
        if not self.home.initialised:
            await self.push_screen(SetupScreen())
        elif not self.home.unlocked and not os.environ.get("VIDDA_PASSPHRASE"):
            await self.push_screen(UnlockScreen())
        else:
            await self.start()

    async def start(self) -> None:
        """Open the store and show the plans (after setup or unlock, if needed)."""
        self.workspace = await Workspace.open(self.home)
        self.pending = await self.workspace.pending()
        await self.push_screen(PlansScreen())
        if self._sync and self.home.profile().server_url:
            self.run_sync()

    async def on_unmount(self) -> None:
        await self._stop_sync()
        if hasattr(self, "workspace"):
            await self.workspace.close()

    async def _stop_sync(self) -> None:
        """Stop the engine and wait for it: nothing is cut off mid-write."""
        if self._engine is not None:
            self._engine.stop()
        task, self._sync_task = self._sync_task, None
        if task is not None:
            try:
                async with asyncio.timeout(10):
                    await task
            except TimeoutError:
                task.cancel()
            except Exception as exc:  # the engine's own failure: shown, not raised at exit
                self.log.error(f"sync engine: {exc!r}")

    def refresh_status(self) -> None:
        for line in self.screen.query(StatusLine):
            line.render_status(self)

    # --- sync in the background ------------------------------------------------------------

    def run_sync(self) -> None:
        """Start the sync engine in the background (an asyncio task of our
        own, so it is stopped and awaited before the log closes)."""
        from tui_client.sync_engine import SyncEngine

        url = self.home.profile().server_url
        if not url or self._sync_task is not None:
            return
        engine = SyncEngine(
            self.workspace.log, self.home.signer(), url, on_status=self._on_sync_status
        )
        self._engine = engine
        self._sync_task = asyncio.create_task(engine.run())

    def _on_sync_status(self, status: SyncStatus) -> None:
        self.sync_status = status
        self.refresh_status()
        if status.received != self._received:
            self._received = status.received
            self.call_later(self._after_receive)

    async def _after_receive(self) -> None:
        await self.workspace.ingested()
        screen = self.screen
        if isinstance(screen, PlanScreen | PlansScreen):
            await screen.reload() if isinstance(
                screen, PlanScreen
            ) else await screen.refresh_plans()

    async def restart_sync(self) -> None:
        await self._stop_sync()
        self._engine = None
        self.sync_status = None
        if self._sync and self.home.profile().server_url:
            self.run_sync()
        self.refresh_status()

    def action_settings(self) -> None:
        self.push_screen(SettingsScreen())

    def local_change(self) -> None:
        if self._engine is not None:
            self._engine.local_change()

    def action_sync_now(self) -> None:
        self.local_change()

    # --- language and help -----------------------------------------------------------------

    async def action_language(self) -> None:
        self.t.toggle()
        self.title = self.t("app_title")
        screen = self.screen
        if isinstance(screen, PlansScreen):
            await screen.refresh_plans()
        elif isinstance(screen, PlanScreen):
            await screen.reload()

    def action_help(self) -> None:
        self.action_show_help_panel()
