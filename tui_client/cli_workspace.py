"""`vidda init`, `whoami`, `verify`, `demo-data` and the no-argument quick start."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from core.commands.aure_demo import aure_plan
from core.identity.keyfile import DeviceKey
from core.store.verify_log import verify_log
from tui_client.cli import emit_json
from tui_client.home import Home


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="set up this device: key, workspace, empty log")
    p.add_argument("--name", help="display name of the person using this device")
    p.add_argument("--workspace", help="join an existing workspace (hex id)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("whoami", help="this device's key, person and workspace")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_whoami)

    p = sub.add_parser("verify", help="re-check every signature, link, id and the store")
    p.add_argument("--full", action="store_true", help="check every signature one by one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("demo-data", help="add the Aure example plan (signed by a demo device)")
    p.add_argument("--if-empty", action="store_true", help="only if the log has no plans")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_demo_data)


async def cmd_init(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    prof = await home.init(args.name, args.workspace)
    if args.json:
        emit_json(
            {
                "home": str(home.path),
                "workspace": prof.workspace,
                "device": prof.device,
                "name": prof.name,
            }
        )
    else:
        print(f"Set up {home.path}")
        print(f"  workspace {prof.workspace}")
        print(f"  device    {prof.device}")
        print(f"  name      {prof.name}")
    return 0


async def cmd_whoami(args: argparse.Namespace, extra: list[str]) -> int:
    prof = args.home_dir.profile()
    data = {
        "device": prof.device,
        "name": prof.name,
        "workspace": prof.workspace,
        "home": str(args.home_dir.path),
    }
    if args.json:
        emit_json(data)
    else:
        print(f"{prof.name}\n  device    {prof.device}\n  workspace {prof.workspace}")
    return 0


async def cmd_verify(args: argparse.Namespace, extra: list[str]) -> int:
    log = await args.home_dir.open_log()
    try:
        report = await verify_log(log, full=args.full)
    finally:
        await log.close()
    if args.json:
        emit_json({**{f: getattr(report, f) for f in report.__struct_fields__}, "ok": report.ok})
    else:
        for problem in report.store_problems:
            print(f"store: {problem}", file=sys.stderr)
        for p in report.problems:
            print(
                f"BAD plan {p.plan[:8]} device {p.device[:8]} seq {p.seq} "
                f"event {(p.event or '?')[:16]}: {p.reason}: {p.message}",
                file=sys.stderr,
            )
        status = "ok" if report.ok else "FAILED"
        print(
            f"verify {status}: {report.events} events in {report.chains} chains, "
            f"{len(report.problems)} bad chains, {report.evidence} fork/quarantine evidence, "
            f"{report.frozen_chains} frozen chains"
        )
    return 0 if report.ok else 1


async def add_demo(home: Home, if_empty: bool) -> bytes | None:
    log = await home.open_log()
    try:
        if if_empty and await log.plans():
            return None
        plan, bodies = aure_plan()
        await log.append(DeviceKey.generate(), plan, bodies)
        return plan
    finally:
        await log.close()


async def cmd_demo_data(args: argparse.Namespace, extra: list[str]) -> int:
    plan = await add_demo(args.home_dir, args.if_empty)
    if args.json:
        emit_json({"plan": plan.hex() if plan else None})
    elif plan:
        print(plan.hex())
    else:
        print("the log already has plans; nothing added", file=sys.stderr)
    return 0


def _interactive() -> bool:
    """A person at a terminal gets the TUI; scripts and pipes get text."""
    if os.environ.get("VIDDA_NO_TUI"):
        return False
    return sys.stdin.isatty() and sys.stdout.isatty()


async def quick_start(args: argparse.Namespace, extra: list[str]) -> int:
    """`vidda` with no arguments: set up if needed, add the demo, show the plans."""
    from tui_client.cli_plan import show_plan

    home: Home = args.home_dir
    if _interactive():
        from tui_client.tui.app import ViddaApp

        await ViddaApp(home).run_async()  # first run and unlock are its own dialogs
        return 0
    if not home.initialised:
        print(f"Welcome to vidda. Setting up this device in {home.path}.")
        prof = await home.init(None, None)
        print(f"  workspace {prof.workspace}\n  device    {prof.device}\n  name      {prof.name}")
    plan = await add_demo(home, if_empty=True)
    if plan:
        print("Added the Aure example plan (from the Veiledningspiloten article).\n")
    log = await home.open_log()
    try:
        plans = [p for p, _ in await log.plans()]
    finally:
        await log.close()
    for n, pid in enumerate(plans):
        if n:
            print("\n" + "─" * 72 + "\n")
        await show_plan(home, pid, None, as_json=False)
    print("\nNext: `vidda plan --help`, `vidda log PLAN`, `vidda verify`.")
    return 0
