"""Sync fan-out: 50 devices edit one plan at once through one real `vidda serve`.

One server process (`vidda server init`, then `vidda serve --port 0`) whose
log holds a plan with some history (the cached workload, `--history`
events) and the admin's enrolment of every device. 50 clients, each its own
device key and its own EventLog file (synchronous=FULL) in a temp dir, run
in a few worker processes (`--workers`; one asyncio loop per worker). Each
client connects over loopback websockets, catches up, opens the plan
(`load_state`), and once every client is live they all edit at the same
moment: `--events` edits each (200 by default), one event per push like
people editing (`edits.set_fields` on the client's own projection, so
`replaces` names the heads it sees; `EventLog.append`, then push), with a
random think time between edits (exponential, mean `--interval`; 0: push
again as soon as the previous push is acked). Received events are
ingested by the client (`ClientSession.receive`: verify, store, cursor)
and folded into its projection.

The clients drive `core.replication.client.ClientSession` over `websockets`
themselves rather than through `SyncEngine.run` (which looks for local
changes only between frames or every `poll_seconds`), so a push leaves as
soon as its event is committed locally. They keep SyncEngine's keepalive
(20 s pings) and reconnect (resuming from their cursor) when dropped. The
client processes run at a lower priority (`--nice`, default 10): they stand
in for 50 machines, and on one machine they would otherwise take the CPU
from the server, which runs alone in production.

Figures: the time from the start signal until every client holds every
other client's edits; fan-out latency (a push sent, until each other client
has the event: frame received, and stored), p50/p99 over every (event,
receiver) pair, matched by event id (CLOCK_MONOTONIC is shared by the
processes); push-to-ack latency; the server's CPU time and peak RSS
(/proc/PID/status VmHWM) and its /metrics counters. Target: fan-out p99 <= 50 ms.
"""

from __future__ import annotations

import array
import asyncio
import cProfile
import hashlib
import multiprocessing as mp
import os
import pstats
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from servers import ViddaServer, copy_log, enrol, init_home, top_entries
from timing import machine_line, median, parser, percentile, progress, say, table
from workload import plan_log

from core.commands import edits
from core.events.envelope import decode_stored, event_id
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import PlanState, evolve
from core.replication.client import ClientSession
from core.store.event_log import EventLog
from core.sync import messages as m

TARGET_P99 = 0.050
STATUSES = ("planned", "postponed", "cancelled")
PLACES = ("Kulturhuset", "Rådhuset", "Biblioteket", "Grendehuset", "Digitalt (Teams)")
OWN = 3  # activities a client mostly edits (its own); the rest of the time anyone's
CROSS = 0.1


def bench_key(name: str) -> DeviceKey:
    return DeviceKey.from_seed(hashlib.sha256(f"vidda-bench-{name}".encode()).digest())


ADMIN = bench_key("admin")


def client_key(i: int) -> DeviceKey:
    return bench_key(f"fanout-{i}")


# --- one client ----------------------------------------------------------------------------


