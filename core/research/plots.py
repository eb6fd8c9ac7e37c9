"""Report figures as PNG or SVG bytes: the events timeline and the phase
Gantt (planned vs actual). matplotlib (`vidda[research]`) is imported only
here, with the Agg backend (no display), and only when a figure is drawn.
"""

from __future__ import annotations

import io
from datetime import date
from typing import Any

from core.research.report import month_span


class PlotsUnavailable(Exception):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable("plots need matplotlib: pip install 'vidda[research]'") from None
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "vidda"  # stable SVG ids
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, fmt: str) -> bytes:
    buf = io.BytesIO()
    meta = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(buf, format=fmt, metadata=meta, bbox_inches="tight")
    return buf.getvalue()


def timeline_figure(report: dict[str, Any], fmt: str = "png") -> bytes:
    plt = _pyplot()
    per_month = report["events_per_month"]
    months = month_span(min(per_month), max(per_month)) if per_month else []
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(range(len(months)), [per_month.get(m, 0) for m in months], color="#3b6ea5")
    ax.set_xticks(range(len(months)), months, rotation=60, fontsize=7)
    ax.set_ylabel("events")
    ax.set_title(f"{report['title']}: events per month")
    try:
        return _save(fig, fmt)
    finally:
        plt.close(fig)


PLANNED, ACTUAL = "#bbbbbb", "#2e7d32"


def gantt_bars(report: dict[str, Any]) -> list[tuple[float, int, int, str]]:
    """(row, first day as an ordinal, days, colour) of each bar, phases from
    the top. A phase under way (started, not ended) runs to the report's
    last event, as in the terminal chart; a planned phase with no end is
    one day."""
    phases = report["phases"]
    last = (report.get("last") or "")[:10]
    bars = []
    for i, p in enumerate(reversed(phases)):
        for a, b, color, dy in (
            (p["planned_start"], p["planned_end"], PLANNED, 0.15),
            (p["actual_start"], p["actual_end"], ACTUAL, -0.15),
        ):
            if not a:
                continue
            if not b:
                b = max(a, last) if color == ACTUAL and last else a
            start = date.fromisoformat(a[:10]).toordinal()
            end = date.fromisoformat(b[:10]).toordinal()
            bars.append((i + dy, start, max(end - start, 1), color))
    return bars


def gantt_figure(report: dict[str, Any], fmt: str = "png") -> bytes:
    plt = _pyplot()
    phases = report["phases"]
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.5 * max(1, len(phases))))
    for row, start, days, color in gantt_bars(report):
        ax.barh(row, days, left=start, height=0.28, color=color)
    ax.set_yticks(range(len(phases)), [str(p["name"]) for p in reversed(phases)], fontsize=8)
    ticks = ax.get_xticks()
    ax.set_xticks(
        ticks,
        [date.fromordinal(int(t)).isoformat()[:7] if t >= 1 else "" for t in ticks],
        fontsize=7,
    )
    ax.set_title(f"{report['title']}: phases, planned (grey) vs actual (green)")
    try:
        return _save(fig, fmt)
    finally:
        plt.close(fig)
