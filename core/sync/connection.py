"""Sans-I/O sync connections: the handshake and message order, both sides.

Theory of operation
-------------------
A connection is a state machine fed one decoded message at a time with
`receive_message`; it never touches a socket, a clock or the store. What it
wants sent comes out of `messages_to_send()`; what the shell must do with
the store (catch a client up, ingest a push, apply events, record an ack)
comes out of `work()`. Timeouts, retries and the websocket live in the shell.

Server transitions::

    AWAIT_HELLO --hello, version + workspace ok--> AWAIT_PROOF   (sends challenge)
    AWAIT_HELLO --hello, no common version------> CLOSED        (refused unsupported_version)
    AWAIT_HELLO --hello, unknown workspace------> CLOSED        (refused unknown_workspace)
    AWAIT_PROOF --prove, member, signature ok---> READY         (sends welcome)
    AWAIT_PROOF --prove, otherwise--------------> CLOSED        (refused: not_member,
                                                                 revoked or bad_proof)
    READY       --subscribe | push--------------> READY         (work for the shell)
    READY       --bye---------------------------> CLOSED
    any         --a message out of order--------> CLOSED        (failure unexpected_message)

Client transitions::

    (start)         --------------------------> AWAIT_CHALLENGE (sends hello)
    AWAIT_CHALLENGE --challenge, version ours--> AWAIT_WELCOME   (sends prove)
    AWAIT_WELCOME   --welcome-----------------> READY
    AWAIT_*         --refused-----------------> CLOSED          (`refusal` says why)
    READY           --events | acked----------> READY           (work for the shell)
    any             --failure-----------------> CLOSED
    any             --a message out of order--> CLOSED          (`failure` says why)
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import msgspec

from core.events.envelope import Signer, public_key
from core.sync.messages import (
    PROTOCOL_VERSIONS,
    Acked,
    Bye,
    Challenge,
    ClientMessage,
    Events,
    Failure,
    Hello,
    Prove,
    Push,
    Refused,
    ServerMessage,
    Subscribe,
    Welcome,
    auth_payload,
    choose_version,
)


class State(enum.Enum):
    AWAIT_HELLO = "await_hello"
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_PROOF = "await_proof"
    AWAIT_WELCOME = "await_welcome"
    READY = "ready"
    CLOSED = "closed"


class Member(msgspec.Struct, frozen=True):
    """What the membership log says about a device in a workspace."""

    role: str  # owner | editor | viewer
    plans: list[bytes]  # plans it may read (all plans of the workspace for owners)
    revoked: bool = False


# (workspace, device) -> Member, or None when the device is not enrolled.
MemberLookup = Callable[[bytes, bytes], Member | None]


class ServerConnection:
    """One client connection, server side."""

    def __init__(
        self,
        *,
        server_id: bytes,
        epoch: bytes,
        nonce: bytes,
        workspaces: frozenset[bytes],
        members: MemberLookup,
        admins: list[bytes] | None = None,
    ) -> None:
        self.server_id = server_id
        self.epoch = epoch
        self._nonce = nonce
        self._workspaces = workspaces
        self._members = members
        self._admins = list(admins or [])
        self.state = State.AWAIT_HELLO
        self.version: int | None = None
        self.workspace: bytes | None = None
        self.device: bytes | None = None
        self.member: Member | None = None
        self.failure_sent = False
        self._out: list[ServerMessage] = []
        self._work: list[Subscribe | Push] = []

    def messages_to_send(self) -> list[ServerMessage]:
        out, self._out = self._out, []
        return out

    def work(self) -> list[Subscribe | Push]:
        """Subscribe and Push messages of an authenticated client, for the shell."""
        out, self._work = self._work, []
        return out

    def _refuse(self, reason: str, message: str) -> None:
        self._out.append(Refused(reason=reason, message=message))
        self.state = State.CLOSED

    def _fail(self, code: str, message: str) -> None:
        self.failure_sent = True
        self._out.append(Failure(code=code, message=message))
        self.state = State.CLOSED

    def receive_message(self, message: ClientMessage) -> None:
        match self.state, message:
            case State.CLOSED, _:
                return
            case State.AWAIT_HELLO, Hello():
                version = choose_version(message.versions)
                if version is None:
                    self._refuse(
                        "unsupported_version",
                        f"server speaks {list(PROTOCOL_VERSIONS)}, client {message.versions}",
                    )
                elif message.workspace not in self._workspaces:
                    self._refuse("unknown_workspace", "this server does not hold that workspace")
                else:
                    self.version = version
                    self.workspace, self.device = message.workspace, message.device
                    self._out.append(
                        Challenge(
                            version=version,
                            server_id=self.server_id,
                            epoch=self.epoch,
                            nonce=self._nonce,
                        )
                    )
                    self.state = State.AWAIT_PROOF
            case State.AWAIT_PROOF, Prove():
                assert self.workspace is not None and self.device is not None
                member = self._members(self.workspace, self.device)
                if member is None:
                    self._refuse("not_member", "this device is not enrolled in the workspace")
                elif member.revoked:
                    self._refuse("revoked", "this device's membership was revoked")
                elif not _proof_ok(
                    message.signature,
                    self.device,
                    auth_payload(self._nonce, self.workspace, self.server_id),
                ):
                    self._refuse("bad_proof", "the signature does not prove the device key")
                else:
                    self.member = member
                    self._out.append(
                        Welcome(
                            role=member.role,  # type: ignore[arg-type]
                            plans=list(member.plans),
                            admins=self._admins,
                        )
                    )
                    self.state = State.READY
            case State.READY, Subscribe() | Push():
                self._work.append(message)
            case State.READY, Bye():
                self.state = State.CLOSED
            case _:
                self._fail(
                    "unexpected_message",
                    f"{type(message).__name__.lower()} is not allowed in {self.state.value}",
                )


def _proof_ok(signature: bytes, device: bytes, payload: bytes) -> bool:
    try:
        public_key(device).verify(signature, payload)
    except Exception:  # InvalidSignature, or a device key that is not a curve point
        return False
    return True


class ClientConnection:
    """The client side of one connection."""

    def __init__(self, *, signer: Signer, workspace: bytes) -> None:
        self._signer = signer
        self.workspace = workspace
        self.state = State.AWAIT_CHALLENGE
        self.server_id: bytes | None = None
        self.epoch: bytes | None = None
        self.welcome: Welcome | None = None
        self.refusal: Refused | None = None
        self.failure: Failure | None = None
        self._out: list[ClientMessage] = [
            Hello(versions=list(PROTOCOL_VERSIONS), workspace=workspace, device=signer.public_key)
        ]
        self._work: list[Events | Acked] = []

    def messages_to_send(self) -> list[ClientMessage]:
        out, self._out = self._out, []
        return out

    def work(self) -> list[Events | Acked]:
        out, self._work = self._work, []
        return out

    def send(self, message: Subscribe | Push | Bye) -> None:
        """Queue a steady-state message; only once the server welcomed us."""
        if self.state is not State.READY:
            raise RuntimeError(f"cannot send {type(message).__name__} in {self.state.value}")
        self._out.append(message)
        if isinstance(message, Bye):
            self.state = State.CLOSED

    def receive_message(self, message: ServerMessage) -> None:
        match self.state, message:
            case State.CLOSED, _:
                return
            case _, Failure():
                self.failure = message
                self.state = State.CLOSED
            case State.AWAIT_CHALLENGE | State.AWAIT_WELCOME, Refused():
                self.refusal = message
                self.state = State.CLOSED
            case State.AWAIT_CHALLENGE, Challenge() if message.version in PROTOCOL_VERSIONS:
                self.server_id, self.epoch = message.server_id, message.epoch
                payload = auth_payload(message.nonce, self.workspace, message.server_id)
                self._out.append(Prove(signature=self._signer.sign(payload)))
                self.state = State.AWAIT_WELCOME
            case State.AWAIT_WELCOME, Welcome():
                self.welcome = message
                self.state = State.READY
            case State.READY, Events() | Acked():
                self._work.append(message)
            case _:
                self.failure = Failure(
                    code="unexpected_message",
                    message=f"{type(message).__name__.lower()} in {self.state.value}",
                )
                self.state = State.CLOSED
