"""What every benchmark script shares: the machine line, the flags, the statistics.

Each script prints `machine_line()` first, so a figure pasted anywhere says
where it came from. Statistics are medians over repeated runs (the machine
is shared and noisy); p99 is nearest-rank over all samples.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def machine_line() -> str:
    """Platform, Python, CPU count and SQLite version, on one line."""
    try:
        load = "load {:.2f}/{:.2f}/{:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load n/a"
    return (
        f"machine: {platform.platform()} | {platform.python_implementation()} "
        f"{platform.python_version()} | {os.cpu_count()} CPUs | "
        f"SQLite {sqlite3.sqlite_version} | {load} | {time.strftime('%Y-%m-%d %H:%M:%S')}"
    )


def parser(
    description: str, *, events: int, quick_events: int, repeat: int
) -> Callable[[], argparse.Namespace]:
    """Common flags: --quick, --events N, --repeat R. Returns a parse function
    that fills `args.events` and `args.repeat` with the defaults for the mode."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    p.add_argument("--events", type=int, default=None, help=f"events (default {events:,})")
    p.add_argument("--repeat", type=int, default=None, help=f"repetitions (default {repeat})")

    def parse() -> argparse.Namespace:
        args = p.parse_args()
        if args.events is None:
            args.events = quick_events if args.quick else events
        if args.repeat is None:
            args.repeat = 1 if args.quick else repeat
        return args

    parse.parser = p  # type: ignore[attr-defined]
    return parse


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then `t[0]` is the elapsed seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


def fresh_heap() -> None:
    """Collect garbage before a timed run so one run's litter does not bill the next."""
    gc.collect()


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "inf"


def table(rows: list[list[str]], header: list[str]) -> str:
    """A markdown table (pasteable into docs/performance.md)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def say(*parts: object) -> None:
    print(*parts, flush=True)


def progress(text: str) -> None:
    """Progress notes go to stderr so stdout stays the report."""
    print(text, file=sys.stderr, flush=True)
