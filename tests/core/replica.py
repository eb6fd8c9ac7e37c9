"""A test double: an in-memory device that seals events like the store does.

It keeps one chain per plan (seq, prev), an HLC with an adjustable wall
clock, and a local `PlanState` fed with everything it made or received.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.events.bodies import Body
from core.events.envelope import Event, seal
from core.events.hlc import HybridClock
from core.events.ids import ZERO_HASH
from core.identity.keyfile import DeviceKey
from core.projections.plan_state import PlanState, evolve


class Replica:
    def __init__(self, workspace: bytes, plan: bytes, wall_ms: int = 1_700_000_000_000) -> None:
        self.key = DeviceKey.generate()
        self.workspace = workspace
        self.plan = plan
        self.seq = 0
        self.prev = ZERO_HASH
        self.wall_ms = wall_ms
        self.clock = HybridClock()
        self.state = PlanState(plan)
        self.made: list[Event] = []

    @property
    def device(self) -> bytes:
        return self.key.public_key

    def make(self, *bodies: Body) -> list[Event]:
        out = []
        for body in bodies:
            self.seq += 1
            self.wall_ms += 1
            ev = seal(
                self.key,
                workspace=self.workspace,
                plan=self.plan,
                seq=self.seq,
                prev=self.prev,
                hlc=self.clock.now(self.wall_ms),
                body=body,
            )
            self.prev = ev.id
            evolve(self.state, ev)
            self.made.append(ev)
            out.append(ev)
        return out

    def receive(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.clock.observe(ev.env.hlc, self.wall_ms)
            evolve(self.state, ev)
