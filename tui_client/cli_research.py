"""`vidda export` and `vidda verify-export`: verifiable exports for research.

The work is in `core.research`; this shell picks the plans, reads the
snapshot, draws the progress bar on stderr (stdout stays the report) and
turns problems into exit codes: 0 sound, 1 a problem found or the export
failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from core.research.export import derive
from core.research.snapshot import read_snapshot
from core.research.verify_export import verify_export
from core.research.writers import FORMATS, ExportError, export_to, require_pyarrow
from tui_client.cli import UsageError, emit_json
from tui_client.cli_plan import resolve_plan
from tui_client.home import Home


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write a verifiable research export (JSON Lines, CSV, Parquet, SQLite)",
    )
    p.add_argument("plans", nargs="*", help="plan ids (prefixes); default: every plan")
    p.add_argument(
        "--format",
        action="append",
        default=[],
        help=f"{', '.join(FORMATS)} (repeat or comma-separate; default jsonl,csv; "
        "events.jsonl is always written)",
    )
    p.add_argument("--out", required=True, type=Path, help="a new or empty folder")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("verify-export", help="prove an export authentic, complete and unchanged")
    p.add_argument("folder", type=Path)
    p.add_argument("--full", action="store_true", help="check every signature one by one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_verify_export)


class ProgressBar:
    """A bar on stderr when it is a terminal; otherwise a plain line every few
    seconds, and only once the work has run a while (logs stay short)."""

    def __init__(self, after_s: float = 3.0, every_s: float = 5.0) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.after_s = after_s
        self.every_s = every_s
        self.last = 0.0
        self.drawn = False

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self.last < 0.1 and done < total:
                return
            width = 30
            filled = width * done // total if total else width
            sys.stderr.write(
                f"\r{stage:<20} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}\x1b[K"
            )
            sys.stderr.flush()
            self.drawn = True
        elif now - self.started >= self.after_s and now - self.last >= self.every_s:
            print(f"vidda: {stage}: {done:,}/{total:,}", file=sys.stderr, flush=True)
        else:
            return
        self.last = now

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _formats(values: list[str]) -> tuple[str, ...]:
    chosen = [f.strip().lower() for v in values for f in v.split(",") if f.strip()]
    if not chosen:
        chosen = ["jsonl", "csv"]
    if "all" in chosen:
        chosen = list(FORMATS)
    for f in chosen:
        if f not in FORMATS:
            raise UsageError(f"unknown format {f!r} (formats: {', '.join(FORMATS)}, all)")
    return tuple(chosen)


async def cmd_export(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    formats = _formats(args.format)
    try:
        if "parquet" in formats:
            require_pyarrow()  # before the work, not after it
        log = await home.open_log()
        try:
            plans = (
                [await resolve_plan(log, p) for p in args.plans]
                if args.plans
                else [p for p, _ in await log.plans()]
            )
            admins = [bytes.fromhex(a) for a in home.profile().admins]
            snap = await read_snapshot(log, plans, admins)
        finally:
            await log.close()
        bar = ProgressBar()
        try:
            derived = derive(snap, bar)
            manifest = export_to(
                args.out,
                derived,
                formats=formats,
                command=["vidda", *sys.argv[1:]],
                cutoff_rx=snap.cutoff_rx,
                progress=bar,
            )
        finally:
            bar.close()
    except ExportError as exc:
        print(f"vidda: error: {exc}", file=sys.stderr)
        return 1
    summary = {
        "folder": str(args.out),
        "formats": manifest.formats,
        "plans": manifest.counts["plans"],
        "events": manifest.counts["events"],
        "chains": manifest.counts["chains"],
        "files": len(manifest.files),
        "content_sha256": manifest.content_sha256,
    }
    if args.json:
        emit_json(summary)
    else:
        print(
            f"exported {summary['events']} events of {summary['plans']} plan(s) "
            f"({summary['chains']} chains) to {args.out}: {len(manifest.files)} files "
            f"({', '.join(manifest.formats)})"
        )
        print(f"content sha256 {manifest.content_sha256}")
    return 0


async def cmd_verify_export(args: argparse.Namespace, extra: list[str]) -> int:
    if not args.folder.is_dir():
        print(f"vidda: error: {args.folder} is not a folder", file=sys.stderr)
        return 1
    bar = ProgressBar()
    try:
        report = verify_export(args.folder, full=args.full, progress=bar)
    finally:
        bar.close()
    if args.json:
        data = {f: getattr(report, f) for f in report.__struct_fields__}
        emit_json({**data, "ok": report.ok})
    else:
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        for problem in report.problems:
            print(f"BAD {problem}", file=sys.stderr)
        status = "ok" if report.ok else "FAILED"
        print(
            f"verify-export {status}: {report.events} events in {report.chains} chains, "
            f"{report.files} files, {len(report.rederived)} derived again and identical, "
            f"{len(report.problems)} problems"
        )
    return 0 if report.ok else 1
