"""The terminal app on a 100k-event plan, driven by Textual's Pilot.

A private copy of the cached workload log (`workload.plan_log`) becomes a
device home (device 0 of the workload is "this device"); the app runs
headless under `App.run_test`. Timed, each from the key press (a key
event handed to the app as its terminal driver would) until the widgets on
screen hold the result; the app is left to settle (`Pilot.pause`) between
timed presses, untimed:

* start: the app up with the plan list (`Workspace.summaries`), once;
* open the plan: Enter on the list until the plan screen is filled; the first
  open (the plan's state read from its checkpoint) apart from later ones;
* edit in place: Enter on the title's edit line (`e` on the overview)
  until the overview shows the new title: one signed event appended in one
  durable transaction (synchronous=FULL), the fold extended, the screen
  redrawn;
* edit in a form: Enter in the last field of an activity's form (`e` on the
  activities tab; a panel in place since session 6, a modal dialog before)
  until the activities table shows the new title and the form is closed;
* edit by a key: shift+down on the activities tab moves an activity down
  (one ActivityMoved event, durable, the list redrawn, the cursor on it);
* history: the history tab shown (the newest rows, then every change of the
  plan read, in a worker), `t`
  (the plan as of the newest event), then `[` one event back, repeatedly
  (`time_travel.state_as_of`: nearest checkpoint + the events after it).

Targets: open <= 0.5 s, edit <= 50 ms p99, one history step <= 50 ms.
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from timing import OUT, fresh_heap, machine_line, median, parser, percentile, progress, say, table
from workload import plan_log

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual import events
from textual.widgets import DataTable, Input, TabbedContent

from core.identity.keyfile import save_key
from core.identity.profile import Profile, save_profile
from tui_client.home import Home
from tui_client.tui.app import AsOfScreen, PlanScreen, PlansScreen, ViddaApp
from tui_client.tui.form_editor import FormEditor

OPEN_TARGET, EDIT_TARGET, STEP_TARGET = 0.5, 0.050, 0.050
PASS = "bench"


def make_home(directory: Path, events: int) -> Home:
    work = plan_log(events)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    work.copy_to(directory)
    (directory / work.path.name).rename(directory / "vidda.db")
    me = work.signer(0)
    save_key(directory / "device.key", me, PASS, scrypt_n=2**10)
    save_profile(
        directory / "profile.json",
        Profile(
            workspace=work.workspace.hex(),
            device=me.public_key.hex(),
            name="Bench",
            created="2023-01-01T00:00:00+00:00",
        ),
    )
    home = Home(directory)
    home.signer(PASS)
    return home


async def until(pilot: Any, ready: Any, limit: float = 60.0) -> None:
    """Yield to the app until `ready()` (its widgets hold the result). Not
    `Pilot.pause`: that waits for the whole process to be idle, which on a
    shared machine bills other people's work to the app."""
    end = time.perf_counter() + limit
    while not ready():
        if time.perf_counter() > end:
            raise TimeoutError("the app did not get there")
        await asyncio.sleep(0.0002)


async def key(pilot: Any, name: str) -> None:
    """One key press, as the terminal driver delivers it (no idle wait)."""
    event = events.Key(name, None)
    event.set_sender(pilot.app)
    pilot.app._driver.send_message(event)


