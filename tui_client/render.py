"""Plain-text rendering of plan views, logs and reports for the terminal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.events.ids import short_ids
from core.projections.plan_view import view_ids

QUESTION_LABELS = {
    "q_who_are_we": "Hvem er vi?",
    "q_knowledge_base": "Hvilket kunnskapsgrunnlag har vi?",
    "q_where_to": "Hvor vil vi?",
    "q_what_we_do": "Hva gjør vi?",
    "q_resources": "Hvilke ressurser trenger vi?",
    "q_actors": "Hvilke aktører bør vi involvere?",
}


def short(hex_id: str | None, n: int = 8) -> str:
    return (hex_id or "")[:n]


def short_id_map(view: dict[str, Any]) -> Callable[[str | None], str]:
    """Shortest unique prefixes (≥ 8 digits) for every id shown in a plan view."""
    ids = set(view_ids(view)) | {c["entity"] for c in view["conflicts"]}
    table = {k.hex(): v for k, v in short_ids(bytes.fromhex(i) for i in ids).items()}

    def sid(hex_id: str | None) -> str:
        return table.get(hex_id or "", short(hex_id))

    return sid


def _val(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _mark(entity: dict[str, Any], field: str) -> str:
    return " ⚠" if field in entity.get("conflicts", ()) else ""


def render_plan(view: dict[str, Any], names: dict[str, str]) -> str:
    f = view["fields"]
    sid = short_id_map(view)
    plan_like = {"conflicts": view.get("plan_conflicts", [])}
    lines = []
    lines.append(f"{f.get('title', '(untitled)')}{_mark(plan_like, 'title')}")
    where = ", ".join(str(x) for x in (f.get("municipality"), f.get("county")) if x)
    lines.append(f"  {where} · plan {view['plan']}")
    lines.append(
        f"  status {_val(f.get('status'))} · {_val(f.get('kind'))} plan · "
        f"{_val(f.get('period_start'))} → {_val(f.get('period_end'))} · "
        f"themes: {_val(f.get('themes'))}"
    )
    if f.get("research_consent"):
        note = f.get("research_consent_note")
        lines.append(
            f"  research consent: {f['research_consent']}{' (' + note + ')' if note else ''}"
            f"{_mark(plan_like, 'research_consent')}"
        )
    lines.append("")
    lines.append(
        f"Samfunnsmål ({_val(f.get('societal_goal_horizon'))}): "
        f"{_val(f.get('societal_goal'))}{_mark(plan_like, 'societal_goal')}"
    )
    lines.append(
        f"Ønsket resultat (due {_val(f.get('desired_result_due'))}, "
        f"assessment {_val(f.get('desired_result_assessment'))}): "
        f"{_val(f.get('desired_result'))}{_mark(plan_like, 'desired_result')}"
    )
    answered = [(k, lab) for k, lab in QUESTION_LABELS.items() if f.get(k)]
    if answered:
        lines.append("Sentrale spørsmål:")
        for key, label in answered:
            lines.append(f"  {label} {f[key]}{_mark(plan_like, key)}")
    if view["sub_goals"]:
        lines.append("Delmål:")
        for sg in view["sub_goals"]:
            g = sg["fields"]
            lines.append(
                f"  [{sid(sg['id'])}] {_val(g.get('text'))} (due {_val(g.get('due'))}, "
                f"{_val(g.get('status'))}){' ⚠' if sg.get('conflicts') else ''}"
            )
    acts_by_phase: dict[str | None, list[dict[str, Any]]] = {}
    for act in view["activities"]:
        acts_by_phase.setdefault(act["fields"].get("phase"), []).append(act)
    needs_by_phase: dict[str | None, list[dict[str, Any]]] = {}
    for need in view["needs"]:
        needs_by_phase.setdefault(need["fields"].get("phase"), []).append(need)
    lines.append("Faser:")
    for n, phase in enumerate(view["phases"], 1):
        p = phase["fields"]
        lines.append(
            f"  {n}. [{sid(phase['id'])}] {_val(p.get('name'))}{_mark(phase, 'name')} · "
            f"{_val(p.get('status'))} · planned {_val(p.get('planned_start'))} → "
            f"{_val(p.get('planned_end'))} · actual {_val(p.get('actual_start'))} → "
            f"{_val(p.get('actual_end'))}"
        )
        for need in needs_by_phase.get(phase["id"], []):
            nf = need["fields"]
            lines.append(
                f"       {nf.get('kind')} need [{sid(need['id'])}]: {_val(nf.get('text'))} "
                f"({_val(nf.get('status'))}){' ⚠' if need.get('conflicts') else ''}"
            )
        for act in acts_by_phase.get(phase["id"], []):
            lines.append("       " + _activity(act, sid))
    orphans = acts_by_phase.get(None, []) + [
        a
        for k, v in acts_by_phase.items()
        if k not in {p["id"] for p in view["phases"]} and k
        for a in v
    ]
    if orphans:
        lines.append("  Activities without a phase:")
        for act in orphans:
            lines.append("       " + _activity(act, sid))
    if view["actors"]:
        lines.append("Aktøranalyse (participation · influence/interest · stance · strategy):")
        for actor in view["actors"]:
            a = actor["fields"]
            bell = " · bellwether" if a.get("bellwether") else ""
            pd = " · personal data" if a.get("personal_data") else ""
            lines.append(
                f"  [{sid(actor['id'])}] {_val(a.get('name'))} ({_val(a.get('category'))}) · "
                f"{_val(a.get('participation'))} · {_val(a.get('influence'))}/"
                f"{_val(a.get('interest'))} · {_val(a.get('stance'))} · "
                f"{_val(a.get('strategy'))}{bell}{pd}{' ⚠' if actor.get('conflicts') else ''}"
            )
    titles = {a["id"]: a["fields"].get("title") for a in view["activities"]}
    if view["involvement"]:
        lines.append("Medvirkning:")
        for inv in view["involvement"]:
            i = inv["fields"]
            lines.append(
                f"  [{sid(inv['id'])}] {_val(titles.get(i.get('activity'), i.get('activity')))}"
                f": {_val(i.get('category'))} {_val(i.get('participants'))}"
            )
    if view["decisions"]:
        lines.append("Vedtak:")
        for dec in view["decisions"]:
            d = dec["fields"]
            lines.append(
                f"  [{sid(dec['id'])}] {_val(d.get('date'))} {_val(d.get('body'))} "
                f"{_val(d.get('case_ref'))}: {_val(d.get('text'))}"
            )
    if view["notes"]:
        lines.append("Notater:")
        for note in view["notes"]:
            lines.append(f"  [{sid(note['id'])}] {_val(note['fields'].get('text'))}")
    if view["conflicts"]:
        lines.append(f"Konflikter ({len(view['conflicts'])}):")
        for c in view["conflicts"]:
            lines.append(f"  {c['kind']} {sid(c['entity'])} · {c['field']}:")
            for v in c["values"]:
                who = names.get(v["author"], sid(v["author"]))
                lines.append(f"    - {_val(v['value'])!r} by {who} at {v['time']}")
    if view["removed"]:
        lines.append(f"Removed ({len(view['removed'])}):")
        for ent in view["removed"]:
            label = (
                ent["fields"].get("title") or ent["fields"].get("name") or ent["fields"].get("text")
            )
            lines.append(f"  {ent['kind']} [{sid(ent['id'])}] {_val(label)}")
    if view["edited_after_removal"]:
        lines.append("Edited after removal:")
        for e in view["edited_after_removal"]:
            who = names.get(e["author"], sid(e["author"]))
            lines.append(
                f"  {e['kind']} [{sid(e['entity'])}] {e['field']} = {_val(e['value'])!r}"
                f" by {who} at {e['time']}"
            )
    if view["skipped_unknown_types"]:
        skipped = ", ".join(f"{k} ×{v}" for k, v in view["skipped_unknown_types"].items())
        lines.append(f"Skipped events of unknown types (newer vidda?): {skipped}")
    lines.append(f"({view['events']} events)")
    return "\n".join(lines)


def _activity(act: dict[str, Any], sid: Callable[[str | None], str]) -> str:
    a = act["fields"]
    return (
        f"activity [{sid(act['id'])}] {_val(a.get('date'))} {_val(a.get('title'))} "
        f"({_val(a.get('kind'))}, {_val(a.get('mode'))}, {_val(a.get('status'))}) "
        f"– {_val(a.get('responsible'))}{' ⚠' if act.get('conflicts') else ''}"
    )


def render_log(changes: list[dict[str, Any]], names: dict[str, str]) -> str:
    entities = {bytes.fromhex(c["entity"]) for c in changes if c["entity"]}
    table = {k.hex(): v for k, v in short_ids(entities).items()}
    lines = []
    for c in changes:
        who = names.get(c["author"], short(c["author"]))
        where = f"{c['kind']} {table.get(c['entity'], short(c['entity']))}" if c["kind"] else ""
        if c["field"] is not None:
            old = " | ".join(repr(v) for v in c["old"]) if c["old"] else "∅"
            what = f"{where}.{c['field']}: {old} → {c['new']!r}"
        else:
            what = where
        note = f"  ({c['note']})" if c.get("note") else ""
        lines.append(f"{c['time']}  {who:<12} {c['type']:<22} {what}{note}")
    return "\n".join(lines)
