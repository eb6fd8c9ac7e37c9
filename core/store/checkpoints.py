"""Plan checkpoints: opening a plan folds only the events after the last one.

A checkpoint stores the fold version, the receive position (rx) it covers, the
version vector of those events and the state snapshot. A rebuild from zero
has the same canonical bytes (`canonical_bytes`; tests/core/test_event_log.py),
and `vidda verify` checks that. Checkpoints grow with
history (the fold keeps every replaced id), so one is written only after a
tail of at least CHECKPOINT_EVERY events or a tenth of the plan.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import msgspec

from core.events.verify import ChainCheck
from core.projections.plan_state import (
    FOLD_VERSION,
    PlanState,
    SnapshotMismatch,
    restore,
    snapshot,
)
from core.store.errors import StoreError

if TYPE_CHECKING:
    from core.store.event_log import EventLog

CHECKPOINT_EVERY = 2_000


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a fold allocates many acyclic objects: its
    collections would otherwise rescan the growing state again and again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


async def rebuild_state(log: EventLog, plan: bytes, *, verify: bool = False) -> PlanState:
    """Fold the plan from zero, ignoring checkpoints (`EventLog.rebuild_state`)."""
    state = PlanState(plan)
    if not verify:
        await log.fold_events(state, plan)
        return state
    check = ChainCheck()
    try:
        await log.fold_events(state, plan, check=check)
    except Exception:
        # A changed byte can also make an event undecodable: the fold stops
        # there, and that event, the newest its chain has shown, fails its
        # signature check, which names it.
        if not check.finish():
            raise
    problems = check.finish()
    if problems:
        named = []
        for chain, problem in problems.items():
            _, device_no = cast(tuple[int, int], chain)
            key = log._device_keys.get(device_no, b"").hex()[:12]
            named.append(f"device {key} seq {problem.seq}: {problem.message}")
        raise StoreError(
            f"plan {plan.hex()} fails verification: {'; '.join(sorted(named))} "
            "(a broken link names the event after a changed one; `vidda verify` "
            "names the first bad event)"
        )
    return state


async def load_state(log: EventLog, plan: bytes, *, checkpoint: bool = True) -> PlanState:
    """The plan's current state: latest checkpoint plus the events after it.

    Writes a fresh checkpoint when more than CHECKPOINT_EVERY events (or a
    tenth of the plan, if more) had to be folded (and `checkpoint` is true).
    """
    plan_no = await log._known_plan_no(plan)
    if plan_no is None:
        raise StoreError(f"no plan {plan.hex()} in this log")
    state, upto = PlanState(plan), 0
    async with log._conn.execute(
        "SELECT fold, upto_rx, state FROM checkpoints WHERE plan_no=?", (plan_no,)
    ) as cur:
        row = await cur.fetchone()
    if row is not None and row[0] == FOLD_VERSION:
        try:
            state, upto = restore(bytes(row[2])), int(row[1])
        except (SnapshotMismatch, msgspec.DecodeError, msgspec.ValidationError):
            state, upto = PlanState(plan), 0
    folded, last_rx = await log.fold_events(state, plan, after_rx=upto)
    # Checkpoints grow with history (every replaced id is kept), so write
    # one after a tail of at least a tenth of the plan: the amortised cost
    # per event stays bounded as a plan grows.
    if checkpoint and folded > max(CHECKPOINT_EVERY, state.events // 10):
        await save_checkpoint(log, plan, state, last_rx)
    return state


async def save_checkpoint(log: EventLog, plan: bytes, state: PlanState, upto_rx: int) -> None:
    """Record `state` as the fold of every event of `plan` with rx <= upto_rx."""
    plan_no = log._plan_nos[plan]
    async with log._tx() as conn:
        async with conn.execute(
            "SELECT device_no, max(seq) FROM events WHERE plan_no=? AND rx<=? GROUP BY device_no",
            (plan_no, upto_rx),
        ) as cur:
            vector = {log._device_keys[d].hex(): int(s) for d, s in await cur.fetchall()}
        await conn.execute(
            "INSERT OR REPLACE INTO checkpoints(plan_no, fold, upto_rx, events, vector, state)"
            " VALUES (?,?,?,?,?,?)",
            (
                plan_no,
                FOLD_VERSION,
                upto_rx,
                state.events,
                msgspec.json.encode(vector),
                snapshot(state),
            ),
        )


async def save_if_complete(log: EventLog, plan: bytes, state: PlanState) -> bool:
    """Record `state`, folded alongside a catch-up from an empty plan, as
    the plan's checkpoint if it holds every stored event of the plan (the
    counts match: nothing was stored beside the fold, by another process
    say); say whether it did. Checked and written in one transaction, so
    the checkpoint covers exactly the rows it counted. A fold of fewer than
    CHECKPOINT_EVERY events is not worth a checkpoint (`load_state`'s rule)."""
    if state.events <= CHECKPOINT_EVERY:
        return False
    plan_no = await log._known_plan_no(plan)
    if plan_no is None:
        return False
    async with log._tx() as conn:
        rows = list(
            await conn.execute_fetchall(
                "SELECT count(*), max(rx) FROM events WHERE plan_no=?", (plan_no,)
            )
        )
        count, top = rows[0]
        if count != state.events or top is None:
            return False
        vector_rows = await conn.execute_fetchall(
            "SELECT device_no, max(seq) FROM events WHERE plan_no=? GROUP BY device_no",
            (plan_no,),
        )
        vector = {log._device_keys[d].hex(): int(s) for d, s in vector_rows}
        await conn.execute(
            "INSERT OR REPLACE INTO checkpoints(plan_no, fold, upto_rx, events, vector, state)"
            " VALUES (?,?,?,?,?,?)",
            (
                plan_no,
                FOLD_VERSION,
                int(top),
                state.events,
                msgspec.json.encode(vector),
                snapshot(state),
            ),
        )
    return True
