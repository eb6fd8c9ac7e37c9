"""Figure 2: rebuild a plan projection from 1M logged events, fully verified.

vidda's rebuild, as the engine does it (`EventLog.rebuild_state(verify=True)`):
one pass over the plan's rows read from SQLite, splicing each event's signed
bytes back and hashing them for its id, checking every chain link from seq 1
on the way (`core.events.verify.ChainCheck`), folding plain edits straight
from their body bytes (`evolve_stored`), and at the end checking the newest
signature of each chain (the fast path). The cyclic GC is paused, as core's
fold paths do. The compiled fold (`core/store/native_fold.c`) does this for
the common rows; the same rebuild with every row in Python
(`core.store.rows.NATIVE` off, what `VIDDA_PURE_PYTHON=1` does) is timed
beside it.

Also timed, in the same run: the earlier pipeline, which decodes every row
into an event first (`EventLog.decoded_events`), verifies each chain
(`first_problem`) and folds with `project` (phases apart; GC paused, and
again with it on); `rebuild_state` without verification; and the size and
restore time of the rebuilt state's checkpoint (what `load_state` starts
from).

Against the same number of field changes done by `eventsourcing` (SQLite),
pycrdt and loro (see peers.py). Target: >= 200k events/s, ahead of all three.
The generated log and the peers' stores are cached under bench/out/.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections import defaultdict
from pathlib import Path

import peers
from timing import (
    OUT,
    fresh_heap,
    machine_line,
    median,
    parser,
    progress,
    say,
    table,
)
from workload import GENERATOR_VERSION, Workload, field_changes, plan_log, read_raws

from core.events.envelope import Event
from core.events.verify import first_problem
from core.projections.plan_state import PlanState, project, restore, snapshot
from core.store import rows as rows_module
from core.store.event_log import EventLog

TARGET = 200_000
PHASES = ("read", "verify", "fold", "total")
PEERS = ("eventsourcing", "pycrdt", "loro", "loro-batch")


async def vidda_rebuild(
    w: Workload, *, pause_gc: bool = False
) -> tuple[dict[str, float], PlanState]:
    """One verified rebuild; seconds per phase. `pause_gc`: the cyclic garbage
    collector is off for the duration, as core's own fold paths do
    (`checkpoints.gc_paused`): the fold makes no reference cycles."""
    log = await EventLog.open(w.path)
    try:
        if pause_gc:
            gc.disable()
        t0 = time.perf_counter()
        rows = await log.decoded_events(w.plan)
        events = [ev for _, ev in rows]
        t2 = time.perf_counter()
        chains: dict[bytes, list[Event]] = defaultdict(list)
        for ev in events:
            chains[ev.env.author].append(ev)
        for chain in chains.values():
            chain.sort(key=lambda e: e.env.seq)
            problem = first_problem(chain)
            if problem is not None:
                raise SystemExit(f"the cached log fails verification: {problem}")
        t3 = time.perf_counter()
        state = project(w.plan, events)
        t4 = time.perf_counter()
    finally:
        gc.enable()
        await log.close()
    phases = {"read": t2 - t0, "verify": t3 - t2, "fold": t4 - t3}
    phases["total"] = t4 - t0
    return phases, state


async def core_rebuild_state(
    w: Workload, *, verify: bool = False, native: bool = True
) -> tuple[float, int]:
    """`EventLog.rebuild_state`; `native=False`: every row folded in Python
    (`core.store.rows.NATIVE` off), the compiled fold's reference."""
    log = await EventLog.open(w.path)
    was = rows_module.NATIVE
    rows_module.NATIVE = native and rows_module.NATIVE
    try:
        t0 = time.perf_counter()
        state = await log.rebuild_state(w.plan, verify=verify)
        elapsed = time.perf_counter() - t0
    finally:
        rows_module.NATIVE = was
        await log.close()
    return elapsed, len(state.entities)


def checkpoint_figures(state: PlanState) -> str:
    """Size of the rebuilt state's checkpoint and the time to restore it (what
    `EventLog.load_state` pays before folding the tail)."""
    blob = snapshot(state)
    times = []
    for _ in range(3):
        fresh_heap()
        t0 = time.perf_counter()
        restore(blob)
        times.append(time.perf_counter() - t0)
    fields = [fs for ent in state.entities.values() for fs in ent.fields.values()]
    heads = sum(len(fs.heads) for fs in fields)
    kept = sum(len(getattr(fs, "replaced", getattr(fs, "pending", ()))) for fs in fields)
    return (
        f"checkpoint of the rebuilt state: {len(blob) / 1e6:,.1f} MB "
        f"({len(state.entities):,} entities, {heads:,} heads, {kept:,} replaced/pending ids); "
        f"restore {median(times) * 1e3:,.0f} ms"
    )


def peer_store(name: str, w: Workload) -> Path:
    """The peer's cached store of the workload, built if missing."""
    ext = {"eventsourcing": "sqlite", "pycrdt": "updates", "loro": "updates"}[name]
    path = OUT / f"{name}-{w.events}-d{w.devices}-g{GENERATOR_VERSION}.{ext}"
    if not path.exists():
        progress(f"building the {name} store of {w.events:,} changes (cached as {path})")
        started = time.perf_counter()
        changes = field_changes(read_raws(w.path))
        {"eventsourcing": peers.es_build, "pycrdt": peers.pycrdt_build, "loro": peers.loro_build}[
            name
        ](path, changes)
        progress(f"built in {time.perf_counter() - started:,.0f} s")
    return path


