"""`vidda sync` and `vidda member add|revoke|list`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

import msgspec

from core.events.bodies import Cutoff, MemberAdded, MemberRevoked
from core.events.ids import parse_hex
from core.identity.membership import ROLES
from core.replication.client import SyncStatus
from tui_client.cli import UsageError, emit_json
from tui_client.cli_plan import resolve_plan
from tui_client.home import Home, HomeError
from tui_client.sync_engine import SyncEngine

DEFAULT_PORT = 8765


def register(sub: Any) -> None:
    p = sub.add_parser("sync", help="sync with the workspace's server (keeps running)")
    p.add_argument("--server", help="ws://HOST:PORT or wss://…; remembered for this workspace")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_sync)

    member = sub.add_parser("member", help="who may read and write the workspace's plans")
    msub = member.add_subparsers(dest="member_command", metavar="ACTION", required=True)
    p = msub.add_parser("add", help="enrol a device (run on an admin's device, then sync)")
    p.add_argument("device", help="the device's public key (`vidda whoami` on it)")
    p.add_argument("--name", required=True, help="the person behind the device")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument("--plan", action="append", default=[], help="limit to these plans")
    p.add_argument(
        "--affiliation",
        choices=("municipality", "adviser", "researcher", "other"),
        help="who the person works for (research reports: municipal staff vs advisers)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_member_add)
    p = msub.add_parser("revoke", help="cut a device off (run on an admin's device, then sync)")
    p.add_argument("device")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_member_revoke)
    p = msub.add_parser("list", help="the members as this device knows them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_member_list)


def _status_json(status: SyncStatus) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(status)
    return data


def _print_status(status: SyncStatus) -> None:
    line = (
        f"{status.state}: sent {status.sent}, received {status.received}, "
        f"rejected {len(status.rejected)}, pending {status.pending}"
    )
    if status.error:
        line += f" ({status.error})"
    print(line, flush=True)


async def cmd_sync(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    prof = home.profile()
    url = args.server or prof.server_url
    if not url:
        raise UsageError("no server known for this workspace: give --server ws://HOST:PORT")
    if not url.startswith(("ws://", "wss://")):
        raise UsageError(f"the server URL must start with ws:// or wss://, not {url!r}")
    signer = home.signer()
    if args.server and args.server != prof.server_url:
        prof.server_url = args.server
        home.save_profile(prof)
    log = await home.open_log()
    try:
        shown: list[tuple[str, int, int, int, int]] = []

        def on_status(status: SyncStatus) -> None:
            if args.once:
                return
            key = (status.state, status.sent, status.received, len(status.rejected), status.pending)
            if shown and shown[-1] == key:
                return
            shown.append(key)
            if args.json:
                emit_json(_status_json(status))
                sys.stdout.flush()
            else:
                _print_status(status)

        engine = SyncEngine(log, signer, url, on_status=on_status)
        if args.once:
            status = await engine.run_once()
        else:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, engine.stop)
            await engine.run()
            status = engine.status
        remember_admins(home, engine)
    finally:
        await log.close()
    if args.once:
        if args.json:
            emit_json(_status_json(status))
        else:
            _print_status(status)
            for r in status.rejected:
                print(
                    f"  rejected plan {r.plan[:8]} seq {r.seq}: {r.reason}: {r.message}",
                    file=sys.stderr,
                )
        if status.state in ("offline", "refused", "error"):
            return 1
        return 3 if status.rejected else 0
    return 0


def remember_admins(home: Home, engine: SyncEngine) -> None:
    """Keep the workspace's admin keys the server named: `member list` and
    names in plans check the membership log against them, offline."""
    prof = home.profile()
    if engine.admins and [a.hex() for a in engine.admins] != prof.admins:
        prof.admins = [a.hex() for a in engine.admins]
        home.save_profile(prof)


async def sync_once(home: Home, url: str) -> SyncStatus:
    """One sync pass of a device home (what `vidda sync --once` does)."""
    log = await home.open_log()
    try:
        engine = SyncEngine(log, home.signer(), url)
        status = await engine.run_once()
        remember_admins(home, engine)
    finally:
        await log.close()
    return status


async def _admin_only(home: Home) -> None:
    prof = home.profile()
    if prof.device not in prof.admins:
        raise HomeError(
            "only an admin device can change membership; this device is not one of the "
            f"workspace's admins ({', '.join(a[:12] for a in prof.admins) or 'none known yet'})"
        )


async def cmd_member_add(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    await _admin_only(home)
    device = parse_hex(args.device, 32, "device key")
    name = args.name.strip()
    if not name:
        raise UsageError("--name must not be empty")
    log = await home.open_log()
    try:
        plans = [await resolve_plan(log, p) for p in args.plan]
        body = MemberAdded(
            device=device, name=name, role=args.role, plans=plans, affiliation=args.affiliation
        )
        (event,) = await log.append(home.signer(), log.workspace, [body])
    finally:
        await log.close()
    if args.json:
        emit_json({"device": device.hex(), "event": event.id.hex(), "role": args.role})
    else:
        print(f"added {name} ({device.hex()[:12]}) as {args.role}; takes effect when synced")
    return 0


async def cmd_member_revoke(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    await _admin_only(home)
    device = parse_hex(args.device, 32, "device key")
    log = await home.open_log()
    try:
        members = await home.membership(log)
        if members.member(device) is None:
            raise HomeError(f"{device.hex()[:12]} is not a member this device knows of")
        cutoffs = []
        for plan, _ in await log.plans(membership=True):
            seq = (await log.vector(plan)).get(device)
            if seq is not None:
                cutoffs.append(Cutoff(plan=plan, seq=seq))
        body = MemberRevoked(device=device, cutoffs=cutoffs)
        (event,) = await log.append(home.signer(), log.workspace, [body])
    finally:
        await log.close()
    if args.json:
        emit_json({"device": device.hex(), "event": event.id.hex()})
    else:
        print(f"revoked {device.hex()[:12]}; takes effect when synced")
    return 0


async def cmd_member_list(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    log = await home.open_log()
    try:
        members = (await home.membership(log)).members()
    finally:
        await log.close()
    rows = [
        {
            "device": m.device.hex(),
            "name": m.name,
            "role": m.role,
            "affiliation": m.affiliation,
            "plans": [p.hex() for p in m.plans],
            "admin": m.admin,
            "revoked": m.revoked,
        }
        for m in members
    ]
    if args.json:
        emit_json(rows)
        return 0
    if not rows:
        print("no members known on this device yet (sync first)")
    for m in members:
        flags = " admin" if m.admin else ""
        flags += " REVOKED" if m.revoked else ""
        plans = ", ".join(p.hex()[:8] for p in m.plans) or "all plans"
        print(f"{m.device.hex()[:16]}  {m.role:<6} {m.name}  ({plans}){flags}")
    return 0
