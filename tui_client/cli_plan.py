"""`vidda plan …` and `vidda log`: create, show, edit and trace plans."""

from __future__ import annotations

import argparse
import re
from typing import Any

from core.commands import edits
from core.events.hlc import from_iso
from core.events.ids import IdError, resolve_prefix
from core.events.schema import ENTITY_FIELDS, is_reference, parse_text_value
from core.projections.history import changes, timeline
from core.projections.plan_state import PlanState
from core.projections.plan_view import view
from core.store.event_log import EventLog
from core.store.time_travel import Key, key_at_time, key_of, state_as_of
from tui_client.cli import ProgressBar, UsageError, emit_json
from tui_client.home import Home
from tui_client.render import render_log, render_plan

KIND_ALIASES = {
    "phase": "phase",
    "phases": "phase",
    "fase": "phase",
    "need": "need",
    "needs": "need",
    "knowledge-need": "need",
    "process-need": "need",
    "activity": "activity",
    "activities": "activity",
    "aktivitet": "activity",
    "actor": "actor",
    "actors": "actor",
    "aktør": "actor",
    "sub-goal": "sub_goal",
    "sub_goal": "sub_goal",
    "subgoal": "sub_goal",
    "delmål": "sub_goal",
    "involvement": "involvement",
    "medvirkning": "involvement",
    "decision": "decision",
    "decisions": "decision",
    "vedtak": "decision",
    "note": "note",
    "notes": "note",
    "notat": "note",
}
# Which kind an id-valued field must point at (`target` of a note may be any).
REFERENCE_KINDS = {"phase": "phase", "activity": "activity", "sub_goal": "sub_goal"}
PLAN_FIELD_ALIASES = {
    "goal": "societal_goal",
    "societal-goal": "societal_goal",
    "result": "desired_result",
    "desired-result": "desired_result",
    "who_are_we": "q_who_are_we",
    "knowledge_base": "q_knowledge_base",
    "where_to": "q_where_to",
    "what_we_do": "q_what_we_do",
    "resources": "q_resources",
    "actors": "q_actors",
}


def register(sub: Any) -> None:
    plan = sub.add_parser("plan", help="create, list, show and edit process plans")
    psub = plan.add_subparsers(dest="plan_command", metavar="ACTION", required=True)

    p = psub.add_parser("new", help="create a plan (with the default phases)")
    p.add_argument("--municipality", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--county")
    p.add_argument("--no-template", action="store_true", help="start without the default phases")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_new)

    p = psub.add_parser("list", help="the plans in this store")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_list)

    p = psub.add_parser("show", help="the whole plan, conflicts included")
    p.add_argument("plan")
    p.add_argument(
        "--as-of",
        help="ISO time (no zone: UTC; a date alone: its first moment, 00:00) or event id "
        "(prefix): the plan as it was then",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_show)

    p = psub.add_parser("set", help="set a plan-level field (title, societal_goal, …)")
    p.add_argument("plan")
    p.add_argument("field")
    p.add_argument("value")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_set)

    p = psub.add_parser("add", help="add a phase, need, activity, actor, … (--FIELD VALUE …)")
    p.add_argument("plan")
    p.add_argument("kind", help=", ".join(sorted(set(KIND_ALIASES.values()))))
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_add, accepts_fields=True)

    p = psub.add_parser("update", help="change fields of an entity (--FIELD VALUE …)")
    p.add_argument("plan")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_update, accepts_fields=True)

    p = psub.add_parser("remove", help="remove an entity (a tombstone event)")
    p.add_argument("plan")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_remove)

    p = psub.add_parser("resolve", help="resolve a conflict: one value replaces all heads")
    p.add_argument("plan")
    p.add_argument("id", help="entity id (prefix), or the plan id for plan fields")
    p.add_argument("field")
    p.add_argument("value")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_resolve)

    p = psub.add_parser("consent", help="record research consent for the plan: given or withdrawn")
    p.add_argument("plan")
    p.add_argument("consent", choices=("given", "withdrawn"))
    p.add_argument("--note", help="on what terms, by whose decision (e.g. a case reference)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_consent)

    p = sub.add_parser("log", help="who changed what, when: old → new")
    p.add_argument("plan")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_log)


# --- helpers -----------------------------------------------------------------------------


async def resolve_plan(log: EventLog, prefix: str) -> bytes:
    return resolve_prefix(prefix, [p for p, _ in await log.plans()], "plan")


def resolve_entity(state: PlanState, prefix: str) -> tuple[str, bytes]:
    ids = {eid for (kind, eid) in state.entities if kind != "plan"} | {state.plan}
    eid = resolve_prefix(prefix, ids, "entity")
    return ("plan", eid) if eid == state.plan else (edits.find_entity(state, eid), eid)


