"""Upcasting: older body shapes are read as the current ones, never rewritten.

An old shape keeps its historic type tag (`Name/1`, `Name/2`, …) in the
signed envelope forever. On read, the raw body is decoded to builtins, the
upcaster turns it into the current shape, and the current class validates
it. The stored bytes (and so signatures and ids) stay exactly as written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.events.bodies import ActorIdentified, Body

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _actor_identified_v1(body: dict[str, Any]) -> dict[str, Any]:
    """v1 (pre-release pilot format) called influence `power` and the
    must/should/can participation `role`, and had no actor type."""
    out = dict(body)
    if "power" in out:
        out["influence"] = out.pop("power")
    if "role" in out:
        out["participation"] = out.pop("role")
    return out


UPCASTERS: dict[str, tuple[type[Body], Upcaster]] = {
    "ActorIdentified/1": (ActorIdentified, _actor_identified_v1),
}
