"""`vidda bundle export|import|vector`: sync by file, for places with no network."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from core.events.hlc import HybridClock
from core.identity.atomic_file import write_atomic
from core.store.event_log import EventLog
from core.sync.bundle import (
    Bundle,
    BundleError,
    read_bundle,
    vectors_from_json,
    vectors_to_json,
    write_bundle,
)
from tui_client.cli import emit_json
from tui_client.cli_plan import resolve_plan
from tui_client.home import Home


def register(sub: Any) -> None:
    bundle = sub.add_parser("bundle", help="sync by file (USB stick) where there is no network")
    bsub = bundle.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)

    p = bsub.add_parser("export", help="write a signed bundle of events")
    p.add_argument("plans", nargs="*", help="plan ids (prefixes); default: all plans")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--since-vector", type=Path, help="only what the owner of this vector lacks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_export)

    p = bsub.add_parser("vector", help="write what this store has (for --since-vector)")
    p.add_argument("plans", nargs="*")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(handler=cmd_vector)

    p = bsub.add_parser("import", help="verify a bundle and apply what is new")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_import)


async def _plans(log: EventLog, prefixes: list[str]) -> list[bytes]:
    if not prefixes:
        return [p for p, _ in await log.plans(membership=True)]
    return [await resolve_plan(log, p) for p in prefixes]


async def cmd_vector(args: argparse.Namespace, extra: list[str]) -> int:
    log = await args.home_dir.open_log()
    try:
        vectors = {p: await log.vector(p) for p in await _plans(log, args.plans)}
        write_atomic(args.out, vectors_to_json(vectors, log.workspace), mode=0o644)
    finally:
        await log.close()
    print(f"wrote the vector of {len(vectors)} plan(s) to {args.out}")
    return 0


async def cmd_export(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    since: dict[bytes, dict[bytes, int]] = {}
    log = await home.open_log()
    try:
        if args.since_vector:
            workspace, since = vectors_from_json(args.since_vector.read_bytes())
            if workspace != log.workspace:
                raise BundleError("the vector file belongs to another workspace")
        plans = await _plans(log, args.plans)
        events: list[bytes] = []
        for plan in plans:
            async for batch in log.lacking(plan, since.get(plan, {}), max_count=10_000):
                events.extend(batch)
        signer = home.signer()
        bundle = Bundle(
            workspace=log.workspace,
            exporter=signer.public_key,
            created_hlc=HybridClock(log.clock.last).now(),
            since={p: since.get(p, {}) for p in plans},
            events=events,
        )
        data = write_bundle(bundle, signer)
    finally:
        await log.close()
    write_atomic(args.out, data, mode=0o644)
    if args.json:
        emit_json(
            {"file": str(args.out), "plans": len(plans), "events": len(events), "bytes": len(data)}
        )
    else:
        print(
            f"wrote {len(events)} events of {len(plans)} plan(s) to {args.out} ({len(data)} bytes)"
        )
    return 0


async def cmd_import(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {args.file}: {exc.strerror}") from None
    bundle, signed_ok = read_bundle(data)
    log = await home.open_log()
    try:
        if bundle.workspace != log.workspace:
            raise BundleError(
                f"bundle is for workspace {bundle.workspace.hex()}, this store is "
                f"{log.workspace.hex()}"
            )
        report = await log.ingest(bundle.events)
    finally:
        await log.close()

    def listed(rows: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "index": r.index,
                "event": r.event.hex() if r.event else None,
                "reason": r.reason,
                "message": r.message,
            }
            for r in rows
        ]

    problems = listed(report.rejected) + listed(report.evidence)
    summary: dict[str, Any] = {
        "file": str(args.file),
        "bundle_signature_valid": signed_ok,
        "exporter": bundle.exporter.hex(),
        "events": len(bundle.events),
        "accepted": len(report.accepted),
        "duplicates": report.duplicates,
        "rejected": listed(report.rejected),
        "evidence": listed(report.evidence),
    }
    if args.json:
        emit_json(summary)
    else:
        if not signed_ok:
            print(
                "warning: the bundle's own signature does not verify; "
                "each event was still checked on its own",
                file=sys.stderr,
            )
        print(
            f"imported {summary['accepted']} new events, {summary['duplicates']} duplicates, "
            f"{len(report.rejected)} rejected, {len(report.evidence)} kept as fork evidence"
        )
        for r in problems:
            print(
                f"  event #{r['index']} {(r['event'] or '?')[:16]}: {r['reason']}: {r['message']}"
            )
    return 3 if report.rejected or report.evidence else 0
