"""Figure 3: per-event signature verification vs the fast path, on 100k events.

Both check the same decoded chains of the cached log (4 devices):

* per event: `first_problem(chain, full=True)`, every Ed25519 signature;
* fast path: `first_problem(chain)`, every link (SHA-256 ids, already
  computed by the decode) plus each chain's newest signature.

For context, also: per-event signatures on 2 threads (verification releases
the GIL), the decode that both need (`decode_stored`, which hashes), and
`vidda verify` end to end (`verify_log`: strict parse of every row, column
checks, fast path, SQLite integrity check).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from timing import fresh_heap, machine_line, median, parser, progress, say, table
from workload import Workload, plan_log, read_raws

from core.events.envelope import Event, decode_stored, signature_ok
from core.events.verify import first_problem
from core.store.event_log import EventLog
from core.store.verify_log import verify_log


def chains_of(events: list[Event]) -> list[list[Event]]:
    by_author: dict[bytes, list[Event]] = defaultdict(list)
    for ev in events:
        by_author[ev.env.author].append(ev)
    out = list(by_author.values())
    for chain in out:
        chain.sort(key=lambda e: e.env.seq)
    return out


def verify_all(chains: list[list[Event]], full: bool) -> float:
    t0 = time.perf_counter()
    for chain in chains:
        if first_problem(chain, full=full) is not None:
            raise SystemExit("the cached log fails verification")
    return time.perf_counter() - t0


def per_event_threads(events: list[Event], threads: int) -> float:
    def check(part: list[Event]) -> bool:
        return all(signature_ok(e.raw, e.env.author) for e in part)

    parts = [events[i::threads] for i in range(threads)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ok = all(pool.map(check, parts))
    elapsed = time.perf_counter() - t0
    if not ok:
        raise SystemExit("a signature failed")
    return elapsed


async def verify_command(w: Workload) -> float:
    log = await EventLog.open(w.path)
    try:
        t0 = time.perf_counter()
        report = await verify_log(log)
        elapsed = time.perf_counter() - t0
    finally:
        await log.close()
    if not report.ok:
        raise SystemExit(f"vidda verify found problems: {report.problems[:3]}")
    return elapsed


def main() -> int:
    parse = parser(__doc__.splitlines()[0], events=100_000, quick_events=2_000, repeat=3)
    args = parse()
    say(machine_line())
    w = plan_log(args.events)
    raws = read_raws(w.path)
    n = len(raws)
    decode_t, fast_t, full_t, thread_t, command_t = [], [], [], [], []
    for i in range(args.repeat):
        fresh_heap()
        t0 = time.perf_counter()
        events = [decode_stored(r) for r in raws]
        decode_t.append(time.perf_counter() - t0)
        chains = chains_of(events)
        fast_t.append(verify_all(chains, full=False))
        full_t.append(verify_all(chains, full=True))
        thread_t.append(per_event_threads(events, 2))
        command_t.append(asyncio.run(verify_command(w)))
        progress(f"  round {i + 1}: fast {fast_t[-1]:.3f} s, per event {full_t[-1]:.1f} s")
        del events, chains

    fast = median(fast_t)
    say(f"verify: {n:,} events in {w.devices} chains, {args.repeat} rounds, medians")
    say()
    rows = []
    for label, seconds in (
        ("per event: every signature (`first_problem(full=True)`)", median(full_t)),
        ("per event, 2 threads (GIL released)", median(thread_t)),
        ("fast path: links + newest signature per chain", fast),
        ("decode (`decode_stored`, incl. SHA-256 id), needed by both", median(decode_t)),
        ("`vidda verify` end to end (strict parse + fast path + integrity)", median(command_t)),
    ):
        rows.append(
            [
                label,
                f"{seconds:.3f} s",
                f"{n / seconds:,.0f}",
                f"{seconds / n * 1e6:.2f} µs",
                f"{seconds / fast:,.1f}×",
            ]
        )
    say(table(rows, ["verification", "median", "events/s", "per event", "÷ fast path"]))
    say()
    say(
        f"fast path is {median(full_t) / fast:,.0f}× faster than checking every signature; "
        f"fast path + decode: {n / (fast + median(decode_t)):,.0f} events/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
