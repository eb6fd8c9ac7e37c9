"""`vidda replay` and `vidda report`: step through a plan's history, and the
research views of it (text, JSON, terminal charts, PNG/SVG figures).

Both read the plan from this home's log, or with `--export DIR` from a full
research export's signed bytes (`events.jsonl`): the same events give the
same output, byte for byte, with the same fold version.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

import msgspec

from core.events.envelope import Event, open_event
from core.events.ids import resolve_prefix
from core.identity.membership import MemberInfo, Membership
from core.research.export import iso_to_ms
from core.research.manifest import MANIFEST, decode_manifest
from core.research.replay import encode_line, replay
from core.research.report import plan_report
from core.research.report_text import render_report
from core.research.snapshot import read_snapshot
from tui_client.cli import UsageError, emit_json
from tui_client.cli_plan import names_for, resolve_plan
from tui_client.home import Home, HomeError

Loaded = tuple[list[bytes], dict[bytes, list[Event]], dict[bytes, MemberInfo], dict[Any, int]]


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="step through every state of a plan, event by event")
    p.add_argument("plan")
    p.add_argument("--export", type=Path, help="read a full research export instead of the log")
    p.add_argument("--states", action="store_true", help="with --json: the whole plan each step")
    p.add_argument("--json", action="store_true", help="JSON Lines: one step (a diff) a line")
    p.set_defaults(handler=cmd_replay)

    p = sub.add_parser("report", help="research views of a plan: goals, phases, actors, edits")
    p.add_argument("plan", nargs="?")
    p.add_argument("--all", action="store_true", help="every plan")
    p.add_argument("--export", type=Path, help="read a full research export instead of the log")
    p.add_argument(
        "--plot",
        type=Path,
        help="also write the timeline and phase Gantt as FILE-timeline.EXT and FILE-gantt.EXT",
    )
    p.add_argument("--plot-format", choices=("png", "svg"), default="png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_report)


async def _from_log(home: Home) -> Loaded:
    log = await home.open_log()
    try:
        plans = [p for p, _ in await log.plans()]
        admins = [bytes.fromhex(a) for a in home.profile().admins]
        snap = await read_snapshot(log, plans, admins)
        members = {m.device: m for m in (await home.membership(log)).members()}
    finally:
        await log.close()
    by_plan: dict[bytes, list[Event]] = {}
    for raw in snap.raws:
        ev = open_event(raw, verify=False, strict=False)
        by_plan.setdefault(ev.env.plan, []).append(ev)
    by_plan.pop(snap.workspace, None)
    return sorted(by_plan), by_plan, members, dict(snap.received)


def _from_export(folder: Path) -> Loaded:
    try:
        manifest = decode_manifest((folder / MANIFEST).read_bytes())
        lines = (folder / "events.jsonl").read_bytes().splitlines()
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise HomeError(f"{folder}: not a research export ({exc})") from None
    if manifest.mode != "full":
        raise HomeError(
            f"{folder} is {manifest.mode}: replay needs the signed bytes of a full export"
        )
    workspace = bytes.fromhex(manifest.workspace)
    by_plan: dict[bytes, list[Event]] = {}
    received: dict[Any, int] = {}
    for text in lines:
        obj = msgspec.json.decode(text)
        ev = open_event(base64.b64decode(obj["signed_bytes"]), verify=False, strict=True)
        by_plan.setdefault(ev.env.plan, []).append(ev)
        if obj.get("server_received_time"):
            received[(ev.env.plan, ev.env.author, ev.env.seq)] = iso_to_ms(
                obj["server_received_time"]
            )
    admins = [bytes.fromhex(a) for a in manifest.admins]
    membership = Membership.of(workspace, admins, by_plan.pop(workspace, []))
    members = {m.device: m for m in membership.members()}
    return sorted(by_plan), by_plan, members, received


async def _load(args: argparse.Namespace) -> Loaded:
    if args.export is not None:
        return _from_export(args.export)
    return await _from_log(args.home_dir)


async def cmd_replay(args: argparse.Namespace, extra: list[str]) -> int:
    plans, by_plan, members, _ = await _load(args)
    plan = resolve_prefix(args.plan, plans, "plan")
    names = {m.device.hex(): m.name for m in members.values()}
    out = sys.stdout.buffer
    for step, state in replay(plan, by_plan[plan]):
        if args.json:
            out.write(encode_line(step, state if args.states else None))
            continue
        who = names.get(step.author, step.author[:12])
        what = f"{step.entity_kind} {step.entity[:8]}" if step.entity else "-"
        flags = (" removed" if step.removed else "") + (
            f" conflict: {', '.join(step.conflicts)}" if step.conflicts else ""
        )
        out.write(f"#{step.step} {step.time} {who}: {step.type} {what}{flags}\n".encode())
        for field, (old, new) in step.changed.items():
            out.write(f"    {field}: {old!r} → {new!r}\n".encode())
    out.flush()
    return 0


async def cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    if bool(args.plan) == bool(args.all):
        raise UsageError("name a PLAN or give --all")
    plans, by_plan, members, received = await _load(args)
    chosen = plans if args.all else [resolve_prefix(args.plan, plans, "plan")]
    reports = [plan_report(p, by_plan[p], members, received) for p in chosen]
    if args.plot is not None:
        from core.research.plots import PlotsUnavailable, gantt_figure, timeline_figure

        try:
            for r in reports:
                stem = f"{args.plot}-{r['plan'][:8]}" if len(reports) > 1 else str(args.plot)
                for name, draw in (("timeline", timeline_figure), ("gantt", gantt_figure)):
                    path = Path(f"{stem}-{name}.{args.plot_format}")
                    path.write_bytes(draw(r, args.plot_format))
                    print(f"vidda: wrote {path}", file=sys.stderr)
        except PlotsUnavailable as exc:
            raise HomeError(str(exc)) from None
    if args.json:
        emit_json(reports if args.all else reports[0])
    else:
        print("\n\n".join(render_report(r) for r in reports))
    return 0


__all__ = ["names_for", "resolve_plan"]