async def run(home: Home, edits: int, steps: int, opens: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {
        k: [] for k in ("start", "open", "reopen", "edit", "form", "reorder", "step")
    }
    app = ViddaApp(home, sync=False)
    started = time.perf_counter()
    async with app.run_test(size=(130, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PlansScreen) and app.screen.summaries)
        out["start"].append(time.perf_counter() - started)
        for n in range(opens):
            fresh_heap()
            t0 = time.perf_counter()
            await key(pilot, "enter")
            await until(pilot, lambda: isinstance(app.screen, PlanScreen) and app.screen.data)
            out["open" if n == 0 else "reopen"].append(time.perf_counter() - t0)
            screen = app.screen
            await pilot.pause()
            if n < opens - 1:
                await pilot.press("escape")
                await pilot.pause()
        assert isinstance(screen, PlanScreen)
        overview = screen.query_one("#overview", DataTable)
        for n in range(edits):
            await pilot.press("e")  # the cursor is on the title
            await pilot.pause()
            title = f"Et samlet Aure, utkast {n}"
            app.screen.query_one("#value", Input).value = title
            fresh_heap()
            t0 = time.perf_counter()
            await key(pilot, "enter")
            await until(pilot, lambda title=title: overview.get_row("title")[1] == title)
            out["edit"].append(time.perf_counter() - t0)
            await pilot.pause()
        screen.query_one("#tabs", TabbedContent).active = "tab-activities"
        await pilot.pause()
        table = screen.query_one("#activities", DataTable)
        table.focus()
        table.move_cursor(row=0)
        await pilot.pause()
        form = screen.query_one(FormEditor)
        for n in range(edits):
            await pilot.press("e")  # the activity's form
            await pilot.pause()
            title = f"Folkemøte, runde {n}"
            app.screen.query_one("#f_title", Input).value = title
            form.inputs()[-1].focus()
            await pilot.pause()
            fresh_heap()
            t0 = time.perf_counter()
            await key(pilot, "enter")  # Enter in the last field saves the form
            await until(
                pilot,
                lambda title=title: (
                    app.screen is screen
                    and not form.is_open
                    and table.get_row_at(table.cursor_row)[1] == title
                ),
            )
            out["form"].append(time.perf_counter() - t0)
            await pilot.pause()
        for _ in range(edits):
            if table.cursor_row >= len(screen.data["activities"]) - 1:
                table.move_cursor(row=0)
                await pilot.pause()
            moved = screen.data["activities"][table.cursor_row]["id"]
            fresh_heap()
            events_before = screen.data["events"]
            t0 = time.perf_counter()
            await key(pilot, "shift+down")
            await until(
                pilot,
                lambda m=moved, e=events_before: (
                    screen.data["events"] > e
                    and screen.data["activities"][table.cursor_row]["id"] == m
                ),
            )
            out["reorder"].append(time.perf_counter() - t0)
            await pilot.pause()
        t0 = time.perf_counter()
        screen.query_one("#tabs", TabbedContent).active = "tab-history"
        await until(pilot, lambda: screen.history_rows, limit=300)
        out["history_tab"] = [time.perf_counter() - t0]
        await until(pilot, lambda: screen.history_all is not None, limit=300)
        out["history_read"] = [time.perf_counter() - t0]
        await pilot.pause()
        t0 = time.perf_counter()
        await key(pilot, "t")
        await until(
            pilot, lambda: isinstance(app.screen, AsOfScreen) and app.screen.shown, limit=300
        )
        out["as_of_first"] = [time.perf_counter() - t0]
        await pilot.pause()
        asof = app.screen
        assert isinstance(asof, AsOfScreen)
        for _ in range(steps):
            before = asof.index
            fresh_heap()
            t0 = time.perf_counter()
            await key(pilot, "left_square_bracket")
            await until(pilot, lambda before=before: asof.index != before and asof.shown)
            out["step"].append(time.perf_counter() - t0)
            await pilot.pause()
    return out


def main() -> None:
    args = parser(__doc__ or "", events=100_000, quick_events=2_000, repeat=1)
    p = args.parser  # type: ignore[attr-defined]
    p.add_argument("--edits", type=int, default=100)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--opens", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="cProfile the run, top 30 by cumtime")
    a = args()
    say(machine_line())
    home = make_home(OUT / "tui-home", a.events)
    progress(f"plan of {a.events:,} events; {a.edits} edits, {a.steps} history steps")
    profiler = cProfile.Profile() if a.profile else None
    if profiler:
        profiler.enable()
    figures = asyncio.run(run(home, a.edits, a.steps, a.opens))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumtime").print_stats(30)
    targets = {
        "open": OPEN_TARGET,
        "edit": EDIT_TARGET,
        "form": EDIT_TARGET,
        "reorder": EDIT_TARGET,
        "step": STEP_TARGET,
    }
    names = {
        "start": "app start to the plan list",
        "open": "open the plan (first)",
        "reopen": "open the plan again",
        "edit": "edit in place: Enter → durable, shown",
        "form": "edit in a form: Enter → durable, shown",
        "reorder": "edit by a key (shift+↓ moves an activity)",
        "history_tab": "history tab: the newest rows shown (worker)",
        "history_read": "history tab: every row read (worker)",
        "as_of_first": "`t`: plan as of the newest event",
        "step": "history: one event back",
    }
    rows = []
    for key, label in names.items():
        xs = figures.get(key) or []
        if not xs:
            continue
        target = targets.get(key)
        p99 = percentile(xs, 99)
        met = "" if target is None else ("yes" if p99 <= target else "NO")
        rows.append(
            [
                label,
                str(len(xs)),
                f"{median(xs) * 1e3:,.1f}",
                f"{p99 * 1e3:,.1f}",
                "" if target is None else f"{target * 1e3:,.0f}",
                met,
            ]
        )
    say(f"\nTerminal app on a plan of {a.events:,} events (Pilot, headless, 130×40)\n")
    say(table(rows, ["what", "n", "median ms", "p99 ms", "target ms", "met"]))


if __name__ == "__main__":
    main()