class Client:
    """One device: its log, its projection, one websocket to the server."""

    def __init__(self, i: int, cfg: dict[str, Any]) -> None:
        self.i = i
        self.cfg = cfg
        self.key = client_key(i)
        self.plan: bytes = cfg["plan"]
        self.rng = random.Random(1000 + i)
        self.expected = (cfg["clients"] - 1) * cfg["events"]  # others' edits to receive
        self.sent: dict[bytes, float] = {}  # my event id -> first send time
        self.acked: list[float] = []  # push -> ack seconds
        self.to_send: list[float] = []  # edit committed locally -> its push sent
        self.push_at: dict[int, float] = {}
        self.recv_ids = bytearray()
        self.recv_t = array.array("d")
        self.stored_t = array.array("d")
        self.mine: set[bytes] = set()
        self.seen: set[bytes] = set()
        self.got = 0  # others' live events received (after the start signal)
        self.live = False
        self.done = asyncio.Event()
        self.ready = asyncio.Event()
        self.caught_up = asyncio.Event()
        self.flush_lock = asyncio.Lock()
        self.all_acked = asyncio.Event()
        self.drops = 0
        self.leaving = False
        self.done_at = 0.0
        self.error = ""

    async def open(self) -> None:
        self.log = await EventLog.open(
            Path(self.cfg["dir"]) / f"client-{self.i}.db", workspace=self.cfg["workspace"]
        )
        self.runner = asyncio.create_task(self._connections())
        await self.caught_up.wait()
        self.state: PlanState = await self.log.load_state(self.plan)
        self.activities = sorted(
            eid for (kind, eid), _ in self.state.entities.items() if kind == "activity"
        )
        n = len(self.activities)
        self.own = [self.activities[(self.i * OWN + k) % n] for k in range(OWN)]
        # Caught up, and nobody edits before the start signal: every plan event
        # from now on is another client's edit.
        self.live = True

    async def _connections(self) -> None:
        """Stay connected; a dropped connection (slow reader) resumes from the cursor."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        while not self.done.is_set():
            try:
                async with connect(
                    self.cfg["url"],
                    max_size=m.MAX_FRAME_BYTES,
                    compression=None,
                    ping_interval=20,  # as SyncEngine
                    ping_timeout=20,
                    open_timeout=60,
                ) as ws:
                    self.ws = ws
                    self.session = ClientSession(self.log, self.key)
                    self.push_at.clear()  # a new session pushes what the server lacks again
                    self.all_acked.set()
                    await self._flush()
                    await self._read(ws)
                    return
            except (ConnectionClosed, OSError) as exc:
                if self.leaving:  # the server closes a connection after `bye` (code 1008)
                    return
                self.ready.clear()
                self.drops += 1
                self.error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(0.05)

    async def _read(self, ws: Any) -> None:
        async for frame in ws:
            t = time.monotonic()
            message = m.decode_from_server(frame)
            live = isinstance(message, m.Events) and message.plan == self.plan and self.live
            if isinstance(message, m.Acked):
                started = self.push_at.pop(message.batch, None)
                if started is not None:
                    self.acked.append(t - started)
                if not self.push_at:
                    self.all_acked.set()
            store = not (live and self.cfg["no_store"])
            if store:
                await self.session.receive(message)
            if live:
                stored = time.monotonic() if store else t
                assert isinstance(message, m.Events)
                for raw in message.events:
                    ev = decode_stored(raw)
                    if ev.id in self.mine or ev.id in self.seen:
                        continue  # mine, or sent again after a reconnect
                    self.seen.add(ev.id)
                    self.recv_ids += ev.id
                    self.recv_t.append(t)
                    self.stored_t.append(stored)
                    if store:
                        evolve(self.state, ev)
                    self.got += 1
            await self._flush()
            if self.session.idle and not self.caught_up.is_set():
                self.caught_up.set()
            if self.session.ready and not self.session.catching_up:
                self.ready.set()
            if self.got >= self.expected and self.live and not self.done.is_set():
                self.done_at = time.monotonic()
                self.done.set()

    async def _flush(self) -> None:
        from websockets.exceptions import ConnectionClosed

        async with self.flush_lock:
            for message in self.session.outgoing():
                frame = m.encode(message)
                t = time.monotonic()
                if isinstance(message, m.Push):
                    self.push_at[message.batch] = t
                    for raw in message.events:
                        self.sent.setdefault(event_id(raw), t)
                try:
                    await self.ws.send(frame)
                except ConnectionClosed:
                    # The reader reconnects; the new session pushes what the server lacks.
                    self.ready.clear()
                    return

    def next_values(self) -> tuple[bytes, dict[str, Any]]:
        r = self.rng
        eid = r.choice(self.activities) if r.random() < CROSS else r.choice(self.own)
        pick = r.random()
        if pick < 0.5:
            return eid, {"status": r.choice(STATUSES)}
        if pick < 0.8:
            return eid, {"place": r.choice(PLACES)}
        return eid, {"title": f"Folkemøte {self.i}.{r.randrange(10_000)}"}

    async def edit(self) -> None:
        interval = self.cfg["interval"]
        for _ in range(self.cfg["events"]):
            if interval > 0:
                await asyncio.sleep(self.rng.expovariate(1 / interval))
            eid, values = self.next_values()
            bodies = edits.set_fields(self.state, "activity", eid, values)
            events = await self.log.append(self.key, self.plan, bodies)
            committed = time.monotonic()
            for ev in events:
                self.mine.add(ev.id)
                evolve(self.state, ev)
            await self.ready.wait()
            self.all_acked.clear()
            await self.session.push_new()
            await self._flush()
            sent = self.sent.get(events[-1].id)
            if sent is not None:
                self.to_send.append(sent - committed)
            if interval <= 0:
                await self.all_acked.wait()

    async def close(self) -> None:
        """Wait for the last acks, say bye, let the server close the connection."""
        try:
            async with asyncio.timeout(30):
                while self.session._inflight or not self.ready.is_set():
                    await asyncio.sleep(0.01)
                self.leaving = True
                self.session.conn.send(m.Bye())
                await self._flush()
                await self.runner
        except TimeoutError:
            self.runner.cancel()
        await self.log.close()

    def result(self) -> dict[str, Any]:
        return {
            "client": self.i,
            "sent": self.sent,
            "acked": list(self.acked),
            "to_send": list(self.to_send),
            "recv_ids": bytes(self.recv_ids),
            "recv_t": self.recv_t.tobytes(),
            "stored_t": self.stored_t.tobytes(),
            "got": self.got,
            "expected": self.expected,
            "done_at": self.done_at,
            "drops": self.drops,
            "error": self.error,
        }


# --- a worker process: some of the clients -------------------------------------------------


def worker(indices: list[int], cfg: dict[str, Any], barrier: Any, results: Any) -> None:
    code = 0
    try:
        if cfg["nice"]:
            os.nice(cfg["nice"])
        profile = cfg["profile_dir"] and indices[0] == 0
        if profile:
            prof = cProfile.Profile()
            prof.enable()
        out = asyncio.run(_worker(indices, cfg, barrier))
        if profile:
            prof.disable()
            prof.dump_stats(Path(cfg["profile_dir"]) / "worker0.prof")
        results.put(out)
    except BaseException as exc:  # report, so the parent does not wait forever
        import traceback

        traceback.print_exc()
        results.put({"error": f"worker {indices[0]}..: {type(exc).__name__}: {exc}"})
        code = 1
    finally:
        # A log left open after a failure keeps its aiosqlite thread (and the
        # process) alive: leave once the result is handed over.
        results.close()
        results.join_thread()
        os._exit(code)


async def _worker(indices: list[int], cfg: dict[str, Any], barrier: Any) -> dict[str, Any]:
    clients = [Client(i, cfg) for i in indices]
    # Connect a few at a time: 50 catch-ups at once would only queue at the server.
    for start in range(0, len(clients), 4):
        await asyncio.gather(*(c.open() for c in clients[start : start + 4]))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, barrier.wait)  # every client of every worker is live
    cpu0 = time.process_time()
    timeout = cfg["timeout"]
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(c.edit() for c in clients))
            await asyncio.gather(*(c.done.wait() for c in clients))
    except TimeoutError:
        for c in clients:
            if not c.done.is_set():
                c.error = c.error or f"timed out with {c.got:,} of {c.expected:,} events"
                c.done.set()
    cpu = time.process_time() - cpu0
    for c in clients:
        await c.close()
    return {"clients": [c.result() for c in clients], "cpu": cpu}


# --- the parent ----------------------------------------------------------------------------


def metrics(url: str) -> dict[str, float]:
    """The server's /metrics samples by name (labels included in the name)."""
    http = url.replace("ws://", "http://").rstrip("/") + "/metrics"
    out: dict[str, float] = {}
    with urllib.request.urlopen(http, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
    return out


def setup_home(home: Path, history: int, clients: int) -> tuple[bytes, bytes]:
    w = plan_log(history)
    init_home(home, w.workspace, [ADMIN.public_key])
    copy_log(w.path, home / "server.db")
    members = [*(w.signer(i) for i in range(w.devices)), *(client_key(i) for i in range(clients))]
    asyncio.run(enrol(home / "server.db", w.workspace, ADMIN, members))
    return w.workspace, w.plan


def one_run(args: Any, directory: Path, client_dir: Path, profile: Path | None) -> dict[str, Any]:
    home = directory / "server"
    workspace, plan = setup_home(home, args.history, args.clients)
    server_prof = profile / "server.prof" if profile else None
    with ViddaServer(home, profile=server_prof) as server:
        cfg = {
            "url": server.url,
            "workspace": workspace,
            "plan": plan,
            "dir": str(client_dir),
            "profile_dir": str(profile) if profile else "",
            "clients": args.clients,
            "events": args.events,
            "interval": args.interval,
            "no_store": args.no_store,
            "nice": args.nice,
            "timeout": args.timeout,
        }
        ctx = mp.get_context("spawn")
        workers = max(1, min(args.workers, args.clients))
        barrier = ctx.Barrier(workers + 1)
        results = ctx.Queue()
        procs = []
        for k in range(workers):
            indices = list(range(k, args.clients, workers))
            procs.append(ctx.Process(target=worker, args=(indices, cfg, barrier, results)))
        t0 = time.monotonic()
        for proc in procs:
            proc.start()
        progress(f"  {args.clients} clients connecting and catching up ({workers} workers)")
        barrier.wait(timeout=args.timeout)
        start = time.monotonic()
        cpu0 = server.cpu_seconds()
        progress(f"  go ({start - t0:.1f} s to connect): {args.clients} × {args.events} edits")
        outs = [results.get(timeout=args.timeout + 120) for _ in procs]
        progress(f"  workers done after {time.monotonic() - start:.1f} s")
        server_cpu = server.cpu_seconds() - cpu0
        hwm = server.status("VmHWM")
        counters = metrics(server.url)
        for proc in procs:
            proc.join(timeout=60)
    if server.hung_on_stop:
        progress("  the server did not stop on SIGTERM within 30 s (killed)")
    errors = [o["error"] for o in outs if "error" in o and "clients" not in o]
    if errors:
        raise SystemExit("; ".join(errors))
    clients = [c for o in outs for c in o["clients"]]
    sent: dict[bytes, float] = {}
    for c in clients:
        sent.update(c["sent"])
    recv_lat: list[float] = []
    stored_lat: list[float] = []
    for c in clients:
        ids = c["recv_ids"]
        recv_t = array.array("d")
        recv_t.frombytes(c["recv_t"])
        stored_t = array.array("d")
        stored_t.frombytes(c["stored_t"])
        for k in range(len(recv_t)):
            at = sent.get(ids[32 * k : 32 * k + 32])
            if at is not None:
                recv_lat.append(recv_t[k] - at)
                stored_lat.append(stored_t[k] - at)
    done = max(c["done_at"] for c in clients)
    return {
        "total": (done if done else time.monotonic()) - start,
        "recv": recv_lat,
        "stored": stored_lat,
        "acked": [a for c in clients for a in c["acked"]],
        "to_send": [a for c in clients for a in c["to_send"]],
        "pairs": len(recv_lat),
        "expected_pairs": args.clients * (args.clients - 1) * args.events,
        "sent": len(sent),
        "missing": sum(c["expected"] - c["got"] for c in clients),
        "drops": sum(c["drops"] for c in clients),
        "errors": [c["error"] for c in clients if c["error"]],
        "server_cpu": server_cpu,
        "server_hwm_kb": hwm,
        "client_cpu": sum(o["cpu"] for o in outs),
        "metrics": counters,
        "hung_on_stop": server.hung_on_stop,
    }


def main() -> int:
    parse = parser(__doc__.splitlines()[0], events=200, quick_events=20, repeat=1)
    p = parse.parser  # type: ignore[attr-defined]
    p.description = __doc__.splitlines()[0] + " (--events: edits per client)"
    p.add_argument("--clients", type=int, default=None, help="devices (default 50; quick 10)")
    p.add_argument("--workers", type=int, default=4, help="client processes (default 4)")
    p.add_argument(
        "--interval",
        type=float,
        default=None,
        help="mean think time between a client's edits, s (default 1.0; quick 0.2; "
        "0: next push as soon as the last is acked)",
    )
    p.add_argument("--history", type=int, default=2_000, help="plan events before (default 2,000)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per run (default 900)")
    p.add_argument(
        "--client-dir",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="where the clients' logs go (default /dev/shm: on one machine the 50 clients' "
        "fsyncs would otherwise share the server's disk; the server's log is on disk)",
    )
    p.add_argument(
        "--no-store",
        action="store_true",
        help="clients only decode and time live events (no ingest, no fold): isolates the "
        "server when one machine simulates all the clients",
    )
    p.add_argument(
        "--nice",
        type=int,
        default=10,
        help="niceness of the client processes (default 10: they are the load generator; "
        "on one machine they would otherwise starve the server, which runs alone in production)",
    )
    p.add_argument(
        "--profile", action="store_true", help="profile the server and one client worker (run 1)"
    )
    args = parse()
    if args.clients is None:
        args.clients = 10 if args.quick else 50
    if args.interval is None:
        args.interval = 0.2 if args.quick else 1.0
    say(machine_line())
    plan_log(args.history)  # cached before anything is timed
    offered = args.clients / args.interval if args.interval > 0 else float("inf")
    say(
        f"sync fan-out: {args.clients} clients × {args.events} edits, one event per push, "
        f"think time {args.interval:g} s (offered {offered:,.0f} pushes/s), plan history "
        f"{args.history:,} events, {args.workers} client processes at nice {args.nice} (logs in "
        f"{args.client_dir or tempfile.gettempdir()}), `vidda serve` subprocess (log on disk), "
        f"{args.repeat} run(s)"
        + ("; clients do NOT store live events (--no-store)" if args.no_store else "")
    )
    runs = []
    for i in range(args.repeat):
        with (
            tempfile.TemporaryDirectory(prefix="vidda-bench-fanout-") as d,
            tempfile.TemporaryDirectory(
                prefix="vidda-bench-fanout-clients-", dir=args.client_dir
            ) as c,
        ):
            profile = Path(d) if args.profile and i == 0 else None
            run = one_run(args, Path(d), Path(c), profile)
            if profile is not None:
                for name in ("server", "worker0"):
                    stats = pstats.Stats(str(profile / f"{name}.prof"))
                    for sort in ("tottime", "cumulative"):
                        progress(f"\n--- profile: {name}, top by {sort} ---")
                        progress(top_entries(stats, sort, 30))
        runs.append(run)
        progress(
            f"  run {i + 1}: {run['total']:.1f} s, fan-out p50 "
            f"{percentile(run['recv'], 50) * 1e3:.1f} ms p99 "
            f"{percentile(run['recv'], 99) * 1e3:.1f} ms, {run['pairs']:,} deliveries, "
            f"{run['missing']:,} missing, {run['drops']} drops"
        )
        for err in run["errors"][:5]:
            progress(f"    client error: {err}")

    def med(key: str, q: float) -> float:
        return median([percentile(r[key], q) for r in runs])

    say()
    rows = []
    for label, key in (
        ("push sent → frame received by each other client", "recv"),
        ("push sent → stored by each other client (ingest + cursor committed)", "stored"),
        ("push sent → acked to the pusher (server committed)", "acked"),
        ("edit committed locally → its push sent (`push_new`)", "to_send"),
    ):
        rows.append(
            [
                label,
                f"{med(key, 50) * 1e3:,.1f} ms",
                f"{med(key, 99) * 1e3:,.1f} ms",
                f"{median([max(r[key]) for r in runs]) * 1e3:,.0f} ms",
                f"{median([len(r[key]) for r in runs]):,.0f}",
            ]
        )
    say(table(rows, ["latency (medians of runs)", "p50", "p99", "max", "samples"]))
    say()
    total = median([r["total"] for r in runs])
    events = args.clients * args.events
    mt = runs[-1]["metrics"]
    say(
        table(
            [
                [
                    f"{total:.1f} s",
                    f"{events / total:,.0f}/s",
                    f"{median([r['pairs'] for r in runs]) / total:,.0f}/s",
                    f"{median([r['server_cpu'] for r in runs]):.1f} s "
                    f"({median([r['server_cpu'] for r in runs]) / total:.0%})",
                    f"{median([r['server_hwm_kb'] for r in runs]) / 1024:,.0f} MB",
                    f"{median([r['client_cpu'] for r in runs]):.0f} s",
                    f"{sum(r['drops'] for r in runs)}",
                    f"{sum(r['missing'] for r in runs):,}",
                ]
            ],
            [
                "total (go → all hold all)",
                "edits",
                "deliveries",
                "server CPU (share of wall)",
                "server peak RSS",
                "clients' CPU",
                "reconnects",
                "missing",
            ],
        )
    )
    say()
    batches = mt.get("vidda_batch_seconds_count", 0)
    if batches:
        say(
            f"server /metrics (last run): {mt.get('vidda_events_in_total', 0):,.0f} events in, "
            f"{mt.get('vidda_events_out_total', 0):,.0f} out, {batches:,.0f} push batches, "
            f"mean {mt['vidda_batch_seconds_sum'] / batches * 1e3:.2f} ms per batch "
            f"(verify, store, fan out), slow readers dropped "
            f"{mt.get('vidda_slow_readers_total', 0):,.0f}"
        )
    hung = sum(r["hung_on_stop"] for r in runs)
    if hung:
        say(f"the server did not stop on SIGTERM within 30 s in {hung} of {len(runs)} run(s)")
    complete = all(r["pairs"] == r["expected_pairs"] for r in runs)
    p99 = med("recv", 99)
    say(
        f"every client received every other client's edits: {'yes' if complete else 'NO'}; "
        f"target fan-out p99 <= {TARGET_P99 * 1e3:.0f} ms: "
        f"{'met' if p99 <= TARGET_P99 else 'NOT met'} ({p99 * 1e3:.1f} ms; "
        f"stored p99 {med('stored', 99) * 1e3:.1f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
