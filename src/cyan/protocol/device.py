"""The device end of a connection, as Photon firmware behaves (protocol.md §2, §4, §7).

Used by the virtual device, by ``cyan doctor`` and by the benchmarks. Replies come
in two styles that real firmware uses: device-os 2.x answers describe and
variable requests with an empty ACK and a separate response; 0.x firmware
piggy-backs the answer on the ACK (§4.5, §4.7, §7).
"""

from __future__ import annotations

from collections.abc import Callable

from cyan.protocol import crypto, messages, ota, payloads
from cyan.protocol.coap import CoapCode, CoapMessage, CoapType
from cyan.protocol.connection import DEFAULT_MAX_FRAME_BYTES, Clock, Connection
from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.events import (
    ChunkArrived,
    DescribeRequested,
    EventDelivered,
    FunctionCallRequested,
    NonceReceived,
    PingAcknowledged,
    RequestKind,
    ServerHelloReceived,
    SessionStarted,
    SignalRequested,
    TimeReceived,
    UpdateAborted,
    UpdateBeginRequested,
    UpdateDoneRequested,
    VariableRequested,
)
from cyan.protocol.handshake import (
    NONCE_BYTES,
    SERVER_REPLY_BYTES,
    DeviceHandshake,
    DeviceState,
    RandomBytes,
    SessionMaterial,
)
from cyan.protocol.limits import LARGE
from cyan.protocol.messages import MessageKind, classify
from cyan.protocol.transfer import UpdateReceiver


