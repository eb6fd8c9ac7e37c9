"""`vidda serve`: the websockets shell around `core.replication.hub`.

One asyncio process, one SQLite log, one workspace. The shell only moves
frames, enforces transport limits and reports; every decision about
events is the hub's (and the log's).

Limits (`Limits`): frame size (websockets `max_size`, so an oversize frame
never reaches memory whole), events per push batch (the message decoder),
push events per second per connection (throttled, not dropped), frames per
second per connection (a flood is closed), connections per device, the
handshake must finish within `handshake_seconds`, websocket pings detect a
dead link, no compression. A slow reader (its outbox, bounded by frames and
bytes, full during live fan-out) is closed with 1013 and resumes from its
cursor.

HTTP on the same port: `GET /healthz` (`ok`) and `GET /metrics`
(Prometheus text). Logs are JSON lines on stderr with connection and device.
SIGTERM/SIGINT: stop accepting, close every connection with 1001 (going
away), close the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import json
import logging
import os
import signal
import ssl
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from core.replication.hub import BATCH_BUCKETS, Hub, HubSession
from core.store.event_log import EventLog
from core.sync import messages as m
from sync_server.config import db_path, load_config

log = logging.getLogger("vidda.server")


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int = m.MAX_FRAME_BYTES
    events_per_second: float = 20_000.0  # push throttle per connection
    frames_per_second: float = 200.0  # sustained; bursts up to `frame_burst`
    frame_burst: int = 2_000
    connections_per_device: int = 8
    handshake_seconds: float = 10.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


class _Done(Exception):
    """The connection is finished (closed with a reason already)."""


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._now = rate, burst, now
        self.tokens, self.at = burst, now()

    def take(self, n: float) -> float:
        """Take `n` tokens; the seconds to wait before they were available."""
        t = self._now()
        self.tokens = min(self.burst, self.tokens + (t - self.at) * self.rate)
        self.at = t
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class SyncServer:
    def __init__(self, hub: Hub, limits: Limits) -> None:
        self.hub = hub
        self.limits = limits
        self.ids = itertools.count(1)
        self.connections = 0
        self.connections_total = 0
        self.per_device: dict[bytes, int] = defaultdict(int)
        self.protocol_errors: dict[str, int] = defaultdict(int)
        self.closed_by_reason: dict[str, int] = defaultdict(int)

    # --- HTTP -------------------------------------------------------------------------------

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return conn.respond(http.HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            response = conn.respond(http.HTTPStatus.OK, self.metrics())
            response.headers = Headers(
                [
                    ("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
                    ("Content-Length", str(len(response.body))),
                ]
            )
            return response
        if path not in ("/", "/sync"):
            return conn.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        return None

    def metrics(self) -> str:
        st = self.hub.stats
        lines = [
            "# HELP vidda_connections Open sync connections.",
            "# TYPE vidda_connections gauge",
            f"vidda_connections {self.connections}",
            "# TYPE vidda_connections_total counter",
            f"vidda_connections_total {self.connections_total}",
            "# HELP vidda_events_in_total Events pushed by clients and stored.",
            "# TYPE vidda_events_in_total counter",
            f"vidda_events_in_total {st.events_in}",
            "# HELP vidda_events_out_total Events sent to clients (catch-up and live).",
            "# TYPE vidda_events_out_total counter",
            f"vidda_events_out_total {st.events_out}",
            "# TYPE vidda_duplicates_total counter",
            f"vidda_duplicates_total {st.duplicates}",
            "# TYPE vidda_slow_readers_total counter",
            f"vidda_slow_readers_total {st.slow_readers}",
            "# HELP vidda_rejects_total Pushed events rejected, by reason.",
            "# TYPE vidda_rejects_total counter",
        ]
        lines += [f'vidda_rejects_total{{reason="{r}"}} {n}' for r, n in sorted(st.rejects.items())]
        lines += ["# TYPE vidda_protocol_errors_total counter"]
        lines += [
            f'vidda_protocol_errors_total{{code="{c}"}} {n}'
            for c, n in sorted(self.protocol_errors.items())
        ]
        lines += [
            "# HELP vidda_batch_seconds Time to verify, store and ack one push batch.",
            "# TYPE vidda_batch_seconds histogram",
        ]
        lines += [
            f'vidda_batch_seconds_bucket{{le="{b}"}} {st.batch_buckets[b]}' for b in BATCH_BUCKETS
        ]
        lines += [
            f'vidda_batch_seconds_bucket{{le="+Inf"}} {st.batches}',
            f"vidda_batch_seconds_sum {st.batch_seconds:.6f}",
            f"vidda_batch_seconds_count {st.batches}",
        ]
        return "\n".join(lines) + "\n"

    # --- websocket --------------------------------------------------------------------------

    async def handler(self, ws: ServerConnection) -> None:
        conn_id = next(self.ids)
        self.connections += 1
        self.connections_total += 1
        session = self.hub.session(os.urandom(32))
        fields: dict[str, object] = {"conn": conn_id, "peer": _peer(ws)}
        closing: list[asyncio.Task[None]] = []

        def drop_slow_reader() -> None:
            closing.append(
                asyncio.ensure_future(ws.close(1013, "slow reader: resume from your cursor"))
            )

        session.on_slow = drop_slow_reader
        writer = asyncio.create_task(self._writer(ws, session))
        counted_device: bytes | None = None
        frames = TokenBucket(self.limits.frames_per_second, self.limits.frame_burst)
        pushes = TokenBucket(self.limits.events_per_second, self.limits.events_per_second)
        _log("connected", fields)
        try:
            async with asyncio.timeout(self.limits.handshake_seconds):
                while session.device is None and not session.closed:
                    await self._one_frame(ws, session, fields, frames, pushes)
            if session.device is not None:
                fields["device"] = session.device.hex()
                if self.per_device[session.device] >= self.limits.connections_per_device:
                    await self._fail(ws, session, "too_many_connections", fields)
                    return
                self.per_device[session.device] += 1
                counted_device = session.device
                _log("welcomed", fields)
            while not session.closed:
                await self._one_frame(ws, session, fields, frames, pushes)
            await self._drain(session)
            await ws.close(1000, "bye")
        except TimeoutError:
            self.closed_by_reason["handshake_timeout"] += 1
            await self._fail(ws, session, "handshake_timeout", fields)
        except (ConnectionClosed, _Done):
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            session.close()
            self.connections -= 1
            if counted_device is not None:
                self.per_device[counted_device] -= 1
            _log("closed", {**fields, "code": ws.close_code})

    async def _one_frame(
        self,
        ws: ServerConnection,
        session: HubSession,
        fields: dict[str, object],
        frames: TokenBucket,
        pushes: TokenBucket,
    ) -> None:
        frame = await ws.recv()
        if frames.take(1) > 0:
            await self._fail(ws, session, "flood", fields)
            raise _Done
        try:
            message = m.decode_from_client(frame)
        except m.ProtocolError as exc:
            self.protocol_errors[exc.code] += 1
            await self._fail(ws, session, exc.code, fields, str(exc))
            raise _Done from None
        if isinstance(message, m.Push):
            wait = pushes.take(len(message.events))
            if wait > 0:
                await asyncio.sleep(min(wait, 5.0))
        await session.receive(message)
        if session.closed:
            await self._drain(session)
            # A welcomed client that said bye gets a normal close; a refused
            # or failed one a policy-violation close.
            polite = session.conn.member is not None and not session.conn.failure_sent
            await ws.close(1000 if polite else 1008, "bye" if polite else "closed")
            raise _Done

    async def _writer(self, ws: ServerConnection, session: HubSession) -> None:
        try:
            while True:
                frame = await session.outbox.get()  # encoded by the hub (live: once for all)
                await ws.send(frame)
                session.outbox.task_done()
        finally:
            # The link died (or the handler ended): unblock anyone queueing.
            session.abandon()

    async def _drain(self, session: HubSession) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await session.outbox.join()

    async def _fail(
        self,
        ws: ServerConnection,
        session: HubSession,
        code: str,
        fields: dict[str, object],
        message: str = "",
    ) -> None:
        _log("protocol error", {**fields, "code": code, "detail": message[:200]}, logging.WARNING)
        with contextlib.suppress(Exception):
            await ws.send(m.encode(m.Failure(code=code, message=(message or code)[:500])))
        with contextlib.suppress(Exception):
            await ws.close(1008, code)


def _peer(ws: ServerConnection) -> str:
    with contextlib.suppress(Exception):
        host, port = ws.remote_address[:2]
        return f"{host}:{port}"
    return "?"


def _log(msg: str, fields: dict[str, object], level: int = logging.INFO) -> None:
    log.log(level, msg, extra={"fields": fields})


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("vidda")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # websockets' own per-connection chatter duplicates ours; keep its warnings.
    logging.getLogger("vidda.websockets").setLevel(logging.WARNING)


async def run_server(
    home: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    limits: Limits | None = None,
    ready: Callable[[Server], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set)."""
    config = load_config(home)
    limits = limits or Limits()
    store = await EventLog.open(db_path(home), workspace=bytes.fromhex(config.workspace))
    hub = Hub(
        store,
        server_id=bytes.fromhex(config.server_id),
        # A new epoch every start: a cursor is only trusted within one run of
        # the server, so a server restored from a backup is never mistaken
        # for the one a client last saw (clients fall back to vectors).
        epoch=os.urandom(16),
        admins=[bytes.fromhex(a) for a in config.admins],
    )
    await hub.start()
    app = SyncServer(hub, limits)
    context = None
    if tls_cert or tls_key:
        if not (tls_cert and tls_key):
            raise ValueError("--tls-cert and --tls-key go together")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with serve(
            app.handler,
            host,
            port,
            process_request=app.process_request,
            max_size=limits.max_frame_bytes,
            compression=None,
            ping_interval=limits.ping_interval,
            ping_timeout=limits.ping_timeout,
            max_queue=16,
            close_timeout=2,  # a peer that stopped reading (a flooder) is let go quickly
            ssl=context,
            logger=logging.getLogger("vidda.websockets"),
        ) as server:
            if ready is not None:
                ready(server)
            _log(
                "serving",
                {
                    "workspace": config.workspace,
                    "server_id": config.server_id,
                    "port": server.sockets[0].getsockname()[1] if server.sockets else port,
                },
            )
            await stop.wait()
            _log("shutting down", {"connections": app.connections})
            server.close(close_connections=True)
            await server.wait_closed()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await store.close()
