"""Research export: events/s to JSON Lines and to Parquet, against DuckDB.

On the cached plan log of N events (4 devices; default 1M, `--quick` 5k):

* vidda, per stage: the snapshot read (`read_snapshot`), `derive` (decode,
  time line, fold, field diffs, every table), then writing `events.jsonl`,
  the Parquet tables, the CSV tables and the SQLite copy; and
  `verify_export` of the JSON Lines + Parquet export (every chain, every
  derived file derived again);
* end to end: export to JSON Lines (read + derive + JSONL) and to Parquet
  (read + derive + JSONL + Parquet: `events.jsonl` is always written);
* the peer: DuckDB copying the SQLite log's events table (rx, plan,
  device, seq, hlc, type_no, data: the packed rows) to Parquet, reading
  the log file directly with its sqlite scanner (`sqlite_scan`; the
  extension comes from PyPI with the bench extra, so it loads offline).
  Without the extension the rows go sqlite3 -> Arrow table -> DuckDB
  `COPY … TO parquet` (said in the output). That is the floor: bytes
  moved, nothing decoded, verified or folded.

Medians over `--repeat` runs; ratios against the DuckDB copy.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from timing import fresh_heap, machine_line, median, parser, progress, say, table
from workload import Workload, plan_log, with_consent

from core.research.export import Derived, derive
from core.research.snapshot import Snapshot, read_snapshot
from core.research.verify_export import verify_export
from core.research.writers import (
    TABLES,
    csv_chunks,
    export_to,
    jsonl_lines,
    write_parquet,
    write_sqlite,
)
from core.store.event_log import EventLog


async def _read(work: Workload) -> Snapshot:
    log = await EventLog.open(work.path)
    try:
        return await read_snapshot(log, [work.plan], [])
    finally:
        await log.close()


def timed(fn, *args):  # type: ignore[no-untyped-def]
    fresh_heap()
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def write_jsonl(derived: Derived, folder: Path) -> None:
    with open(folder / "events.jsonl", "wb") as fh:
        for line in jsonl_lines(derived):
            fh.write(line)


def write_csv(derived: Derived, folder: Path) -> None:
    (folder / "csv").mkdir(exist_ok=True)
    for t in TABLES:
        with open(folder / "csv" / f"{t.name}.csv", "wb") as fh:
            for chunk in csv_chunks(t, derived.tables[t.name]):
                fh.write(chunk)


def scanner_available() -> bool:
    """Whether DuckDB's sqlite scanner loads: from the PyPI package of the
    bench extra (`duckdb-extension-sqlite-scanner`, built for this DuckDB
    version), else DuckDB's own download (needs extensions.duckdb.org)."""
    import duckdb

    con = duckdb.connect()
    try:
        try:
            from duckdb_extensions import import_extension

            import_extension("sqlite_scanner", con=con)
        except (ImportError, duckdb.Error):
            con.execute("INSTALL sqlite")
        con.execute("LOAD sqlite")
    except duckdb.Error:
        return False
    finally:
        con.close()
    return True


OFFLINE = (
    "sqlite3 -> Arrow -> DuckDB COPY to Parquet (the sqlite scanner cannot be installed offline)"
)


def duckdb_copy(path: Path, target: Path, scanner: bool) -> None:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        if scanner:
            con.execute("LOAD sqlite")
            con.execute(
                "COPY (SELECT rx, plan_no, device_no, seq, hlc, type_no, data "
                f"FROM sqlite_scan('{path}', 'events')) "
                f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
            )
            return
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT rx, plan_no, device_no, seq, hlc, coalesce(type_no, 0), data FROM events"
            ).fetchall()
        finally:
            conn.close()
        names = ("rx", "plan_no", "device_no", "seq", "hlc", "type_no")
        cols = list(zip(*rows, strict=True))
        arrow = pa.table(
            {
                **{name: pa.array(cols[i], pa.int64()) for i, name in enumerate(names)},
                "data": pa.array(cols[6], pa.binary()),
            }
        )
        con.register("events_arrow", arrow)
        con.execute(f"COPY events_arrow TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
    finally:
        con.close()


def export_both(snap: Snapshot, folder: Path) -> None:
    export_to(
        folder,
        derive(snap),
        formats=("jsonl", "parquet"),
        command=["bench"],
        cutoff_rx=snap.cutoff_rx,
    )


def main() -> int:
    args = parser(__doc__.splitlines()[0], events=1_000_000, quick_events=5_000, repeat=3)()
    say(machine_line())
    base = plan_log(args.events)
    # Without research consent an export holds counts only: give it, on a copy.
    consented = Path(tempfile.mkdtemp(prefix="vidda-bench-consent-"))
    work = dataclasses.replace(base, path=with_consent(base, consented))
    n = args.events + 1
    scanner = scanner_available()
    how = "DuckDB sqlite_scan -> COPY to Parquet" if scanner else OFFLINE
    stages: dict[str, list[float]] = {}
    for r in range(args.repeat):
        progress(f"run {r + 1}/{args.repeat}")
        tmp = Path(tempfile.mkdtemp(prefix="vidda-bench-export-"))
        try:
            t, snap = timed(lambda: asyncio.run(_read(work)))
            stages.setdefault(READ, []).append(t)
            t, derived = timed(derive, snap)
            stages.setdefault(DERIVE, []).append(t)
            for name, fn in (
                (JSONL, write_jsonl),
                (PARQUET, lambda d, f: write_parquet(d, f / "parquet")),
                ("write CSV tables", write_csv),
                ("write SQLite copy", lambda d, f: write_sqlite(d, f / "export.sqlite")),
            ):
                t, _ = timed(fn, derived, tmp)
                stages.setdefault(name, []).append(t)
            del derived
            shutil.rmtree(tmp)
            t, _ = timed(export_both, snap, tmp)
            stages.setdefault("export jsonl+parquet (manifest incl.)", []).append(t)
            t, report = timed(verify_export, tmp)
            if not report.ok:
                raise SystemExit(f"verify-export failed: {report.problems[:3]}")
            stages.setdefault("verify-export jsonl+parquet", []).append(t)
            t, _ = timed(duckdb_copy, work.path, tmp / "duck.parquet", scanner)
            stages.setdefault(PEER, []).append(t)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    med = {k: median(v) for k, v in stages.items()}
    jsonl = med[READ] + med[DERIVE] + med[JSONL]
    parquet = jsonl + med[PARQUET]
    peer = med[PEER]

    def row(name: str, secs: float) -> list[str]:
        return [name, f"{secs:,.2f} s", f"{n / secs:,.0f}/s", f"{secs / peer:,.1f}×"]

    rows = [row(k, v) for k, v in med.items()]
    rows.append(row("= export to JSON Lines (read + derive + write)", jsonl))
    rows.append(row("= export to Parquet (+ the JSON Lines)", parquet))
    say(f"\nResearch export of {n:,} events (4 devices), median of {args.repeat}")
    say(f"peer: {how}\n")
    say(table(rows, ["stage", "median", "events/s", "time vs the DuckDB copy"]))
    shutil.rmtree(consented, ignore_errors=True)
    return 0


READ = "read snapshot"
DERIVE = "derive (decode, fold, diffs, tables)"
JSONL = "write events.jsonl"
PARQUET = "write Parquet tables"
PEER = "peer: DuckDB copy of the events table"


if __name__ == "__main__":
    sys.exit(main())
