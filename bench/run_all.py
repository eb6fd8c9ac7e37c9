"""Run every benchmark figure in turn (`make bench`); `--quick` for a smoke run.

Each script runs in its own interpreter (so one figure's heap does not slow
the next) and prints its own machine line and tables; this runner adds the
wall time of each and exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "append_latency.py",
    "rebuild.py",
    "verify.py",
    "bytes_per_event.py",
    "as_of.py",
    "sync_catch_up.py",
    "sync_fanout.py",
    "export.py",
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run of every script")
    p.add_argument("--only", default="", help="comma-separated script names to run")
    args = p.parse_args()
    chosen = [s for s in SCRIPTS if not args.only or s.removesuffix(".py") in args.only.split(",")]
    failed = []
    for script in chosen:
        print(f"\n## {script}\n", flush=True)
        cmd = [sys.executable, str(HERE / script)] + (["--quick"] if args.quick else [])
        started = time.perf_counter()
        code = subprocess.call(cmd, cwd=HERE.parent)
        print(f"\n({script}: {time.perf_counter() - started:,.0f} s, exit {code})", flush=True)
        if code:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
