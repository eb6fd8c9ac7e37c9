"""A realistic, deterministic plan workload, built once and cached under bench/out/.

The plan: six phases, a dozen sub-goals, 150 activities, 120 actors and 60
needs; later creations (notes, involvements, decisions, activities, ...)
stop at `MAX_ENTITIES` live entities, and notes get removed now and then,
so the plan stays at a few hundred entities however long it runs. Then
edits by `devices` devices in sync rounds. In a round each device makes
`ROUND` edits seeing the plan as it was at the round's start plus its own
edits (so concurrent edits of one field happen,
and are later replaced together, as between real offline replicas). Each
device mostly edits the entities it created (people work on their own
activities); `CROSS` of its edits touch anyone's.

The mix is weighted towards what people actually do in a plan: revise an
activity (status, title, purpose, place, ...), schedule or move it, classify
actors, revise phases and needs, answer key questions, and now and then add
a note, an involvement, a decision or a new activity / actor / need. Every
edit carries `replaces` = the heads of the fields it sets, as its device saw
them, exactly like `core.commands.edits.set_fields`.

Events are sealed with `core.events.envelope.seal` (so the bytes are the real
ones) and stored through `EventLog.ingest`, round after round, so the log's
receive order is a synced replica's. Device keys, ids and clocks come from
fixed seeds: a given (events, devices) always yields the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from core.events import bodies as b
from core.events.bodies import KEY_QUESTIONS, Body
from core.events.envelope import FORMAT_VERSION, Event, decode_stored, seal
from core.events.hlc import pack
from core.events.ids import ZERO_HASH
from core.identity.keyfile import DeviceKey
from core.projections.positions import DIGITS, spread
from core.store.event_log import EventLog
from core.store.rows import read_events
from core.store.schema import PRAGMAS, SCHEMA

GENERATOR_VERSION = 4  # bump when the workload changes: the cache key includes it
ROUND = 25  # edits per device per sync round
CROSS = 0.08  # share of a device's edits that touch another device's entities
MAX_ENTITIES = 600  # live entities at most: once there, creations give way to edits
BASE_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z
ROUND_MS = 20 * 60 * 1000
INGEST_BATCH = 20_000

WORDS = [
    "sentrum",
    "grendelag",
    "ungdom",
    "eldre",
    "kommunestyret",
    "innbyggere",
    "folkemøte",
    "arbeidsverksted",
    "gjestebud",
    "næringsliv",
    "kulturhus",
    "skole",
    "idrettslag",
    "frivillige",
    "møteplass",
    "bibliotek",
    "kartlegging",
    "undersøkelse",
    "medvirkning",
    "planarbeid",
    "samarbeid",
    "prosess",
    "ressurser",
    "fylkeskommunen",
    "Distriktssenteret",
    "skjønnsmidler",
    "strategi",
    "tiltak",
    "evaluering",
    "rapport",
    "stedsanalyse",
    "torget",
    "havna",
    "brygga",
    "stier",
    "kaféen",
    "butikken",
    "bussruta",
    "ferja",
    "bredbånd",
    "boliger",
    "tilflytting",
    "stolthet",
    "identitet",
    "tilhørighet",
    "fellesskap",
    "engasjement",
    "dialog",
    "innspill",
    "workshop",
    "oppsummering",
    "vedtak",
    "budsjett",
    "ansvar",
    "oppfølging",
    "fremdrift",
    "og",
    "i",
    "for",
    "med",
    "til",
    "om",
    "på",
    "av",
    "fra",
    "hvordan",
    "hva",
    "hvem",
    "vi",
    "skal",
    "kan",
    "bør",
]
PLACES = (
    "Kulturhuset",
    "Rådhuset, kommunestyresalen",
    "Aure skole, aulaen",
    "Grendehuset på Tustna",
    "Digitalt (Teams)",
    "Torget i sentrum",
    "Biblioteket",
    "Samfunnshuset Lesund",
)
PEOPLE = ("Kari Nordmann", "Ola Hansen", "Ingrid Berg", "Per Olsen", "Sigrid Lie", "Ahmed Ali")
KEY_FILE = "meta.json"


@dataclass(frozen=True)
class Workload:
    """A cached plan log and what is needed to use it."""

    path: Path  # the SQLite log (checkpointed: no WAL beside it)
    events: int
    devices: int
    workspace: bytes
    plan: bytes
    seeds: tuple[bytes, ...]  # device key seeds, device 0 first

    def signer(self, device: int) -> DeviceKey:
        return DeviceKey.from_seed(self.seeds[device])

    def copy_to(self, directory: Path) -> Path:
        """A private copy of the log (for benchmarks that write)."""
        target = directory / self.path.name
        shutil.copyfile(self.path, target)
        return target


def schema_tag() -> str:
    """Short hash of the log's schema and event format: a cached log built
    under another schema (other indexes, other tables) is not reused."""
    text = f"{SCHEMA}|{PRAGMAS}|{FORMAT_VERSION}".encode()
    return hashlib.sha256(text).hexdigest()[:8]


def device_seed(i: int) -> bytes:
    return hashlib.sha256(f"vidda-bench-device-{i}".encode()).digest()


def plan_log(events: int, devices: int = 4, out: Path | None = None) -> Workload:
    """The cached log of a plan with `events` events by `devices` devices;
    generated (and cached under bench/out/) if not there yet."""
    from timing import OUT, progress

    out = out or OUT
    out.mkdir(parents=True, exist_ok=True)
    stem = f"plan-{events}-d{devices}-g{GENERATOR_VERSION}-s{schema_tag()}"
    path = out / f"{stem}.sqlite"
    meta_path = out / f"{stem}.json"
    if not (path.exists() and meta_path.exists()):
        _migrate_older(out, f"plan-{events}-d{devices}-g{GENERATOR_VERSION}-s", path, meta_path)
    if not (path.exists() and meta_path.exists()):
        progress(f"generating {events:,} signed events by {devices} devices (cached as {path})")
        started = time.perf_counter()
        tmp = out / f"{stem}.building-{os.getpid()}.sqlite"
        meta = asyncio.run(_build(tmp, events, devices))
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
        meta_path.write_text(json.dumps(meta))
        progress(f"generated in {time.perf_counter() - started:,.0f} s")
    meta = json.loads(meta_path.read_text())
    return Workload(
        path=path,
        events=events,
        devices=devices,
        workspace=bytes.fromhex(meta["workspace"]),
        plan=bytes.fromhex(meta["plan"]),
        seeds=tuple(device_seed(i) for i in range(devices)),
    )


def _migrate_older(out: Path, stem_prefix: str, path: Path, meta_path: Path) -> None:
    """Reuse the same workload cached under an older schema: opening a copy
    with `EventLog` migrates it (same events, same bytes), which is much
    quicker than signing them all again."""
    from timing import progress

    for older in sorted(out.glob(f"{stem_prefix}*.sqlite")):
        older_meta = older.with_suffix(".json")
        if older == path or ".building-" in older.name or not older_meta.exists():
            continue
        progress(f"migrating the cached {older.name} to the current schema")
        tmp = out / f"{path.stem}.building-{os.getpid()}.sqlite"
        shutil.copyfile(older, tmp)

        async def migrate(file: Path) -> None:
            log = await EventLog.open(file)
            await log.close()

        asyncio.run(migrate(tmp))
        conn = sqlite3.connect(tmp)
        conn.execute("VACUUM")  # the old table's pages
        conn.close()
        if schema_text_of(tmp) != schema_text_of(None):
            tmp.unlink()
            continue
        for suffix in ("-wal", "-shm"):
            Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, path)
        shutil.copyfile(older_meta, meta_path)
        return


def schema_text_of(path: Path | None) -> list[str]:
    """The CREATE statements of a log file (None: of a fresh one)."""
    conn = sqlite3.connect(":memory:" if path is None else path)
    try:
        if path is None:
            from core.store.event_log import _split_sql

            for statement in _split_sql(SCHEMA):
                conn.execute(statement)
        return sorted(r[0] for r in conn.execute("SELECT sql FROM sqlite_master") if r[0])
    finally:
        conn.close()


def read_raws(path: Path) -> list[bytes]:
    """Every stored event of the log in receive order (plain sqlite3, read-only)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [e.raw for e in read_events(conn)]
    finally:
        conn.close()


