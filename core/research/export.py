"""What a research export holds, derived from signed events alone (pure).

An export is a pure function of its `Source`: the exact signed bytes of the
events, the workspace's admin keys (who may sign membership, so who is
which person), and the server-received times this device was told in
sync acknowledgements (the one input that is not signed). `derive` turns a
source into `Derived`: the events in a fixed order with their decoded
bodies and the projection's field diffs, and the rows of every table of
`core.research.codebook.TABLES`. The writers (`core.research.writers`)
turn those into bytes; `verify_export` derives again from the signed bytes
it finds in an export and compares, so every derived byte is checked.

Order, so that the same events always give the same bytes: plans by id,
and within a plan the shared time line (HLC, device, seq), the same on
every replica (receive order is not).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from core.events.bodies import ROLE_MEMBERSHIP
from core.events.envelope import Event, UnknownBody, decode_stored
from core.events.hlc import to_iso
from core.identity.membership import MemberInfo, Membership
from core.projections.history import Change, changes, timeline
from core.projections.plan_state import FOLD_VERSION, PlanState, project
from core.projections.plan_view import entity_view
from core.research.codebook import ENTITY_TABLE_KINDS, TABLE_BY_NAME
from core.research.consent import GIVEN, NONE, aggregate_rows, consent_of

EXPORT_VERSION = "research-export/1"

Progress = Callable[[str, int, int], None]  # (stage, done, total)

# (plan, device, seq) -> server-received ms
ReceivedTimes = dict[tuple[bytes, bytes, int], int]


class Source(msgspec.Struct):
    """Everything an export is derived from."""

    workspace: bytes
    admins: list[bytes]
    raws: list[bytes]
    received: ReceivedTimes = msgspec.field(default_factory=dict)
    # Rows of the `aggregates` table read back from an export (verify-export):
    # the events they count are not in the export, so they cannot be derived.
    aggregates: list[tuple[Any, ...]] = msgspec.field(default_factory=list)


class ChainHead(msgspec.Struct, frozen=True):
    plan: bytes
    device: bytes
    seq: int
    head: bytes  # event id of the chain's last exported event


class Record(msgspec.Struct, frozen=True, gc=False):
    """One exported event and what the projection says it changed."""

    event: Event
    changes: list[Change]
    received_ms: int | None


class Derived(msgspec.Struct):
    workspace: bytes
    admins: list[bytes]
    records: list[Record]
    members: dict[bytes, MemberInfo]
    heads: list[ChainHead]
    plans: list[bytes]  # sorted; the membership log's id (= workspace) among them if exported
    tables: dict[str, list[tuple[Any, ...]]]
    consent: dict[bytes, str] = msgspec.field(default_factory=dict)  # plan -> consent
    aggregated: dict[bytes, int] = msgspec.field(default_factory=dict)  # plan -> events counted
    mode: str = "full"  # full | pseudonymised | anonymised (core.research.privacy)
    redactor: Any = None  # a core.research.privacy.Redactor when mode is not full


def _noop(stage: str, done: int, total: int) -> None:
    return None


def ms_to_iso(ms: int) -> str:
    return to_iso(ms << 16)


def iso_to_ms(text: str) -> int:
    """Exact inverse of `ms_to_iso` (integer arithmetic, no float rounding)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def hexify(value: Any) -> Any:
    """Builtins with every bytes value as lowercase hex (ids, keys)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [hexify(v) for v in value]
    if isinstance(value, dict):
        return {k: hexify(v) for k, v in value.items()}
    return value


def body_builtins(event: Event) -> Any:
    body = event.body
    if isinstance(body, UnknownBody):
        return hexify(msgspec.to_builtins(body.data, builtin_types=(bytes,)))
    return hexify(msgspec.to_builtins(body, builtin_types=(bytes,)))


_json = msgspec.json.Encoder(order="deterministic")


def json_text(value: Any) -> str:
    return _json.encode(value).decode()


def derive(source: Source, progress: Progress = _noop) -> Derived:
    """Decode, order, fold and tabulate `source` (no I/O)."""
    total = len(source.raws)
    by_plan: dict[bytes, list[Event]] = defaultdict(list)
    for i, raw in enumerate(source.raws):
        ev = decode_stored(raw)
        by_plan[ev.env.plan].append(ev)
        if i % 20_000 == 0:
            progress("decode", i, total)
    progress("decode", total, total)

    membership = Membership.of(source.workspace, source.admins, by_plan.get(source.workspace, ()))
    members = {m.device: m for m in membership.members()}

    records: list[Record] = []
    heads: list[ChainHead] = []
    tables: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLE_BY_NAME}
    consent: dict[bytes, str] = {}
    aggregated: dict[bytes, int] = {}
    timelines = {plan: timeline(by_plan[plan]) for plan in sorted(by_plan)}
    states: dict[bytes, PlanState] = {}
    done = 0
    for plan, events in timelines.items():
        if plan != source.workspace:
            states[plan] = project(plan, events)
            consent[plan] = consent_of(states[plan])
        done += len(events)
        progress("fold", done, total)
    # The membership log names everyone in the workspace: it goes with the
    # plans, so if no plan may be studied it is counted only, like them, and
    # the members table is empty (as a verifier deriving from no events
    # finds it).
    studied = GIVEN in consent.values()
    if not studied:
        members = {}
    if source.workspace in timelines and not studied:
        events = timelines.pop(source.workspace)
        aggregated[source.workspace] = len(events)
        tables["aggregates"] += aggregate_rows(
            source.workspace, NONE, events, project(source.workspace, events)
        )
    for plan, events in timelines.items():
        if plan == source.workspace:
            diff: dict[bytes, list[Change]] = {}
        else:
            state = states[plan]
            if consent[plan] != GIVEN:
                aggregated[plan] = len(events)
                tables["aggregates"] += aggregate_rows(plan, consent[plan], events, state)
                continue
            diff = defaultdict(list)
            for ch in changes(events):
                diff[bytes.fromhex(ch.event)].append(ch)
            _state_rows(plan, state, tables)
        for ev in events:
            env = ev.env
            records.append(
                Record(ev, diff.get(ev.id, []), source.received.get((plan, env.author, env.seq)))
            )
        heads.extend(_chain_rows(plan, events, members, tables))

    tables["aggregates"] += source.aggregates
    _event_rows(records, members, tables)
    _history_rows(records, members, tables)
    tables["members"] = [
        (
            m.device.hex(),
            m.name,
            m.role,
            m.affiliation,
            m.admin,
            m.revoked,
            json_text([p.hex() for p in m.plans]),
        )
        for m in sorted(members.values(), key=lambda m: m.device)
    ]
    return Derived(
        workspace=source.workspace,
        admins=sorted(source.admins),
        records=records,
        members=members,
        heads=heads,
        plans=sorted(by_plan),
        tables=tables,
        consent=consent,
        aggregated=aggregated,
    )


def counted_only(derived: Derived, plan: bytes) -> str:
    """Why `plan` is exported as aggregate counts only, in words."""
    if plan == derived.workspace:
        return f"membership log {plan.hex()}: no exported plan has research consent"
    return f"plan {plan.hex()}: research consent {derived.consent[plan]}"


def _person(members: dict[bytes, MemberInfo], device: bytes) -> tuple[str | None, str | None]:
    m = members.get(device)
    return (m.name, m.role) if m is not None else (None, None)


def entity_of(ev: Event) -> tuple[str | None, str | None]:
    body = ev.body
    if isinstance(body, UnknownBody) or body.ROLE == ROLE_MEMBERSHIP:
        return None, None
    return body.entity_kind(), body.entity_id(ev.env.plan).hex()


def _chain_rows(
    plan: bytes,
    events: list[Event],
    members: dict[bytes, MemberInfo],
    tables: dict[str, list[tuple[Any, ...]]],
) -> list[ChainHead]:
    chains: dict[bytes, list[Event]] = defaultdict(list)
    for ev in events:
        chains[ev.env.author].append(ev)
    out = []
    for device in sorted(chains):
        chain = sorted(chains[device], key=lambda e: e.env.seq)
        last = chain[-1]
        out.append(ChainHead(plan, device, last.env.seq, last.id))
        tables["chains"].append(
            (
                plan.hex(),
                device.hex(),
                _person(members, device)[0],
                len(chain),
                last.id.hex(),
                to_iso(chain[0].env.hlc),
                to_iso(last.env.hlc),
            )
        )
    return out


def _event_rows(
    records: list[Record],
    members: dict[bytes, MemberInfo],
    tables: dict[str, list[tuple[Any, ...]]],
) -> None:
    rows = tables["events"]
    for rec in records:
        ev, env = rec.event, rec.event.env
        person, role = _person(members, env.author)
        kind, entity = entity_of(ev)
        rows.append(
            (
                ev.id.hex(),
                env.plan.hex(),
                env.author.hex(),
                person,
                role,
                env.seq,
                env.prev.hex(),
                env.hlc,
                to_iso(env.hlc),
                ms_to_iso(rec.received_ms) if rec.received_ms is not None else None,
                env.type,
                kind,
                entity,
                json_text(body_builtins(ev)),
                ev.raw,
            )
        )


def _history_rows(
    records: list[Record],
    members: dict[bytes, MemberInfo],
    tables: dict[str, list[tuple[Any, ...]]],
) -> None:
    for rec in records:
        env = rec.event.env
        person = _person(members, env.author)[0]
        for ch in rec.changes:
            if ch.kind is None or ch.kind not in ENTITY_TABLE_KINDS:
                continue
            tables[f"{ch.kind}_history"].append(
                (
                    ch.event,
                    env.plan.hex(),
                    ch.entity,
                    ch.author,
                    person,
                    ch.seq,
                    ch.hlc,
                    ch.time,
                    ch.type,
                    ch.field,
                    json_text(ch.old),
                    json_text(ch.new) if ch.field is not None else None,
                    ch.note,
                )
            )


def _state_rows(plan: bytes, state: PlanState, tables: dict[str, list[tuple[Any, ...]]]) -> None:
    for (kind, eid), ent in sorted(state.entities.items()):
        if kind not in ENTITY_TABLE_KINDS:
            continue
        table = TABLE_BY_NAME[kind]
        shown = entity_view(ent)
        fields = shown["fields"]
        lead: tuple[Any, ...] = (plan.hex(),) if kind != "plan" else ()
        values = []
        for col in table.columns[len(lead) + 4 :]:
            value = fields.get(col.name)
            if col.type == "json" and value is not None:
                value = json_text(value)
            values.append(value)
        tables[kind].append(
            (
                *lead,
                eid.hex(),
                ent.created.hex() if ent.created else None,
                ent.removed,
                json_text(shown.get("conflicts", [])),
                *values,
            )
        )


def projection_versions() -> dict[str, str]:
    return {"fold": FOLD_VERSION, "export": EXPORT_VERSION}
