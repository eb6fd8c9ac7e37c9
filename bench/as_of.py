"""Figure 5: `plan show --as-of` latency at random points of a 100k-event plan.

Measured on a private copy of the cached log:

* full fold (the first implementation, and the reference): decode every
  event of the plan, keep those on the time line up to the point (ISO time:
  HLC <= the end of that millisecond; event id: (HLC, device, seq) <= that
  event's) and `project` them;
* the command's path today: `tui_client.cli_plan.as_of_key` (the spec to a
  time-line key) + `core.store.time_travel.state_as_of` (nearest time-line
  checkpoint + the events after it), on an open log; ISO points and
  event-id points apart, since an event id is resolved differently; and
  the same plus `plan_view.view` (the data `plan show` prints). The
  one-off cost of building the checkpoints (`ensure_checkpoints`, on the
  first query) is timed apart.

Rows are not read from SQLite in the full fold (timed once beside it); the
command's path reads its own. Every checkpointed answer is checked to show
the same plan (`plan_view.view`) as the full fold at the first points.
Target: <= 20 ms.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import sys
import time
from pathlib import Path

from timing import OUT, fresh_heap, machine_line, median, parser, percentile, progress, say, table
from workload import Workload, plan_log, read_raws

from core.events.envelope import Event, decode_stored
from core.events.hlc import from_iso, to_iso
from core.projections.plan_state import PlanState, project
from core.projections.plan_view import view
from core.store.event_log import EventLog
from core.store.time_travel import ensure_checkpoints, state_as_of
from tui_client.cli_plan import as_of_key

TARGET_MS = 20.0


def points(events: list[Event], count: int, seed: int) -> list[str]:
    """Random as-of specs: ISO times (3 in 4) and 12-digit event-id prefixes."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        ev = rng.choice(events)
        out.append(ev.id.hex()[:12] if i % 4 == 3 else to_iso(ev.env.hlc))
    return out


def is_id(spec: str) -> bool:
    return "T" not in spec


def full_fold(plan: bytes, raws: list[bytes], spec: str) -> tuple[float, PlanState]:
    """Decode all, filter to the point, fold: the reference answer and its time."""
    t0 = time.perf_counter()
    events = [decode_stored(r) for r in raws]
    if is_id(spec):
        target = next(e for e in events if e.id.hex().startswith(spec))
        limit = (target.env.hlc, target.env.author, target.env.seq)
        picked = [e for e in events if (e.env.hlc, e.env.author, e.env.seq) <= limit]
    else:
        cutoff = from_iso(spec) | 0xFFFF
        picked = [e for e in events if e.env.hlc <= cutoff]
    state = project(plan, picked)
    return time.perf_counter() - t0, state


async def command_path(
    w: Workload, path: Path, specs: list[str], reference: dict[str, object]
) -> tuple[float, int, float, dict[str, list[float]]]:
    """Checkpoint build seconds and count, id-cache build seconds; query
    seconds by spec kind."""
    log = await EventLog.open(path)
    try:
        t0 = time.perf_counter()
        built = await ensure_checkpoints(log, w.plan)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await log.events_with_id_prefix(w.plan, "00")  # builds the id cache, once
        id_cache_s = time.perf_counter() - t0
        times: dict[str, list[float]] = {"iso": [], "id": [], "view": []}
        for i, spec in enumerate(specs):
            fresh_heap()
            t0 = time.perf_counter()
            state = await state_as_of(log, w.plan, await as_of_key(log, w.plan, spec))
            t1 = time.perf_counter()
            shown = view(state)
            t2 = time.perf_counter()
            times["id" if is_id(spec) else "iso"].append(t1 - t0)
            times["view"].append(t2 - t0)
            if spec in reference and shown != reference[spec]:
                raise SystemExit(f"state_as_of shows another plan than the full fold at {spec}")
            del state, shown  # a command makes one state: freeing it is not its cost
            if i % 50 == 49:
                progress(f"  command path: {i + 1}/{len(specs)} points")
    finally:
        await log.close()
    return build_s, built, id_cache_s, times


def main() -> int:
    parse = parser(__doc__.splitlines()[0], events=100_000, quick_events=2_000, repeat=1)
    parse.parser.add_argument(  # type: ignore[attr-defined]
        "--queries", type=int, default=None, help="points for the full fold (default 20)"
    )
    args = parse()
    queries = (args.queries or (4 if args.quick else 20)) * args.repeat
    say(machine_line())
    w = plan_log(args.events)
    t0 = time.perf_counter()
    raws = read_raws(w.path)
    read_s = time.perf_counter() - t0
    events = [decode_stored(r) for r in raws]

    full_specs = points(events, queries, seed=11)
    full_t: dict[str, list[float]] = {"iso": [], "id": []}
    reference: dict[str, object] = {}
    for i, spec in enumerate(full_specs):
        fresh_heap()
        elapsed, state = full_fold(w.plan, raws, spec)
        full_t["id" if is_id(spec) else "iso"].append(elapsed)
        if len(reference) < 8:
            reference[spec] = view(state)
        if i % 10 == 9:
            progress(f"  full fold: {i + 1}/{len(full_specs)} points")

    cmd_specs = list(reference) + points(events, 5 * queries, seed=12)
    work = OUT / f"as-of-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        build_s, built, id_cache_s, cmd_t = asyncio.run(
            command_path(w, w.copy_to(work), cmd_specs, reference)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    say(f"as-of: plan of {len(events):,} events; full fold at {len(full_specs)} random points,")
    say(f"the command's path at {len(cmd_specs)} (incl. the same first {len(reference)})")
    say()
    full_all = full_t["iso"] + full_t["id"]
    base = median(full_all)
    rows = []
    for label, samples in (
        ("full fold: decode all + filter + `project` (all points)", full_all),
        ("command: `as_of_key` + `state_as_of`, ISO time points", cmd_t["iso"]),
        ("command: `as_of_key` + `state_as_of`, event-id points", cmd_t["id"]),
        ("… + `view` (what `plan show` prints), all points", cmd_t["view"]),
    ):
        if not samples:
            continue
        p50 = median(samples)
        rows.append(
            [
                label,
                str(len(samples)),
                f"{p50 * 1e3:,.1f} ms",
                f"{percentile(samples, 99) * 1e3:,.1f} ms",
                f"{p50 * 1e3 / TARGET_MS:.2f}×",
                f"{base / p50:,.1f}×",
            ]
        )
    say(table(rows, ["as-of query", "points", "p50", "p99", "p50 ÷ 20 ms", "full fold ÷ this"]))
    say()
    worst = max(percentile(cmd_t[k], 99) for k in ("iso", "id") if cmd_t[k]) * 1e3
    say(
        f"target <= {TARGET_MS:.0f} ms: ISO points "
        f"{'met' if cmd_t['iso'] and median(cmd_t['iso']) * 1e3 <= TARGET_MS else 'NOT met'} "
        f"(p50), worst p99 over both kinds {worst:,.1f} ms"
    )
    say(
        f"one-off: building {built} time-line checkpoints took {build_s:,.2f} s "
        f"(on the first as-of query of the plan); the event-id cache {id_cache_s:,.2f} s "
        f"(on the first event-id query of the log); reading all rows: {read_s * 1e3:,.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
