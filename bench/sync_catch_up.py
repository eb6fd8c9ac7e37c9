"""Sync catch-up: a fresh client pulls a 100k-event plan from a real `vidda serve`.

The server is a subprocess (`vidda server init`, then `vidda serve --port 0`)
whose log holds the cached workload plan (4 authors, realistic edits, see
workload.py) plus the admin's enrolments; a new device (an enrolled editor
with an empty log, synchronous=FULL, a fresh file every run) connects over
loopback with the client's own `SyncEngine.run_once()`: handshake,
subscribe, catch-up batches of up to 1,000 events (each batch verified on
the fast path, stored in one transaction, then its cursor recorded), then
opens the plan with `EventLog.load_state` (fold of everything, and the
checkpoint it writes). Timed end to end from opening the empty log to the
projected state; the result is checked against the workload's own fold.

In the same run, on the same rows: plain sqlite3 `executemany` into a
table of the same shape (WAL, synchronous=FULL, one transaction per 1,000
rows), and one Ed25519 verification per event (`cryptography`), the two
costs a per-event design would pay. And the same catch-up done by
pycrdt-websocket: a fresh pycrdt `Doc` joins a room (served by
`pycrdt.websocket.WebsocketServer` under `websockets`, in a subprocess)
whose document has had the same number of updates applied (the same field
changes, one transaction each, as in rebuild.py), timed until the client's
document holds all of them. Target: >= 60k events/s end to end.
"""

from __future__ import annotations

import asyncio
import cProfile
import hashlib
import pstats
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import peers
from servers import ViddaServer, copy_home, copy_log, enrol, init_home, top_entries
from timing import OUT, fresh_heap, machine_line, median, parser, progress, say, table
from workload import GENERATOR_VERSION, Workload, field_changes, plan_log, read_raws, schema_tag

from core.events.envelope import open_event
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import canonical_bytes
from core.store.event_log import EventLog
from core.sync.messages import MAX_BATCH_EVENTS
from tui_client.sync_engine import SyncEngine

TARGET = 60_000
RAW_BATCH = 1_000
ROOM = "/bench-plan"
RAW_SCHEMA = """
CREATE TABLE events (
    rx INTEGER PRIMARY KEY, plan_no INTEGER NOT NULL, device_no INTEGER NOT NULL,
    seq INTEGER NOT NULL, hlc INTEGER NOT NULL, type_no INTEGER, data BLOB NOT NULL,
    UNIQUE (plan_no, device_no, seq)
);
"""


def bench_key(name: str) -> DeviceKey:
    return DeviceKey.from_seed(hashlib.sha256(f"vidda-bench-{name}".encode()).digest())


ADMIN = bench_key("admin")
READER = bench_key("reader")


# --- the server's data folder (cached) -----------------------------------------------------


def server_template(w: Workload) -> Path:
    """A server home whose log holds the workload and the enrolments (cached)."""
    home = OUT / f"sync-server-{w.events}-d{w.devices}-g{GENERATOR_VERSION}-s{schema_tag()}"
    if (home / "server.db").exists() and (home / "server.json").exists():
        return home
    progress(f"setting up a server home with {w.events:,} events (cached as {home})")
    tmp = home.with_name(f"{home.name}.building")
    if tmp.exists():
        shutil.rmtree(tmp)
    init_home(tmp, w.workspace, [ADMIN.public_key])
    copy_log(w.path, tmp / "server.db")
    members = [*(w.signer(i) for i in range(w.devices)), READER]
    asyncio.run(enrol(tmp / "server.db", w.workspace, ADMIN, members))
    tmp.rename(home)
    return home


# --- vidda ---------------------------------------------------------------------------------


