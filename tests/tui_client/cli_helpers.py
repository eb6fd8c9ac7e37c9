"""Helpers for end-to-end tests of the `vidda` command line.

Every test runs the real program in its own process (the venv's `vidda`
console script; `python -m tui_client.cli` if there is none) against real
SQLite files in temporary homes (`--home`). The passphrase comes from
VIDDA_PASSPHRASE, as in scripts; nothing reads a terminal.

Each process costs ~0.3 s of CPU (mostly imports) plus ~0.1 s of scrypt when
it signs, so the module fixtures build their scenarios once and launch
independent commands side by side (`vidda_parallel`).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.projections.plan_view import view_ids
from core.store.rows import StoredEvent, read_events

# Non-ASCII on purpose: the key file must round-trip a Norwegian/Sámi passphrase.
PASSPHRASE = "Blåbærsyltetøy på ŋuorra-skiferen"
# The console script, as a user runs it (it lives beside the interpreter in the venv).
_SCRIPT = Path(sys.executable).with_name("vidda")
VIDDA = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "tui_client.cli"]
VIDDA_MODULE = [sys.executable, "-m", "tui_client.cli"]
TIMEOUT = 60

Arg = str | Path


# Byte-compiled modules are cached outside the repository, so each process
# does not recompile vidda from source (PYTHONDONTWRITEBYTECODE may be set).
PYCACHE = Path(tempfile.gettempdir()) / "vidda-e2e-pycache"


def vidda_env(passphrase: str | None = PASSPHRASE, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDDA_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    if passphrase is not None:
        env["VIDDA_PASSPHRASE"] = passphrase
    env.update(extra)
    return env


def _argv(home: Path | None, args: Sequence[Arg]) -> list[str]:
    head = [*VIDDA, "--home", str(home)] if home is not None else list(VIDDA)
    return head + [str(a) for a in args]


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"$ vidda {' '.join(proc.args[len(VIDDA) :])}\n-> exit {proc.returncode}\n"
        f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-2000:]}"
    )


def vidda(
    home: Path | None,
    *args: Arg,
    check: bool = True,
    passphrase: str | None = PASSPHRASE,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `vidda --home HOME ARGS…`; with `check`, insist on exit 0."""
    proc = subprocess.run(
        _argv(home, args),
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env if env is not None else vidda_env(passphrase),
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
        cwd=(home.parent if home is not None else None),
    )
    assert "Traceback" not in proc.stderr, _describe(proc)
    if check:
        assert proc.returncode == 0, _describe(proc)
    return proc


def vidda_json(home: Path | None, *args: Arg, check: bool = True, **kw: Any) -> Any:
    """Run with `--json` appended and return the decoded output."""
    proc = vidda(home, *args, "--json", check=check, **kw)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"not JSON:\n{_describe(proc)}")


def vidda_parallel(
    *commands: tuple[Path, Sequence[Arg]] | tuple[Path, Sequence[Arg], dict[str, str]],
    check: bool = True,
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands side by side; results in the given order.
    A command is (home, args) or (home, args, env)."""
    procs = [
        subprocess.Popen(
            _argv(cmd[0], cmd[1]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=cmd[2] if len(cmd) > 2 else vidda_env(),  # type: ignore[misc]
            cwd=cmd[0].parent,
        )
        for cmd in commands
    ]
    results = []
    for p in procs:
        with p:
            out, err = p.communicate(timeout=TIMEOUT)
        results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    for r in results:
        assert "Traceback" not in r.stderr, _describe(r)
        if check:
            assert r.returncode == 0, _describe(r)
    return results


def assert_one_line_error(
    proc: subprocess.CompletedProcess[str], code: int | None = 1, *needles: str
) -> str:
    """The documented error shape: exit `code` (any non-zero if None), one
    line on stderr starting with `vidda:`, naming every needle."""
    if code is None:
        assert proc.returncode != 0, _describe(proc)
    else:
        assert proc.returncode == code, _describe(proc)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, _describe(proc)
    assert lines[0].startswith("vidda:"), _describe(proc)
    for needle in needles:
        assert needle.lower() in lines[0].lower(), _describe(proc)
    return lines[0]


# --- looking at a store from the outside --------------------------------------------------


def db_rows(home: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Query a home's log directly (only while no vidda process runs)."""
    conn = sqlite3.connect(home / "vidda.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def event_count(home: Path) -> int:
    return int(db_rows(home, "SELECT count(*) FROM events")[0][0])


PLAN_EVENTS = (
    "FROM events JOIN plans USING (plan_no) "
    "WHERE plan_id != (SELECT value FROM meta WHERE key = 'workspace')"
)


def plan_event_count(home: Path) -> int:
    """Events of plans, leaving out the workspace's membership log."""
    return int(db_rows(home, f"SELECT count(*) {PLAN_EVENTS}")[0][0])


def stored_events(home: Path, where: str = "", params: Sequence[Any] = ()) -> list[StoredEvent]:
    """A home's events with their signed bytes (only while no vidda process runs)."""
    conn = sqlite3.connect(home / "vidda.db")
    try:
        return read_events(conn, where, params)
    finally:
        conn.close()


def db_chains(db: Path) -> dict[tuple[bytes, bytes], list[tuple[int, bytes]]]:
    """Every chain of a log file: (plan, device) -> [(seq, raw)…] by seq."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        events = read_events(conn)
    finally:
        conn.close()
    out: dict[tuple[bytes, bytes], list[tuple[int, bytes]]] = {}
    for e in events:
        out.setdefault((e.plan, e.device), []).append((e.seq, e.raw))
    for rows in out.values():
        rows.sort()
    return out


def stored_raws(home: Path) -> set[bytes]:
    return {e.raw for e in stored_events(home)}


def unique_prefix(hex_id: str, all_ids: Sequence[str], minimum: int = 4) -> str:
    """The shortest prefix of `hex_id` that no other id shares (≥ minimum)."""
    others = [i for i in set(all_ids) if i != hex_id]
    for n in range(minimum, len(hex_id) + 1):
        if not any(o.startswith(hex_id[:n]) for o in others):
            return hex_id[:n]
    return hex_id


def plan_ids(view: dict[str, Any]) -> list[str]:
    """Every id a plan view shows (the candidates for an entity prefix)."""
    return view_ids(view)


# --- devices ------------------------------------------------------------------------------


@dataclass
class Device:
    home: Path
    workspace: str
    device: str
    name: str

    def run(self, *args: Arg, **kw: Any) -> subprocess.CompletedProcess[str]:
        return vidda(self.home, *args, **kw)

    def json(self, *args: Arg, **kw: Any) -> Any:
        return vidda_json(self.home, *args, **kw)

    def clone(self, home: Path) -> Device:
        """A byte copy of this home (same key): a second replica to import into."""
        shutil.copytree(self.home, home)
        return Device(home, self.workspace, self.device, self.name)


def init_device(home: Path, name: str, workspace: str | None = None) -> Device:
    args: list[Arg] = ["init", "--name", name]
    if workspace:
        args += ["--workspace", workspace]
    out = vidda_json(home, *args)
    assert out["name"] == name
    return Device(home, out["workspace"], out["device"], name)


NewDevice = Callable[..., Device]  # the `new_device` fixture: (name, workspace=None) -> Device
