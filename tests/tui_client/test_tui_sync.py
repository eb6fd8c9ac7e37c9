"""Two TUI apps on two stores and a real server on loopback; and a TUI
process killed right after an edit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from textual.widgets import DataTable, Input

from core.events.bodies import MemberAdded, PlanDetailsRevised
from core.store.event_log import EventLog
from tui_client.cli_sync import sync_once
from tui_client.home import Home
from tui_client.tui.app import PlanScreen, ViddaApp

from .server_helpers import running_server, server_init

PASS = "tui-sync"


async def _until(check, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await check():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.1)


async def test_two_tuis_one_offline_converge_show_the_conflict_and_clear_it(
    tmp_path: Path,
) -> None:
    anne, bjorn = Home(tmp_path / "anne"), Home(tmp_path / "bjorn")
    prof = await anne.init("Anne", None, passphrase=PASS)
    await bjorn.init("Bjørn", prof.workspace, passphrase=PASS)
    anne.signer(PASS)
    bjorn.signer(PASS)
    log = await anne.open_log()
    await log.append(
        anne.signer(),
        log.workspace,
        [MemberAdded(device=bytes.fromhex(bjorn.profile().device), name="Bjørn", role="editor")],
    )
    await log.close()
    server_init(tmp_path / "srv", prof.workspace, prof.device)
    with running_server(tmp_path / "srv") as server:
        # Day one: Anne makes the plan in her TUI; both sync once.
        for h in (anne, bjorn):
            p = h.profile()
            p.server_url = server.url
            h.save_profile(p)
        a = ViddaApp(anne)
        async with a.run_test(size=(100, 30)) as pa:
            await pa.press("d")
            await pa.pause()
            plan = a.screen.summaries[0].plan

            async def anne_pushed() -> bool:
                return (
                    a.sync_status is not None
                    and a.sync_status.pending == 0
                    and (a.sync_status.sent > 0)
                )

            await _until(anne_pushed)
            assert (await sync_once(bjorn, server.url)).state == "up_to_date"
            # Bjørn works offline (no sync) while Anne, online, edits the same field.
            b = ViddaApp(bjorn, sync=False)
            async with b.run_test(size=(100, 30)) as pb:
                for app, pilot, text in ((b, pb, "Bjørns resultat"), (a, pa, "Annes resultat")):
                    await pilot.press("enter")
                    await pilot.pause()
                    screen = app.screen
                    assert isinstance(screen, PlanScreen)
                    table = screen.query_one("#overview", DataTable)
                    table.move_cursor(row=table.get_row_index("desired_result"))
                    await pilot.press("e")
                    await pilot.pause()
                    app.screen.query_one("#value", Input).value = text
                    await pilot.press("enter")
                    await pilot.pause()
                # Bjørn comes online (settings → server address): both see the conflict.
                b._sync = True
                await b.restart_sync()

                async def both_see_conflict() -> bool:
                    found = [await app.workspace.conflicts(plan) for app in (a, b)]
                    return all(len(c) == 1 for c in found)

                await _until(both_see_conflict)
                await pa.pause()
                screen_a = a.screen
                assert isinstance(screen_a, PlanScreen)
                label = screen_a.query_one("#overview", DataTable).get_row("desired_result")[0]
                assert label.endswith("⚠")
                # Anne resolves it with Bjørn's value; it clears in both.
                await pa.press("r")
                await pa.pause()
                values = [v["value"] for v in screen_a.data["conflicts"][0]["values"]]
                await pa.press("enter")
                await pa.pause()

                async def both_clear() -> bool:
                    found = [await app.workspace.conflicts(plan) for app in (a, b)]
                    return not any(found)

                await _until(both_clear)
                va = await a.workspace.view(plan)
                vb = await b.workspace.view(plan)
                assert va == vb
                assert va["fields"]["desired_result"] == values[0]


CRASHER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from textual.widgets import Input
    from tui_client.home import Home
    from tui_client.tui.app import ViddaApp

    async def main() -> None:
        home = Home(Path(sys.argv[1]))
        home.signer(sys.argv[2])
        app = ViddaApp(home, sync=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("d")
            await pilot.pause()
            await pilot.press("enter")
            await pilot.pause()
            await pilot.press("e")
            await pilot.pause()
            app.screen.query_one("#value", Input).value = "Skrevet rett før krasjet"
            await pilot.press("enter")
            await pilot.pause()
            print("EDITED", app.screen.plan.hex(), flush=True)
            await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_kill_9_right_after_an_edit_keeps_the_edit(tmp_path: Path) -> None:
    home = Home(tmp_path / "kari")
    await home.init("Kari", None, passphrase=PASS)
    with subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(home.path), PASS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    ) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("EDITED"), proc.stderr.read() if proc.stderr else line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    plan = bytes.fromhex(line.split()[1])
    log = await EventLog.open(home.db_path)
    try:
        events = await log.events(plan)
        state = await log.load_state(plan)
    finally:
        await log.close()
    assert isinstance(events[-1].body, PlanDetailsRevised)
    assert events[-1].body.title == "Skrevet rett før krasjet"
    assert state.entity("plan", plan) is not None
