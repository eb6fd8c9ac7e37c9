"""A real `vidda serve` in a subprocess, for the sync benchmarks.

`server_home` sets up a server's data folder the way an operator does
(`vidda server init --home DIR --workspace … --admin …`) and fills its log
before the server starts (the log is what the server would have received).
`ViddaServer` runs `vidda serve --home DIR --port 0` (optionally under
cProfile), reads the URL it prints, and reports the process's CPU time and
peak RSS (VmHWM) from /proc; SIGTERM stops it the way an operator does.
"""

from __future__ import annotations

import io
import os
import pstats
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from core.events.bodies import MemberAdded
from core.identity.keyfile import DeviceKey
from core.store.event_log import EventLog

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def vidda_command() -> list[str]:
    """How to run the `vidda` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "vidda"
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "tui_client.cli"]


def init_home(home: Path, workspace: bytes, admins: list[bytes]) -> None:
    """`vidda server init` (the CLI, as an operator runs it)."""
    cmd = [*vidda_command(), "--home", str(home), "server", "init", "--json"]
    cmd += ["--workspace", workspace.hex()]
    for admin in admins:
        cmd += ["--admin", admin.hex()]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def copy_log(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite log (WAL included) via the backup API."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


async def enrol(db: Path, workspace: bytes, admin: DeviceKey, members: list[DeviceKey]) -> None:
    """The admin's `MemberAdded` events, written straight into the server's
    log (what `vidda member add` + a sync would have put there)."""
    log = await EventLog.open(db, workspace=workspace)
    try:
        bodies = [
            MemberAdded(device=m.public_key, name=f"bench {i}", role="editor")
            for i, m in enumerate(members)
        ]
        for start in range(0, len(bodies), 500):
            await log.append(admin, workspace, bodies[start : start + 500])
    finally:
        await log.close()
    checkpoint_wal(db)


def checkpoint_wal(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def copy_home(template: Path, target: Path) -> Path:
    """A private copy of a prepared server home (server.json + server.db)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("server.json", "server.db"):
        shutil.copyfile(template / name, target / name)
    return target


class ViddaServer:
    """`vidda serve --home DIR --port 0` in a subprocess."""

    def __init__(self, home: Path, *, profile: Path | None = None) -> None:
        self.home = home
        self.profile = profile
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.hung_on_stop = False  # SIGTERM did not stop it within 30 s (killed)

    def start(self) -> ViddaServer:
        cmd = vidda_command()
        if self.profile is not None:
            cmd = [sys.executable, "-m", "cProfile", "-o", str(self.profile), *cmd[1:]]
        cmd += ["--home", str(self.home), "serve", "--port", "0"]
        self.stderr = open(self.home / "serve.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self.stderr, text=True, bufsize=1
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("serving "):
            self.stop()
            raise RuntimeError(
                f"vidda serve did not start: {line!r}; see {self.home / 'serve.log'}"
            )
        self.url = line.split()[1]
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def status(self, key: str) -> int:
        """A kB figure of /proc/PID/status (VmHWM: peak RSS, VmRSS: now)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.hung_on_stop = True
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()
        self.proc = None

    def __enter__(self) -> ViddaServer:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def top_entries(stats: pstats.Stats, sort: str, limit: int = 25) -> str:
    """The top `limit` rows of a profile, sorted by `sort` (tottime, cumulative)."""
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(limit)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(lines[start:])
