"""What a connection tells its owner, one frozen class per thing that happened."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from cyan.protocol.messages import EventInfo, HelloInfo, SubscriptionInfo
from cyan.protocol.ota import ChunkInfo, UpdateParams
from cyan.protocol.payloads import Description


class RequestKind(Enum):
    DESCRIBE = "describe"
    FUNCTION = "function"
    VARIABLE = "variable"
    SIGNAL = "signal"
    TIME = "time"
    UPDATE = "update"  # held for a whole update: UpdateBegin, every Chunk, UpdateDone


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every protocol event."""


# -- server side ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceBlockReceived(Event):
    """A connection without the server key got the device's 256-byte block: decrypt it with
    the server key and hand the plaintext (None if it does not decrypt) to
    ``open_device_block``."""

    block: bytes


@dataclass(frozen=True, slots=True)
class SessionKeyToSign(Event):
    """A connection without the server key built its session key: sign ``digest`` with the
    server key and hand the signature to ``sign_session_key``."""

    digest: bytes


@dataclass(frozen=True, slots=True)
class DeviceIdentified(Event):
    """The device named itself; answer with ``accept_device(registered_key)``."""

    device_id: str
    offered_public_key_der: bytes | None


@dataclass(frozen=True, slots=True)
class HelloReceived(Event):
    """The device's Hello arrived and ours went out: the device is breathing cyan."""

    device_id: str
    hello: HelloInfo


@dataclass(frozen=True, slots=True)
class DescribeReceived(Event):
    description: Description


@dataclass(frozen=True, slots=True)
class EventPublished(Event):
    event: EventInfo


@dataclass(frozen=True, slots=True)
class SubscriptionRequested(Event):
    subscription: SubscriptionInfo


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    """The answer to a request we sent, matched by its token."""

    kind: RequestKind
    token: int
    code: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class GoodbyeReceived(Event):
    payload: bytes


@dataclass(frozen=True, slots=True)
class UpdateAccepted(Event):
    """UpdateReady arrived: chunks go out now (``fast``: without per-chunk answers)."""

    fast: bool


@dataclass(frozen=True, slots=True)
class UpdateFinished(Event):
    """The update ended; on success the device applies it and restarts."""

    succeeded: bool
    failure: str | None


# -- device side ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NonceReceived(Event):
    """The server's 40-byte nonce arrived; our handshake block is on its way."""


@dataclass(frozen=True, slots=True)
class SessionStarted(Event):
    """Keys exchanged and our Hello sent; waiting for the server's Hello."""


@dataclass(frozen=True, slots=True)
class ServerHelloReceived(Event):
    """The server answered our Hello: breathing cyan."""


@dataclass(frozen=True, slots=True)
class DescribeRequested(Event):
    token: int
    flags: int
    message_id: int


@dataclass(frozen=True, slots=True)
class FunctionCallRequested(Event):
    token: int
    name: str
    argument: str


@dataclass(frozen=True, slots=True)
class VariableRequested(Event):
    token: int
    name: str
    message_id: int


@dataclass(frozen=True, slots=True)
class SignalRequested(Event):
    on: bool


@dataclass(frozen=True, slots=True)
class EventDelivered(Event):
    event: EventInfo


@dataclass(frozen=True, slots=True)
class TimeReceived(Event):
    unix_seconds: int


@dataclass(frozen=True, slots=True)
class PingAcknowledged(Event):
    pass


@dataclass(frozen=True, slots=True)
class UpdateBeginRequested(Event):
    """Answer with ``accept_update`` or ``refuse_update``."""

    token: int
    message_id: int
    params: UpdateParams


@dataclass(frozen=True, slots=True)
class ChunkArrived(Event):
    """Answer with ``take_chunk``, or drop it (as if the network lost it)."""

    token: int
    message_id: int
    chunk: ChunkInfo


@dataclass(frozen=True, slots=True)
class UpdateDoneRequested(Event):
    """Answer with ``answer_update_done`` once the events before it are handled."""

    token: int
    message_id: int


@dataclass(frozen=True, slots=True)
class UpdateAborted(Event):
    """The server sent UpdateAbort: the update is off, the old firmware stays."""
