"""Figure 1: interactive append latency on a plan that already holds 100k events.

One signed event per durable transaction: `EventLog.append(signer, plan,
[body])` with synchronous=FULL on a real file (a private copy of the cached
100k-event log under bench/out/), each body a real edit (`edits.set_fields`
on the current state, so `replaces` names the current heads). Compared in
the same run, interleaved round by round, with a raw sqlite3 one-row
INSERT + COMMIT (WAL, synchronous=FULL) into a table of the same shape that
also holds 100k rows; and, to show what the fsync costs, both again with
synchronous=NORMAL.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sqlite3
import sys
import time
from pathlib import Path

from timing import OUT, machine_line, median, parser, percentile, progress, say, table
from workload import Workload, plan_log

from core.commands import edits
from core.events.envelope import seal
from core.projections.plan_state import PlanState, evolve
from core.store.event_log import EventLog

RAW_SCHEMA = """
CREATE TABLE events (
    rx INTEGER PRIMARY KEY, plan_no INTEGER NOT NULL, device_no INTEGER NOT NULL,
    seq INTEGER NOT NULL, hlc INTEGER NOT NULL, type_no INTEGER, data BLOB NOT NULL,
    UNIQUE (plan_no, device_no, seq)
)
"""


class ViddaAppender:
    """Appends one real edit per call to a private copy of the log."""

    def __init__(self, w: Workload, directory: Path, synchronous: str) -> None:
        self.w = w
        self.dir = directory
        self.synchronous = synchronous
        self.rng = random.Random(7)
        self.signer = w.signer(0)

    async def open(self) -> None:
        self.log = await EventLog.open(self.w.copy_to(self.dir), synchronous=self.synchronous)
        self.state: PlanState = await self.log.load_state(self.w.plan, checkpoint=False)
        self.activities = sorted(
            eid for (kind, eid), ent in self.state.entities.items() if kind == "activity"
        )

    def next_bodies(self) -> list[object]:
        eid = self.rng.choice(self.activities)
        status = self.rng.choice(("planned", "postponed", "cancelled"))
        return edits.set_fields(self.state, "activity", eid, {"status": status})  # type: ignore[return-value]

    async def append_once(self) -> float:
        bodies = self.next_bodies()
        t0 = time.perf_counter()
        events = await self.log.append(self.signer, self.w.plan, bodies)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - t0
        for ev in events:
            evolve(self.state, ev)
        return elapsed

    async def close(self) -> None:
        await self.log.close()


class RawAppender:
    """sqlite3, one INSERT + COMMIT per call, same row shape and size."""

    def __init__(self, directory: Path, synchronous: str, rows: int, row_bytes: int) -> None:
        path = directory / f"raw-{synchronous.lower()}.sqlite"
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"PRAGMA synchronous={synchronous}")
        self.conn.execute(RAW_SCHEMA)
        self.blob = os.urandom(row_bytes)
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO events(plan_no, device_no, seq, hlc, type_no, data) VALUES (1,?,?,?,1,?)",
            ((i % 4, i, i, self.blob) for i in range(rows)),
        )
        self.conn.execute("COMMIT")
        self.seq = rows

    def append_once(self) -> float:
        self.seq += 1
        t0 = time.perf_counter()
        self.conn.execute("BEGIN")
        self.conn.execute(
            "INSERT INTO events(plan_no, device_no, seq, hlc, type_no, data) VALUES (1,9,?,?,1,?)",
            (self.seq, self.seq, self.blob),
        )
        self.conn.execute("COMMIT")
        return time.perf_counter() - t0

    def close(self) -> None:
        self.conn.close()


async def load_state_cost(app: ViddaAppender) -> float:
    """Median seconds of `load_state` once a checkpoint exists (what every
    interactive CLI edit pays before its append)."""
    await app.log.load_state(app.w.plan)  # writes the checkpoint
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        await app.log.load_state(app.w.plan)
        times.append(time.perf_counter() - t0)
    return median(times)


def average_raw_bytes(w: Workload) -> int:
    conn = sqlite3.connect(f"file:{w.path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT avg(length(data)) FROM events").fetchone()[0])
    finally:
        conn.close()


def seal_cost(w: Workload, n: int) -> float:
    """Median seconds for sealing one event (encode + sign + id), no I/O."""
    from core.events.bodies import ActivityRevised

    signer = w.signer(0)
    body = ActivityRevised(activity=bytes(16), status="planned", replaces=[bytes(32)])
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        seal(
            signer, workspace=w.workspace, plan=w.plan, seq=i + 1, prev=bytes(32), hlc=i, body=body
        )
        times.append(time.perf_counter() - t0)
    return median(times)


async def run(args: object, w: Workload) -> int:
    events: int = args.events  # type: ignore[attr-defined]
    rounds: int = args.repeat  # type: ignore[attr-defined]
    per_round: int = args.appends  # type: ignore[attr-defined]
    work = OUT / f"append-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        row_bytes = average_raw_bytes(w)
        systems: dict[str, list[float]] = {}
        appenders = []
        for sync in ("FULL", "NORMAL"):
            d = work / sync.lower()
            d.mkdir()
            v = ViddaAppender(w, d, sync)
            await v.open()
            appenders.append((f"vidda `EventLog.append`, synchronous={sync}", v))
            appenders.append(
                (
                    f"raw sqlite3 INSERT + COMMIT, synchronous={sync}",
                    RawAppender(d, sync, events, row_bytes),
                )
            )
        for label, _ in appenders:
            systems[label] = []
        per_round_p50: dict[str, list[float]] = {label: [] for label in systems}
        for r in range(rounds):
            for label, app in appenders:
                samples = []
                for _ in range(per_round):
                    if isinstance(app, ViddaAppender):
                        samples.append(await app.append_once())
                    else:
                        samples.append(app.append_once())
                systems[label].extend(samples)
                per_round_p50[label].append(median(samples))
            progress(f"  round {r + 1}/{rounds} done")
        seal_s = seal_cost(w, 300 if not args.quick else 30)  # type: ignore[attr-defined]
        load_s = await load_state_cost(appenders[0][1])  # type: ignore[arg-type]
        for _, app in appenders:
            if isinstance(app, ViddaAppender):
                await app.close()
            else:
                app.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    say(
        f"append latency: plan holding {events:,} events, {rounds} rounds × {per_round} "
        f"appends per system, interleaved; one event per transaction"
    )
    say()
    base = {
        sync: median(systems[f"raw sqlite3 INSERT + COMMIT, synchronous={sync}"])
        for sync in ("FULL", "NORMAL")
    }
    rows = []
    for label, samples in systems.items():
        sync = label.rsplit("=", 1)[1]
        p50 = median(samples)
        rows.append(
            [
                label,
                f"{p50 * 1e3:.2f} ms",
                f"{percentile(samples, 99) * 1e3:.2f} ms",
                " / ".join(f"{x * 1e3:.2f}" for x in per_round_p50[label]),
                f"{p50 / base[sync]:.2f}×",
            ]
        )
    say(
        table(
            rows,
            ["one event per transaction", "p50", "p99", "p50 per round (ms)", "÷ raw sqlite3 p50"],
        )
    )
    say()
    full = median(systems["vidda `EventLog.append`, synchronous=FULL"])
    normal = median(systems["vidda `EventLog.append`, synchronous=NORMAL"])
    say(
        f"seal (encode + Ed25519 sign + id) alone: {seal_s * 1e6:.0f} µs median; "
        f"vidda FULL p50 - raw FULL p50 = {(full - base['FULL']) * 1e3:.2f} ms; "
        f"vidda NORMAL p50 - raw NORMAL p50 = {(normal - base['NORMAL']) * 1e3:.2f} ms "
        f"(seal + aiosqlite round trips + the extra queries)"
    )
    say(
        f"context: `load_state` (checkpoint restore + tail) on this plan: {load_s * 1e3:.1f} ms "
        f"median; an interactive CLI edit pays it before the append"
    )
    return 0


def main() -> int:
    parse = parser(__doc__.splitlines()[0], events=100_000, quick_events=2_000, repeat=5)
    parse.parser.add_argument(  # type: ignore[attr-defined]
        "--appends", type=int, default=None, help="appends per system per round (default 200)"
    )
    args = parse()
    if args.appends is None:
        args.appends = 20 if args.quick else 200
    say(machine_line())
    return asyncio.run(run(args, plan_log(args.events)))


if __name__ == "__main__":
    sys.exit(main())
