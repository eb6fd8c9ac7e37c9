"""The membership fold: admin-signed, order-independent, revocation final."""

from __future__ import annotations

import itertools

from core.events.bodies import Cutoff, MemberAdded, MemberRevoked, NoteWritten
from core.events.ids import new_uuid7
from core.identity.membership import Membership
from tests.core.replica import Replica

WS = new_uuid7()
PLAN = new_uuid7()


def _admin() -> Replica:
    return Replica(WS, WS)


def test_only_admin_keys_count_and_the_latest_grant_wins_in_any_order() -> None:
    admin, other_admin, stranger = _admin(), _admin(), _admin()
    device = Replica(WS, PLAN).device
    other_admin.wall_ms = admin.wall_ms + 10  # its grant (editor) is the later one
    events = [
        *admin.make(MemberAdded(device=device, name="Kari", role="viewer")),
        *other_admin.make(MemberAdded(device=device, name="Kari N.", role="editor")),
        # A non-admin promoting someone, or itself, counts for nothing.
        *stranger.make(MemberAdded(device=stranger.device, name="Me", role="owner")),
    ]
    views = set()
    for order in itertools.permutations(events):
        members = Membership.of(WS, [admin.device, other_admin.device], order)
        m = members.member(device)
        assert m is not None
        views.add((m.name, m.role))
        assert members.member(stranger.device) is None
        assert members.apply(order[0]) in (None, "not_admin")
    assert views == {("Kari N.", "editor")}
    assert members.write_problem(stranger.device, PLAN, 1) == "not_member"
    assert members.write_problem(stranger.device, WS, 1) == "not_admin"


def test_roles_and_plan_limits_decide_who_writes_and_reads() -> None:
    admin = _admin()
    viewer, limited, editor = (Replica(WS, PLAN).device for _ in range(3))
    other = new_uuid7()
    members = Membership.of(
        WS,
        [admin.device],
        admin.make(
            MemberAdded(device=viewer, name="V", role="viewer"),
            MemberAdded(device=limited, name="L", role="editor", plans=[PLAN]),
            MemberAdded(device=editor, name="E", role="editor"),
        ),
    )
    assert members.write_problem(viewer, PLAN, 1) == "read_only"
    assert members.may_read(viewer, PLAN)
    assert members.write_problem(limited, PLAN, 1) is None
    assert members.write_problem(limited, other, 1) == "no_access"
    assert not members.may_read(limited, other) and members.may_read(limited, WS)
    assert members.write_problem(editor, other, 1) is None
    assert members.write_problem(admin.device, other, 1) is None  # admins own every plan
    assert members.write_problem(admin.device, WS, 1) is None


def test_revocation_is_final_and_cuts_at_the_largest_cut_off() -> None:
    admin = _admin()
    device = Replica(WS, PLAN).device
    events = admin.make(
        MemberAdded(device=device, name="K", role="editor"),
        MemberRevoked(device=device, cutoffs=[Cutoff(plan=PLAN, seq=3)]),
        MemberRevoked(device=device, cutoffs=[Cutoff(plan=PLAN, seq=5)]),
        # A later grant does not bring a revoked key back.
        MemberAdded(device=device, name="K", role="owner"),
    )
    for order in itertools.permutations(events):
        members = Membership.of(WS, [admin.device], order)
        m = members.member(device)
        assert m is not None and m.revoked and m.cutoffs == {PLAN: 5}
        assert members.write_problem(device, PLAN, 5) is None
        assert members.write_problem(device, PLAN, 6) == "revoked"
        assert not members.may_read(device, PLAN)
    members.extend_cutoffs(device, {PLAN: 7})  # what a server held on arrival
    assert members.write_problem(device, PLAN, 7) is None


def test_plan_events_in_the_membership_fold_are_not_membership() -> None:
    admin = _admin()
    plan_author = Replica(WS, PLAN)
    members = Membership(WS, [admin.device])
    (note,) = plan_author.make(NoteWritten(note=new_uuid7(), target=None, text="x"))
    assert members.apply(note) == "not_membership"
