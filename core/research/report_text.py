"""A plan report as plain text, with terminal charts (pure: strings only).

`timeline_chart`: events per month as bars. `gantt_chart`: each phase's
planned (`-`) and actual (`#`) span on one month scale.
"""

from __future__ import annotations

from typing import Any

from core.research.report import month_span

WIDTH = 40


def timeline_chart(per_month: dict[str, int], width: int = WIDTH) -> list[str]:
    if not per_month:
        return ["  (no events)"]
    months = month_span(min(per_month), max(per_month))
    top = max(per_month.values())
    out = []
    for m in months:
        n = per_month.get(m, 0)
        bar = "#" * max(1 if n else 0, n * width // top)
        out.append(f"  {m}  {bar:<{width}} {n}")
    return out


def gantt_chart(phases: list[dict[str, Any]]) -> list[str]:
    dates = [
        p[k][:7]
        for p in phases
        for k in ("planned_start", "planned_end", "actual_start", "actual_end")
        if p.get(k)
    ]
    if not dates:
        return ["  (no phase dates)"]
    months = month_span(min(dates), max(dates))
    index = {m: i for i, m in enumerate(months)}
    name_w = max(len(str(p["name"])) for p in phases)
    out = [f"  {'':<{name_w}}  {months[0]} … {months[-1]} (one column a month)"]
    for p in phases:
        for label, a, b, mark in (
            ("plan", p.get("planned_start"), p.get("planned_end"), "-"),
            ("done", p.get("actual_start"), p.get("actual_end"), "#"),
        ):
            row = [" "] * len(months)
            if a:
                end = b or (months[-1] if mark == "#" else a)
                for i in range(index[a[:7]], index[end[:7]] + 1):
                    row[i] = mark
            name = str(p["name"]) if label == "plan" else ""
            out.append(f"  {name:<{name_w}}  {''.join(row)}  {label}")
    return out


def render_report(r: dict[str, Any]) -> str:
    lines = [
        f"{r['title']} ({r['municipality']}) · plan {r['plan'][:12]} · {r['events']} events "
        f"{r['first'] or ''} → {r['last'] or ''} · fold {r['fold']}",
        "",
        "Goal, desired result and sub-goals over time:",
    ]
    for g in r["goals"] or []:
        old = " | ".join(str(v) for v in g["old"]) or "∅"
        lines.append(
            f"  {g['time'][:16]} {g['kind']}.{g['field']} by {g['person'] or '?'}: "
            f"{_short(old)} → {_short(str(g['new']))}"
        )
    lines += ["", "Phases, planned vs actual (slip in days):"]
    for p in r["phases"]:
        lines.append(
            f"  {p['name']}: {p['status']}; planned {p['planned_start']} → {p['planned_end']}, "
            f"actual {p['actual_start']} → {p['actual_end']}"
            f" (start {_slip(p['start_slip_days'])}, end {_slip(p['end_slip_days'])})"
        )
    lines += gantt_chart(r["phases"])
    acts = r["activities"]
    lines += ["", "Activities:"]
    for key in ("by_kind", "by_mode", "by_status"):
        lines.append(f"  {key.replace('_', ' ')}: " + _counts(acts[key]))
    lines += ["", "Participants by actor category: " + _counts(r["participants"])]
    lines += ["", "Actor analysis at the start of each phase (by when edits were made):"]
    for a in r["actor_analysis"]:
        lines.append(
            f"  {a['phase']} ({a['as_of'] or '-'}): {a['actors']} actors "
            f"[{_counts(a['by_participation'])}]; +{len(a['added'])} -{len(a['removed'])} "
            f"~{len(a['reclassified'])} reclassified"
        )
    lines += ["", "Edits by affiliation per month (municipality / adviser share):"]
    for m in r["edits_by_affiliation"]:
        lines.append(
            f"  {m['month']}: {m['events']} events, municipality {m['share_municipality']:.0%}, "
            f"adviser {m['share_adviser']:.0%}"
        )
    off = r["offline"]
    lines += [
        "",
        f"Offline spells ({off['limit']}): {off['events_with_server_time']} events with a "
        f"server time, median delay {off['median_delay_s']} s, max {off['max_delay_s']} s",
    ]
    for s in off["spells"]:
        lines.append(
            f"  {s['person'] or '?'}: {s['events']} events from {s['first_edit'][:16]}, "
            f"reached the server {s['reached_server'][:16]} ({s['hours']} h)"
        )
    lines += ["", f"Conflicts: {len(r['conflicts'])}"]
    for c in r["conflicts"]:
        lines.append(
            f"  {c['kind']}.{c['field']} ({c['entity'][:8]}) opened {c['opened'][:16]}: "
            f"{c['how']}" + (f" {c['closed'][:16]} by {c['by'] or '?'}" if c["closed"] else "")
        )
    lines += ["", "Events per month:", *timeline_chart(r["events_per_month"])]
    return "\n".join(lines)


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _slip(days: int | None) -> str:
    return "-" if days is None else f"{days:+d}"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"
