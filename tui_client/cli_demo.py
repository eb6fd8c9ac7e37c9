"""`vidda demo`: the newcomer's tour of offline work and sync, on loopback only.

A real server process on a free local port; three devices in their own
folders (two advisers and the municipality's project leader), each with
its own key and SQLite log. They work offline on the Aure plan, two of them
rewrite the desired result at the same time, then come online one by one.
The tour prints the merged plan and the conflict (both values, both
authors), resolves it, syncs again, and shows every replica identical.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.commands import edits
from core.commands.aure_demo import aure_plan
from core.events.bodies import MemberAdded
from core.projections.plan_state import canonical_bytes
from core.projections.plan_view import conflicts, view
from core.store.event_log import EventLog
from tui_client.cli import emit_json
from tui_client.cli_sync import sync_once
from tui_client.home import Home, HomeError
from tui_client.render import render_plan

DEMO_PASSPHRASE = "vidda demo – not a secret"

PEOPLE = (
    ("anne", "Anne Haugen (rådgiver, Distriktssenteret)"),
    ("bjorn", "Bjørn Ávži (rådgiver, fylkeskommunen)"),
    ("mari", "Mari Aune (prosjektleder, Aure kommune)"),
)
ANNE_RESULT = (
    "Innbyggerne i Aure bruker sentrum hver uke, og unge og eldre har vært med på å forme det."
)
MARI_RESULT = (
    "Aure har et levende sentrum som innbyggerne er stolte av, med møteplasser for alle aldre."
)
MERGED_RESULT = (
    "Aure har et levende sentrum som innbyggerne bruker hver uke og er stolte av; "
    "unge og eldre har vært med på å forme det."
)


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="a guided tour: three devices, a server, offline edits, sync")
    p.add_argument("--dir", type=Path, help="keep the demo's folders here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print a summary as JSON at the end")
    p.set_defaults(handler=cmd_demo)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _start_server(home: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui_client.cli", "--home", str(home), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("serving "):
        proc.kill()
        raise HomeError(f"the demo server did not start ({line or 'no output'})")
    return proc, line.split(" ", 1)[1]


async def _sync(home: Home, url: str, who: str) -> None:
    status = await sync_once(home, url)
    if status.state != "up_to_date":
        raise HomeError(f"{who} could not sync: {status.state} {status.error}")
    _say(
        f"  {who:<6} syncs: sent {status.sent}, received {status.received}, "
        f"rejected {len(status.rejected)}"
    )


async def cmd_demo(args: argparse.Namespace, extra: list[str]) -> int:
    os.environ.setdefault("VIDDA_PASSPHRASE", DEMO_PASSPHRASE)
    with contextlib.ExitStack() as stack:
        root = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vidda-")))
        root.mkdir(parents=True, exist_ok=True)
        return await _tour(root, args.json, keep=args.dir is not None)


async def _tour(root: Path, as_json: bool, *, keep: bool) -> int:
    _say("vidda demo: three devices, one server on this machine, no network beyond it.\n")
    homes = {key: Home(root / key) for key, _ in PEOPLE}
    names = dict(PEOPLE)
    for h in homes.values():
        if h.initialised:
            raise HomeError(f"{h.path} already holds a device; give an empty --dir")
    anne, bjorn, mari = homes["anne"], homes["bjorn"], homes["mari"]
    prof = await anne.init(names["anne"], None)
    for key in ("bjorn", "mari"):
        await homes[key].init(names[key], prof.workspace)
    _say(f"1. Anne sets up the workspace {prof.workspace[:12]} and the server trusts her key.")
    server_home = root / "server"
    from tui_client.cli_server import init_server_home

    init_server_home(server_home, prof.workspace, [prof.device])
    proc, url = _start_server(server_home)
    try:
        _say(f"   The server listens on {url}.\n")
        _say("2. Anne writes the Aure plan and enrols Bjørn and Mari; everyone syncs once.")
        log = await anne.open_log()
        try:
            plan, bodies = aure_plan()
            await log.append(anne.signer(), plan, bodies)
            enrol = [
                MemberAdded(
                    device=bytes.fromhex(homes[k].profile().device), name=names[k], role="editor"
                )
                for k in ("bjorn", "mari")
            ]
            await log.append(anne.signer(), log.workspace, enrol)
        finally:
            await log.close()
        for key in ("anne", "bjorn", "mari"):
            await _sync(homes[key], url, key.capitalize())

        _say("\n3. Offline for days. Anne and Mari both rewrite the desired result;")
        _say("   Bjørn plans a gjestebud (a dinner party in a resident's home).")
        await _edit(anne, plan, "plan", plan, {"desired_result": ANNE_RESULT})
        await _edit(mari, plan, "plan", plan, {"desired_result": MARI_RESULT})
        await _add(
            bjorn,
            plan,
            "activity",
            {
                "title": "Gjestebud på Tjeldbergodden",
                "kind": "gjestebud",
                "place": "Tjeldbergodden",
            },
        )

        _say("\n4. They come online one by one.")
        for key in ("bjorn", "anne", "mari", "anne", "bjorn"):
            await _sync(homes[key], url, key.capitalize())

        log = await mari.open_log()
        try:
            state = await log.load_state(plan)
            from tui_client.cli_plan import names_for

            people = await names_for(mari, log)
        finally:
            await log.close()
        found = conflicts(state)
        _say("\n5. The merged plan, as Mari sees it:\n")
        _say(render_plan(view(state), people))
        _say("\n   The conflict, with both values and who wrote them:")
        for c in found:
            for v in c["values"]:
                _say(f"   - {people.get(v['author'], v['author'][:12])}: {v['value']}")

        _say("\n6. Anne resolves it with a text that keeps both, and everyone syncs.")
        log = await anne.open_log()
        try:
            state = await log.load_state(plan)
            body = edits.resolve(state, "plan", plan, "desired_result", MERGED_RESULT)
            await log.append(anne.signer(), plan, [body])
        finally:
            await log.close()
        for key in ("anne", "bjorn", "mari"):
            await _sync(homes[key], url, key.capitalize())

        _say("\n7. Every replica holds the same plan (SHA-256 of the folded state):")
        digests = {}
        for key in ("anne", "bjorn", "mari"):
            log = await homes[key].open_log()
            try:
                st = await log.rebuild_state(plan)
                digests[key] = hashlib.sha256(canonical_bytes(st)).hexdigest()
                open_conflicts = len(conflicts(st))
            finally:
                await log.close()
            _say(f"   {key.capitalize():<6} {digests[key][:32]}  open conflicts: {open_conflicts}")
        server_log = await EventLog.open(server_home / "server.db")
        try:
            digests["server"] = hashlib.sha256(
                canonical_bytes(await server_log.rebuild_state(plan))
            ).hexdigest()
        finally:
            await server_log.close()
        _say(f"   {'Server':<6} {digests['server'][:32]}")
        same = len(set(digests.values())) == 1
        _say("\n   Identical." if same else "\n   NOT identical: this is a bug, please report it.")
        if keep:
            _say(f"\nThe folders are in {root}; try `vidda --home {root / 'mari'} plan list`.")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if as_json:
        emit_json(
            {
                "workspace": prof.workspace,
                "plan": plan.hex(),
                "conflict_values": [v["value"] for c in found for v in c["values"]],
                "digests": digests,
                "identical": same,
            }
        )
    return 0 if same and found else 1


async def _edit(home: Home, plan: bytes, kind: str, entity: bytes, values: dict[str, Any]) -> None:
    log = await home.open_log()
    try:
        state = await log.load_state(plan)
        await log.append(home.signer(), plan, edits.set_fields(state, kind, entity, values))
    finally:
        await log.close()


async def _add(home: Home, plan: bytes, kind: str, values: dict[str, Any]) -> None:
    log = await home.open_log()
    try:
        state = await log.load_state(plan)
        _, body = edits.add_entity(state, kind, values)
        await log.append(home.signer(), plan, [body])
    finally:
        await log.close()