async def vidda_catch_up(w: Workload, url: str, directory: Path) -> dict[str, Any]:
    """One fresh client: open an empty log, `run_once`, `load_state`."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    log = await EventLog.open(directory / "client.db", workspace=w.workspace)
    try:
        engine = SyncEngine(log, READER, url)
        status = await engine.run_once()
        t1 = time.perf_counter()
        state = await log.load_state(w.plan)
        t2 = time.perf_counter()
        cpu = time.process_time() - cpu0
    finally:
        await log.close()
    if status.state != "up_to_date" or status.rejected:
        raise SystemExit(f"catch-up failed: {status}")
    return {
        "sync": t1 - t0,
        "project": t2 - t1,
        "total": t2 - t0,
        "client_cpu": cpu,
        "received": status.received,
        "state": state,
    }


async def reference_state(w: Workload) -> bytes:
    log = await EventLog.open(w.path)
    try:
        return canonical_bytes(await log.rebuild_state(w.plan))
    finally:
        await log.close()


# --- the per-event baselines ---------------------------------------------------------------


Row = tuple[int, int, int, int, int | None, bytes]


def stored_rows(w: Workload) -> list[Row]:
    """The log's rows as stored (packed, see core.store.rows)."""
    conn = sqlite3.connect(f"file:{w.path}?mode=ro", uri=True)
    try:
        return [
            (int(p), int(d), int(s), int(h), t, bytes(r))
            for p, d, s, h, t, r in conn.execute(
                "SELECT plan_no, device_no, seq, hlc, type_no, data FROM events ORDER BY rx"
            )
        ]
    finally:
        conn.close()


def raw_insert(rows: list[Row], directory: Path) -> float:
    """Plain sqlite3: executemany, one transaction per 1,000 rows, WAL, FULL."""
    path = directory / "raw.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(RAW_SCHEMA)
        t0 = time.perf_counter()
        for start in range(0, len(rows), RAW_BATCH):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO events(plan_no, device_no, seq, hlc, type_no, data) "
                "VALUES (?,?,?,?,?,?)",
                rows[start : start + RAW_BATCH],
            )
            conn.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        conn.close()


async def ingest_in_process(w: Workload, raws: list[bytes], directory: Path) -> float:
    """`EventLog.ingest` of the same events in catch-up sized batches, straight
    into a fresh log (FULL): the client's store work without the network,
    the cursor records or the projection."""
    log = await EventLog.open(directory / "ingest.db", workspace=w.workspace)
    try:
        t0 = time.perf_counter()
        for start in range(0, len(raws), MAX_BATCH_EVENTS):
            await log.ingest(raws[start : start + MAX_BATCH_EVENTS])
        return time.perf_counter() - t0
    finally:
        await log.close()


def parse_strict(raws: list[bytes]) -> float:
    """`open_event(strict=True, verify=False)`: the per-event parse and checks
    (limits, NFC) ingest does before the chain's one signature."""
    t0 = time.perf_counter()
    for raw in raws:
        open_event(raw, verify=False, strict=True)
    return time.perf_counter() - t0


def verify_each(raws: list[bytes]) -> float:
    """One Ed25519 verification per event (`cryptography`), keys cached."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from core.events.envelope import decode_stored

    keys: dict[bytes, Ed25519PublicKey] = {}
    items = []
    for raw in raws:
        author = decode_stored(raw).env.author
        if author not in keys:
            keys[author] = Ed25519PublicKey.from_public_bytes(author)
        items.append((keys[author], raw))
    t0 = time.perf_counter()
    for key, raw in items:
        key.verify(raw[-64:], raw[:-64])
    return time.perf_counter() - t0


# --- pycrdt-websocket ----------------------------------------------------------------------


def pycrdt_updates(w: Workload) -> Path:
    """The workload's field changes as pycrdt updates (the cache rebuild.py uses)."""
    path = OUT / f"pycrdt-{w.events}-d{w.devices}-g{GENERATOR_VERSION}.updates"
    if not path.exists():
        progress(f"building the pycrdt updates of {w.events:,} changes (cached as {path})")
        peers.pycrdt_build(path, field_changes(read_raws(w.path)))
    return path


class WsChannel:
    """A `websockets` connection as a pycrdt `Channel`."""

    def __init__(self, ws: Any, path: str) -> None:
        self._ws = ws
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WsChannel:
        return self

    async def __anext__(self) -> bytes:
        from websockets.exceptions import ConnectionClosed

        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        await self._ws.send(message)

    async def recv(self) -> bytes:
        return bytes(await self._ws.recv())