class DeviceConnection(Connection):
    __slots__ = (
        "_handshake",
        "_hello",
        "function_argument_bytes",
        "separate_responses",
        "server_hello_received",
        "update",
    )

    def __init__(
        self,
        device_id: str,
        device_key: crypto.RsaPrivateKey,
        server_public_key: crypto.RsaPublicKey,
        hello: messages.HelloInfo,
        *,
        random_bytes: RandomBytes,
        clock: Clock,
        separate_responses: bool = True,
        send_public_key: bool = True,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        function_argument_bytes: int = LARGE.function_argument_bytes,
    ) -> None:
        super().__init__(random_bytes=random_bytes, clock=clock, max_frame_bytes=max_frame_bytes)
        self._handshake = DeviceHandshake(
            device_id, device_key, server_public_key, send_public_key=send_public_key
        )
        self._hello = hello
        self.update: UpdateReceiver | None = None  # the update being received, if any
        self.separate_responses = separate_responses
        # The release's argument buffer (protocol/limits.py): what is longer is cut short.
        self.function_argument_bytes = function_argument_bytes
        self.server_hello_received = False

    @property
    def handshake_state(self) -> DeviceState:
        return self._handshake.state

    # -- what the device sends on its own -------------------------------------------------

    def publish(self, event: messages.EventInfo, *, confirmable: bool = False) -> None:
        self.send(messages.event(self._next_id(), event, confirmable=confirmable))

    def subscribe(self, prefix: str, *, my_devices: bool, device_id: str | None = None) -> None:
        self.send(
            messages.subscribe(self._next_id(), prefix, my_devices=my_devices, device_id=device_id)
        )

    def post_describe(self, flags: int, body: bytes) -> None:
        self.send(messages.describe_post(self._next_id(), flags, body))

    def request_time(self) -> int:
        return self._request(RequestKind.TIME, messages.time_request)

    def ping(self) -> None:
        self.send(messages.ping(self._next_id()))

    def goodbye(self) -> None:
        """Say the device leaves on purpose, so the server records no dropped connection.

        Only for a Hello that offered the Goodbye flag (protocol.md §4.15); close after it.
        """
        self.send(messages.goodbye(self._next_id()))

    # -- answers to the server's requests -------------------------------------------------

    def reply_describe(self, request: DescribeRequested, body: bytes) -> None:
        token = bytes([request.token])
        if self.separate_responses:
            # device-os 2.x sends the describe as a separate CON 2.05 (protocol.md §7).
            self.send(
                messages.separate_response(
                    self._next_id(), CoapCode.CONTENT, token, body, confirmable=True
                )
            )
        else:
            self.send(messages.coded_ack(request.message_id, CoapCode.CONTENT, token, body))

    def reply_function(self, token: int, value: int) -> None:
        self.send(
            messages.separate_response(
                self._next_id(),
                CoapCode.CHANGED,
                bytes([token]),
                payloads.encode_function_result(value),
            )
        )

    def reply_variable(self, request: VariableRequested, value: bytes | None) -> None:
        """``value`` None means the device has no such variable (NON 4.04 on device-os)."""
        code = CoapCode.CONTENT if value is not None else CoapCode.NOT_FOUND
        token = bytes([request.token])
        if self.separate_responses:
            self.send(messages.separate_response(self._next_id(), code, token, value or b""))
        else:
            self.send(messages.coded_ack(request.message_id, code, token, value or b""))

    # -- over-the-air update (protocol.md §4.14) -------------------------------------------

    def accept_update(self, request: UpdateBeginRequested, *, fast: bool) -> None:
        """Empty ACK, then UpdateReady; fast OTA only if the server offered it too."""
        self.send(messages.empty_ack(request.message_id))
        use_fast = fast and request.params.fast
        self.update = UpdateReceiver(request.params, use_fast)
        self.send(ota.update_ready(self._next_id(), bytes([request.token]), use_fast))

    def refuse_update(self, request: UpdateBeginRequested) -> None:
        """Coded ACK 5.03, as device-os answers when it cannot prepare for the update."""
        token = bytes([request.token])
        self.send(messages.coded_ack(request.message_id, CoapCode.SERVICE_UNAVAILABLE, token))

    def take_chunk(self, arrived: ChunkArrived) -> None:
        """Store a chunk that arrived; a chunk never taken is one the network lost."""
        receiver = self.update
        if receiver is None:
            return
        if not receiver.fast:
            self.send(messages.empty_ack(arrived.message_id))
        index = receiver.place(arrived.chunk)
        if index is None:
            return  # out of range, or a fast-mode duplicate: dropped, as device-os does
        ok = arrived.chunk.crc_ok
        if ok:
            receiver.store(index, arrived.chunk.data)
        if not receiver.fast:
            self.send(ota.chunk_received(self._next_id(), bytes([arrived.token]), ok))

    def answer_update_done(
        self, request: UpdateDoneRequested, validate: Callable[[bytes], int]
    ) -> int | None:
        """Every chunk here: ``validate(image)`` and ACK 2.04 with its result (returned; 0
        means valid, and the device applies the update and resets). Otherwise ACK 4.00 and
        list the missing chunks (returns None)."""
        receiver, token = self.update, bytes([request.token])
        if receiver is None or not receiver.complete:
            self.send(messages.coded_ack(request.message_id, CoapCode.BAD_REQUEST, token))
            if receiver is not None:
                self.send(ota.chunk_missed(self._next_id(), receiver.missing()))
            return None
        result = validate(receiver.image())
        payload = ota.done_result(result)
        self.send(messages.coded_ack(request.message_id, CoapCode.CHANGED, token, payload))
        self.update = None
        return result

    def _on_update_begin(self, message: CoapMessage) -> None:
        if len(message.token) != 1:
            raise ProtocolError(Stage.SESSION, "UpdateBegin without a 1-byte token")
        params = ota.UpdateParams.decode(message.payload)
        self._emit(UpdateBeginRequested(message.token[0], message.message_id, params))

    def _on_chunk(self, message: CoapMessage) -> None:
        # device-os ignores a chunk outside an update, without even an ACK.
        if self.update is not None and len(message.token) == 1:
            chunk = ota.decode_chunk(message)
            self._emit(ChunkArrived(message.token[0], message.message_id, chunk))

    def _on_update_done(self, message: CoapMessage) -> None:
        # Answered by the caller, after the chunks that came before it were taken or lost.
        if len(message.token) != 1:
            raise ProtocolError(Stage.SESSION, "UpdateDone without a 1-byte token")
        self._emit(UpdateDoneRequested(message.token[0], message.message_id))

    # -- what arrives ---------------------------------------------------------------------

    def _advance_handshake(self) -> None:
        if self._handshake.state is DeviceState.START:
            nonce = self._take_raw(NONCE_BYTES)
            if nonce is None:
                return
            self._out += self._handshake.identify(nonce)
            self._emit(NonceReceived())
        if self._handshake.state is DeviceState.ID_SENT:
            reply = self._take_raw(SERVER_REPLY_BYTES)
            if reply is None:
                return
            material = self._handshake.read_session_key(reply)
            # The Hello takes the salt-seeded id plus one (protocol.md §7).
            self._message_id = material.first_message_id
            self._start_hello_then_channel(material)

    def _start_hello_then_channel(self, material: SessionMaterial) -> None:
        early, self._raw = bytes(self._raw), bytearray()
        self._start_channel(material)
        self.send(messages.hello(self._next_id(), messages.encode_hello_payload(self._hello)))
        self._emit(SessionStarted())
        if early:
            self.receive_data(early)

    def _eof_stage(self) -> Stage:
        if self._channel is None:
            return Stage.NONCE if self._handshake.state is DeviceState.START else Stage.REFUSED
        return Stage.HELLO if not self.server_hello_received else Stage.SESSION

    def _eof_reason(self) -> str:
        if self._handshake.state is DeviceState.START:
            return "the server closed the connection before sending its 40-byte nonce"
        if self._channel is None:
            return (
                "the server closed the connection after our handshake block: it did not "
                "accept this device (unknown device, another key registered, or it could "
                "not decrypt the block because this device holds another server's key)"
            )
        if not self.server_hello_received:
            return "the server closed the connection before answering our Hello"
        return "the server closed the connection"

    def _handle(self, message: CoapMessage) -> None:
        kind = classify(message)
        if kind is MessageKind.HELLO:
            self._ack_if_confirmable(message)
            if not self.server_hello_received:
                self.server_hello_received = True
                self._emit(ServerHelloReceived())
        elif kind is MessageKind.PING:
            self.send(messages.empty_ack(message.message_id))
        elif kind is MessageKind.DESCRIBE:
            self._on_describe(message)
        elif kind is MessageKind.FUNCTION_CALL:
            self._on_function_call(message)
        elif kind is MessageKind.VARIABLE_REQUEST:
            self._on_variable_request(message)
        elif kind is MessageKind.SIGNAL:
            query = message.uri_query
            self.send(messages.coded_ack(message.message_id, CoapCode.CHANGED, message.token))
            self._emit(SignalRequested(bool(query and query[0][:1] == b"\x01")))
        elif kind is MessageKind.EVENT:
            self._emit(EventDelivered(messages.decode_event(message)))
        elif kind is MessageKind.RESPONSE:
            self._on_response(message)
        elif kind is MessageKind.EMPTY_ACK:
            self._emit(PingAcknowledged())
        elif kind is MessageKind.UPDATE_BEGIN:
            self._on_update_begin(message)
        elif kind is MessageKind.CHUNK:
            self._on_chunk(message)
        elif kind is MessageKind.UPDATE_DONE:
            self._on_update_done(message)
        else:
            # device-os drops messages it does not know (protocol.md §5.3).
            self._ack_if_confirmable(message)

    def _on_describe(self, message: CoapMessage) -> None:
        query = message.uri_query
        flags = query[0][0] if query and query[0] else 0x03
        if len(message.token) != 1:
            raise ProtocolError(Stage.SESSION, "describe request without a 1-byte token")
        if self.separate_responses:
            self.send(messages.empty_ack(message.message_id))
        self._emit(DescribeRequested(message.token[0], flags, message.message_id))

    def _on_function_call(self, message: CoapMessage) -> None:
        path, query = message.uri_path, message.uri_query
        if len(message.token) != 1 or len(path) < 2:
            # device-os drops the connection on a request without a token (protocol.md §5.3).
            raise ProtocolError(Stage.SESSION, "function call without a token or a name")
        argument = query[0] if query else b""
        if len(argument) > self.function_argument_bytes:
            # As device-os functions.h does: a coded ACK 4.00 without the token, then the
            # function is called all the same with what fits (protocol/limits.py).
            self.send(messages.coded_ack(message.message_id, CoapCode.BAD_REQUEST))
            argument = argument[: self.function_argument_bytes]
        else:
            self.send(messages.empty_ack(message.message_id))
        self._emit(
            FunctionCallRequested(
                message.token[0],
                path[1].decode(errors="replace"),
                argument.decode(errors="replace"),
            )
        )

    def _on_variable_request(self, message: CoapMessage) -> None:
        path = message.uri_path
        if len(message.token) != 1 or len(path) < 2:
            raise ProtocolError(Stage.SESSION, "variable request without a token or a name")
        if self.separate_responses:
            self.send(messages.empty_ack(message.message_id))
        self._emit(
            VariableRequested(
                message.token[0], path[1].decode(errors="replace"), message.message_id
            )
        )

    def _on_response(self, message: CoapMessage) -> None:
        if message.type == CoapType.CON:
            self.send(messages.empty_ack(message.message_id))
        if message.code == CoapCode.BAD_REQUEST and message.type == CoapType.NON:
            # UpdateAbort: the server gave up; what arrived so far is thrown away.
            if self.update is not None:
                self.update = None
                self._emit(UpdateAborted())
            return
        # The device takes any 2.05 as the time (device-os messages.cpp decodeType).
        if message.code == CoapCode.CONTENT and len(message.payload) >= 4:
            if message.token and len(message.token) == 1:
                self._pending.pop(message.token[0], None)
            self._emit(TimeReceived(int.from_bytes(message.payload[:4], "big")))
