"""`vidda` in a terminal: the Textual app.

Screens: the plan list (`plans.py`), a plan in tabs (`plan_screen.py`),
history and time travel (`history.py`), the actor analysis compared between
phases (`actors.py`), modal dialogs (`dialogs.py`). The sync engine runs as
an asyncio task in the background (never blocking typing) when a server is
known; its state is always visible in the status line. `l` switches
Bokmål/English, the command palette (ctrl+p) has the app's own commands.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import CommandPalette
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen

from core.replication.client import SyncStatus
from tui_client.home import Home
from tui_client.tui.actors import ActorCompareScreen, actor_grid
from tui_client.tui.bindings import localise
from tui_client.tui.dialogs import SettingsScreen, SetupScreen, UnlockScreen
from tui_client.tui.history import AsOfScreen
from tui_client.tui.i18n import Translator
from tui_client.tui.layout import ENTITY_TABS, PLAN_FIELDS
from tui_client.tui.plan_screen import PlanScreen
from tui_client.tui.plans import PlansScreen
from tui_client.tui.status_line import StatusLine
from tui_client.tui.theme import DEFAULT_THEME, HIGH_CONTRAST
from tui_client.tui.workspace import Workspace

__all__ = [
    "ENTITY_TABS",
    "PLAN_FIELDS",
    "ActorCompareScreen",
    "AsOfScreen",
    "PlanScreen",
    "PlansScreen",
    "SetupScreen",
    "UnlockScreen",
    "ViddaApp",
    "actor_grid",
]


class ViddaApp(App[None]):
    TITLE = "vidda"
    CSS = """
    #dialog { width: 80; height: auto; max-height: 100%; padding: 1 2; border: thick $accent;
              background: $surface; overflow-y: auto; }
    FormDialog, ResolveDialog, ConfirmDialog { align: center middle; }
    #history-filter, #when, #compare-title { padding: 0 1; }
    #when { width: 1fr; height: 1; }
    #status-bar { dock: bottom; height: auto; }
    #status-bar Footer { dock: none; }
    #status { height: 1; background: $panel; color: $text; padding: 0 1; }
    #empty { padding: 1 2; }
    SetupScreen, UnlockScreen { align: center middle; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("l", "language", "language"),
        Binding("f1", "help", "help"),
        Binding("s", "sync_now", "sync_now"),
        Binding("f2", "settings", "settings"),
        Binding("f3", "contrast", "contrast", show=False),
    ]
    pending: reactive[int] = reactive(0)

    def __init__(
        self, home: Home, *, lang: str = "nb", sync: bool = True, contrast: bool = False
    ) -> None:
        super().__init__()
        self._contrast = contrast
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
        self.register_theme(HIGH_CONTRAST)
        self.theme = HIGH_CONTRAST.name if self._contrast else DEFAULT_THEME
        localise(self, self.t)
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
        try:  # `query_one` by id is cached; `query` would walk every widget of the screen
            line = self.screen.query_one("#status", StatusLine)
        except NoMatches:
            return
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
        localise(self, self.t)
        for screen in self.screen_stack:
            if localise(screen, self.t):
                screen.refresh_bindings()
                if isinstance(screen, PlanScreen):
                    screen.relabel()
        await self.show_again()

    async def show_again(self) -> None:
        """Redraw the screen on top (after a language switch)."""
        screen = self.screen
        if isinstance(screen, PlansScreen):
            await screen.refresh_plans()
        elif isinstance(screen, PlanScreen):
            await screen.reload()
        elif isinstance(screen, AsOfScreen | ActorCompareScreen):
            await screen.show()
        self.refresh_bindings()

    def action_help(self) -> None:
        """F1: every key of the screen, described in the language of the moment."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_contrast(self) -> None:
        """High contrast (for a projector) on or off."""
        high = self.theme != HIGH_CONTRAST.name
        self.theme = HIGH_CONTRAST.name if high else DEFAULT_THEME

    # --- the command palette ---------------------------------------------------------------

    def action_command_palette(self) -> None:
        if self.use_command_palette and not CommandPalette.is_open(self):  # type: ignore[arg-type]
            self.push_screen(
                CommandPalette(placeholder=self.t("palette_placeholder"), id="--command-palette")
            )

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The app's own commands, in the language of the moment (Textual's
        own, in English only, are left out)."""
        t = self.t
        plans = next((s for s in self.screen_stack if isinstance(s, PlansScreen)), None)
        if plans is not None:
            yield SystemCommand(t("new_plan"), t("new_plan_help"), self._on_plans("new_plan"))
            yield SystemCommand(t("demo"), t("demo_help"), self._on_plans("demo"))
            yield SystemCommand(
                t("show_archived"), t("show_archived_help"), self._on_plans("show_archived")
            )
            for s in plans.summaries:
                yield SystemCommand(
                    f"{t('open')}: {s.municipality} · {s.title}",
                    t("open_help"),
                    lambda plan=s.plan: self._open_plan(plan),
                )
        plan_screen = next((s for s in self.screen_stack if isinstance(s, PlanScreen)), None)
        if plan_screen is not None:
            yield SystemCommand(t("report"), t("report_help"), plan_screen.action_report)
        yield SystemCommand(t("language"), t("language_help"), self._palette_language)
        yield SystemCommand(t("settings"), t("settings_help"), self.action_settings)
        yield SystemCommand(t("sync_now"), t("sync_now_help"), self.action_sync_now)
        yield SystemCommand(t("contrast"), t("contrast_help"), self.action_contrast)
        yield SystemCommand(t("help"), t("help_help"), self.action_help)
        yield SystemCommand(t("quit"), t("quit_help"), self.exit)

    def _palette_language(self) -> None:
        self.call_later(self.action_language)

    def _on_plans(self, action: str) -> Any:
        """A palette command run on the plan list (going back to it first)."""

        async def run() -> None:
            while not isinstance(self.screen, PlansScreen) and len(self.screen_stack) > 2:
                self.pop_screen()
            await self.screen.run_action(action)

        return lambda: self.call_later(run)

    def _open_plan(self, plan: bytes) -> None:
        async def run() -> None:
            while not isinstance(self.screen, PlansScreen) and len(self.screen_stack) > 2:
                self.pop_screen()
            await self.push_screen(PlanScreen(plan))

        self.call_later(run)
