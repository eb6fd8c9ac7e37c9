"""The sans-I/O connections, wired to each other through real frames (no network)."""

from __future__ import annotations

import pytest

from core.events.ids import new_uuid7
from core.identity.keyfile import DeviceKey
from core.sync import messages as m
from core.sync.connection import ClientConnection, Member, ServerConnection, State

WS = new_uuid7()
PLAN = new_uuid7()


class Pair:
    """A client and a server passing encoded frames both ways until quiet."""

    def __init__(
        self,
        key: DeviceKey,
        members: dict[bytes, Member],
        workspace: bytes = WS,
        versions: list[int] | None = None,
    ) -> None:
        self.server = ServerConnection(
            server_id=b"S" * 16,
            epoch=b"E" * 16,
            nonce=new_uuid7() * 2,
            workspaces=frozenset({WS}),
            members=lambda ws, dev: members.get(dev),
        )
        self.client = ClientConnection(signer=key, workspace=workspace)
        if versions is not None:  # an older or newer client
            (hello,) = self.client.messages_to_send()
            self.client._out.append(
                m.Hello(versions=versions, workspace=hello.workspace, device=hello.device)
            )

    def run(self) -> None:
        while True:
            to_server = self.client.messages_to_send()
            for msg in to_server:
                self.server.receive_message(m.decode_from_client(m.encode(msg)))
            to_client = self.server.messages_to_send()
            for msg in to_client:
                self.client.receive_message(m.decode_from_server(m.encode(msg)))
            if not to_server and not to_client:
                return


def test_handshake_then_subscribe_and_push_reach_the_shell() -> None:
    key = DeviceKey.generate()
    pair = Pair(key, {key.public_key: Member(role="editor", plans=[PLAN])})
    pair.run()
    assert pair.client.state is pair.server.state is State.READY
    assert pair.client.welcome == m.Welcome(role="editor", plans=[PLAN])
    assert pair.server.device == key.public_key
    sub = m.Subscribe(plans=[m.PlanWant(plan=PLAN, vector={})])
    pair.client.send(sub)
    pair.run()
    assert pair.server.work() == [sub]
    pair.client.send(m.Bye())
    pair.run()
    assert pair.server.state is State.CLOSED


@pytest.mark.parametrize(
    ("members", "workspace", "versions", "reason"),
    [
        ({}, WS, None, "not_member"),
        ("revoked", WS, None, "revoked"),
        ("ok", new_uuid7(), None, "unknown_workspace"),
        ("ok", WS, [99], "unsupported_version"),
    ],
    ids=["not_member", "revoked", "unknown_workspace", "unsupported_version"],
)
def test_refusals_are_typed_and_close(members, workspace, versions, reason) -> None:
    key = DeviceKey.generate()
    table = (
        {
            "revoked": {key.public_key: Member(role="editor", plans=[], revoked=True)},
            "ok": {key.public_key: Member(role="editor", plans=[])},
        }.get(members, {})
        if isinstance(members, str)
        else members
    )
    pair = Pair(key, table, workspace=workspace, versions=versions)
    pair.run()
    assert pair.client.refusal is not None and pair.client.refusal.reason == reason
    assert pair.client.state is pair.server.state is State.CLOSED


def test_a_proof_signed_by_another_key_is_refused() -> None:
    honest, thief = DeviceKey.generate(), DeviceKey.generate()
    pair = Pair(thief, {honest.public_key: Member(role="owner", plans=[])})
    # The thief claims the honest device's key but can only sign with its own.
    pair.client.messages_to_send()  # drop the client's own hello
    pair.server.receive_message(m.Hello(versions=[1], workspace=WS, device=honest.public_key))
    (challenge,) = pair.server.messages_to_send()
    pair.client.receive_message(challenge)
    pair.run()
    assert pair.server.state is State.CLOSED
    assert pair.client.refusal is not None and pair.client.refusal.reason == "bad_proof"


def test_messages_out_of_order_fail_and_close() -> None:
    key = DeviceKey.generate()
    server = ServerConnection(
        server_id=b"S" * 16,
        epoch=b"",
        nonce=bytes(32),
        workspaces=frozenset({WS}),
        members=lambda ws, dev: None,
    )
    server.receive_message(m.Push(batch=1, events=[]))  # before any hello
    (failure,) = server.messages_to_send()
    assert isinstance(failure, m.Failure) and failure.code == "unexpected_message"
    assert server.state is State.CLOSED and server.work() == []
    client = ClientConnection(signer=key, workspace=WS)
    client.receive_message(m.Events(plan=PLAN, events=[], cursor=0, more=False))
    assert client.state is State.CLOSED and client.failure is not None
    with pytest.raises(RuntimeError):
        client.send(m.Push(batch=1, events=[]))
