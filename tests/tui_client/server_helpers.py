"""Helpers for end-to-end tests against a real sync server.

`Server` is a real `vidda serve --home DIR` process: started (it prints
`serving ws://HOST:PORT` on stdout once listening), asked over HTTP
(`/healthz`, `/metrics`), stopped with a signal and restarted on the same
home and port. `SyncProcess` is a continuous `vidda sync --json` in the
background (one JSON status line per change on stdout). Both write their
output to files beside the home, so a failure message can show it and
nothing blocks on a full pipe; both are context managers that leave no
process behind.

Everything is polled with short timeouts (`wait_until`), not slept.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import select
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .cli_helpers import VIDDA, Arg, vidda_env, vidda_json

T = TypeVar("T")

START_TIMEOUT = 15.0  # a cold start imports websockets, msgspec, sqlite…
STOP_TIMEOUT = 10.0
_SERVING = re.compile(r"^serving (wss?://(\S+):(\d+))$", re.MULTILINE)
_runs = itertools.count(1)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str | Callable[[], str] = "",
) -> T:
    """Poll `predicate` until it returns something truthy (returned); fail
    with `what` (a string, or called for one) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = what() if callable(what) else what
            raise AssertionError(f"not within {timeout:.1f} s: {message or predicate}")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for a server that must come
    back on the same port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def server_init(home: Path, workspace: str, *admins: str) -> dict[str, Any]:
    """`vidda server init --home HOME --workspace WS --admin KEY… --json`."""
    args: list[Arg] = ["server", "init", "--workspace", workspace]
    for admin in admins:
        args += ["--admin", admin]
    out: dict[str, Any] = vidda_json(home, *args, passphrase=None)
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {'name{labels}': value} (comments left out)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-n:]
    except FileNotFoundError:
        return ""


