"""What both ends of a connection share: buffers, the encrypted channel, message ids.

``ServerConnection`` (server.py) and ``DeviceConnection`` (device.py) build on
``Connection``. The caller feeds bytes with ``receive_data``, writes what
``data_to_send`` returns, and handles ``events_received``; a ``ProtocolError``
from any call means: log its stage and reason, then close the socket.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from cyan.protocol import crypto
from cyan.protocol.coap import CoapMessage, CoapType
from cyan.protocol.errors import NoTokenFree, ProtocolError, Stage
from cyan.protocol.events import Event, RequestKind
from cyan.protocol.exchanges import RecentExchanges
from cyan.protocol.framing import FrameDecoder, encode_frame
from cyan.protocol.handshake import RandomBytes, SessionMaterial
from cyan.protocol.messages import empty_ack

Clock = Callable[[], float]
RequestBuilder = Callable[[int, bytes], CoapMessage]  # (message id, token) -> the request
# Device-os has 960-byte messages at most; describes with module lists and 1 KB events fit.
DEFAULT_MAX_FRAME_BYTES = 8192
TOKEN_SPACE = 256  # tokens are one byte (protocol.md §4.2)
# Frames handled per receive_data call; the rest wait in ``backlog`` so that the caller can
# let other connections run in between (one read can hold thousands of small frames).
FRAMES_PER_STEP = 64


class SecureChannel:
    """Framing plus AES in both directions, for one session."""

    __slots__ = ("_decoder", "_receive", "_send")

    def __init__(self, material: SessionMaterial, max_frame_bytes: int) -> None:
        # Both directions start from the same IV and then evolve apart (protocol.md §3.3).
        self._send = crypto.SessionCipher(material.aes_key, material.iv)
        self._receive = crypto.SessionCipher(material.aes_key, material.iv)
        self._decoder = FrameDecoder(max_frame_bytes)

    def seal(self, message: CoapMessage) -> bytes:
        return encode_frame(self._send.seal(message.encode()))

    def open(self, data: bytes, limit: int | None = None) -> list[CoapMessage]:
        frames = self._decoder.feed(data, limit)
        return [CoapMessage.decode(self._receive.open(frame)) for frame in frames]

    @property
    def backlog(self) -> bool:
        return self._decoder.ready

    @property
    def between_frames(self) -> bool:
        """No part of a frame is waiting for the rest of it."""
        return self._decoder.buffered == 0


class Connection(ABC):
    # Slots everywhere on the per-connection path: a gateway holds one per device.
    __slots__ = (
        "_channel",
        "_clock",
        "_events",
        "_exchanges",
        "_max_frame_bytes",
        "_message_id",
        "_next_token",
        "_out",
        "_pending",
        "_random",
        "_raw",
    )

    def __init__(self, *, random_bytes: RandomBytes, clock: Clock, max_frame_bytes: int) -> None:
        self._random = random_bytes
        self._clock = clock
        self._max_frame_bytes = max_frame_bytes
        self._raw = bytearray()  # handshake bytes, and early frames before the channel exists
        self._out = bytearray()
        self._events: list[Event] = []
        self._channel: SecureChannel | None = None
        self._message_id = 0
        self._next_token = 0
        self._pending: dict[int, RequestKind] = {}
        self._exchanges = RecentExchanges()

    # -- the caller's side ----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    @property
    def established(self) -> bool:
        return self._channel is not None

    def receive_data(self, data: bytes) -> None:
        if self._channel is None:
            self._raw += data
            self._advance_handshake()
        else:
            self._open_frames(self._channel, data)

    @property
    def backlog(self) -> bool:
        """Whole frames wait that ``receive_data`` left for later: call it again (with
        b"") before reading more from the socket."""
        return self._channel is not None and self._channel.backlog

    def receive_eof(self) -> None:
        """The peer closed its side; raises the error that names where we were."""
        raise ProtocolError(self._eof_stage(), self._eof_reason())

    def send(self, message: CoapMessage) -> None:
        if self._channel is None:
            raise ProtocolError(Stage.SESSION, "cannot send a message before the handshake ends")
        self._exchanges.replied(message)
        self._out += self._channel.seal(message)

    def forget(self, token: int) -> None:
        """Stop waiting for the answer to ``token`` (the caller's timeout fired)."""
        self._pending.pop(token, None)

    @property
    def pending_requests(self) -> int:
        return len(self._pending)

    # -- for the two ends ------------------------------------------------------------------

    @abstractmethod
    def _advance_handshake(self) -> None: ...

    @abstractmethod
    def _handle(self, message: CoapMessage) -> None: ...

    @abstractmethod
    def _eof_stage(self) -> Stage: ...

    def _eof_reason(self) -> str:
        return "the peer closed the connection"

    def _take_raw(self, count: int) -> bytes | None:
        if len(self._raw) < count:
            return None
        block = bytes(self._raw[:count])
        del self._raw[:count]
        return block

    def _start_channel(self, material: SessionMaterial) -> None:
        self._channel = SecureChannel(material, self._max_frame_bytes)
        early, self._raw = bytes(self._raw), bytearray()
        if early:  # frames that arrived in the same read as the last handshake block
            self._open_frames(self._channel, early)

    def _open_frames(self, channel: SecureChannel, data: bytes) -> None:
        for message in channel.open(data, FRAMES_PER_STEP):
            repeat, reply = self._exchanges.repeat(message, self._clock())
            if not repeat:
                self._handle(message)
            elif reply is not None:
                self._out += channel.seal(reply)

    def _next_id(self) -> int:
        self._message_id = (self._message_id + 1) & 0xFFFF
        return self._message_id

    def _request(self, kind: RequestKind, build: RequestBuilder) -> int:
        """Send a request that waits for an answer, and return its token."""
        if self._channel is None:  # checked before a token is taken, so none leaks
            raise ProtocolError(Stage.SESSION, "cannot send a request before the handshake ends")
        token = self._allocate_token(kind)
        self.send(build(self._next_id(), bytes([token])))
        return token

    def _allocate_token(self, kind: RequestKind) -> int:
        if len(self._pending) >= TOKEN_SPACE:
            raise NoTokenFree("256 requests already wait for this device's answers")
        while self._next_token in self._pending:
            self._next_token = (self._next_token + 1) % TOKEN_SPACE
        token = self._next_token
        self._next_token = (token + 1) % TOKEN_SPACE
        self._pending[token] = kind
        return token

    def _ack_if_confirmable(self, message: CoapMessage) -> None:
        if message.type == CoapType.CON:
            self.send(empty_ack(message.message_id))

    def _emit(self, event: Event) -> None:
        self._events.append(event)
