"""Research consent per plan, and what an export holds without it (pure).

Consent is the plan field `research_consent`, set by `ResearchConsentGiven`
and `ResearchConsentWithdrawn` (each replaces the consent events its author
had seen). A plan's events go into an export only when every head of that
field says `given`: never given, withdrawn last, or given and withdrawn
concurrently (a conflict nobody has resolved) all mean *no*, because
withdrawing must win over a grant its author had not seen.

Without consent an export holds only aggregate counts of the plan
(`aggregate_rows`): events per type and month, entities per kind (live and
removed), participants per actor category and the number of authoring
devices. No text, no id but the plan's, no time finer than a month.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from core.events.envelope import Event
from core.events.hlc import to_iso
from core.projections.plan_state import PlanState

GIVEN, WITHDRAWN, NONE = "given", "withdrawn", "none"


def consent_of(state: PlanState) -> str:
    """`given`, `withdrawn` (withdrawn last, or concurrently with a grant) or
    `none` (never given)."""
    ent = state.entity("plan", state.plan)
    fs = ent.fields.get("research_consent") if ent is not None else None
    if fs is None or not fs.heads:
        return NONE
    values = {head.value for head in fs.heads.values()}
    return GIVEN if values == {GIVEN} else WITHDRAWN


def aggregate_rows(
    plan: bytes, consent: str, events: Iterable[Event], state: PlanState
) -> list[tuple[Any, ...]]:
    """The rows of the `aggregates` table for one plan exported without
    consent: (plan_id, consent, measure, month, key, value), sorted."""
    per_month: Counter[tuple[str, str]] = Counter()
    devices: set[bytes] = set()
    for ev in events:
        per_month[(to_iso(ev.env.hlc)[:7], ev.env.type)] += 1
        devices.add(ev.env.author)
    live: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    participants: Counter[str] = Counter()
    for (kind, _), ent in state.entities.items():
        if kind == "plan":
            continue
        (removed if ent.removed else live)[kind] += 1
        if kind == "involvement" and not ent.removed:
            count = ent.value("participants")
            if isinstance(count, int):
                participants[str(ent.value("category"))] += count
    p = plan.hex()
    rows: list[tuple[Any, ...]] = [
        (p, consent, "events", month, type_, n) for (month, type_), n in per_month.items()
    ]
    rows += [(p, consent, "entities", None, kind, n) for kind, n in live.items()]
    rows += [(p, consent, "removed_entities", None, kind, n) for kind, n in removed.items()]
    rows += [(p, consent, "participants", None, cat, n) for cat, n in participants.items()]
    rows.append((p, consent, "devices", None, None, len(devices)))
    return sorted(rows, key=lambda r: (r[2], r[3] or "", r[4] or ""))
