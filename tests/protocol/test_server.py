"""protocol/server.py: what a ServerConnection asks, answers and reports (protocol.md §4, §7).

Each conversation runs against a DeviceConnection in memory (tests/protocol/pair.py), mostly
with every write delivered whole, byte by byte, and in 7-byte pieces. Besides the events the
server reports, the wire itself is decrypted by tests/protocol/wire.py, so "the server ACKed
it" is checked on the bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding

from cyan.protocol import ServerConnection, crypto, messages, payloads
from cyan.protocol.coap import CoapCode, CoapMessage, CoapType
from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.events import (
    DescribeReceived,
    DescribeRequested,
    DeviceBlockReceived,
    DeviceIdentified,
    EventPublished,
    FunctionCallRequested,
    GoodbyeReceived,
    HelloReceived,
    PingAcknowledged,
    RequestKind,
    ResponseReceived,
    ServerHelloReceived,
    SessionKeyToSign,
    SignalRequested,
    SubscriptionRequested,
    TimeReceived,
    VariableRequested,
)
from cyan.protocol.handshake import ServerState
from cyan.protocol.messages import EventInfo, SubscriptionInfo
from tests.protocol.pair import (
    BODY,
    CHUNKS,
    DEVICE_ID,
    FIXED_CLOCK,
    PHOTON_HELLO,
    Pair,
    connected,
    device_key,
    make_pair,
    of_type,
    server_key,
)
from tests.protocol.wire import (
    ACK,
    CON,
    NON,
    acks_of,
    read_wire,
    request_on_wire,
    seal_frames,
    sent_after,
)

# -- describe -------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKS)
def test_device_initiated_describe_post_is_acked(chunk: int | None) -> None:
    pair = connected(chunk)
    before = len(read_wire(pair).device_sent)

    pair.device.post_describe(messages.DescribeFlags.APPLICATION, BODY)
    pair.pump(chunk)

    assert of_type(pair.take_server_events(), DescribeReceived) == [
        DescribeReceived(payloads.decode_description(BODY))
    ]
    wire = read_wire(pair)
    (post,) = sent_after(wire.device_sent, before)
    assert post.encode()[4:] == bytes.fromhex("b1 64 41 02 ff") + BODY
    assert acks_of(wire.server_sent, post.message_id) == [messages.empty_ack(post.message_id)]


# -- functions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("value", [0, 42, -1, -7, 2**31 - 1, -(2**31)])
def test_function_call_with_result(chunk: int | None, value: int) -> None:
    pair = connected(chunk)

    token = pair.server.call_function("brew", "coffee,strong")
    pair.pump(chunk)
    assert pair.take_device_events() == [FunctionCallRequested(token, "brew", "coffee,strong")]
    pair.device.reply_function(token, value)
    pair.pump(chunk)

    (response,) = pair.take_server_events()
    assert response == ResponseReceived(
        RequestKind.FUNCTION, token, CoapCode.CHANGED, value.to_bytes(4, "big", signed=True)
    )
    assert isinstance(response, ResponseReceived)
    assert payloads.decode_function_result(response.payload) == value
    wire = read_wire(pair)
    request = request_on_wire(wire, token)
    assert acks_of(wire.device_sent, request.message_id) == [messages.empty_ack(request.message_id)]
    (result,) = [m for m in wire.device_sent if m.code == CoapCode.CHANGED]
    assert result.type is NON  # §4.6: NON 2.04, nothing to ACK
    assert acks_of(wire.server_sent, result.message_id) == []


@pytest.mark.parametrize("chunk", CHUNKS)
def test_unknown_function_gets_an_ack_and_then_nothing(chunk: int | None) -> None:
    # §7: "Unknown function: empty ACK, then nothing" — the caller times out.
    pair = connected(chunk)

    token = pair.server.call_function("nosuch", "")
    pair.pump(chunk)

    assert pair.take_device_events() == [FunctionCallRequested(token, "nosuch", "")]
    assert of_type(pair.take_server_events(), ResponseReceived) == []
    assert pair.server.pending_requests == 1
    request = request_on_wire(read_wire(pair), token)
    assert request.encode()[-1:] == b"\x40"  # the empty Uri-Query is there (§4.6)
    pair.server.forget(token)
    assert pair.server.pending_requests == 0


@pytest.mark.parametrize("chunk", CHUNKS)
def test_late_reply_after_forget_is_ignored(chunk: int | None) -> None:
    pair = connected(chunk)
    token = pair.server.call_function("slow", "")
    pair.pump(chunk)
    pair.take_device_events()

    pair.server.forget(token)
    pair.device.reply_function(token, 1)
    pair.pump(chunk)

    assert pair.take_server_events() == []
    # The session goes on: a later call is answered normally.
    second = pair.server.call_function("fast", "")
    pair.pump(chunk)
    pair.device.reply_function(second, 2)
    pair.pump(chunk)
    assert pair.take_server_events() == [
        ResponseReceived(RequestKind.FUNCTION, second, CoapCode.CHANGED, b"\x00\x00\x00\x02")
    ]


# -- variables ------------------------------------------------------------------------------------


VARIABLES = [
    (payloads.VARIABLE_BOOL, True, b"\x01"),
    (payloads.VARIABLE_BOOL, False, b"\x00"),
    (payloads.VARIABLE_INT, -123456, (-123456).to_bytes(4, "big", signed=True)),
    (payloads.VARIABLE_DOUBLE, 21.5, bytes.fromhex("0000000000803540")),  # LE 21.5
    (payloads.VARIABLE_STRING, "hello, cloud", b"hello, cloud"),
]


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("separate", [True, False])
@pytest.mark.parametrize(("type_code", "value", "payload"), VARIABLES)
def test_variable_of_each_type(
    chunk: int | None,
    separate: bool,
    type_code: int,
    value: payloads.VariableValue,
    payload: bytes,
) -> None:
    pair = connected(chunk, separate_responses=separate)

    token = pair.server.request_variable("temperature_c")
    pair.pump(chunk)
    (request,) = pair.take_device_events()
    assert isinstance(request, VariableRequested)
    assert (request.token, request.name) == (token, "temperature_c")
    pair.device.reply_variable(request, payloads.encode_variable(type_code, value))
    pair.pump(chunk)

    assert pair.take_server_events() == [
        ResponseReceived(RequestKind.VARIABLE, token, CoapCode.CONTENT, payload)
    ]
    assert payloads.decode_variable(type_code, payload) == value
    wire = read_wire(pair)
    (answer,) = [m for m in wire.device_sent if m.code == CoapCode.CONTENT]
    # device-os 2.x: empty ACK + NON 2.05; Core/0.x: the value piggy-backed on the ACK (§4.7).
    assert answer.type is (NON if separate else ACK)
    if not separate:
        assert answer.message_id == request.message_id


# -- signal, ping, time ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("on", [True, False])
def test_signal(chunk: int | None, on: bool) -> None:
    pair = connected(chunk)

    token = pair.server.signal(on)
    pair.pump(chunk)

    assert pair.take_device_events() == [SignalRequested(on)]
    assert pair.take_server_events() == [
        ResponseReceived(RequestKind.SIGNAL, token, CoapCode.CHANGED, b"")
    ]
    wire = read_wire(pair)
    request = request_on_wire(wire, token)
    assert request.encode()[-3:] == bytes.fromhex("73 41") + (b"\x01" if on else b"\x00")
    # §4.12: coded ACK 61 44 <id> <tok>
    assert acks_of(wire.device_sent, request.message_id) == [
        messages.coded_ack(request.message_id, CoapCode.CHANGED, bytes([token]))
    ]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_ping_from_the_device_is_acked_by_the_server(chunk: int | None) -> None:
    pair = connected(chunk)
    before = len(read_wire(pair).device_sent)

    pair.device.ping()
    pair.pump(chunk)

    assert pair.take_device_events() == [PingAcknowledged()]
    wire = read_wire(pair)
    (ping,) = sent_after(wire.device_sent, before)
    assert acks_of(wire.server_sent, ping.message_id) == [messages.empty_ack(ping.message_id)]


def test_server_message_ids_count_up_from_its_hello() -> None:
    pair = connected()

    pair.server.ping()
    pair.server.ping()
    pair.pump()

    hello, first, second = [m for m in read_wire(pair).server_sent if m.type is not ACK]
    assert first.message_id == (hello.message_id + 1) % 0x10000
    assert second.message_id == (hello.message_id + 2) % 0x10000


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("now", [FIXED_CLOCK, 1234567890.99, 0.0, 2.0**32 + 7])
def test_time_request_is_answered_with_the_injected_clock(chunk: int | None, now: float) -> None:
    pair = connected(chunk, clock_s=now)

    token = pair.device.request_time()
    pair.pump(chunk)

    assert pair.take_device_events() == [TimeReceived(int(now) % 2**32)]
    wire = read_wire(pair)
    (request,) = [m for m in wire.device_sent if m.token == bytes([token])]
    assert request.encode()[4:] == bytes([token]) + bytes.fromhex("b1 74")
    # §4.10: 61 45 <id echoed> <tok> ff t3 t2 t1 t0
    assert acks_of(wire.server_sent, request.message_id) == [
        CoapMessage.decode(
            bytes.fromhex("61 45")
            + request.message_id.to_bytes(2, "big")
            + bytes([token, 0xFF])
            + (int(now) % 2**32).to_bytes(4, "big")
        )
    ]
    assert pair.device.pending_requests == 0


# -- events ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(
    "info",
    [
        EventInfo("temp", b"21.5", 60, True),
        EventInfo("temp", b"21.5", 3600, False),
        EventInfo("spark/device/last_reset", None, 60, False),
        EventInfo("a" * 64, b"x" * 1024, messages.MAX_EVENT_TTL, True),
        EventInfo("t", b"", 0, True),
    ],
)
@pytest.mark.parametrize("confirmable", [False, True])
def test_device_publishes_an_event(chunk: int | None, info: EventInfo, confirmable: bool) -> None:
    pair = connected(chunk)
    before = len(read_wire(pair).device_sent)

    pair.device.publish(info, confirmable=confirmable)
    pair.pump(chunk)

    expected = EventInfo(info.name, info.data or None, info.ttl, info.public)
    assert pair.take_server_events() == [EventPublished(expected)]
    wire = read_wire(pair)
    (sent,) = sent_after(wire.device_sent, before)
    assert sent.type is (CON if confirmable else NON)
    assert sent.uri_path[0] == (b"e" if info.public else b"E")
    assert sent.max_age == (None if info.ttl == 60 else info.ttl)
    acks = acks_of(wire.server_sent, sent.message_id)
    assert acks == ([messages.empty_ack(sent.message_id)] if confirmable else [])


# -- subscribe ------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(
    ("prefix", "my_devices", "device_id"),
    [
        ("temp", True, None),
        ("spark", False, None),
        ("temp", False, "0123456789ABCDEF01234567"),
        ("", True, None),  # all events of my devices
    ],
)
def test_subscribe_is_acked(
    chunk: int | None, prefix: str, my_devices: bool, device_id: str | None
) -> None:
    pair = connected(chunk)
    before = len(read_wire(pair).device_sent)

    pair.device.subscribe(prefix, my_devices=my_devices, device_id=device_id)
    pair.pump(chunk)

    assert pair.take_server_events() == [
        SubscriptionRequested(
            SubscriptionInfo(prefix, my_devices, device_id.lower() if device_id else None)
        )
    ]
    wire = read_wire(pair)
    (sent,) = sent_after(wire.device_sent, before)
    assert acks_of(wire.server_sent, sent.message_id) == [messages.empty_ack(sent.message_id)]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_empty_prefix_firehose_is_refused_with_4_00(chunk: int | None) -> None:
    pair = connected(chunk)
    before = len(read_wire(pair).device_sent)

    pair.device.subscribe("", my_devices=False)
    pair.pump(chunk)

    assert pair.take_server_events() == []
    wire = read_wire(pair)
    (sent,) = sent_after(wire.device_sent, before)
    # §4.9 SubscribeFail: ACK 4.00 echoing the id.
    assert acks_of(wire.server_sent, sent.message_id) == [
        messages.coded_ack(sent.message_id, CoapCode.BAD_REQUEST)
    ]
    assert pair.take_device_events() == []  # a coded ACK is no PingAcknowledged


# -- other messages -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "first_byte"), [(CON, "40"), (NON, "50")])
def test_goodbye_is_reported_and_acked_when_confirmable(kind: CoapType, first_byte: str) -> None:
    # §4.15: POST /x, No-Response when NON, varint fields in the payload.
    pair = connected()
    no_response = "" if kind is CON else "d0 ea"
    goodbye = CoapMessage.decode(
        bytes.fromhex(f"{first_byte} 02 43 21 b1 78 {no_response} ff 01 0a")
    )

    pair.device.send(goodbye)
    pair.pump()

    assert pair.take_server_events() == [GoodbyeReceived(b"\x01\x0a")]
    acks = acks_of(read_wire(pair).server_sent, 0x4321)
    assert acks == ([messages.empty_ack(0x4321)] if kind is CON else [])


@pytest.mark.parametrize(
    "wire_bytes",
    [
        "40 02 55 55 b1 7a",  # CON POST /z: unknown path
        "40 03 55 55 b1 6b",  # KeyChange outside our use
        "40 01 55 55 b1 63 ff 00 03",  # ChunkMissed outside an update
        "40 02 55 55 b1 68 ff 00 06 00 03",  # a second Hello
    ],
)
def test_unknown_confirmable_messages_are_acked_and_dropped(wire_bytes: str) -> None:
    pair = connected()

    pair.device.send(CoapMessage.decode(bytes.fromhex(wire_bytes)))
    pair.pump()

    assert pair.take_server_events() == []
    assert acks_of(read_wire(pair).server_sent, 0x5555) == [messages.empty_ack(0x5555)]


def test_unsolicited_response_from_the_device_is_dropped() -> None:
    pair = connected()

    pair.device.send(messages.separate_response(0x7777, CoapCode.CHANGED, b"\x09", b"\x00" * 4))
    pair.device.send(messages.separate_response(0x7778, CoapCode.CHANGED, b"", b"\x00" * 4))
    pair.pump()

    assert pair.take_server_events() == []


# -- the device's Hello ---------------------------------------------------------------------------


def _device_keyed_without_hello() -> tuple[Pair, bytes, bytes]:
    """A server that has accepted the device, and the AES key and IV; no Hello sent yet."""
    pair = make_pair()
    server, device = pair.server, pair.device
    device.receive_data(server.data_to_send())
    server.receive_data(device.data_to_send())
    assert [type(e) for e in server.events_received()] == [DeviceIdentified]
    server.accept_device(pair.registered_key)
    reply = server.data_to_send()
    material = device_key(0).decrypt(reply[:128], padding.PKCS1v15())
    return pair, material[:16], material[16:32]


@pytest.mark.parametrize(
    "first",
    [
        "40 00 00 01",  # a ping
        "50 02 00 01 b1 65 01 74",  # an event
        "41 01 00 01 07 b1 74",  # a time request
    ],
)
def test_first_message_that_is_not_hello_is_a_hello_error(first: str) -> None:
    pair, key, iv = _device_keyed_without_hello()
    frame, _ = seal_frames([bytes.fromhex(first)], key, iv)

    with pytest.raises(ProtocolError) as caught:
        pair.server.receive_data(frame)

    assert caught.value.stage is Stage.HELLO
    assert caught.value.device_id == DEVICE_ID


def test_hello_with_a_short_payload_is_a_hello_error() -> None:
    pair, key, iv = _device_keyed_without_hello()
    frame, _ = seal_frames([bytes.fromhex("50 02 00 01 b1 68 ff 00 06")], key, iv)

    with pytest.raises(ProtocolError) as caught:
        pair.server.receive_data(frame)

    assert caught.value.stage is Stage.HELLO


def test_core_hello_is_accepted() -> None:
    # The Core's 6-byte payload (§4.4.1); platform 0.
    pair, key, iv = _device_keyed_without_hello()
    frame, _ = seal_frames([bytes.fromhex("50 02 00 01 b1 68 ff ff ff ff ff 00 01")], key, iv)

    pair.server.receive_data(frame)

    assert pair.server.events_received() == [
        HelloReceived(DEVICE_ID, messages.HelloInfo(0xFFFF, 0xFFFF, 1, 0))
    ]


def test_describe_of_deeply_nested_json_is_a_session_error() -> None:
    pair = connected()
    pair.device.post_describe(messages.DescribeFlags.APPLICATION, b"[" * 3000)
    frame = pair.device.data_to_send()

    with pytest.raises(ProtocolError) as caught:
        pair.server.receive_data(frame)

    assert caught.value.stage is Stage.SESSION


# -- the handshake as the server sees it -------------------------------------------------------


@pytest.mark.parametrize("send_public_key", [True, False])
def test_handshake_state_and_the_offered_key_at_each_step(send_public_key: bool) -> None:
    # §2 step 3: a Photon appends its 162-byte SPKI to the block, the Core sends none. The
    # server keeps it only until accept_device has checked it against the registered key.
    pair = make_pair(send_public_key=send_public_key)
    server, device = pair.server, pair.device
    seen = [(server.handshake_state, server.offered_key_der)]

    device.receive_data(server.data_to_send())
    server.receive_data(device.data_to_send())
    seen.append((server.handshake_state, server.offered_key_der))
    identified = server.events_received()
    established = server.established
    server.accept_device(pair.registered_key)
    seen.append((server.handshake_state, server.offered_key_der))

    spki = (
        device_key(0)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    offered = spki if send_public_key else None
    assert len(spki) == 162
    assert seen == [
        (ServerState.NONCE_SENT, None),
        (ServerState.IDENTIFIED, offered),
        (ServerState.KEYS_SENT, None),
    ]
    assert identified == [DeviceIdentified(DEVICE_ID, offered)]
    assert (established, server.established) == (False, True)


def test_a_server_without_the_key_hands_out_its_two_rsa_steps() -> None:
    # A gateway runs the decrypt and the signature in worker processes: the core asks for
    # each and waits in a state of its own until the result is handed back.
    pair = make_pair(server_holds_key=False)
    server, device = pair.server, pair.device
    device.receive_data(server.data_to_send())
    block = device.data_to_send()

    server.receive_data(block)
    assert server.events_received() == [DeviceBlockReceived(block)]
    assert server.handshake_state is ServerState.OPENING
    server.open_device_block(crypto.rsa_decrypt(server_key(), block))
    assert server.events_received() == [DeviceIdentified(DEVICE_ID, server.offered_key_der)]
    server.accept_device(device_key(0).public_key())
    (to_sign,) = server.events_received()
    assert isinstance(to_sign, SessionKeyToSign)
    assert (server.handshake_state, server.data_to_send()) == (ServerState.SIGNING, b"")

    server.sign_session_key(crypto.sign_hmac(server_key(), to_sign.digest))
    assert (server.handshake_state, server.established) == (ServerState.KEYS_SENT, True)
    device.receive_data(server.data_to_send())
    server.receive_data(device.data_to_send())
    device.receive_data(server.data_to_send())
    assert HelloReceived(DEVICE_ID, PHOTON_HELLO) in server.events_received()
    assert ServerHelloReceived() in device.events_received()


def test_bytes_that_arrive_while_the_block_is_decrypted_elsewhere_are_not_a_second_block() -> None:
    pair = make_pair(server_holds_key=False)
    server, device = pair.server, pair.device
    device.receive_data(server.data_to_send())
    block = device.data_to_send()
    server.receive_data(block + bytes(300))
    server.receive_data(bytes(300))
    assert server.events_received() == [DeviceBlockReceived(block)]
    assert server.handshake_state is ServerState.OPENING


def test_a_block_that_does_not_decrypt_elsewhere_is_a_handshake_decrypt_error() -> None:
    pair = make_pair(server_holds_key=False)
    pair.device.receive_data(pair.server.data_to_send())
    pair.server.receive_data(pair.device.data_to_send())
    with pytest.raises(ProtocolError) as caught:
        pair.server.open_device_block(None)
    assert caught.value.stage is Stage.HANDSHAKE_DECRYPT


@pytest.mark.parametrize(
    ("steps", "stage", "words"),
    [(1, Stage.TIMEOUT, "decrypted its handshake"), (3, Stage.TIMEOUT, "signed its session key")],
)
def test_a_device_that_leaves_while_the_server_works_on_rsa_names_the_wait(
    steps: int, stage: Stage, words: str
) -> None:
    pair = make_pair(server_holds_key=False)
    server, device = pair.server, pair.device
    device.receive_data(server.data_to_send())
    block = device.data_to_send()
    server.receive_data(block)
    if steps == 3:
        server.open_device_block(crypto.rsa_decrypt(server_key(), block))
        server.accept_device(device_key(0).public_key())
    with pytest.raises(ProtocolError) as caught:
        server.receive_eof()
    assert caught.value.stage is stage
    assert words in caught.value.reason


REQUESTS: list[tuple[str, Callable[[ServerConnection], int]]] = [
    ("describe", lambda server: server.request_describe()),
    ("function", lambda server: server.call_function("brew", "")),
    ("variable", lambda server: server.request_variable("temp")),
    ("signal", lambda server: server.signal(True)),
]


@pytest.mark.parametrize(("kind", "request_"), REQUESTS)
def test_a_request_before_the_handshake_ends_is_refused_and_takes_no_token(
    kind: str, request_: Callable[[ServerConnection], int]
) -> None:
    pair = make_pair()

    with pytest.raises(ProtocolError) as caught:
        request_(pair.server)

    assert caught.value.stage is Stage.SESSION
    assert pair.server.pending_requests == 0
    pair.pump()  # the handshake goes on: nothing was written after the nonce
    assert [type(e) for e in pair.take_server_events()] == [DeviceIdentified, HelloReceived]
    assert [m.uri_path for m in read_wire(pair).server_sent] == [[b"h"]]
    # Token 0 is still free: the failed request took none.
    assert request_(pair.server) == 0


# -- responses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "payload"),
    [
        (CoapCode.BAD_REQUEST, b""),  # §7: Device OS 5 without the flags query
        (CoapCode.CONTENT, b""),
    ],
)
def test_a_describe_answer_without_a_body_is_only_a_response(code: int, payload: bytes) -> None:
    pair = connected(separate_responses=False)
    token = pair.server.request_describe()
    pair.pump()
    (request,) = of_type(pair.take_device_events(), DescribeRequested)

    pair.device.send(messages.coded_ack(request.message_id, code, bytes([token]), payload))
    pair.pump()

    assert pair.take_server_events() == [
        ResponseReceived(RequestKind.DESCRIBE, token, code, payload)
    ]
    assert pair.server.pending_requests == 0


def test_a_describe_answer_that_is_not_a_describe_is_a_session_error() -> None:
    pair = connected(separate_responses=False)
    token = pair.server.request_describe()
    pair.pump()
    (request,) = of_type(pair.take_device_events(), DescribeRequested)
    answer = messages.coded_ack(request.message_id, CoapCode.CONTENT, bytes([token]), b'{"f":{}}')
    pair.device.send(answer)

    with pytest.raises(ProtocolError) as caught:
        pair.server.receive_data(pair.device.data_to_send())

    assert caught.value.stage is Stage.SESSION


def test_a_response_with_a_two_byte_token_matches_no_request() -> None:
    # Tokens are one byte (§4.2): b"\x00\x00" is not token 0, even though it starts with it.
    pair = connected()
    token = pair.server.call_function("brew", "")
    pair.pump()
    pair.take_device_events()

    result = payloads.encode_function_result(1)
    pair.device.send(
        messages.separate_response(0x7779, CoapCode.CHANGED, bytes([token, 0]), result)
    )
    pair.pump()

    assert pair.take_server_events() == []
    assert pair.server.pending_requests == 1


@pytest.mark.parametrize("wire_bytes", ["70 00 55 55", "60 00 55 55"])
def test_a_reset_or_a_stray_empty_ack_is_dropped_without_an_answer(wire_bytes: str) -> None:
    # §4.2: "treat a received RST as drop the message"; an empty ACK of nothing likewise.
    pair = connected()
    before = len(read_wire(pair).server_sent)

    pair.device.send(CoapMessage.decode(bytes.fromhex(wire_bytes)))
    pair.pump()

    assert pair.take_server_events() == []
    assert sent_after(read_wire(pair).server_sent, before) == []


def test_the_time_is_read_when_each_request_arrives() -> None:
    now = [1000.0]
    pair = make_pair(clock=lambda: now[0])
    pair.pump()
    pair.take_device_events()

    answers = []
    for seconds in (5000.75, 6001.0):
        now[0] = seconds
        pair.device.request_time()
        pair.pump()
        answers += of_type(pair.take_device_events(), TimeReceived)

    assert answers == [TimeReceived(5000), TimeReceived(6001)]