def parse_field_args(extra: list[str]) -> dict[str, str]:
    """`--field value` / `--field=value` pairs from the leftover arguments."""
    out: dict[str, str] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--"):
            raise UsageError(f"expected --FIELD VALUE, got {token!r}")
        name, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise UsageError(f"--{name} needs a value")
            value = extra[i + 1]
            i += 1
        out[name.replace("-", "_")] = value
        i += 1
    if not out:
        raise UsageError("give at least one --FIELD VALUE")
    return out


def typed_values(state: PlanState, kind: str, texts: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, text in texts.items():
        if field not in ENTITY_FIELDS[kind]:
            known = ", ".join(sorted(ENTITY_FIELDS[kind]))
            raise edits.EditError(f"{kind} has no field {field!r} (fields: {known})")
        if is_reference(kind, field):
            if text.strip().lower() in ("", "none", "-"):
                out[field] = None
                continue
            ref_kind, ref = resolve_entity(state, text)
            wanted = REFERENCE_KINDS.get(field)
            if wanted is not None and ref_kind != wanted:
                raise edits.EditError(f"--{field} must name a {wanted}, not a {ref_kind}")
            out[field] = ref
        else:
            out[field] = parse_text_value(kind, field, text)
    return out


async def append_and_report(
    home: Home, log: EventLog, plan: bytes, bodies: list[Any], as_json: bool, new_id: bytes | None
) -> int:
    events = await log.append(home.signer(), plan, bodies)
    if as_json:
        emit_json({"id": new_id.hex() if new_id else None, "events": [e.id.hex() for e in events]})
    elif new_id is not None:
        print(new_id.hex())
    else:
        print(f"recorded {len(events)} event(s): " + ", ".join(e.id.hex()[:12] for e in events))
    return 0


async def names_for(home: Home, log: EventLog) -> dict[str, str]:
    """Device key (hex) -> person, from the membership log; this device is "you"."""
    prof = home.profile()
    names = {m.device.hex(): m.name for m in (await home.membership(log)).members()}
    names[prof.device] = f"{prof.name} (you)"
    return names


# --- commands ----------------------------------------------------------------------------


async def cmd_new(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    fields = {"county": args.county} if args.county else {}
    plan, bodies = edits.new_plan(
        title=args.title, municipality=args.municipality, template=not args.no_template, **fields
    )
    log = await home.open_log()
    try:
        await log.append(home.signer(), plan, bodies)
    finally:
        await log.close()
    if args.json:
        emit_json({"plan": plan.hex()})
    else:
        print(plan.hex())
    return 0


async def cmd_list(args: argparse.Namespace, extra: list[str]) -> int:
    log = await args.home_dir.open_log()
    try:
        rows = []
        for plan, count in await log.plans():
            state = await log.load_state(plan)
            ent = state.entity("plan", plan)
            v = view(state)
            rows.append(
                {
                    "plan": plan.hex(),
                    "title": ent.value("title") if ent else None,
                    "municipality": ent.value("municipality") if ent else None,
                    "status": ent.value("status") if ent else None,
                    "events": count,
                    "conflicts": len(v["conflicts"]),
                    "phases_done": sum(
                        1 for p in v["phases"] if p["fields"].get("status") == "done"
                    ),
                    "phases": len(v["phases"]),
                }
            )
    finally:
        await log.close()
    if args.json:
        emit_json(rows)
    elif not rows:
        print("no plans yet: `vidda plan new --municipality NAME --title TITLE`")
    else:
        for r in rows:
            print(
                f"{r['plan'][:12]}  {r['municipality'] or '?':<14} {r['title'] or '(untitled)'}"
                f"  [{r['phases_done']}/{r['phases']} phases done, {r['events']} events"
                f"{', ' + str(r['conflicts']) + ' conflicts' if r['conflicts'] else ''}]"
            )
    return 0


def _is_iso(spec: str) -> bool:
    """True for a valid ISO date or time such as 20210128 (an event prefix
    may be all digits too: 00863392 is no date, so it is an event)."""
    try:
        from_iso(spec)
    except ValueError:
        return False
    return True


async def as_of_key(log: EventLog, plan: bytes, spec: str) -> Key:
    """The time-line key for `--as-of`: an event id (prefix) means that event
    and everything before it; an ISO time means every event stamped at or
    before it."""
    looks_like_date = re.fullmatch(r"\d{4}|\d{8}", spec) is not None and _is_iso(spec)
    if re.fullmatch(r"[0-9a-fA-F]{4,64}", spec) and not looks_like_date:
        events = await log.events_with_id_prefix(plan, spec)
        try:
            target = resolve_prefix(spec, [e.id for e in events], "event")
        except IdError as exc:
            if "ambiguous" in str(exc):
                raise
        else:
            return next(key_of(e) for e in events if e.id == target)
    try:
        return key_at_time(from_iso(spec) | 0xFFFF)
    except ValueError:
        raise UsageError(f"--as-of {spec!r} is neither an ISO time nor an event id") from None


async def show_plan(home: Home, plan_prefix: str | bytes, as_of: str | None, as_json: bool) -> None:
    log = await home.open_log()
    try:
        plan = (
            plan_prefix if isinstance(plan_prefix, bytes) else await resolve_plan(log, plan_prefix)
        )
        if as_of:
            bar = ProgressBar()  # the first query of a large plan builds the time line
            try:
                state = await state_as_of(log, plan, await as_of_key(log, plan, as_of), bar)
            finally:
                bar.close()
        else:
            state = await log.load_state(plan)
        names = await names_for(home, log)
    finally:
        await log.close()
    data = view(state)
    if as_of:
        data["as_of"] = as_of
    if as_json:
        emit_json(data)
    else:
        print(render_plan(data, names))


async def cmd_show(args: argparse.Namespace, extra: list[str]) -> int:
    await show_plan(args.home_dir, args.plan, args.as_of, args.json)
    return 0


async def _edit(args: argparse.Namespace, build: Any) -> int:
    home: Home = args.home_dir
    log = await home.open_log()
    try:
        plan = await resolve_plan(log, args.plan)
        state = await log.load_state(plan)
        bodies, new_id = build(state)
        return await append_and_report(home, log, plan, bodies, args.json, new_id)
    finally:
        await log.close()


async def cmd_set(args: argparse.Namespace, extra: list[str]) -> int:
    field = PLAN_FIELD_ALIASES.get(args.field, args.field).replace("-", "_")

    def build(state: PlanState) -> tuple[list[Any], None]:
        values = typed_values(state, "plan", {field: args.value})
        return edits.set_fields(state, "plan", state.plan, values), None

    return await _edit(args, build)


async def cmd_add(args: argparse.Namespace, extra: list[str]) -> int:
    kind = KIND_ALIASES.get(args.kind.lower())
    if kind is None:
        raise UsageError(
            f"unknown kind {args.kind!r}; kinds: {', '.join(sorted(set(KIND_ALIASES.values())))}"
        )
    texts = parse_field_args(extra)

    def build(state: PlanState) -> tuple[list[Any], bytes]:
        entity_id, body = edits.add_entity(state, kind, typed_values(state, kind, texts))
        return [body], entity_id

    return await _edit(args, build)


async def cmd_update(args: argparse.Namespace, extra: list[str]) -> int:
    texts = parse_field_args(extra)

    def build(state: PlanState) -> tuple[list[Any], None]:
        kind, eid = resolve_entity(state, args.id)
        if kind == "plan":
            texts2 = {PLAN_FIELD_ALIASES.get(k, k): v for k, v in texts.items()}
            return edits.set_fields(state, kind, eid, typed_values(state, kind, texts2)), None
        return edits.set_fields(state, kind, eid, typed_values(state, kind, texts)), None

    return await _edit(args, build)


async def cmd_remove(args: argparse.Namespace, extra: list[str]) -> int:
    def build(state: PlanState) -> tuple[list[Any], None]:
        kind, eid = resolve_entity(state, args.id)
        return [edits.remove_entity(state, kind, eid)], None

    return await _edit(args, build)


async def cmd_resolve(args: argparse.Namespace, extra: list[str]) -> int:
    def build(state: PlanState) -> tuple[list[Any], None]:
        kind, eid = resolve_entity(state, args.id)
        field = PLAN_FIELD_ALIASES.get(args.field, args.field) if kind == "plan" else args.field
        value = typed_values(state, kind, {field: args.value})[field]
        return [edits.resolve(state, kind, eid, field, value)], None

    return await _edit(args, build)


async def cmd_consent(args: argparse.Namespace, extra: list[str]) -> int:
    def build(state: PlanState) -> tuple[list[Any], None]:
        return [edits.record_consent(state, given=args.consent == "given", note=args.note)], None

    return await _edit(args, build)


async def cmd_log(args: argparse.Namespace, extra: list[str]) -> int:
    home: Home = args.home_dir
    log = await home.open_log()
    try:
        plan = await resolve_plan(log, args.plan)
        events = await log.events(plan)
        names = await names_for(home, log)
    finally:
        await log.close()
    rows = [{f: getattr(c, f) for f in c.__struct_fields__} for c in changes(timeline(events))]
    if args.json:
        emit_json(rows)
    else:
        print(render_log(rows, names))
    return 0