def peer_rebuild(name: str, w: Workload) -> tuple[float, int]:
    if name == "eventsourcing":
        return peers.es_rebuild(peer_store(name, w))
    if name == "pycrdt":
        elapsed, entities, _ = peers.pycrdt_rebuild(peer_store(name, w))
        return elapsed, entities
    elapsed, entities, _ = peers.loro_rebuild(peer_store("loro", w), batch=name == "loro-batch")
    return elapsed, entities


def main() -> int:
    parse = parser(__doc__.splitlines()[0], events=1_000_000, quick_events=3_000, repeat=3)
    parse.parser.add_argument(  # type: ignore[attr-defined]
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers to compare ({','.join(PEERS)}; empty: none)",
    )
    parse.parser.add_argument(  # type: ignore[attr-defined]
        "--peer-repeat", type=int, default=1, help="repetitions per peer (default 1)"
    )
    parse.parser.add_argument(  # type: ignore[attr-defined]
        "--side-repeat",
        type=int,
        default=1,
        help="repetitions of the GC-on run and of `rebuild_state` (default 1)",
    )
    args = parse()
    chosen = [p for p in args.peers.split(",") if p]
    for p in chosen:
        if p not in PEERS:
            raise SystemExit(f"unknown peer {p!r}; peers: {', '.join(PEERS)}")
    say(machine_line())
    w = plan_log(args.events)
    say(f"rebuild: {w.events:,} events, {w.devices} chains, one plan, from {w.path.name}")

    runs: list[dict[str, float]] = []
    paused: list[dict[str, float]] = []
    one_pass: list[float] = []
    pure_pass: list[float] = []
    entities = 0
    checkpoint = ""
    for i in range(args.repeat):
        fresh_heap()
        one_pass.append(asyncio.run(core_rebuild_state(w, verify=True))[0])
        progress(f"  vidda run {i + 1}, one pass: {one_pass[-1]:.2f} s")
        fresh_heap()
        pure_pass.append(asyncio.run(core_rebuild_state(w, verify=True, native=False))[0])
        progress(f"  vidda run {i + 1}, one pass in Python: {pure_pass[-1]:.2f} s")
        fresh_heap()
        phases, state = asyncio.run(vidda_rebuild(w, pause_gc=True))
        entities = len(state.entities)
        paused.append(phases)
        progress(f"  vidda run {i + 1}, GC paused: {phases['total']:.2f} s")
        if i == 0:
            checkpoint = checkpoint_figures(state)
        del state
        if i < args.side_repeat:
            fresh_heap()
            phases, state = asyncio.run(vidda_rebuild(w))
            runs.append(phases)
            progress(f"  vidda run {i + 1}, GC on: {phases['total']:.2f} s")
            del state
    core_runs = []
    for _ in range(min(args.repeat, args.side_repeat)):
        fresh_heap()
        core_runs.append(asyncio.run(core_rebuild_state(w))[0])

    results: list[tuple[str, float, int, str]] = []
    vidda_s = median([r["total"] for r in runs])
    paused_s = median([r["total"] for r in paused])
    best_s = median(one_pass)
    results.append(
        (
            "vidda `rebuild_state(verify=True)`: one pass over the rows",
            best_s,
            entities,
            "fast path",
        )
    )
    results.append(
        (
            "vidda: the same, every row in Python (`VIDDA_PURE_PYTHON`)",
            median(pure_pass),
            entities,
            "fast path",
        )
    )
    results.append(
        ("vidda: decode to events, verify, `project`, GC paused", paused_s, entities, "fast path")
    )
    results.append((f"vidda: the same, GC on ({len(runs)} run)", vidda_s, entities, "fast path"))
    results.append(
        (
            f"vidda `EventLog.rebuild_state`, no verify ({len(core_runs)} run)",
            median(core_runs),
            entities,
            "none",
        )
    )
    for name in chosen:
        reps = args.peer_repeat
        times = []
        ents = 0
        for _ in range(reps):
            fresh_heap()
            elapsed, ents = peer_rebuild(name, w)
            times.append(elapsed)
            progress(f"  {name}: {elapsed:.2f} s")
        label = {
            "eventsourcing": "eventsourcing 9.5 `repository.get` (SQLite)",
            "pycrdt": "pycrdt `apply_update` per update",
            "loro": "loro `import_` per update",
            "loro-batch": "loro `import_batch` (all at once)",
        }[name]
        results.append((label, median(times), ents, "none"))

    say()
    say(
        table(
            [
                [label, *(f"{median([r[k] for r in rs]):.2f} s" for k in PHASES)]
                for label, rs in (("vidda", runs), ("vidda, GC paused", paused))
            ],
            ["phases (medians)", "read + decode rows", "verify chains", "fold", "total"],
        )
    )
    say()
    rows = []
    for label, seconds, ents, verification in results:
        r = w.events / seconds
        rows.append(
            [
                label,
                verification,
                f"{seconds:.2f} s",
                f"{r:,.0f}",
                f"{(w.events / best_s) / r:.2f}×",
                f"{ents:,}",
            ]
        )
    say(
        table(
            rows,
            ["rebuild", "verification", "median", "events/s", "vidda (row 1) ÷ this", "entities"],
        )
    )
    rate = w.events / best_s
    peer_rates = [w.events / s for label, s, _, _ in results[5:]]
    ahead = all(rate > p for p in peer_rates)
    say()
    say(checkpoint)
    say()
    say(
        f"target >= {TARGET:,} events/s verified: {'met' if rate >= TARGET else 'NOT met'} "
        f"({rate:,.0f}/s; decoding to events first {w.events / paused_s:,.0f}/s); "
        f"ahead of every peer measured: {'yes' if ahead else 'NO'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
