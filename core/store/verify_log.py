"""`vidda verify`: re-check every stored byte of a log.

Checks, per chain: every event parses and passes the read-side limits; the
columns stored beside it (plan, device, seq, hlc) agree with its bytes;
links and signatures hold (fast path per chain, or every signature with
`full`). Plus SQLite's own integrity check. Names the first bad event of
each chain.
"""

from __future__ import annotations

import zlib

import msgspec

from core.events.envelope import Event, EventError, event_id, open_event
from core.events.verify import first_problem
from core.projections.history import timeline
from core.projections.plan_state import (
    PlanState,
    SnapshotMismatch,
    canonical_bytes,
    evolve,
    project,
)
from core.projections.plan_view import view
from core.store import id_index
from core.store.checkpoints import gc_paused
from core.store.event_log import EventLog
from core.store.time_travel import unpack_checkpoint


class ChainProblem(msgspec.Struct, frozen=True):
    plan: str
    device: str
    seq: int
    event: str | None
    reason: str
    message: str


class VerifyReport(msgspec.Struct):
    events: int = 0
    chains: int = 0
    problems: list[ChainProblem] = msgspec.field(default_factory=list)
    store_problems: list[str] = msgspec.field(default_factory=list)
    evidence: int = 0
    frozen_chains: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.store_problems


async def verify_log(log: EventLog, *, full: bool = False) -> VerifyReport:
    report = VerifyReport()
    report.store_problems = await log.integrity_problems()
    async for plan, device, rows in log.chains():
        report.chains += 1
        report.events += len(rows)
        events: list[Event] = []
        problem: ChainProblem | None = None
        for seq, hlc, raw in rows:
            try:
                ev = open_event(raw, verify=False, strict=True)
            except EventError as exc:
                problem = ChainProblem(
                    plan.hex(), device.hex(), seq, event_id(raw).hex(), exc.reason, str(exc)
                )
                break
            env = ev.env
            if (env.plan, env.author, env.seq, env.hlc) != (plan, device, seq, hlc):
                problem = ChainProblem(
                    plan.hex(),
                    device.hex(),
                    seq,
                    ev.id.hex(),
                    "column_mismatch",
                    "the stored columns disagree with the event bytes",
                )
                break
            if env.workspace != log.workspace:
                problem = ChainProblem(
                    plan.hex(),
                    device.hex(),
                    seq,
                    ev.id.hex(),
                    "wrong_workspace",
                    "event of another workspace",
                )
                break
            events.append(ev)
        found = first_problem(events, full=full)
        if found is not None and (problem is None or found.seq < problem.seq):
            problem = ChainProblem(
                plan.hex(),
                device.hex(),
                found.seq,
                found.event_id.hex() if found.event_id else None,
                found.reason,
                found.message,
            )
        if problem is not None:
            report.problems.append(problem)
    if report.ok:  # caches are only checked against a log that is itself sound
        report.store_problems += await _check_caches(log)
        report.store_problems += await id_index.check(log)
    report.evidence = len(await log.evidence())
    report.frozen_chains = len(await log.frozen_chains())
    return report


async def _check_caches(log: EventLog) -> list[str]:
    """Checkpoints are derived data, but what people see comes from them: each
    plan checkpoint must equal a rebuild from the log, and each time-line
    checkpoint must show what folding the time line up to it shows. A cache
    that does not is reported and dropped (the next open rebuilds it)."""
    problems = []
    for plan, _ in await log.plans():
        plan_no = await log._known_plan_no(plan)
        # The reference fold (`evolve` over decoded events), not the stored
        # fold that built the checkpoint (`evolve_stored`): verify checks one
        # against the other.
        with gc_paused():
            rebuilt = project(plan, await log.events(plan))
        cached = await log.load_state(plan, checkpoint=False)
        if canonical_bytes(cached) != canonical_bytes(rebuilt):
            problems.append(f"plan {plan.hex()}: checkpoint differs from the log; dropped")
            async with log._tx() as conn:
                await conn.execute("DELETE FROM checkpoints WHERE plan_no=?", (plan_no,))
        rows = await log._conn.execute_fetchall(
            "SELECT events, state FROM timeline_checkpoints WHERE plan_no=? ORDER BY events",
            (plan_no,),
        )
        if not rows:
            continue
        wanted = {int(n): bytes(blob) for n, blob in rows}
        state = PlanState(plan)
        bad = False
        for n, ev in enumerate(timeline(await log.events(plan)), start=1):
            evolve(state, ev)
            blob = wanted.get(n)
            if blob is not None and view(_restore_or_none(blob) or PlanState(plan)) != view(state):
                bad = True
                break
        if bad:
            problems.append(f"plan {plan.hex()}: time-line checkpoints differ; dropped")
            async with log._tx() as conn:
                await conn.execute("DELETE FROM timeline_checkpoints WHERE plan_no=?", (plan_no,))
    return problems


def _restore_or_none(blob: bytes) -> PlanState | None:
    try:
        return unpack_checkpoint(blob)
    except (SnapshotMismatch, msgspec.DecodeError, msgspec.ValidationError, zlib.error):
        return None