async def pycrdt_serve(updates_path: Path) -> None:
    """The pycrdt-websocket server (run in a subprocess with --pycrdt-server):
    one room whose Doc has every update applied; prints its URL and the
    number of updates and entities, then serves until SIGTERM."""
    import pycrdt
    from pycrdt.websocket import WebsocketServer, YRoom
    from websockets.asyncio.server import serve

    updates = msgspec.msgpack.decode(updates_path.read_bytes(), type=list[bytes])
    doc: Any = pycrdt.Doc()
    for u in updates:
        doc.apply_update(u)
    entities = len(doc.get("plan", type=pycrdt.Map))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    async with WebsocketServer(auto_clean_rooms=False) as server:
        room = YRoom(ydoc=doc, ready=True)
        server.rooms[ROOM] = room
        await server.start_room(room)

        async def handler(ws: Any) -> None:
            await server.serve(WsChannel(ws, ws.request.path))

        async with serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as ws_server:
            port = ws_server.sockets[0].getsockname()[1]
            print(f"serving ws://127.0.0.1:{port}{ROOM} {len(updates)} {entities}", flush=True)
            await stop.wait()
            ws_server.close()


async def pycrdt_join(url: str, entities: int) -> float:
    """A fresh Doc joins the room; seconds until it holds the whole document."""
    import pycrdt
    from websockets.asyncio.client import connect

    t0 = time.perf_counter()
    async with connect(url, max_size=None, compression=None) as ws:
        doc: Any = pycrdt.Doc()
        async with pycrdt.Provider(doc, WsChannel(ws, ROOM)) as provider:
            await provider.synced.wait()
            got = len(doc.get("plan", type=pycrdt.Map))
            elapsed = time.perf_counter() - t0
    if got != entities:
        raise SystemExit(f"pycrdt client has {got} entities, the server {entities}")
    return elapsed


