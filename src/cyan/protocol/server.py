"""The server end of a device connection (protocol.md §2, §4, §6 "Server")."""

from __future__ import annotations

from cyan.protocol import crypto, messages, ota, payloads
from cyan.protocol.coap import CoapCode, CoapMessage, CoapType
from cyan.protocol.connection import DEFAULT_MAX_FRAME_BYTES, Clock, Connection
from cyan.protocol.errors import ProtocolError, Stage, UpdateBusy
from cyan.protocol.events import (
    DescribeReceived,
    DeviceBlockReceived,
    DeviceIdentified,
    EventPublished,
    GoodbyeReceived,
    HelloReceived,
    RequestKind,
    ResponseReceived,
    SessionKeyToSign,
    SubscriptionRequested,
    UpdateAccepted,
    UpdateFinished,
)
from cyan.protocol.handshake import (
    DEVICE_BLOCK_BYTES,
    SERVER_STAGE,
    RandomBytes,
    ServerHandshake,
    ServerState,
    SessionMaterial,
)
from cyan.protocol.messages import MessageKind, classify
from cyan.protocol.transfer import Resend, UpdateSender, UpdateState, UpdateTimeouts


class ServerConnection(Connection):
    """Call ``start()`` once on accept; answer ``DeviceIdentified`` with ``accept_device``.

    Made with ``server_key=None``, the connection leaves the server key's two private
    operations to its owner (a gateway runs them in worker processes, off its event loop):
    it emits ``DeviceBlockReceived`` and ``SessionKeyToSign``, answered with
    ``open_device_block`` and ``sign_session_key``.
    """

    __slots__ = (
        "_handshake",
        "_update_token",
        "closed_cleanly",
        "device_id",
        "hello",
        "update",
    )

    def __init__(
        self,
        server_key: crypto.RsaPrivateKey | None,
        *,
        random_bytes: RandomBytes,
        clock: Clock,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        super().__init__(random_bytes=random_bytes, clock=clock, max_frame_bytes=max_frame_bytes)
        self._handshake = ServerHandshake(server_key, random_bytes)
        self.device_id: str | None = None
        self.hello: messages.HelloInfo | None = None
        # The running (or last) update; its progress is read from here.
        self.update: UpdateSender | None = None
        self._update_token: int | None = None
        # The device closed the connection after its Hello and between frames, as Device
        # OS does before a reset or on Particle.disconnect(): not a failure.
        self.closed_cleanly = False

    def receive_eof(self) -> None:
        channel = self._channel
        if self.hello is not None and channel is not None and channel.between_frames:
            self.closed_cleanly = True
            return
        super().receive_eof()

    @property
    def offered_key_der(self) -> bytes | None:
        """The public key the device sent in its handshake block (Photon, P1), if any."""
        return self._handshake.offered_key_der

    @property
    def handshake_state(self) -> ServerState:
        return self._handshake.state

    def start(self) -> None:
        self._out += self._handshake.nonce()

    def open_device_block(self, plaintext: bytes | None) -> None:
        """What the device's block decrypted to (None: it did not); ``DeviceIdentified``
        follows, or a handshake-decrypt error."""
        self.device_id = self._handshake.open_device_block(plaintext)
        self._emit(DeviceIdentified(self.device_id, self._handshake.offered_key_der))

    def accept_device(self, registered_key: crypto.RsaPublicKey | None) -> None:
        """Answer the device with the session key, or raise unknown-device / key-mismatch."""
        if not self._handshake.holds_key:
            self._emit(SessionKeyToSign(self._handshake.make_session_key(registered_key).digest))
            return
        self._send_session_key(*self._handshake.session_key_reply(registered_key))

    def sign_session_key(self, signature: bytes) -> None:
        """The server key's signature of ``SessionKeyToSign.digest``: the reply goes out."""
        self._send_session_key(*self._handshake.signed_reply(signature))

    def _send_session_key(self, reply: bytes, material: SessionMaterial) -> None:
        self._out += reply
        self._start_channel(material)

    # -- requests to the device -----------------------------------------------------------

    def request_describe(self, flags: int = messages.DescribeFlags.APPLICATION) -> int:
        return self._request(
            RequestKind.DESCRIBE, lambda mid, tok: messages.describe_request(mid, tok, flags)
        )

    def call_function(self, name: str, argument: str) -> int:
        return self._request(
            RequestKind.FUNCTION, lambda mid, tok: messages.function_call(mid, tok, name, argument)
        )

    def request_variable(self, name: str) -> int:
        return self._request(
            RequestKind.VARIABLE, lambda mid, tok: messages.variable_request(mid, tok, name)
        )

    def signal(self, on: bool) -> int:
        return self._request(RequestKind.SIGNAL, lambda mid, tok: messages.signal(mid, tok, on))

    def send_event(self, event: messages.EventInfo) -> None:
        self.send(messages.event(self._next_id(), event))

    def ping(self) -> None:
        self.send(messages.ping(self._next_id()))

    # -- over-the-air update (protocol.md §4.14) -----------------------------------------------

    def start_update(
        self,
        data: bytes,
        *,
        chunk_bytes: int = ota.DEFAULT_CHUNK_BYTES,
        offer_fast: bool = True,
        timeouts: UpdateTimeouts | None = None,
    ) -> UpdateSender:
        """Send UpdateBegin; then call ``pump_update`` often until ``UpdateFinished``."""
        if self.update is not None and not self.update.finished:
            raise UpdateBusy("an update is already running on this connection")
        sender = UpdateSender(
            data, chunk_bytes=chunk_bytes, offer_fast=offer_fast, timeouts=timeouts
        )
        self._update_token = self._request(
            RequestKind.UPDATE, lambda mid, tok: ota.update_begin(mid, tok, sender.params)
        )
        self.update = sender
        return sender

    def pump_update(self, now: float, max_chunks: int) -> None:
        """Send what is due: resends after a silence, up to ``max_chunks`` chunks, UpdateDone.

        ``max_chunks`` is the caller's flow control: how many the socket can take now.
        """
        sender = self.update
        if sender is None or sender.finished or self._update_token is None:
            return
        token = bytes([self._update_token])
        again = sender.timed_out(now)
        if again is Resend.BEGIN:
            self.send(ota.update_begin(self._next_id(), token, sender.params))
        elif again is Resend.CHUNK and sender.in_flight is not None:
            self._send_chunk(sender, sender.in_flight, token)
        elif again is Resend.DONE:
            self.send(ota.update_done(self._next_id(), token))
        for index in sender.next_chunks(max_chunks):
            self._send_chunk(sender, index, token)
        if sender.done_due():
            self.send(ota.update_done(self._next_id(), token))
        self._end_update_if_over()

    def abort_update(self, why: str) -> None:
        """Give up (a deadline, the server stopping); the device keeps its old firmware."""
        sender = self.update
        if sender is None or sender.finished or self._update_token is None:
            return
        sender.abort(why)
        if self._channel is not None:
            self.send(ota.update_abort(self._next_id(), bytes([self._update_token])))
        self._end_update_if_over()

    def _send_chunk(self, sender: UpdateSender, index: int, token: bytes) -> None:
        place = index if sender.fast else None
        self.send(ota.chunk(self._next_id(), token, sender.chunk(index), place))

    def _end_update_if_over(self) -> None:
        sender = self.update
        if sender is None or not sender.finished or self._update_token is None:
            return
        self._pending.pop(self._update_token, None)
        self._update_token = None
        succeeded = sender.state is UpdateState.SUCCEEDED
        self._emit(UpdateFinished(succeeded, sender.failure))

    def _update_answer(self, message: CoapMessage) -> None:
        """A response carrying the update's token: which one it is depends on the stage."""
        sender = self.update
        assert sender is not None
        ok = message.code == CoapCode.CHANGED
        if sender.state is UpdateState.BEGIN_SENT:
            if message.type == CoapType.ACK:  # 5.03: it cannot take this update now
                sender.refused(f"it answered UpdateBegin with {message.describe()}")
            elif ok:
                # The Core sends UpdateReady without the flags byte: no fast OTA.
                sender.ready(bool(message.payload[:1] and message.payload[0] & ota.FAST_OTA))
                self._emit(UpdateAccepted(sender.fast))
        elif sender.state is UpdateState.DONE_SENT and message.type == CoapType.ACK:
            sender.done_answer(ok, ota.decode_done_result(message.payload))
        elif sender.state is UpdateState.SENDING and message.type != CoapType.ACK:
            sender.chunk_answer(ok)
        self._end_update_if_over()

    def _on_chunk_missed(self, message: CoapMessage) -> None:
        self._ack_if_confirmable(message)
        if self.update is not None and not self.update.finished:
            self.update.missed(ota.decode_missed(message.payload))

    def closed(self) -> None:
        """The socket is gone: a running update fails (``UpdateFinished`` follows)."""
        if self.update is not None and not self.update.finished:
            self.update.disconnected()
            self._end_update_if_over()

    # -- what arrives ---------------------------------------------------------------------

    def _advance_handshake(self) -> None:
        if self._handshake.state is ServerState.NONCE_SENT:
            block = self._take_raw(DEVICE_BLOCK_BYTES)
            if block is None:
                return
            self._handshake.receive_device_block()
            if not self._handshake.holds_key:
                self._emit(DeviceBlockReceived(block))
                return
            self.open_device_block(self._handshake.decrypt_device_block(block))
        # Anything after the block is the device's Hello, sent as soon as it has the
        # session key; it stays buffered until accept_device() starts the channel.

    def _eof_stage(self) -> Stage:
        if self._channel is None:
            return SERVER_STAGE[self._handshake.state]
        return Stage.HELLO if self.hello is None else Stage.SESSION

    def _eof_reason(self) -> str:
        state = self._handshake.state
        if state is ServerState.NONCE_SENT:
            return (
                f"the connection closed after {len(self._raw)} of the "
                f"{DEVICE_BLOCK_BYTES} handshake bytes the device owes"
            )
        if state is ServerState.START:
            return "the connection closed before the handshake began"
        if state is ServerState.OPENING:
            return "the device closed the connection while the server decrypted its handshake"
        if state is ServerState.SIGNING:
            return "the device closed the connection while the server signed its session key"
        if state is ServerState.IDENTIFIED:
            return (
                f"device {self.device_id} closed the connection while its key was being looked up"
            )
        if self.hello is None:
            return (
                "the device closed the connection after the key exchange, without a Hello: "
                "it could not decrypt the session key (another device key is registered "
                "here) or did not trust our signature (it holds another server key)"
            )
        return "the device closed the connection in the middle of a frame"

    def _handle(self, message: CoapMessage) -> None:
        kind = classify(message)
        if self.hello is None:
            if kind is not MessageKind.HELLO:
                raise ProtocolError(
                    Stage.HELLO,
                    f"expected the device's Hello, got {message.describe()}",
                    device_id=self.device_id,
                )
            self._receive_hello(message)
            return
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, message)
        else:
            # Goodbye, OTA messages outside an update, unknown paths: acknowledge and drop,
            # as device-os does with messages it does not know (protocol.md §5.3).
            self._ack_if_confirmable(message)

    def _receive_hello(self, message: CoapMessage) -> None:
        self.hello = messages.decode_hello_payload(message.payload)
        # Our send counter starts at a random value, announced by our Hello (PS-HS send_hello).
        self._message_id = int.from_bytes(self._random(2), "big")
        self.send(messages.hello(self._message_id))
        assert self.device_id is not None
        self._emit(HelloReceived(self.device_id, self.hello))

    def _on_ping(self, message: CoapMessage) -> None:
        self.send(messages.empty_ack(message.message_id))

    def _on_event(self, message: CoapMessage) -> None:
        self._ack_if_confirmable(message)
        self._emit(EventPublished(messages.decode_event(message)))

    def _on_subscribe(self, message: CoapMessage) -> None:
        subscription = messages.decode_subscribe(message)
        if not subscription.prefix and not subscription.my_devices:
            # An empty firehose prefix is refused (SubscribeFail, protocol.md §4.9).
            self.send(messages.coded_ack(message.message_id, CoapCode.BAD_REQUEST))
            return
        self.send(messages.empty_ack(message.message_id))
        self._emit(SubscriptionRequested(subscription))

    def _on_describe_post(self, message: CoapMessage) -> None:
        self._ack_if_confirmable(message)
        self._emit(DescribeReceived(payloads.decode_description(message.payload)))

    def _on_time(self, message: CoapMessage) -> None:
        payload = payloads.encode_time(int(self._clock()))
        self.send(messages.coded_ack(message.message_id, CoapCode.CONTENT, message.token, payload))

    def _on_goodbye(self, message: CoapMessage) -> None:
        self._ack_if_confirmable(message)
        self._emit(GoodbyeReceived(message.payload))

    def _on_response(self, message: CoapMessage) -> None:
        # Piggy-backed answers come as ACK; separate ones as CON (ACK them) or NON (§4.5 – §4.7).
        if message.type == CoapType.CON:
            self.send(messages.empty_ack(message.message_id))
        if len(message.token) != 1:
            return
        token = message.token[0]
        if token == self._update_token:
            self._update_answer(message)
            return
        kind = self._pending.pop(token, None)
        if kind is None:
            return  # a late answer to a request whose caller already gave up
        self._emit(ResponseReceived(kind, token, message.code, message.payload))
        if kind is RequestKind.DESCRIBE and message.code == CoapCode.CONTENT and message.payload:
            self._emit(DescribeReceived(payloads.decode_description(message.payload)))

    def _ignore(self, message: CoapMessage) -> None:
        pass


_HANDLERS = {
    MessageKind.PING: ServerConnection._on_ping,
    MessageKind.EVENT: ServerConnection._on_event,
    MessageKind.SUBSCRIBE: ServerConnection._on_subscribe,
    MessageKind.DESCRIBE_POST: ServerConnection._on_describe_post,
    MessageKind.TIME_REQUEST: ServerConnection._on_time,
    MessageKind.GOODBYE: ServerConnection._on_goodbye,
    MessageKind.CHUNK_MISSED: ServerConnection._on_chunk_missed,
    MessageKind.RESPONSE: ServerConnection._on_response,
    MessageKind.EMPTY_ACK: ServerConnection._ignore,
    MessageKind.RESET: ServerConnection._ignore,
}
