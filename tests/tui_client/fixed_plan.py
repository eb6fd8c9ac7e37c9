"""A device home with the Aure plan and four days of edits by two people,
byte for byte the same on every run and machine: device keys from fixed
seeds, the log's clock and every new id from counters (no wall clock, no
randomness). The snapshot tests draw it; the Pilot tests step through it.

The days (UTC):

* 2021-01-27 09:00  Kari creates the Aure plan (phase 1 is done already)
* 2021-01-28 10:00  Kari reclassifies Grendelagene (influence 3, champion),
                    completes the first activity not done; Kari and Bjørn, offline,
                    revise the desired result: a conflict
* 2021-01-29 14:00  Kari marks phase 2 done
* 2021-02-01 09:00  Kari: Ungdomsrådet gets influence 2, interest 3; a new
                    actor, Sámi nuoraid searvi
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from core.commands import edits
from core.commands.aure_demo import aure_plan
from core.events.bodies import MemberAdded
from core.identity.keyfile import DeviceKey, save_key
from core.identity.profile import Profile, save_profile
from core.projections.plan_state import PlanState
from core.store.event_log import EventLog
from tui_client.home import Home

PASS = "fast-passord"
DAY_MS = 86_400_000
T0 = 1_611_738_000_000  # 2021-01-27T09:00:00Z
KARI = DeviceKey.from_seed(hashlib.sha256(b"vidda-snapshot-kari").digest())
BJORN = DeviceKey.from_seed(hashlib.sha256(b"vidda-snapshot-bjorn").digest())
WORKSPACE = bytes.fromhex("0177439c8a0070008000000000000001")


class FixedIds:
    """UUIDv7-shaped ids from a counter: increasing, never random."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, now_ms: int | None = None) -> bytes:
        self.n += 1
        head = T0.to_bytes(6, "big") + (0x7000 | self.n).to_bytes(2, "big")
        return head + b"\x80" + self.n.to_bytes(7, "big")


class FixedClock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> int:
        return self.ms


@contextlib.contextmanager
def fixed_ids() -> Iterator[None]:
    ids = FixedIds()
    with (
        mock.patch("core.commands.edits.new_uuid7", ids),
        mock.patch("core.commands.aure_demo.new_uuid7", ids),
    ):
        yield


@dataclass
class FixedPlan:
    home: Home
    plan: bytes


def _actor(state: PlanState, name: str) -> bytes:
    return next(
        eid
        for (kind, eid), ent in sorted(state.entities.items())
        if kind == "actor" and ent.value("name") == name
    )


async def build(path: Path) -> FixedPlan:
    """The home at `path`, unlocked (the app never asks for the passphrase)."""
    path.mkdir(parents=True, exist_ok=True)
    save_key(path / "device.key", KARI, PASS, scrypt_n=2**10)
    save_profile(
        path / "profile.json",
        Profile(
            workspace=WORKSPACE.hex(),
            device=KARI.public_key.hex(),
            name="Kari Nordmann",
            created="2021-01-27T09:00:00+00:00",
            admins=[KARI.public_key.hex()],
        ),
    )
    clock = FixedClock()
    log = await EventLog.open(path / "vidda.db", workspace=WORKSPACE, now_ms=clock)
    try:
        with fixed_ids():
            await log.append(
                KARI,
                WORKSPACE,
                [
                    MemberAdded(device=KARI.public_key, name="Kari Nordmann", role="owner"),
                    MemberAdded(device=BJORN.public_key, name="Bjørn Eira", role="editor"),
                ],
            )
            plan, bodies = aure_plan()
            await log.append(KARI, plan, bodies)

            clock.ms = T0 + DAY_MS + 3_600_000
            state = await log.load_state(plan)
            grender = _actor(state, "Grendelagene")
            await log.append(
                KARI,
                plan,
                edits.set_fields(state, "actor", grender, {"influence": 3, "stance": "champion"}),
            )
            state = await log.load_state(plan)
            first = min(
                (ent.value("position"), eid)
                for (kind, eid), ent in state.entities.items()
                if kind == "activity" and ent.value("status") != "done"
            )[1]
            await log.append(
                KARI,
                plan,
                edits.set_fields(
                    state,
                    "activity",
                    first,
                    {"status": "done", "outcome": "19 politikere deltok"},
                ),
            )
            clock.ms += 300_000
            state = await log.load_state(plan)
            await log.append(
                BJORN,
                plan,
                edits.set_fields(
                    state, "plan", plan, {"desired_result": "Bred medvirkning er gjennomført."}
                ),
            )
            await log.append(
                KARI,
                plan,
                edits.set_fields(
                    state,
                    "plan",
                    plan,
                    {"desired_result": "Det er skapt positivt engasjement i alle grender."},
                ),
            )

            clock.ms = T0 + 2 * DAY_MS + 5 * 3_600_000
            state = await log.load_state(plan)
            phases = sorted(
                (ent.value("position"), eid)
                for (kind, eid), ent in state.entities.items()
                if kind == "phase"
            )
            await log.append(
                KARI,
                plan,
                edits.set_fields(
                    state,
                    "phase",
                    phases[1][1],
                    {"status": "done", "actual_end": "2021-01-29"},
                ),
            )

            clock.ms = T0 + 5 * DAY_MS
            state = await log.load_state(plan)
            youth = _actor(state, "Ungdomsrådet")
            await log.append(
                KARI,
                plan,
                edits.set_fields(state, "actor", youth, {"influence": 2, "interest": 3}),
            )
            _, body = edits.add_entity(
                state,
                "actor",
                {
                    "name": "Sámi nuoraid searvi",
                    "type": "organisation",
                    "category": "youth",
                    "participation": "should",
                    "influence": 1,
                    "interest": 3,
                },
            )
            await log.append(KARI, plan, [body])
    finally:
        await log.close()
    home = Home(path)
    home.signer(PASS)
    return FixedPlan(home=home, plan=plan)
