"""The workspace's membership, folded from its signed membership log (pure).

Who may do what is itself a log of signed events (`MemberAdded`,
`MemberRevoked`) in the log whose plan id is the workspace id, so every
replica can check authorship offline. The fold is order-independent:

* only events signed by one of the workspace's **admin keys** (the trust
  anchors: the device that created the workspace, and the keys a server was
  set up with) count; anything else in the membership log is ignored here
  and rejected by the server (`not_admin`);
* for each device the `MemberAdded` with the greatest (hlc, author, seq)
  wins (name, role, plans);
* `MemberRevoked` is final: a revoked key stays revoked (enrol a new key);
  its cut-off per plan is the largest any revocation names, so no valid
  event is ever cut by a later, smaller revocation. A server adds the seqs it
  held when the revocation arrived (`extend_cutoffs`).

Admin keys are owners of every plan.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from core.events.bodies import MemberAdded, MemberRevoked
from core.events.envelope import Event

ROLES = ("owner", "editor", "viewer")


class MemberInfo(msgspec.Struct, frozen=True):
    device: bytes
    name: str
    role: str  # owner | editor | viewer
    plans: tuple[bytes, ...]  # empty: every plan
    admin: bool = False
    revoked: bool = False
    cutoffs: dict[bytes, int] = {}  # plan -> last valid seq (revoked devices)
    affiliation: str | None = None  # municipality | adviser | researcher | other


class _Added(msgspec.Struct):
    order: tuple[int, bytes, int]
    body: MemberAdded


class Membership:
    """The members of one workspace, given its admin keys."""

    def __init__(self, workspace: bytes, admins: Iterable[bytes]) -> None:
        self.workspace = workspace
        self.admins = frozenset(admins)
        self._added: dict[bytes, _Added] = {}
        self._revoked: dict[bytes, dict[bytes, int]] = {}

    @classmethod
    def of(cls, workspace: bytes, admins: Iterable[bytes], events: Iterable[Event]) -> Membership:
        members = cls(workspace, admins)
        for ev in events:
            members.apply(ev)
        return members

    def apply(self, ev: Event) -> str | None:
        """Fold one event of the membership log; the reason it does not count, if so."""
        if ev.env.plan != self.workspace:
            return "not_membership"
        if ev.env.author not in self.admins:
            return "not_admin"
        body = ev.body
        if isinstance(body, MemberAdded):
            order = (ev.env.hlc, ev.env.author, ev.env.seq)
            known = self._added.get(body.device)
            if known is None or order > known.order:
                self._added[body.device] = _Added(order, body)
        elif isinstance(body, MemberRevoked):
            cut = self._revoked.setdefault(body.device, {})
            for c in body.cutoffs:
                cut[c.plan] = max(c.seq, cut.get(c.plan, 0))
        else:
            return "not_membership"
        return None

    def extend_cutoffs(self, device: bytes, heads: dict[bytes, int]) -> None:
        """Raise a revoked device's cut-offs to `heads` (what a server held)."""
        cut = self._revoked.get(device)
        if cut is None:
            return
        for plan, seq in heads.items():
            cut[plan] = max(seq, cut.get(plan, 0))

    def revoked_devices(self) -> list[bytes]:
        return list(self._revoked)

    def member(self, device: bytes) -> MemberInfo | None:
        admin = device in self.admins
        added = self._added.get(device)
        if added is None and not admin:
            return None
        revoked = device in self._revoked
        cut = dict(self._revoked.get(device, {}))
        if added is None:
            return MemberInfo(device, "admin", "owner", (), True, revoked, cut)
        b = added.body
        role = "owner" if admin else b.role
        plans = () if admin else tuple(b.plans)
        return MemberInfo(device, b.name, role, plans, admin, revoked, cut, b.affiliation)

    def members(self) -> list[MemberInfo]:
        devices = sorted(set(self._added) | self.admins)
        return [m for d in devices if (m := self.member(d)) is not None]

    def may_read(self, device: bytes, plan: bytes) -> bool:
        m = self.member(device)
        if m is None or m.revoked:
            return False
        return plan == self.workspace or not m.plans or plan in m.plans

    def write_problem(self, author: bytes, plan: bytes, seq: int) -> str | None:
        """Why `author` may not have written event `seq` of `plan` (None: it may).

        Stable codes: not_admin (membership log), not_member, revoked,
        read_only (viewer), no_access (a plan outside the member's plans).
        """
        m = self.member(author)
        if plan == self.workspace:
            return None if author in self.admins else "not_admin"
        if m is None:
            return "not_member"
        if m.revoked and seq > m.cutoffs.get(plan, 0):
            return "revoked"
        if m.role == "viewer":
            return "read_only"
        if m.plans and plan not in m.plans:
            return "no_access"
        return None
