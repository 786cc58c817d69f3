"""A ServerConnection and a DeviceConnection talking in memory (protocol.md §4, §7).

Each conversation runs with every write delivered whole, byte by byte, and in 7-byte
pieces. Besides the events each end reports, the wire itself is decrypted by
tests/protocol/wire.py, so "the server ACKed it" is checked on the bytes.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import NoTokenFree, messages, payloads
from cyan.protocol.coap import CoapCode, CoapMessage, CoapType
from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.events import (
    DescribeReceived,
    DescribeRequested,
    DeviceIdentified,
    EventDelivered,
    EventPublished,
    FunctionCallRequested,
    GoodbyeReceived,
    HelloReceived,
    PingAcknowledged,
    RequestKind,
    ResponseReceived,
    ServerHelloReceived,
    SignalRequested,
    SubscriptionRequested,
    TimeReceived,
    VariableRequested,
)
from cyan.protocol.messages import EventInfo, SubscriptionInfo
from cyan.protocol.payloads import Description
from tests.protocol.pair import (
    DEVICE_ID,
    FIXED_CLOCK,
    PHOTON_HELLO,
    Pair,
    device_key,
    make_pair,
    of_type,
)
from tests.protocol.wire import Wire, aes_cbc_encrypt, open_frames, read_wire, seal_frames

CHUNKS = [None, 1, 7]
ACK, CON, NON = CoapType.ACK, CoapType.CON, CoapType.NON
BODY = b'{"f":["brew","led"],"v":{"temp":9,"count":2,"on":1,"name":4}}'


def connected(
    chunk: int | None = None, *, separate_responses: bool = True, clock_s: float | None = None
) -> Pair:
    """A pair past both Hellos, with the events of the handshake cleared."""
    pair = make_pair(
        separate_responses=separate_responses,
        clock=None if clock_s is None else (lambda: clock_s),
    )
    pair.pump(chunk)
    assert [type(e) for e in pair.server_events] == [DeviceIdentified, HelloReceived]
    assert pair.take_server_events()[1] == HelloReceived(DEVICE_ID, PHOTON_HELLO)
    assert ServerHelloReceived() in pair.take_device_events()
    return pair


def sent_after(wire_messages: list[CoapMessage], count: int) -> list[CoapMessage]:
    return wire_messages[count:]


def request_on_wire(wire: Wire, token: int) -> CoapMessage:
    (request,) = [m for m in wire.server_sent if m.token == bytes([token]) and m.type is CON]
    return request


def acks_of(sent: list[CoapMessage], message_id: int) -> list[CoapMessage]:
    return [m for m in sent if m.type is ACK and m.message_id == message_id]


# -- describe --------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", CHUNKS)
def test_describe_answered_separately_as_device_os_2(chunk: int | None) -> None:
    # §7 (2.3.1): empty ACK, then a separate CON 2.05 with the token, which we ACK.
    pair = connected(chunk, separate_responses=True)

    token = pair.server.request_describe()
    pair.pump(chunk)
    (request,) = of_type(pair.take_device_events(), DescribeRequested)
    assert (request.token, request.flags) == (token, messages.DescribeFlags.APPLICATION)
    pair.device.reply_describe(request, BODY)
    pair.pump(chunk)

    assert pair.take_server_events() == [
        ResponseReceived(RequestKind.DESCRIBE, token, CoapCode.CONTENT, BODY),
        DescribeReceived(
            Description(("brew", "led"), {"temp": 9, "count": 2, "on": 1, "name": 4}, None)
        ),
    ]
    wire = read_wire(pair)
    on_wire = request_on_wire(wire, token)
    assert on_wire.message_id == request.message_id
    assert on_wire.encode()[4:] == bytes([token]) + bytes.fromhex("b1 64 41 02")
    device_answers = [m for m in wire.device_sent if m.message_id == request.message_id]
    assert device_answers == [messages.empty_ack(request.message_id)]
    (separate,) = [m for m in wire.device_sent if m.code == CoapCode.CONTENT]
    assert (separate.type, separate.token, separate.payload) == (CON, bytes([token]), BODY)
    assert acks_of(wire.server_sent, separate.message_id) == [
        messages.empty_ack(separate.message_id)
    ]
    assert pair.server.pending_requests == 0


@pytest.mark.parametrize("chunk", CHUNKS)
def test_describe_piggy_backed_as_0x_firmware(chunk: int | None) -> None:
    pair = connected(chunk, separate_responses=False)

    token = pair.server.request_describe(messages.DescribeFlags.SYSTEM)
    pair.pump(chunk)
    (request,) = of_type(pair.take_device_events(), DescribeRequested)
    assert request.flags == messages.DescribeFlags.SYSTEM
    pair.device.reply_describe(request, b'{"p":6,"m":[]}')
    pair.pump(chunk)

    assert pair.take_server_events() == [
        ResponseReceived(RequestKind.DESCRIBE, token, CoapCode.CONTENT, b'{"p":6,"m":[]}'),
        DescribeReceived(Description(None, None, {"p": 6, "m": []})),
    ]
    wire = read_wire(pair)
    answers = [m for m in wire.device_sent if m.message_id == request.message_id]
    assert answers == [
        messages.coded_ack(request.message_id, CoapCode.CONTENT, bytes([token]), b'{"p":6,"m":[]}')
    ]
    # Nothing to acknowledge: an ACK is never ACKed.
    assert acks_of(wire.server_sent, request.message_id) == []


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


# -- functions -------------------------------------------------------------------------------


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


def test_function_argument_over_the_limit_is_cut_short_as_device_os_does() -> None:
    # device-os functions.h: a coded ACK 4.00 that carries no token, then the function is
    # called with the argument cut to the buffer. Nothing tells the server: it must never
    # send an argument over the device's limit (protocol/limits.py, cloud/router.py).
    pair = connected()

    token = pair.server.call_function("brew", "a" * 1025)
    pair.pump()

    assert pair.take_device_events() == [FunctionCallRequested(token, "brew", "a" * 1024)]
    assert pair.take_server_events() == []
    assert pair.server.pending_requests == 1


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


def test_256_tokens_in_flight_then_no_token_free() -> None:
    pair = connected()

    tokens = [pair.server.call_function("f", str(i)) for i in range(256)]

    assert sorted(tokens) == list(range(256))
    assert pair.server.pending_requests == 256
    with pytest.raises(NoTokenFree):
        pair.server.request_variable("temp")
    assert pair.server.pending_requests == 256
    pair.server.forget(77)
    assert pair.server.request_variable("temp") == 77
    with pytest.raises(NoTokenFree):
        pair.server.signal(True)


def test_answered_tokens_are_free_again() -> None:
    pair = connected()
    tokens = [pair.server.call_function("f", "") for _ in range(256)]
    pair.pump()
    requests = of_type(pair.take_device_events(), FunctionCallRequested)
    assert sorted(r.token for r in requests) == sorted(tokens)

    for request in requests[:3]:
        pair.device.reply_function(request.token, 0)
    pair.pump()

    assert len(of_type(pair.take_server_events(), ResponseReceived)) == 3
    assert pair.server.pending_requests == 253
    assert {pair.server.signal(False) for _ in range(3)} == {r.token for r in requests[:3]}


# -- variables -------------------------------------------------------------------------------

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


@pytest.mark.parametrize("separate", [True, False])
def test_unknown_variable_is_4_04(separate: bool) -> None:
    pair = connected(separate_responses=separate)

    token = pair.server.request_variable("nosuch")
    pair.pump()
    (request,) = of_type(pair.take_device_events(), VariableRequested)
    pair.device.reply_variable(request, None)
    pair.pump()

    assert pair.take_server_events() == [
        ResponseReceived(RequestKind.VARIABLE, token, CoapCode.NOT_FOUND, b"")
    ]
    (answer,) = [m for m in read_wire(pair).device_sent if m.code == CoapCode.NOT_FOUND]
    # §7: NON 4.04 on device-os; §4.7: 61 84 id tok when piggy-backed.
    expected = bytes.fromhex("51 84" if separate else "61 84")
    assert answer.encode()[:2] == expected
    assert answer.token == bytes([token])


# -- signal, ping, time ----------------------------------------------------------------------


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
def test_ping_from_the_server_is_acked_by_the_device(chunk: int | None) -> None:
    pair = connected(chunk)
    before = len(read_wire(pair).server_sent)

    pair.server.ping()
    pair.pump(chunk)

    wire = read_wire(pair)
    (ping,) = sent_after(wire.server_sent, before)
    assert ping.encode() == bytes.fromhex("40 00") + ping.message_id.to_bytes(2, "big")
    assert acks_of(wire.device_sent, ping.message_id) == [messages.empty_ack(ping.message_id)]
    assert pair.take_server_events() == []


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


# -- events ----------------------------------------------------------------------------------


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


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(
    "info",
    [
        EventInfo("cmd", b"go", 60, True),
        EventInfo("private/cmd", b"stop", 120, False),
        EventInfo("no-data", None, 5, True),
    ],
)
def test_server_sends_an_event_to_the_device(chunk: int | None, info: EventInfo) -> None:
    pair = connected(chunk)
    before = len(read_wire(pair).server_sent)

    pair.server.send_event(info)
    pair.pump(chunk)

    assert pair.take_device_events() == [EventDelivered(info)]
    (sent,) = sent_after(read_wire(pair).server_sent, before)
    # §4.8 server -> device: NON POST, no token.
    assert (sent.type, sent.code, sent.token) == (NON, CoapCode.POST, b"")


# -- subscribe -------------------------------------------------------------------------------


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


# -- other messages --------------------------------------------------------------------------


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


def test_the_device_says_goodbye_as_device_os_does() -> None:
    # §4.15 as Device OS 2.x sends it when leaving on purpose: NON, No-Response, flags 0.
    pair = connected()

    pair.device.goodbye()
    pair.pump()

    (sent,) = [m for m in read_wire(pair).device_sent if m.uri_path == [b"x"]]
    assert sent.encode() == bytes.fromhex(f"50 02 {sent.message_id:04x} b1 78 d0 ea ff 00")
    assert pair.take_server_events() == [GoodbyeReceived(b"\x00")]
    assert acks_of(read_wire(pair).server_sent, sent.message_id) == []


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


def test_device_acks_unknown_confirmable_messages_from_the_server() -> None:
    pair = connected()

    pair.server.send(CoapMessage.decode(bytes.fromhex("40 02 66 66 b1 7a")))
    pair.pump()

    assert pair.take_device_events() == []
    assert acks_of(read_wire(pair).device_sent, 0x6666) == [messages.empty_ack(0x6666)]


def test_unsolicited_response_from_the_device_is_dropped() -> None:
    pair = connected()

    pair.device.send(messages.separate_response(0x7777, CoapCode.CHANGED, b"\x09", b"\x00" * 4))
    pair.device.send(messages.separate_response(0x7778, CoapCode.CHANGED, b"", b"\x00" * 4))
    pair.pump()

    assert pair.take_server_events() == []


# -- broken sessions -------------------------------------------------------------------------


def _session_state(pair: Pair) -> tuple[bytes, bytes, bytes]:
    """AES key and the next IV of each direction, read off the wire."""
    wire = read_wire(pair)
    _, to_device_iv = open_frames(bytes(pair.to_device[424:]), wire.aes_key, wire.iv)
    _, to_server_iv = open_frames(bytes(pair.to_server[256:]), wire.aes_key, wire.iv)
    return wire.aes_key, to_device_iv, to_server_iv


def aes_frame(key: bytes, iv: bytes, padded: bytes) -> bytes:
    """One frame of already padded plaintext (to build broken padding on purpose)."""
    ciphertext = aes_cbc_encrypt(key, iv, padded)
    return len(ciphertext).to_bytes(2, "big") + ciphertext


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00",  # zero-length frame
        b"\x00\x05hello",  # length not a multiple of 16
        b"\xff\xf0",  # over the frame limit
        b"GET / HTTP/1.1\r\n\r\n",  # something else entirely
    ],
)
@pytest.mark.parametrize("end", ["server", "device"])
def test_garbage_framing_after_the_handshake_is_a_session_error(garbage: bytes, end: str) -> None:
    pair = connected()
    receiver = pair.server if end == "server" else pair.device

    with pytest.raises(ProtocolError) as caught:
        receiver.receive_data(garbage)

    assert caught.value.stage is Stage.SESSION


@pytest.mark.parametrize(
    "plaintext",
    [
        b"\x40\x00\x12\x34" + b"\x00" * 11 + b"\x00",  # block whose last byte (pad) is 0
        b"ping" + b"\x11" * 12,  # pad 17
        b"\x40\x00\x12\x34\x05\x05\x05\x05\x05\x05\x05\x05\x04\x03\x03\x03",  # 3 claimed, 04 in it
    ],
)
def test_frame_with_bad_padding_is_a_session_error(plaintext: bytes) -> None:
    pair = connected()
    key, to_device_iv, to_server_iv = _session_state(pair)
    frame_for_server = aes_frame(key, to_server_iv, plaintext)
    frame_for_device = aes_frame(key, to_device_iv, plaintext)

    with pytest.raises(ProtocolError) as at_server:
        pair.server.receive_data(frame_for_server)
    with pytest.raises(ProtocolError) as at_device:
        pair.device.receive_data(frame_for_device)

    assert at_server.value.stage is Stage.SESSION
    assert at_device.value.stage is Stage.SESSION


@pytest.mark.parametrize(
    "plaintext",
    [
        b"\x00\x00\x12\x34",  # CoAP version 0
        b"\x4f\x00\x12\x34",  # token length 15
        b"\x40\x00",  # shorter than a header
        b"\x40\x02\x12\x34\xf1\x00",  # reserved option nibble
    ],
)
def test_frame_that_is_not_coap_is_a_session_error(plaintext: bytes) -> None:
    pair = connected()
    key, to_device_iv, to_server_iv = _session_state(pair)
    frame_for_server, _ = seal_frames([plaintext], key, to_server_iv)
    frame_for_device, _ = seal_frames([plaintext], key, to_device_iv)

    with pytest.raises(ProtocolError) as at_server:
        pair.server.receive_data(frame_for_server)
    with pytest.raises(ProtocolError) as at_device:
        pair.device.receive_data(frame_for_device)

    assert at_server.value.stage is Stage.SESSION
    assert at_device.value.stage is Stage.SESSION


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=100))
def test_any_bytes_after_the_handshake_raise_only_protocol_error(garbage: bytes) -> None:
    pair = connected()
    stages = []
    for end in (pair.server, pair.device):
        try:
            end.receive_data(garbage)
        except ProtocolError as exc:  # anything else fails the test
            stages.append(exc.stage)

    assert set(stages) <= {Stage.SESSION}


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