def _signal_and_wait(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> tuple[int, float]:
    """Send `sig`, wait for the exit; (exit code, seconds). On a timeout the
    process is killed and the test fails."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"{' '.join(map(str, proc.args[len(VIDDA) :]))} did not exit within {timeout} s "
            f"of signal {sig}"
        ) from None
    return code, time.monotonic() - started


class Server:
    """A `vidda serve --home HOME` process (see the module docstring)."""

    def __init__(self, home: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.home = home
        self.host = host
        self.port = port  # 0 until the first start picked one
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.last_exit: int | None = None
        self.last_stop_seconds = 0.0
        self._out = self._err = home
        self._files: list[Any] = []

    # --- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        """Start on `self.port` (0 the first time: any free port) and wait
        until it says it is serving."""
        assert not self.running, "already running"
        run = next(_runs)
        self._out = self.home.parent / f"{self.home.name}-serve{run}.out"
        self._err = self.home.parent / f"{self.home.name}-serve{run}.err"
        out, err = self._out.open("wb"), self._err.open("wb")
        self._files = [out, err]
        self.proc = subprocess.Popen(
            [
                *VIDDA,
                "serve",
                "--home",
                str(self.home),
                "--host",
                self.host,
                "--port",
                f"{self.port}",
            ],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=vidda_env(passphrase=None),
            cwd=self.home.parent,
        )
        self.starts += 1
        found = wait_until(self._serving_line, timeout, what=self.describe)
        self.url = found.group(1)
        port = int(found.group(3))
        assert self.port in (0, port), f"asked for port {self.port}, got {port}"
        self.port = port
        return self

    def _serving_line(self) -> re.Match[str] | None:
        found = _SERVING.search(_tail(self._out))
        if found is None and self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"vidda serve exited early:\n{self.describe()}")
        return found

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        """Signal the server, wait for it to exit; its exit code. A clean
        stop logs `shutting down` and has no traceback."""
        assert self.proc is not None and self.running, "not running"
        self.last_exit, self.last_stop_seconds = _signal_and_wait(self.proc, sig, timeout)
        self._close_files()
        assert "Traceback" not in _tail(self._err, 100_000), self.describe()
        return self.last_exit

    def restart(self, timeout: float = START_TIMEOUT) -> Server:
        """Stop (if running) and start again on the same home and port."""
        if self.running:
            assert self.stop() == 0, self.describe()
        return self.start(timeout)

    def close(self) -> None:
        """Leave nothing behind (teardown): kill if still running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_files()

    def _close_files(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> Server:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- looking at it ----------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET over plain HTTP on the sync port: (status, body)."""
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read().decode("utf-8", errors="replace")

    def metrics(self) -> dict[str, float]:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse_metrics(body)

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines of every run so far (stderr), oldest first."""
        lines: list[dict[str, Any]] = []
        for path in sorted(self.home.parent.glob(f"{self.home.name}-serve*.err")):
            for line in _tail(path, 10_000_000).splitlines():
                if line.startswith("{"):
                    lines.append(json.loads(line))
        return lines

    def db_rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Query the server's log (server.db, WAL: fine while it runs)."""
        conn = sqlite3.connect(self.home / "server.db", timeout=5)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def describe(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        return (
            f"vidda serve --home {self.home} (port {self.port}, exit {code})\n"
            f"stdout: {_tail(self._out)}\nstderr: {_tail(self._err)}"
        )


@contextlib.contextmanager
def running_server(home: Path, port: int = 0) -> Iterator[Server]:
    """`with running_server(home) as server:` → a serving `Server`, killed
    on the way out if the test did not stop it."""
    server = Server(home, port)
    try:
        yield server.start()
    finally:
        server.close()


class SyncProcess:
    """A continuous `vidda --home HOME sync [--server URL] --json` in the background."""

    def __init__(self, home: Path, server: str | None = None) -> None:
        self.home = home
        self.server = server
        run = next(_runs)
        self._out = home.parent / f"{home.name}-sync{run}.out"
        self._err = home.parent / f"{home.name}-sync{run}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self._files: list[Any] = []
        self._signalled = 0.0

    def start(self) -> SyncProcess:
        out, err = self._out.open("wb"), self._err.open("wb")
        self._files = [out, err]
        args = [*VIDDA, "--home", str(self.home), "sync", "--json"]
        if self.server:
            args += ["--server", self.server]
        self.proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=vidda_env(),
            cwd=self.home.parent,
        )
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def statuses(self) -> list[dict[str, Any]]:
        """Every complete status line so far (a torn last line waits), so
        `len(statuses())` is a stable position for `wait_status(since=…)`."""
        text = _tail(self._out, 10_000_000)
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    def wait_status(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 10.0,
        what: str = "",
        since: int = 0,
    ) -> dict[str, Any]:
        """The first status line matching `predicate`, from line `since` on
        (`len(statuses())` taken before the change looked for); waits for it."""

        def found() -> dict[str, Any] | None:
            if not self.running:
                raise AssertionError(f"vidda sync exited:\n{self.describe()}")
            return next((s for s in self.statuses()[since:] if predicate(s)), None)

        return wait_until(found, timeout, what=lambda: f"{what}\n{self.describe()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> tuple[int, float]:
        """Signal it and wait: (exit code, seconds it took)."""
        self.signal(sig)
        return self.wait(timeout)

    def signal(self, sig: int) -> None:
        """Send `sig` (then `wait`): several processes can be stopped at once."""
        assert self.proc is not None and self.running, self.describe()
        self._signalled = time.monotonic()
        self.proc.send_signal(sig)

    def wait(self, timeout: float = STOP_TIMEOUT) -> tuple[int, float]:
        """Wait for the exit after `signal`: (exit code, seconds since the signal).
        Killed, and the test fails, if it does not exit within `timeout`."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=max(0.0, self._signalled + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.close()
            raise AssertionError(f"did not exit within {timeout} s of the signal") from None
        self._close_files()
        assert "Traceback" not in _tail(self._err), self.describe()
        return code, time.monotonic() - self._signalled

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_files()

    def _close_files(self) -> None:
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self) -> SyncProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        code = None if self.proc is None else self.proc.poll()
        return (
            f"vidda --home {self.home} sync (exit {code})\n"
            f"stdout: {_tail(self._out, 1500)}\nstderr: {_tail(self._err)}"
        )


class ServerProcess:
    """`vidda --home DIR serve --port 0` in its own process; stderr (JSON log
    lines) goes to a file beside the home."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.db = home / "server.db"
        self.log_path = home.parent / f"{home.name}-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        assert self.proc is None
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen(
                [*VIDDA, "--home", str(self.home), "serve", "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=vidda_env(passphrase=None),
                cwd=self.home.parent,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30.0)
        line = self.proc.stdout.readline().decode() if ready else ""
        if not line.startswith("serving ws://"):
            self.kill9()
            raise AssertionError(f"the server did not start: {line!r}\n{self.log_tail()}")
        self.port = int(line.strip().rsplit(":", 1)[1])
        return self

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text("utf-8", errors="replace")[-n:]

    def _reap(self) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        return code

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self._reap()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal it (SIGTERM by default), and the exit code."""
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            return self._reap()
        except subprocess.TimeoutExpired:
            self.kill9()
            raise

    def wait_idle(self, timeout: float = 30) -> None:
        """Until no connection is open: what a cut link had delivered is
        processed (committed or dropped) by then."""
        deadline = time.monotonic() + timeout
        while self.metrics()["vidda_connections"] > 0:
            assert time.monotonic() < deadline, "a connection stays open on the server"
            time.sleep(0.02)

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def rss(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return str(r.read().decode())
