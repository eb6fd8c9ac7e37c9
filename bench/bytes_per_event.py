"""Figure 4: bytes on disk per event, and where they go.

A private copy of the cached log (a realistic mix of edits, see workload.py;
4 devices, one plan) is checkpointed (`wal_checkpoint(TRUNCATE)`), measured,
VACUUMed and measured again; the file size divided by the number of events
is the figure (target <= 300). Then the average stored event is taken apart:
signature, envelope (ids, clock, type tag, msgpack framing) and body
(entity id, `replaces`, field names, values), and SQLite's share is what the
file holds beyond the stored rows (row headers, columns, the index, free
space in pages), read from the `dbstat` virtual table where available. Rows
are packed (core.store.rows): the columns carry plan, device, seq, hlc and
type, so the file holds less than the signed bytes.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from collections import Counter, defaultdict
from pathlib import Path

import msgspec
from timing import OUT, machine_line, parser, say, table
from workload import plan_log, read_raws

from core.events.envelope import decode_stored
from core.events.limits import SIGNATURE_LEN

TARGET = 300
_any = msgspec.msgpack.Decoder()


def _size(value: object) -> int:
    return len(msgspec.msgpack.encode(value))


def dissect(raws: list[bytes]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Average bytes per event by part; per type: count, raw and body sizes."""
    parts: Counter[str] = Counter()
    by_type: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for raw in raws:
        ev = decode_stored(raw)
        env = ev.env
        body = bytes(env.body)
        payload = len(raw) - SIGNATURE_LEN
        parts["signature"] += SIGNATURE_LEN
        ids = _size(env.workspace) + _size(env.plan) + _size(env.author) + _size(env.prev)
        parts["envelope: workspace + plan ids"] += _size(env.workspace) + _size(env.plan)
        parts["envelope: author key"] += _size(env.author)
        parts["envelope: prev (chain link)"] += _size(env.prev)
        parts["envelope: type tag"] += _size(env.type)
        head = payload - len(body) - ids - _size(env.type)
        parts["envelope: version, seq, hlc, framing"] += head
        fields = _any.decode(body)
        framing = len(body)
        for key, value in fields.items():
            k, v = _size(key), _size(value)
            framing -= k + v
            parts["body: field names"] += k
            if key == "replaces":
                parts["body: replaces (ids of replaced heads)"] += v
            elif isinstance(value, bytes) and len(value) == 16:
                parts["body: entity / reference ids"] += v
            else:
                parts["body: values"] += v
        parts["body: map framing"] += framing
        row = by_type[env.type]
        row[0] += 1
        row[1] += len(raw)
        row[2] += len(body)
    n = len(raws)
    return {k: v / n for k, v in parts.items()}, by_type


def dbstat(path: Path, events: int) -> list[tuple[str, float, float]] | None:
    """(table or index, bytes on disk per event, payload bytes per event)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, sum(pgsize), sum(payload) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()
    return [(name, size / events, payload / events) for name, size, payload in rows]


def file_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def main() -> int:
    parse = parser(__doc__.splitlines()[0], events=100_000, quick_events=2_000, repeat=1)
    args = parse()
    say(machine_line())
    w = plan_log(args.events)
    work = OUT / f"bytes-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        path = w.copy_to(work)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.close()
        as_written = file_size(path)
        conn = sqlite3.connect(path)
        # Checkpoints are caches (derived, droppable): the target is about the
        # log, so measure it without them and report them on their own.
        caches = {
            table: conn.execute(f"SELECT coalesce(sum(length(state)), 0) FROM {table}").fetchone()[
                0
            ]
            for table in ("checkpoints", "timeline_checkpoints")
        }
        conn.execute("DELETE FROM checkpoints")
        conn.execute("DELETE FROM timeline_checkpoints")
        conn.commit()
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        vacuumed = file_size(path)
        stats = dbstat(path, w.events)
        raws = read_raws(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(raws)
    avg_raw = sum(map(len, raws)) / n
    parts, by_type = dissect(raws)

    say(f"bytes per event: {n:,} events, {w.devices} devices, one plan; page size {page_size}")
    say()
    per_event = vacuumed / n
    say(
        table(
            [
                ["file after checkpoint (as written)", f"{as_written:,}", f"{as_written / n:.0f}"],
                ["log without caches, after VACUUM", f"{vacuumed:,}", f"{per_event:.0f}"],
                *[
                    [f"cache: {table} (state bytes)", f"{size:,}", f"{size / n:.0f}"]
                    for table, size in caches.items()
                ],
                ["raw events (signed bytes) alone", f"{int(avg_raw * n):,}", f"{avg_raw:.0f}"],
                [
                    "file - signed bytes (packed rows, core.store.rows; + SQLite's share)",
                    f"{vacuumed - int(avg_raw * n):,}",
                    f"{per_event - avg_raw:.0f}",
                ],
            ],
            ["on disk", "bytes", "bytes / event"],
        )
    )
    say()
    say(
        f"target <= {TARGET} bytes/event on disk: "
        f"{'met' if per_event <= TARGET else 'NOT met'} ({per_event:.0f})"
    )
    say()
    rows = [[k, f"{v:.1f}", f"{v / avg_raw:.0%}"] for k, v in sorted(parts.items())]
    rows.append(["raw event total", f"{avg_raw:.1f}", "100%"])
    say(table(rows, ["average raw event, by part", "bytes", "share"]))
    if stats:
        say()
        say(
            table(
                [[name, f"{size:.1f}", f"{payload:.1f}"] for name, size, payload in stats[:6]],
                ["SQLite b-tree (dbstat)", "bytes on disk / event", "payload / event"],
            )
        )
    say()
    rows = []
    for tag, (count, raw_sum, body_sum) in sorted(by_type.items(), key=lambda kv: -kv[1][0]):
        rows.append(
            [
                tag,
                f"{count / n:.1%}",
                f"{raw_sum / count:.0f}",
                f"{body_sum / count:.0f}",
            ]
        )
    say(table(rows, ["event type", "share of events", "avg raw bytes", "avg body bytes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