def field_changes(raws: list[bytes]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The workload as plain field changes (entity hex, kind, {field: value}),
    one per event, in receive order: what the peers replay."""
    for raw in raws:
        ev = decode_stored(raw)
        body = ev.body
        assert isinstance(body, Body)
        fields = {name: _plain(value) for name, value in body.sets()}
        if isinstance(body, b.EntityRemoved):
            fields = {"removed": True}
        yield body.entity_id(ev.env.plan).hex(), body.entity_kind(), fields


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- generation ------------------------------------------------------------------------


class _Generator:
    def __init__(self, events: int, devices: int) -> None:
        self.rng = random.Random(f"vidda-bench-{events}-{devices}")
        self.target = events
        self.devices = [DeviceKey.from_seed(device_seed(i)) for i in range(devices)]
        self.workspace = hashlib.sha256(b"vidda-bench-workspace").digest()[:16]
        self.plan = hashlib.sha256(b"vidda-bench-plan").digest()[:16]
        self.seq = [0] * devices
        self.prev = [ZERO_HASH] * devices
        self.last_ms = [0] * devices
        self.heads: dict[tuple[bytes, str], frozenset[bytes]] = {}  # synced view
        self.fields_of: dict[bytes, set[str]] = {}
        self.kind_of: dict[bytes, str] = {}
        self.owner: dict[bytes, int] = {}
        self.pools: dict[str, list[bytes]] = {}  # kind -> ids (creation order)
        self.removed: set[bytes] = set()

    # -- ids, texts, values

    def uuid(self) -> bytes:
        raw = bytearray(self.rng.randbytes(16))
        raw[6] = 0x70 | (raw[6] & 0x0F)
        raw[8] = 0x80 | (raw[8] & 0x3F)
        return bytes(raw)

    def words(self, lo: int, hi: int) -> str:
        text = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(lo, hi)))
        return text[:1].upper() + text[1:]

    def date(self) -> str:
        r = self.rng
        return f"{r.randint(2023, 2026)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"

    def position(self) -> str:
        n = self.rng.randint(1, 3)
        return "".join(self.rng.choice(DIGITS) for _ in range(n - 1)) + self.rng.choice(DIGITS[1:])

    # -- picking what to edit

    def pick(self, kind: str, device: int) -> bytes | None:
        pool = self.pools.get(kind)
        if not pool:
            return None
        r = self.rng
        for _ in range(8):
            eid = r.choice(pool)
            if eid in self.removed:
                continue
            if self.owner[eid] == device or r.random() < CROSS:
                return eid
        return None

    def edit_body(self, device: int) -> Body | None:
        r = self.rng
        x = r.random() * 100
        live = len(self.kind_of) - len(self.removed)
        if live >= MAX_ENTITIES and (85 <= x < 90 or 92 <= x < 99.2):
            x = r.random() * 85
        if x < 26:
            eid = self.pick("activity", device)
            if eid is None:
                return None
            choices = {
                "status": lambda: r.choice(("planned", "planned", "postponed", "cancelled")),
                "title": lambda: self.words(3, 7),
                "purpose": lambda: self.words(8, 24),
                "method": lambda: self.words(4, 12),
                "place": lambda: r.choice(PLACES),
                "responsible": lambda: r.choice(PEOPLE),
                "mode": lambda: r.choice(("physical", "digital", "hybrid")),
                "kind": lambda: r.choice(("workshop", "gjestebud", "meeting", "survey")),
            }
            names = r.sample(sorted(choices), 1 if r.random() < 0.8 else 2)
            return b.ActivityRevised(activity=eid, **{n: choices[n]() for n in names})
        if x < 35:
            eid = self.pick("activity", device)
            if eid is None:
                return None
            if r.random() < 0.5:
                return b.ActivityScheduled(activity=eid, date=self.date())
            return b.ActivityScheduled(
                activity=eid, date=self.date(), duration_minutes=r.choice((60, 90, 120, 180))
            )
        if x < 39:
            eid = self.pick("activity", device)
            if eid is None:
                return None
            if r.random() < 0.3:
                return b.ActivityMoved(activity=eid, phase=r.choice(self.pools["phase"]))
            return b.ActivityMoved(activity=eid, position=self.position())
        if x < 42:
            eid = self.pick("activity", device)
            if eid is None:
                return None
            return b.ActivityCompleted(activity=eid, outcome=self.words(6, 30))
        if x < 50:
            eid = self.pick("phase", device)
            if eid is None:
                return None
            pick = r.random()
            if pick < 0.4:
                return b.PhaseRevised(phase=eid, status=r.choice(("planned", "ongoing", "done")))
            if pick < 0.7:
                return b.PhaseRevised(phase=eid, planned_start=self.date(), planned_end=self.date())
            return b.PhaseRevised(phase=eid, description=self.words(10, 30))
        if x < 68:
            eid = self.pick("actor", device)
            if eid is None:
                return None
            choices = {
                "influence": lambda: r.randint(0, 3),
                "interest": lambda: r.randint(0, 3),
                "stance": lambda: r.choice(("champion", "supportive", "neutral", "sceptical")),
                "strategy": lambda: r.choice(("inform", "consult", "involve", "collaborate")),
                "participation": lambda: r.choice(("must", "should", "can")),
            }
            names = r.sample(sorted(choices), r.choice((1, 1, 2, 2, 3)))
            return b.ActorClassified(actor=eid, **{n: choices[n]() for n in names})
        if x < 71:
            eid = self.pick("actor", device)
            if eid is None:
                return None
            return b.ActorRevised(actor=eid, description=self.words(5, 20))
        if x < 79:
            eid = self.pick("need", device)
            if eid is None:
                return None
            if r.random() < 0.6:
                return b.NeedRevised(need=eid, status=r.choice(("open", "in_progress", "met")))
            return b.NeedRevised(need=eid, text=self.words(6, 20))
        if x < 82:
            eid = self.pick("sub_goal", device)
            if eid is None:
                return None
            if r.random() < 0.5:
                return b.SubGoalRevised(sub_goal=eid, status=r.choice(("open", "in_progress")))
            return b.SubGoalRevised(sub_goal=eid, text=self.words(6, 18))
        if x < 84:
            return b.KeyQuestionAnswered(
                question=r.choice(KEY_QUESTIONS),  # type: ignore[arg-type]
                answer=self.words(15, 50),
            )
        if x < 85:
            return b.DesiredResultRevised(text=self.words(10, 30))
        if x < 90:
            note = self.uuid()
            target = self.pick(r.choice(("activity", "actor", "phase")), device)
            return b.NoteWritten(note=note, target=target, text=self.words(10, 50))
        if x < 92:
            eid = self.pick("note", device)
            if eid is None:
                return None
            return b.NoteRevised(note=eid, text=self.words(10, 50))
        if x < 95:
            return b.InvolvementRecorded(
                involvement=self.uuid(),
                activity=self.pick("activity", device),
                category=r.choice(("residents", "youth", "elderly", "business", "politicians")),
                participants=r.randint(3, 120),
            )
        if x < 96:
            return b.DecisionRecorded(
                decision=self.uuid(),
                body=r.choice(("working_group", "executive_committee", "council")),
                text=self.words(8, 30),
                date=self.date(),
                case_ref=f"{r.randint(2023, 2026)}/{r.randint(1, 999)}",
            )
        if x < 97.5:
            return b.ActivityPlanned(
                activity=self.uuid(),
                title=self.words(3, 7),
                position=self.position(),
                phase=r.choice(self.pools["phase"]),
                kind=r.choice(("workshop", "gjestebud", "meeting", "survey", "public_meeting")),
            )
        if x < 98.3:
            return b.ActorIdentified(
                actor=self.uuid(),
                name=self.words(1, 4),
                category=r.choice(("residents", "business", "voluntary", "county")),
            )
        if x < 99.2:
            return b.NeedIdentified(
                need=self.uuid(),
                phase=r.choice(self.pools["phase"]),
                kind=r.choice(("knowledge", "process")),
                text=self.words(6, 20),
            )
        eid = self.pick("note", device)
        if eid is None:
            return None
        return b.EntityRemoved(entity=eid, kind="note")

    def setup_bodies(self) -> list[Body]:
        r = self.rng
        out: list[Body] = [
            b.PlanCreated(
                title="Et samlet Aure med et sentrum alle er stolte av",
                municipality="Aure",
                municipality_number="1576",
                county="Møre og Romsdal",
                themes=["sentrumsutvikling", "medvirkning"],
                period_start="2023-01-01",
                period_end="2026-12-31",
            )
        ]
        phase_names = ("Oppstart", "Innsikt", "Retning", "Tiltak", "Gjennomføring", "Evaluering")
        for pos, name in zip(spread(len(phase_names)), phase_names, strict=True):
            out.append(b.PhaseAdded(phase=self.uuid(), name=name, position=pos))
        for pos in spread(12):
            out.append(b.SubGoalAdded(sub_goal=self.uuid(), text=self.words(6, 16), position=pos))
        phases = [x.phase for x in out if isinstance(x, b.PhaseAdded)]
        for pos in spread(150):
            out.append(
                b.ActivityPlanned(
                    activity=self.uuid(),
                    title=self.words(3, 7),
                    position=pos,
                    phase=r.choice(phases),
                    kind=r.choice(("workshop", "gjestebud", "meeting", "survey")),
                    purpose=self.words(8, 24),
                )
            )
        for _ in range(120):
            out.append(
                b.ActorIdentified(
                    actor=self.uuid(),
                    name=self.words(1, 4),
                    category=r.choice(("politicians", "administration", "residents", "youth")),
                )
            )
        for _ in range(60):
            out.append(
                b.NeedIdentified(
                    need=self.uuid(),
                    phase=r.choice(phases),
                    kind=r.choice(("knowledge", "process")),
                    text=self.words(6, 20),
                )
            )
        return out

    # -- sealing and the synced view

    def seal(self, device: int, body: Body, ms: int, view: dict[tuple[bytes, str], Any]) -> Event:
        eid = body.entity_id(self.plan)
        names = [f for f, _ in body.sets()]
        if isinstance(body, b.EntityRemoved):
            names = sorted(self.fields_of.get(eid, ()))
        if not body.CREATES:
            seen: set[bytes] = set()
            for f in names:
                key = (eid, f)
                seen.update(view.get(key, self.heads.get(key, ())))
            body = msgspec.structs.replace(body, replaces=sorted(seen))  # type: ignore[type-var]
        ms = max(ms, self.last_ms[device] + 1)
        self.last_ms[device] = ms
        self.seq[device] += 1
        ev = seal(
            self.devices[device],
            workspace=self.workspace,
            plan=self.plan,
            seq=self.seq[device],
            prev=self.prev[device],
            hlc=pack(ms, 0),
            body=body,
        )
        self.prev[device] = ev.id
        if not isinstance(body, b.EntityRemoved):
            for f in names:
                view[(eid, f)] = (ev.id,)
        if body.CREATES or eid not in self.kind_of:
            kind = body.entity_kind()
            self.kind_of[eid] = kind
            self.owner[eid] = device
            self.pools.setdefault(kind, []).append(eid)
        self.fields_of.setdefault(eid, set()).update(names)
        return ev

    def merge(self, round_events: list[Event]) -> None:
        """Everyone syncs: fold the round's edits into the shared view."""
        for ev in round_events:
            body = ev.body
            assert isinstance(body, Body)
            eid = body.entity_id(self.plan)
            if isinstance(body, b.EntityRemoved):
                self.removed.add(eid)
                continue
            gone = set(body.replaced())
            for f, _ in body.sets():
                key = (eid, f)
                self.heads[key] = frozenset((self.heads.get(key, frozenset()) - gone) | {ev.id})

    def rounds(self) -> Iterator[list[Event]]:
        setup = self.setup_bodies()[: self.target]
        view: dict[tuple[bytes, str], Any] = {}
        first = [self.seal(0, body, BASE_MS + i, view) for i, body in enumerate(setup)]
        self.merge(first)
        yield first
        made = len(first)
        start = BASE_MS + ROUND_MS
        while made < self.target:
            round_events: list[Event] = []
            step = ROUND_MS // (ROUND + 2)
            for device in range(len(self.devices)):
                view = {}
                i = 0
                while i < ROUND and made + len(round_events) < self.target:
                    body = self.edit_body(device)
                    if body is None:
                        continue
                    ms = start + device * 1_000 + i * step + self.rng.randint(0, step // 2)
                    round_events.append(self.seal(device, body, ms, view))
                    i += 1
            self.merge(round_events)
            made += len(round_events)
            start += ROUND_MS
            yield round_events


async def _build(path: Path, events: int, devices: int) -> dict[str, str]:
    from timing import progress

    gen = _Generator(events, devices)
    log = await EventLog.open(path, workspace=gen.workspace, synchronous="NORMAL")
    try:
        pending: list[bytes] = []
        done = 0
        last_note = time.perf_counter()

        async def flush() -> None:
            nonlocal done
            report = await log.ingest(pending)
            if report.rejected or report.evidence or report.duplicates:
                raise RuntimeError(f"generator produced bad events: {report.rejected[:3]}")
            done += len(pending)
            pending.clear()

        for round_events in gen.rounds():
            pending.extend(ev.raw for ev in round_events)
            if len(pending) >= INGEST_BATCH:
                await flush()
                if time.perf_counter() - last_note > 10:
                    progress(f"  {done:,} / {events:,} events")
                    last_note = time.perf_counter()
        if pending:
            await flush()
    finally:
        await log.close()
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return {"workspace": gen.workspace.hex(), "plan": gen.plan.hex()}


def with_consent(work: Workload, directory: Path) -> Path:
    """A private copy of the log with the plan's research consent given (by
    device 0, as the plan's last event): without it an export holds only
    aggregate counts (docs/research.md, "Consent")."""
    from core.events.bodies import ResearchConsentGiven

    path = work.copy_to(directory)

    async def give() -> None:
        log = await EventLog.open(path)
        try:
            await log.append(work.signer(0), work.plan, [ResearchConsentGiven(note="bench")])
        finally:
            await log.close()

    asyncio.run(give())
    return path