class PycrdtServer:
    def __init__(self, updates: Path) -> None:
        self.updates = updates

    def __enter__(self) -> PycrdtServer:
        cmd = [sys.executable, __file__, "--pycrdt-server", str(self.updates)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "serving":
            self.proc.kill()
            raise RuntimeError(f"the pycrdt server did not start: {line}")
        self.url, self.updates_count, self.entities = line[1], int(line[2]), int(line[3])
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


# --- profile -------------------------------------------------------------------------------


def profile_once(w: Workload, template: Path) -> None:
    """One catch-up with the client and the server under cProfile (to stderr)."""
    with tempfile.TemporaryDirectory(prefix="vidda-bench-catchup-") as d:
        home = copy_home(template, Path(d) / "server")
        server_prof = Path(d) / "server.prof"
        with ViddaServer(home, profile=server_prof) as server:
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(vidda_catch_up(w, server.url, Path(d)))
            prof.disable()
        for name, stats in (
            ("client", pstats.Stats(prof)),
            ("server", pstats.Stats(str(server_prof))),
        ):
            for sort in ("tottime", "cumulative"):
                progress(f"\n--- profile: {name}, top by {sort} ---")
                progress(top_entries(stats, sort, 25))


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    parse = parser(__doc__.splitlines()[0], events=100_000, quick_events=10_000, repeat=3)
    p = parse.parser  # type: ignore[attr-defined]
    p.add_argument("--no-pycrdt", action="store_true", help="skip the pycrdt-websocket run")
    p.add_argument(
        "--profile", action="store_true", help="also profile one catch-up (client and server)"
    )
    p.add_argument("--pycrdt-server", type=Path, help=argparse_suppress())
    args = parse()
    if args.pycrdt_server:
        asyncio.run(pycrdt_serve(args.pycrdt_server))
        return 0
    say(machine_line())
    w = plan_log(args.events)
    template = server_template(w)
    reference = asyncio.run(reference_state(w))
    rows = stored_rows(w)
    raws = read_raws(w.path)
    updates = None if args.no_pycrdt or not have_pycrdt_websocket() else pycrdt_updates(w)
    say(
        f"sync catch-up: {w.events:,} events of one plan by {w.devices} authors "
        f"({sum(map(len, raws)) / len(raws):.0f} B each), `vidda serve` subprocess, "
        f"loopback, {args.repeat} runs"
    )

    runs: list[dict[str, Any]] = []
    raw_t: list[float] = []
    verify_t: list[float] = []
    ingest_t: list[float] = []
    parse_t: list[float] = []
    pycrdt_t: list[float] = []
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="vidda-bench-catchup-") as d:
            home = copy_home(template, Path(d) / "server")
            with ViddaServer(home) as server:
                fresh_heap()
                cpu0 = server.cpu_seconds()
                run = asyncio.run(vidda_catch_up(w, server.url, Path(d)))
                run["server_cpu"] = server.cpu_seconds() - cpu0
                run["server_hwm_kb"] = server.status("VmHWM")
            if canonical_bytes(run.pop("state")) != reference:
                raise SystemExit("the client's projection differs from the workload's own fold")
            runs.append(run)
            fresh_heap()
            raw_t.append(raw_insert(rows, Path(d)))
            fresh_heap()
            ingest_t.append(asyncio.run(ingest_in_process(w, raws, Path(d))))
        fresh_heap()
        parse_t.append(parse_strict(raws))
        fresh_heap()
        verify_t.append(verify_each(raws))
        if updates is not None:
            with PycrdtServer(updates) as crdt:
                fresh_heap()
                pycrdt_t.append(asyncio.run(pycrdt_join(crdt.url, crdt.entities)))
        progress(
            f"  run {i + 1}: vidda {runs[-1]['total']:.2f} s "
            f"(sync {runs[-1]['sync']:.2f}, project {runs[-1]['project']:.2f}), "
            f"ingest alone {ingest_t[-1]:.2f} s, raw insert {raw_t[-1]:.2f} s, "
            f"verify each {verify_t[-1]:.2f} s"
            + (f", pycrdt {pycrdt_t[-1]:.2f} s" if pycrdt_t else "")
        )

    n = w.events
    total = median([r["total"] for r in runs])
    vidda_rate = n / total
    say()
    say(
        table(
            [
                [
                    f"{median([r[k] for r in runs]):.2f} s"
                    for k in ("sync", "project", "total", "client_cpu", "server_cpu")
                ]
                + [f"{median([r['server_hwm_kb'] for r in runs]) / 1024:,.0f} MB"]
            ],
            [
                "`run_once` (connect, catch up, verify, store)",
                "`load_state`",
                "total",
                "client CPU",
                "server CPU",
                "server peak RSS",
            ],
        )
    )
    say()
    results = [
        ("vidda: `SyncEngine.run_once` + `load_state`, end to end", total),
        ("vidda: `run_once` alone (no projection)", median([r["sync"] for r in runs])),
        (
            f"vidda: `EventLog.ingest` alone, {MAX_BATCH_EVENTS:,}-event batches, in process",
            median(ingest_t),
        ),
        (
            "vidda: `open_event(strict=True)` alone (parse, limits, NFC; part of ingest)",
            median(parse_t),
        ),
        (f"raw sqlite3 executemany, WAL, FULL, {RAW_BATCH:,} rows per commit", median(raw_t)),
        ("Ed25519 verify, one per event (`cryptography`)", median(verify_t)),
    ]
    if pycrdt_t:
        results.append(("pycrdt-websocket: a fresh Doc joins the room", median(pycrdt_t)))
    table_rows = []
    for label, seconds in results:
        table_rows.append(
            [
                label,
                f"{seconds:.2f} s",
                f"{n / seconds:,.0f}",
                f"{seconds / n * 1e6:.1f} µs",
                f"{vidda_rate / (n / seconds):.2f}",
            ]
        )
    say(table(table_rows, ["catch-up", "median", "events/s", "per event", "vidda ÷ this (rate)"]))
    say()
    received = median([r["received"] for r in runs])
    say(
        f"client received {received:,.0f} events (the plan and the membership log); "
        f"its projection matches the workload's fold"
    )
    if pycrdt_t:
        say(f"vidda / pycrdt-websocket: {vidda_rate / (n / median(pycrdt_t)):.2f}× the rate")
    say(
        f"target >= {TARGET:,} events/s end to end: {'met' if vidda_rate >= TARGET else 'NOT met'} "
        f"({vidda_rate:,.0f}/s)"
    )
    if args.profile:
        profile_once(w, template)
    return 0


def have_pycrdt_websocket() -> bool:
    try:
        import pycrdt.websocket  # noqa: F401
    except ImportError:
        progress("pycrdt-websocket is not installed: no pycrdt comparison (pip install it)")
        return False
    return True


def argparse_suppress() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
