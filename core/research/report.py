"""Research views of one plan, computed from its events (pure).

`plan_report(plan, events, members, received)` answers the researchers'
questions (DOMAIN.md, "Users") as JSON-ready data:

* `goals`: every revision of the societal goal, the desired result and the
  sub-goals (who, when, old -> new);
* `phases`: planned vs actual start and end, and the slip in days;
* `activities`: counts by kind, by mode and by status (live activities);
* `participants`: involvement participant counts by actor category;
* `actor_analysis`: the actor analysis as it stood when each phase began
  (its actual start, else its planned start; by the edits' device time) and
  at the end, with what changed in between (added, removed, reclassified);
* `edits_by_affiliation`: per month, events by the author's affiliation
  (`MemberAdded.affiliation`: municipality, adviser, researcher, other;
  `unknown` when not said or not a member);
* `offline`: how long this device's events took to reach the server (only
  this device's own events have a server-received time: sync acks);
* `conflicts`: every field that had several values, when it opened, and
  how it ended (resolved, superseded by an edit, still open);
* `events_per_month`: for the timeline.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from core.events.envelope import Event
from core.events.hlc import to_iso
from core.identity.membership import MemberInfo
from core.projections.history import changes, timeline
from core.projections.plan_state import FOLD_VERSION, PlanState, evolve
from core.projections.plan_view import view
from core.research.export import entity_of

GOAL_FIELDS = {
    ("plan", "societal_goal"),
    ("plan", "societal_goal_horizon"),
    ("plan", "desired_result"),
    ("plan", "desired_result_due"),
    ("plan", "desired_result_assessment"),
    ("sub_goal", "text"),
    ("sub_goal", "status"),
    ("sub_goal", "due"),
}
CLASSIFICATION = ("participation", "influence", "interest", "stance", "bellwether", "strategy")
OFFLINE_AFTER_MS = 5 * 60 * 1000  # a push later than this after the edit: made offline


def _days(a: str | None, b: str | None) -> int | None:
    if not a or not b:
        return None
    return (date.fromisoformat(b) - date.fromisoformat(a)).days


def _actors(state: PlanState) -> dict[str, dict[str, Any]]:
    out = {}
    for (kind, eid), ent in state.entities.items():
        if kind == "actor" and not ent.removed:
            out[eid.hex()] = {
                "name": ent.value("name"),
                "category": ent.value("category"),
                **{f: ent.value(f) for f in CLASSIFICATION},
            }
    return out


def _analysis(label: str, since: str | None, now: dict[str, Any], before: dict[str, Any]) -> Any:
    return {
        "phase": label,
        "as_of": since,
        "actors": len(now),
        "by_participation": dict(
            sorted(Counter(str(a["participation"]) for a in now.values()).items())
        ),
        "added": sorted(now[a]["name"] or a for a in set(now) - set(before)),
        "removed": sorted(before[a]["name"] or a for a in set(before) - set(now)),
        "reclassified": sorted(
            now[a]["name"] or a
            for a in set(now) & set(before)
            if any(now[a][f] != before[a][f] for f in CLASSIFICATION)
        ),
    }


def plan_report(
    plan: bytes,
    events: Iterable[Event],
    members: dict[bytes, MemberInfo],
    received: dict[tuple[bytes, bytes, int], int] | None = None,
) -> dict[str, Any]:
    line = timeline(e for e in events if e.env.plan == plan)
    received = received or {}

    def person(device: str) -> str | None:
        m = members.get(bytes.fromhex(device))
        return m.name if m else None

    goals = [
        {
            "time": c.time,
            "kind": c.kind,
            "entity": c.entity,
            "field": c.field,
            "old": c.old,
            "new": c.new,
            "person": person(c.author),
            "type": c.type,
        }
        for c in changes(line)
        if (c.kind, c.field) in GOAL_FIELDS
    ]

    # One pass of the fold: actor analysis at phase starts, conflicts.
    final = PlanState(plan)
    for ev in line:
        evolve(final, ev)
    shown = view(final)
    # By start date; phases with the same date (or none: "9999") stay in
    # the plan's order. Never compare the phases themselves (dicts).
    starts = sorted(
        (
            (p["fields"].get("actual_start") or p["fields"].get("planned_start") or "9999", p)
            for p in shown["phases"]
        ),
        key=lambda start_phase: start_phase[0],
    )
    state = PlanState(plan)
    snapshots: list[tuple[str, str | None, dict[str, Any]]] = []
    open_conflicts: dict[tuple[str, str, str], dict[str, Any]] = {}
    conflicts: list[dict[str, Any]] = []
    pending = list(starts)
    for ev in line:
        day = to_iso(ev.env.hlc)[:10]
        while pending and pending[0][0] <= day:
            start, phase = pending.pop(0)
            snapshots.append((phase["fields"].get("name", "?"), start, _actors(state)))
        evolve(state, ev)
        kind, hex_id = entity_of(ev)
        if kind is None or hex_id is None:
            continue
        ent = state.entity(kind, bytes.fromhex(hex_id))
        if ent is None:
            continue
        for name, fs in ent.fields.items():
            key = (kind, hex_id, name)
            if len(fs.heads) > 1 and key not in open_conflicts:
                open_conflicts[key] = {
                    "kind": kind,
                    "entity": hex_id,
                    "field": name,
                    "opened": to_iso(ev.env.hlc),
                    "values": len(fs.heads),
                }
            elif len(fs.heads) <= 1 and key in open_conflicts:
                c = open_conflicts.pop(key)
                c["closed"] = to_iso(ev.env.hlc)
                c["how"] = (
                    "resolved" if ev.env.type == "ConflictResolved" else "superseded by an edit"
                )
                c["by"] = person(ev.env.author.hex())
                conflicts.append(c)
    for start, phase in pending:
        snapshots.append((phase["fields"].get("name", "?"), start, _actors(state)))
    for c in open_conflicts.values():
        conflicts.append({**c, "closed": None, "how": "still open", "by": None})
    conflicts.sort(key=lambda c: (c["opened"], c["kind"], c["entity"], c["field"]))
    analysis = []
    before: dict[str, Any] = {}
    for name, start, actors in [*snapshots, ("(now)", None, _actors(final))]:
        analysis.append(_analysis(name, start if start != "9999" else None, actors, before))
        before = actors

    phases = []
    for p in shown["phases"]:
        f = p["fields"]
        phases.append(
            {
                "name": f.get("name"),
                "status": f.get("status"),
                "planned_start": f.get("planned_start"),
                "planned_end": f.get("planned_end"),
                "actual_start": f.get("actual_start"),
                "actual_end": f.get("actual_end"),
                "start_slip_days": _days(f.get("planned_start"), f.get("actual_start")),
                "end_slip_days": _days(f.get("planned_end"), f.get("actual_end")),
            }
        )
    acts = [a["fields"] for a in shown["activities"]]
    participants: Counter[str] = Counter()
    for inv in shown["involvement"]:
        count = inv["fields"].get("participants")
        if isinstance(count, int):
            participants[str(inv["fields"].get("category"))] += count

    by_month: dict[str, Counter[str]] = defaultdict(Counter)
    per_month: Counter[str] = Counter()
    for ev in line:
        month = to_iso(ev.env.hlc)[:7]
        m = members.get(ev.env.author)
        by_month[month][(m.affiliation if m else None) or "unknown"] += 1
        per_month[month] += 1
    affiliation = [
        {
            "month": month,
            "events": sum(counts.values()),
            **{k: v for k, v in sorted(counts.items())},
            "share_municipality": round(counts["municipality"] / sum(counts.values()), 3),
            "share_adviser": round(counts["adviser"] / sum(counts.values()), 3),
        }
        for month, counts in sorted(by_month.items())
    ]

    return {
        "plan": plan.hex(),
        "fold": FOLD_VERSION,
        "title": shown["fields"].get("title"),
        "municipality": shown["fields"].get("municipality"),
        "events": len(line),
        "first": to_iso(line[0].env.hlc) if line else None,
        "last": to_iso(line[-1].env.hlc) if line else None,
        "goals": goals,
        "phases": phases,
        "activities": {
            "by_kind": dict(sorted(Counter(str(a.get("kind")) for a in acts).items())),
            "by_mode": dict(sorted(Counter(str(a.get("mode")) for a in acts).items())),
            "by_status": dict(sorted(Counter(str(a.get("status")) for a in acts).items())),
        },
        "participants": dict(sorted(participants.items())),
        "actor_analysis": analysis,
        "edits_by_affiliation": affiliation,
        "offline": _offline(line, received, person),
        "conflicts": conflicts,
        "events_per_month": dict(sorted(per_month.items())),
    }


def _offline(
    line: list[Event], received: dict[tuple[bytes, bytes, int], int], person: Any
) -> dict[str, Any]:
    delays = []
    spells: dict[tuple[bytes, int], list[Event]] = defaultdict(list)
    for ev in line:
        got = received.get((ev.env.plan, ev.env.author, ev.env.seq))
        if got is None:
            continue
        delay = got - (ev.env.hlc >> 16)
        delays.append(delay)
        if delay > OFFLINE_AFTER_MS:
            spells[(ev.env.author, got)].append(ev)
    delays.sort()
    out = []
    for (author, got), evs in sorted(spells.items(), key=lambda kv: kv[0][1]):
        first = min(e.env.hlc for e in evs) >> 16
        out.append(
            {
                "person": person(author.hex()),
                "events": len(evs),
                "first_edit": to_iso(first << 16),
                "reached_server": to_iso(got << 16),
                "hours": round((got - first) / 3_600_000, 2),
            }
        )
    return {
        "events_with_server_time": len(delays),
        "median_delay_s": round(delays[len(delays) // 2] / 1000, 1) if delays else None,
        "max_delay_s": round(delays[-1] / 1000, 1) if delays else None,
        "spells": out,
        "limit": "server-received times are known only for this device's own events",
    }


def month_span(first: str, last: str) -> list[str]:
    """Every month YYYY-MM from `first` to `last` (inclusive)."""
    a = datetime.fromisoformat(first + "-01")
    b = datetime.fromisoformat(last + "-01")
    out = []
    y, m = a.year, a.month
    while (y, m) <= (b.year, b.month):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out
