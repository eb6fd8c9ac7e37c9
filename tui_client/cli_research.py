"""`vidda export` and `vidda verify-export`: verifiable exports for research.

The work is in `core.research`; this shell picks the plans, reads the
snapshot, draws the progress bar on stderr (stdout stays the report) and
turns problems into exit codes: 0 sound, 1 a problem found or the export
failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
from pathlib import Path
from typing import Any

from core.identity.atomic_file import write_atomic
from core.research.export import derive
from core.research.manifest import MANIFEST, decode_manifest
from core.research.privacy import ANONYMISED, FULL, KEY_BYTES, PSEUDONYMISED, key_id, redact
from core.research.snapshot import read_snapshot
from core.research.verify_export import compare_with, verify_export
from core.research.writers import FORMATS, ExportError, export_to, require_pyarrow
from tui_client.cli import ProgressBar, UsageError, emit_json
from tui_client.cli_plan import resolve_plan
from tui_client.home import Home

EXPORT_KEY = "export.key"


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
    privacy = p.add_mutually_exclusive_group()
    privacy.add_argument(
        "--pseudonymise",
        action="store_true",
        help="persons, devices and personal actors as stable pseudonyms (HMAC-SHA256 under "
        "the export key); no signed bytes",
    )
    privacy.add_argument(
        "--anonymise",
        action="store_true",
        help="no key, device, person name, event id or signed bytes; personal actors' "
        "names, descriptions and notes about them removed",
    )
    p.add_argument(
        "--export-key",
        type=Path,
        help=f"the pseudonym key file (made if missing; default HOME/{EXPORT_KEY}); "
        "keep it apart from the export",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("verify-export", help="prove an export authentic, complete and unchanged")
    p.add_argument("folder", type=Path)
    p.add_argument("--full", action="store_true", help="check every signature one by one")
    p.add_argument(
        "--against-home",
        action="store_true",
        help="derive the export again from this home's log (at the manifest's cut-off) and "
        "compare every file: proves pseudonymised and anonymised exports",
    )
    p.add_argument("--export-key", type=Path, help="the pseudonym key (default HOME/export.key)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_verify_export)


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


def export_key(home: Home, path: Path | None, *, create: bool, out: Path | None = None) -> bytes:
    """The pseudonym key: `path` or HOME/export.key, made (0600, 32 random
    bytes as hex) if missing and `create`. Never inside the export folder."""
    path = path if path is not None else home.path / EXPORT_KEY
    if out is not None and path.resolve().is_relative_to(out.resolve()):
        raise UsageError("--export-key must not be inside the export folder")
    if not path.exists():
        if not create:
            raise UsageError(f"no export key at {path} (--export-key FILE)")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n", mode=0o600)
        print(
            f"vidda: made a new pseudonym key: {path} (keep it apart from the export)",
            file=sys.stderr,
        )
    text = path.read_text("ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{path} is not a pseudonym key (hex)") from None
    if len(key) < 16:
        raise UsageError(f"{path}: a pseudonym key has at least 16 bytes")
    return key


def _mode(args: argparse.Namespace) -> str:
    return PSEUDONYMISED if args.pseudonymise else ANONYMISED if args.anonymise else FULL


def _command(mode: str) -> list[str]:
    """The command as typed, for the manifest; in a private mode without
    paths (a home or key path names a person's user folder)."""
    argv = ["vidda", *sys.argv[1:]]
    if mode == FULL:
        return argv
    out, skip = [], False
    for arg in argv:
        if skip:
            out.append("…")
            skip = False
        elif arg in ("--home", "--export-key", "--out"):
            out.append(arg)
            skip = True
        elif arg.startswith(("--home=", "--export-key=", "--out=")):
            out.append(arg.split("=", 1)[0] + "=…")
        elif mode == ANONYMISED and re.fullmatch(r"[0-9a-fA-F]{4,32}", arg):
            out.append("…")  # a plan id (prefix): a linking key
        else:
            out.append(arg)
    return out


async def cmd_export(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    formats = _formats(args.format)
    mode = _mode(args)
    if args.export_key is not None and mode != PSEUDONYMISED:
        raise UsageError("--export-key goes with --pseudonymise")
    try:
        if "parquet" in formats:
            require_pyarrow()  # before the work, not after it
        key = (
            export_key(home, args.export_key, create=True, out=args.out)
            if mode == PSEUDONYMISED
            else None
        )
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
            derived = redact(derive(snap, bar), mode, key)
            manifest = export_to(
                args.out,
                derived,
                formats=formats,
                command=_command(mode),
                cutoff_rx=snap.cutoff_rx,
                cutoff_acks=snap.cutoff_acks,
                progress=bar,
            )
        finally:
            bar.close()
    except ExportError as exc:
        print(f"vidda: error: {exc}", file=sys.stderr)
        return 1
    for plan in sorted(derived.aggregated):
        why = (
            "the membership log: no exported plan has research consent"
            if plan == derived.workspace
            else f"plan {plan.hex()[:12]}: no research consent ({derived.consent[plan]})"
        )
        print(f"vidda: {why}: exported as aggregate counts only", file=sys.stderr)
    summary = {
        "folder": str(args.out),
        "mode": manifest.mode,
        "aggregated_plans": [
            derived.redactor.unlink(p.hex()) if derived.redactor else p.hex()
            for p in sorted(derived.aggregated)
        ],
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
        counted = sum(1 for p in derived.aggregated if p != derived.workspace)
        print(
            f"exported {summary['events']} events of {manifest.counts['plans'] - counted} plan(s) "
            f"({summary['chains']} chains)"
            + (f" and counts of {counted} plan(s) without consent" if counted else "")
            + f" to {args.out}: {len(manifest.files)} files ({', '.join(manifest.formats)})"
            + ("" if mode == FULL else f", {mode}")
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
    if args.against_home:
        again = await _against_home(args)
        report.notes += again.notes
        report.problems += again.problems
        report.rederived = again.rederived
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


async def _against_home(args: argparse.Namespace) -> Any:
    """Derive the export again from this home's log, as the manifest says it
    was made (plans, cut-off, formats, mode, key), and compare every file."""
    home: Home = args.home_dir
    manifest = decode_manifest((args.folder / MANIFEST).read_bytes())
    key = None
    if manifest.mode == PSEUDONYMISED:
        key = export_key(home, args.export_key, create=False)
        if key_id(key) != manifest.pseudonym_key_id:
            raise UsageError(
                f"the export key is not the one the export was made with "
                f"(key id {key_id(key)}, the manifest's {manifest.pseudonym_key_id})"
            )
    log = await home.open_log()
    try:
        if manifest.mode == ANONYMISED:
            # An anonymised export names no plan: derive every plan of the
            # log (the default export); an export of some plans differs.
            plans = [p for p, _ in await log.plans()]
        else:
            plans = [bytes.fromhex(p.plan) for p in manifest.plans if not p.membership]
        admins = [bytes.fromhex(a) for a in home.profile().admins]
        snap = await read_snapshot(
            log,
            plans,
            admins,
            cutoff_rx=manifest.cutoff.receive_position,
            cutoff_acks=manifest.cutoff.acks_position,
        )
    finally:
        await log.close()
    report = compare_with(args.folder, redact(derive(snap), manifest.mode, key), manifest)
    report.notes.append(
        f"derived again from {home.path} up to receive position "
        f"{manifest.cutoff.receive_position}: {len(report.rederived)} files identical"
    )
    return report
