"""Sync under faults, with real processes and real SQLite files.

* a link cut in the middle of a batch (a TCP proxy in the test that drops
  the connection after N bytes: a real cut, nobody killed) resumes on the
  next sync with nothing lost and nothing doubled;
* `kill -9` of a `vidda sync` client in the middle of a sync, many times:
  its log always verifies, and the next sync converges;
* `kill -9` of the server in the middle of ingest, many times: every event
  the server acknowledged (the client's `sync_acks`) is there after restart,
  and the server's log verifies.

Thousands of events are written straight into a home's `vidda.db` with the
device's key (core APIs, as test_cli_durability does), not one CLI call per
edit. The fast tier runs 5 rounds of each kill; VIDDA_SYNC_STRESS=1 runs
more; VIDDA_SYNC_SEED picks another (reproducible) sequence of cut points.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

from core.commands.edits import new_plan
from core.events.bodies import MemberAdded, NoteWritten
from core.events.envelope import seal
from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey, load_key
from core.store.event_log import EventLog
from core.store.verify_log import verify_log
from core.sync import messages as m
from tui_client.sync_engine import SyncEngine

from .cli_helpers import (
    PASSPHRASE,
    VIDDA,
    Device,
    db_chains,
    init_device,
    vidda,
    vidda_env,
    vidda_parallel,
)
from .server_helpers import ServerProcess

STRESS = os.environ.get("VIDDA_SYNC_STRESS") == "1"
SEED = int(os.environ.get("VIDDA_SYNC_SEED", "1576"))
KILL_ROUNDS = 25 if STRESS else 5

Chains = dict[tuple[bytes, bytes], list[tuple[int, bytes]]]


# --- a TCP proxy that cuts links ----------------------------------------------------------


@dataclass
class Trip:
    """What to do to one proxied connection once `limit` bytes went through
    in `direction` ("up": client → server, "down", or "both" added up).

    action "cut": forward exactly `limit` bytes, then close both sides (a
    link lost in the middle of a frame); "mute": from then on swallow
    everything the server sends; a callable: call it once, keep forwarding.
    """

    limit: int
    direction: str = "both"
    action: str | Callable[[], None] = "cut"


@dataclass
class Link:
    trip: Trip | None
    client: socket.socket
    server: socket.socket
    up: int = 0
    down: int = 0
    tripped: bool = False
    muted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def shut(self) -> None:
        for s in (self.client, self.server):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def account(self, direction: str, data: bytes) -> tuple[bytes, bool, Callable[[], None] | None]:
        """(what to forward, stop after it, a callback to call)"""
        callback = None
        stop = False
        with self.lock:
            trip = self.trip
            if trip is not None and not self.tripped and trip.direction in (direction, "both"):
                counted = {"up": self.up, "down": self.down, "both": self.up + self.down}[
                    trip.direction
                ]
                if counted + len(data) >= trip.limit:
                    self.tripped = True
                    if trip.action == "cut":
                        data, stop = data[: max(0, trip.limit - counted)], True
                    elif trip.action == "mute":
                        self.muted = True
                    else:
                        callback = trip.action  # type: ignore[assignment]
            if direction == "up":
                self.up += len(data)
            else:
                self.down += len(data)
            if direction == "down" and self.muted:
                data = b""
        return data, stop, callback


class CutProxy:
    """A loopback TCP proxy to the server. Each new connection takes the
    next armed `Trip` (or none: forward everything)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.links: list[Link] = []
        self._armed: list[Trip | None] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._accepter = threading.Thread(target=self._accept, daemon=True)
        self._accepter.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def arm(self, trip: Trip | None) -> None:
        self._armed.append(trip)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            link = Link(self._armed.pop(0) if self._armed else None, client, server)
            self.links.append(link)
            t = threading.Thread(target=self._serve, args=(link,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, link: Link) -> None:
        down = threading.Thread(
            target=self._pump, args=(link, link.server, link.client, "down"), daemon=True
        )
        down.start()
        self._pump(link, link.client, link.server, "up")
        down.join()
        link.client.close()
        link.server.close()

    def _pump(self, link: Link, src: socket.socket, dst: socket.socket, direction: str) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            data, stop, callback = link.account(direction, data)
            if callback is not None:
                callback()
            if data:
                try:
                    dst.sendall(data)
                except OSError:
                    break
            if stop:
                break
        link.shut()

    def cut_all(self) -> None:
        for link in self.links:
            link.shut()

    def close(self) -> None:
        self._closed = True
        self._accepter.join()
        self.listener.close()
        self.cut_all()
        for t in self._threads:
            t.join(timeout=10)


# --- stores -------------------------------------------------------------------------------


def _query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(db: Path) -> int:
    return int(_query(db, "SELECT count(*) FROM events")[0][0])


def plan_events(db: Path, device: bytes) -> int:
    """A device's events in plans (the workspace's membership log left out)."""
    return int(
        _query(
            db,
            "SELECT count(*) FROM events JOIN devices USING (device_no) JOIN plans USING "
            "(plan_no) WHERE device_key=? AND plan_id != (SELECT value FROM meta "
            "WHERE key='workspace')",
            (device,),
        )[0][0]
    )


def kept_aside(db: Path) -> tuple[int, int]:
    """(evidence rows, frozen chains): a duplicate mistaken for a fork shows here."""
    return (
        int(_query(db, "SELECT count(*) FROM evidence")[0][0]),
        int(_query(db, "SELECT count(*) FROM frozen_chains")[0][0]),
    )


def raws(ch: Chains) -> set[bytes]:
    return {raw for rows in ch.values() for _, raw in rows}


def missing_bytes(source: Path, target: Path) -> int:
    """Bytes of events `source` holds that `target` lacks."""
    return sum(len(r) for r in raws(db_chains(source)) - raws(db_chains(target)))


def acked_ranges(home: Path) -> list[tuple[bytes, bytes, int, int]]:
    return [
        (bytes(p), bytes(d), int(a), int(b))
        for p, d, a, b in _query(
            home / "vidda.db",
            "SELECT plan_id, device_key, first_seq, last_seq FROM sync_acks",
        )
    ]


def assert_acked_on_server(home: Path, server_db: Path) -> int:
    """Every seq range the client recorded as acknowledged is in the
    server's log (byte-identical to the client's copy). Returns how many."""
    client, server = db_chains(home / "vidda.db"), db_chains(server_db)
    total = 0
    for plan, device, first, last in acked_ranges(home):
        mine = {s: r for s, r in client.get((plan, device), []) if first <= s <= last}
        held = {s: r for s, r in server.get((plan, device), []) if first <= s <= last}
        assert len(mine) == last - first + 1, (plan.hex(), first, last)
        lost = sorted(s for s in mine if held.get(s) != mine[s])
        assert not lost, f"acknowledged but not on the server: plan {plan.hex()} seqs {lost[:10]}…"
        total += len(mine)
    return total


def server_log_verifies(db: Path) -> None:
    async def check() -> None:
        log = await EventLog.open(db)
        try:
            report = await verify_log(log)
        finally:
            await log.close()
        assert report.ok, (report.problems[:5], report.store_problems[:5])

    asyncio.run(check())


def assert_same_everywhere(*dbs: Path) -> Chains:
    """The same raw events, chain by chain, in every log; nothing set aside."""
    first = db_chains(dbs[0])
    for db in dbs[1:]:
        other = db_chains(db)
        assert other.keys() == first.keys(), db
        for key, rows in first.items():
            assert other[key] == rows, (db, key[0].hex()[:8], key[1].hex()[:8])
    for db in dbs:
        assert kept_aside(db) == (0, 0), db
    return first


def verify_homes(*devices: Device) -> None:
    for proc in vidda_parallel(*((d.home, ["verify", "--json"]) for d in devices), check=False):
        report = json.loads(proc.stdout)
        assert proc.returncode == 0 and report["ok"], report


# --- devices and events -------------------------------------------------------------------


@dataclass
class World:
    root: Path
    admin: Device
    other: Device
    server: ServerProcess
    admin_key: DeviceKey
    other_key: DeviceKey


def make_world(root: Path, *, other: bool = True) -> World:
    """Anne's device made the workspace (its admin); Bjørn's joined it and
    is enrolled as an editor in Anne's membership log (synced later); a
    server home for the workspace, not started. Without `other`, Bjørn is a
    key only (no home)."""
    admin = init_device(root / "anne", "Anne Adminsdottir")
    server_home = root / "server"
    server_init = ["server", "init", "--workspace", admin.workspace, "--admin", admin.device]
    if other:
        vidda_parallel(
            (root / "bjorn", ["init", "--name", "Bjørn Ávži", "--workspace", admin.workspace]),
            (server_home, server_init),
        )
        other_key = load_key(root / "bjorn" / "device.key", PASSPHRASE)
    else:
        vidda(server_home, *server_init)
        other_key = DeviceKey.generate()
    bjorn = Device(root / "bjorn", admin.workspace, other_key.public_key.hex(), "Bjørn Ávži")
    admin_key = load_key(admin.home / "device.key", PASSPHRASE)

    async def enrol() -> None:
        log = await EventLog.open(admin.home / "vidda.db")
        try:
            body = MemberAdded(device=other_key.public_key, name="Bjørn Ávži", role="editor")
            await log.append(admin_key, log.workspace, [body])
        finally:
            await log.close()

    asyncio.run(enrol())
    return World(root, admin, bjorn, ServerProcess(server_home), admin_key, other_key)


def fill(
    home: Path, key: DeviceKey, count: int, plan: bytes | None = None, text: int = 60
) -> bytes:
    """Append `count` notes (of about 2×`text` bytes) by `key` to a plan in
    the home's log (a new plan when none is given), 1,000 per transaction.
    Returns the plan."""

    async def go() -> bytes:
        log = await EventLog.open(home / "vidda.db")
        try:
            nonlocal plan
            left = count
            if plan is None:
                plan, bodies = new_plan(title="Sentrumsplan for Unjárga", municipality="Nesseby")
                await log.append(key, plan, bodies)
                left -= len(bodies)
            n = 0
            while left > 0:
                size = min(1000, left)
                await log.append(
                    key,
                    plan,
                    [
                        NoteWritten(
                            note=new_uuid7(),
                            target=None,
                            text=f"notat {n + i} fra grendemøtet på Varangerbotn – " + "ŋ" * text,
                        )
                        for i in range(size)
                    ],
                )
                n += size
                left -= size
            return plan
        finally:
            await log.close()

    return asyncio.run(go())


def engine_sync(home: Path, key: DeviceKey, url: str) -> None:
    """One sync pass of a home in this process (the same engine `vidda sync
    --once` runs): a cheap second party."""

    async def go() -> None:
        log = await EventLog.open(home / "vidda.db")
        try:
            status = await SyncEngine(log, key, url).run_once(timeout=60)
        finally:
            await log.close()
        assert status.state == "up_to_date" and not status.rejected, status

    asyncio.run(go())


def sync_once(home: Path, url: str) -> tuple[int, dict[str, Any]]:
    proc = vidda(home, "sync", "--once", "--server", url, "--json", check=False)
    return proc.returncode, json.loads(proc.stdout)


# --- a link cut in the middle of a batch --------------------------------------------------


def _sync_through_cuts(
    dev: Device,
    server: ServerProcess,
    proxy: CutProxy,
    direction: str,
    fractions: list[float],
    remaining: Callable[[], int],
    progress: Callable[[], int],
) -> list[tuple[int, int, int]]:
    """Sync `dev` through the proxy, the link cut after a fraction of the
    bytes still to move each time, then once without a cut. Returns
    (limit, progress before, progress after) per cut."""
    rounds = []
    for f in fractions:
        limit = 2_000 + int(remaining() * f)
        before = progress()
        proxy.arm(Trip(limit, direction, "cut"))
        code, status = sync_once(dev.home, proxy.url)
        link = proxy.links[-1]
        assert link.tripped, f"the sync finished before {limit} bytes: {status}"
        assert code == 1 and status["state"] == "offline", (code, status)
        server.wait_idle()
        rounds.append((limit, before, progress()))
    proxy.arm(None)
    code, status = sync_once(dev.home, proxy.url)
    assert code == 0 and status["state"] == "up_to_date", status
    assert not proxy.links[-1].tripped
    return rounds


def test_a_link_cut_in_the_middle_of_batches_resumes_with_nothing_lost_or_doubled(
    tmp_path: Path,
) -> None:
    w = make_world(tmp_path)
    rng = random.Random(SEED)
    fill(w.admin.home, w.admin_key, 1_300)
    fill(w.admin.home, w.admin_key, 1_300)
    fill(w.other.home, w.other_key, 800)
    server = w.server.start()
    proxy = CutProxy(server.port)
    anne_db, bjorn_db = w.admin.home / "vidda.db", w.other.home / "vidda.db"
    try:
        # Anne pushes 2,600 events (4 batches of ≤ 1,000); the link drops in
        # the middle of a frame, after a share of what is left to send.
        anne = w.admin_key.public_key
        total = plan_events(anne_db, anne)
        pushed = _sync_through_cuts(
            w.admin,
            server,
            proxy,
            "up",
            [rng.uniform(0.05, 0.15), rng.uniform(0.45, 0.75)],
            lambda: missing_bytes(anne_db, server.db),
            lambda: plan_events(server.db, anne),
        )
        # Progress is kept (whole batches committed before the cut) and never undone.
        assert any(before < after < total for _, before, after in pushed), pushed
        assert all(before <= after for _, before, after in pushed), pushed
        # Bjørn pulls those while pushing his own 800; the link drops in
        # the middle of the catch-up.
        pulled = _sync_through_cuts(
            w.other,
            server,
            proxy,
            "both",
            [rng.uniform(0.35, 0.6)],
            lambda: missing_bytes(server.db, bjorn_db) + missing_bytes(bjorn_db, server.db),
            lambda: plan_events(bjorn_db, anne),
        )
        assert any(before < after < total for _, before, after in pulled), pulled
        engine_sync(w.admin.home, w.admin_key, server.url)  # Anne gets Bjørn's
    finally:
        proxy.close()
        assert server.stop() == 0, server.log_tail()
    # Nothing lost, nothing doubled (no duplicate mistaken for a fork either).
    everything = assert_same_everywhere(server.db, anne_db, bjorn_db)
    assert len(raws(everything)) == count(anne_db) == total + 2 + 800
    verify_homes(w.admin, w.other)
    server_log_verifies(server.db)


def test_events_the_server_holds_are_not_pending_forever_when_their_ack_was_lost(
    tmp_path: Path,
) -> None:
    """The server committed a push, the link died before its `acked` came
    back. The next sync learns from the server's vector that it holds them
    (and rightly pushes nothing), so they must not stay "pending" for ever
    (they did before adee671: only `sync_acks` counted)."""
    w = make_world(tmp_path, other=False)
    fill(w.admin.home, w.admin_key, 1_500)
    anne_db = w.admin.home / "vidda.db"
    server = w.server.start()
    proxy = CutProxy(server.port)
    try:
        # Once the pushes start, nothing from the server reaches Anne.
        proxy.arm(Trip(20_000, "up", "mute"))
        with subprocess.Popen(
            [*VIDDA, "--home", str(w.admin.home), "sync", "--once", "--server", proxy.url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=vidda_env(),
        ) as proc:
            try:
                deadline = time.monotonic() + 60
                while count(server.db) < count(anne_db):
                    assert time.monotonic() < deadline, "the server never got the push"
                    time.sleep(0.05)
                proxy.cut_all()
                assert proc.wait(timeout=60) == 1
            except BaseException:
                proc.kill()
                raise
        code, status = sync_once(w.admin.home, server.url)
    finally:
        proxy.close()
        server.stop()
    assert code == 0 and status["state"] == "up_to_date", status
    assert status["sent"] == 0, status  # nothing to send: the server has it all
    assert_same_everywhere(server.db, anne_db)
    assert status["pending"] == 0, f"the server holds every event, yet: {status}"


# --- kill -9 of a syncing client ----------------------------------------------------------


class KillOnTrip:
    """A `Trip` action: SIGKILL the client process."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def __call__(self) -> None:
        if self.proc is not None:
            self.proc.kill()


def test_kill_9_of_a_syncing_client_never_damages_its_log_and_the_next_sync_converges(
    tmp_path: Path,
) -> None:
    w = make_world(tmp_path)
    rng = random.Random(SEED + 1)
    server = w.server.start()
    anne_db, bjorn_db = w.admin.home / "vidda.db", w.other.home / "vidda.db"
    # Fewer, larger events (2 KiB): as many bytes to move, less to verify.
    plan = fill(w.admin.home, w.admin_key, 200, text=1000)
    engine_sync(w.admin.home, w.admin_key, server.url)  # enrols Bjørn
    mine = fill(w.other.home, w.other_key, 150, text=1000)
    proxy = CutProxy(server.port)
    killed_mid_transfer = 0
    try:
        for round_no in range(KILL_ROUNDS):
            # Something to pull (Anne's new edits) and to push (Bjørn's) every round.
            fill(w.admin.home, w.admin_key, 100, plan, text=1000)
            engine_sync(w.admin.home, w.admin_key, server.url)
            fill(w.other.home, w.other_key, 80, mine, text=1000)
            to_move = missing_bytes(server.db, bjorn_db) + missing_bytes(bjorn_db, server.db)
            limit = rng.randint(500, int(to_move * 0.9))
            live = round_no % 2 == 1  # `vidda sync` (stays connected) or `--once`
            args = ["sync", "--server", proxy.url] + ([] if live else ["--once"])
            killer = KillOnTrip()
            proxy.arm(Trip(limit, "both", killer))
            with subprocess.Popen(
                [*VIDDA, "--home", str(w.other.home), *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=vidda_env(),
            ) as proc:
                killer.proc = proc
                try:
                    _, err = proc.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    _, err = proc.communicate()
            assert proc.returncode == -signal.SIGKILL, (round_no, limit, proc.returncode, err)
            killed_mid_transfer += proxy.links[-1].tripped
            server.wait_idle()
            # The log is whole (every stored byte checks out) after each kill,
            # and what the server acknowledged is on the server.
            verify_homes(w.other)
            assert_acked_on_server(w.other.home, server.db)
        code, status = sync_once(w.other.home, server.url)
        assert code == 0 and status["state"] == "up_to_date", status
        engine_sync(w.admin.home, w.admin_key, server.url)
    finally:
        proxy.close()
        assert server.stop() == 0, server.log_tail()
    assert killed_mid_transfer == KILL_ROUNDS
    assert_same_everywhere(server.db, anne_db, bjorn_db)
    verify_homes(w.admin, w.other)
    server_log_verifies(server.db)


# --- kill -9 of the server during ingest --------------------------------------------------


def test_kill_9_of_the_server_during_ingest_keeps_every_acknowledged_event(
    tmp_path: Path,
) -> None:
    w = make_world(tmp_path, other=False)
    rng = random.Random(SEED + 2)
    anne_db = w.admin.home / "vidda.db"
    plan: bytes | None = None
    partial_rounds = 0
    acked_total = 0
    for round_no in range(KILL_ROUNDS):
        # 3 push batches (1 MiB each) of large events: room to die in between.
        plan = fill(w.admin.home, w.admin_key, 600, plan, text=2500)
        server = w.server.start()
        try:
            acks_before = len(acked_ranges(w.admin.home))
            with subprocess.Popen(
                [*VIDDA, "--home", str(w.admin.home), "sync", "--once", "--server", server.url],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=vidda_env(),
            ) as proc:
                try:
                    # Wait for the first ack of this round, then kill the server
                    # a moment later: in the middle of ingesting the next batches.
                    deadline = time.monotonic() + 60
                    while len(acked_ranges(w.admin.home)) <= acks_before and proc.poll() is None:
                        assert time.monotonic() < deadline, "no ack within 60 s"
                        time.sleep(0.002)
                    time.sleep(rng.uniform(0, 0.04))
                    server.kill9()
                    _, err = proc.communicate(timeout=60)
                except BaseException:
                    proc.kill()
                    raise
        finally:
            server.kill9()  # (already dead, unless something failed)
        assert b"Traceback" not in err, err.decode()
        # After the crash (server down): its log verifies, and holds every
        # event it acknowledged before dying.
        server_log_verifies(server.db)
        acked_total = assert_acked_on_server(w.admin.home, server.db)
        partial_rounds += proc.returncode == 1 and count(server.db) < count(anne_db)
        assert proc.returncode in (0, 1), (round_no, proc.returncode, err.decode())
    assert acked_total > 0
    # Most kills landed in the middle of the push (not after it).
    assert partial_rounds >= KILL_ROUNDS // 2, partial_rounds
    server = w.server.start()
    try:
        code, status = sync_once(w.admin.home, server.url)
    finally:
        assert server.stop() == 0, server.log_tail()
    assert code == 0 and status["state"] == "up_to_date", status
    assert_same_everywhere(server.db, anne_db)
    server_log_verifies(server.db)


# --- a live client and plans it did not know when it connected ----------------------------


def test_a_live_client_gets_new_and_newly_readable_plans_whole_and_without_rejections(
    tmp_path: Path,
) -> None:
    """Bjørn's `vidda sync` stays connected while (a) the admin widens his
    access from one plan to all, then adds to a plan he could not read (its
    first live event reaches him mid-chain), and (b) a colleague makes a new
    plan and adds to it one push at a time. Both plans must reach him live
    and whole, and nothing may show up as rejected: live events of a plan he
    has not caught up on start mid-chain and must wait for that catch-up,
    not be ingested (`gap`; they were before adee671)."""
    w = make_world(tmp_path)
    bjorn_db = w.other.home / "vidda.db"
    anne = w.admin_key.public_key
    out_path = tmp_path / "bjorn-sync.jsonl"
    hidden = fill(w.admin.home, w.admin_key, 10)
    shared = fill(w.admin.home, w.admin_key, 8)
    enrol(w, plans=[shared])  # Bjørn: one plan only
    server = w.server.start()
    try:
        engine_sync(w.admin.home, w.admin_key, server.url)
        with open(out_path, "wb") as out:
            live = subprocess.Popen(
                [*VIDDA, "--home", str(w.other.home), "sync", "--server", server.url, "--json"],
                stdout=out,
                stderr=subprocess.PIPE,
                env=vidda_env(),
            )
        try:
            deadline = time.monotonic() + 30
            while plan_events(bjorn_db, anne) < 8:  # caught up on the shared plan
                assert time.monotonic() < deadline, "Bjørn's live sync never caught up"
                time.sleep(0.05)
            enrol(w, plans=[])  # (a) every plan now
            fill(w.admin.home, w.admin_key, 1, hidden)
            engine_sync(w.admin.home, w.admin_key, server.url)
            # (b) a new plan, growing one push at a time
            asyncio.run(push_one_by_one(server.url, w.admin.workspace, w.admin_key, 20))
            deadline = time.monotonic() + 10
            while plan_events(bjorn_db, anne) < 39 and time.monotonic() < deadline:
                time.sleep(0.05)
            got = plan_events(bjorn_db, anne)
        finally:
            live.send_signal(signal.SIGTERM)
            _, err = live.communicate(timeout=30)
        assert live.returncode == 0, err.decode()
    finally:
        server.stop()
    assert got == 10 + 1 + 8 + 20, got
    assert len(db_chains(bjorn_db)[(hidden, anne)]) == 11
    rejected = [json.loads(line)["rejected"] for line in out_path.read_text().splitlines()]
    assert not any(rejected), rejected[-1]


def enrol(w: World, plans: list[bytes]) -> None:
    """The admin (re-)enrols Bjørn as an editor of `plans` (empty: all)."""

    async def go() -> None:
        log = await EventLog.open(w.admin.home / "vidda.db")
        try:
            body = MemberAdded(
                device=w.other_key.public_key, name="Bjørn Ávži", role="editor", plans=plans
            )
            await log.append(w.admin_key, log.workspace, [body])
        finally:
            await log.close()

    asyncio.run(go())


async def push_one_by_one(url: str, workspace: str, key: DeviceKey, n: int) -> None:
    """A new plan, `n` events, each in its own push (the raw protocol)."""
    ws_id = bytes.fromhex(workspace)
    plan, prev = new_uuid7(), bytes(32)
    async with connect(url, compression=None, ping_interval=None) as ws:
        await ws.send(m.encode(m.Hello(versions=[1], workspace=ws_id, device=key.public_key)))
        challenge = m.decode_from_server(await ws.recv())
        assert isinstance(challenge, m.Challenge)
        payload = m.auth_payload(challenge.nonce, ws_id, challenge.server_id)
        await ws.send(m.encode(m.Prove(signature=key.sign(payload))))
        assert isinstance(m.decode_from_server(await ws.recv()), m.Welcome)
        for seq in range(1, n + 1):
            body = NoteWritten(note=new_uuid7(), target=None, text=f"notat {seq}")
            ev = seal(key, workspace=ws_id, plan=plan, seq=seq, prev=prev, hlc=now_hlc(), body=body)
            prev = ev.id
            await ws.send(m.encode(m.Push(batch=seq, events=[ev.raw])))
        for seq in range(1, n + 1):
            acked = m.decode_from_server(await ws.recv())
            assert isinstance(acked, m.Acked) and acked.batch == seq, acked
            assert acked.accepted == 1, acked
        await ws.send(m.encode(m.Bye()))


def now_hlc() -> int:
    return (int(time.time() * 1000) << 16) + 1
