"""protocol/device.py: how a DeviceConnection answers the server, as Photon firmware does
(protocol.md §4, §7).

Each conversation runs against a ServerConnection in memory (tests/protocol/pair.py), mostly
with every write delivered whole, byte by byte, and in 7-byte pieces; what the device wrote is
read back from the wire by tests/protocol/wire.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from cyan.protocol import messages, ota
from cyan.protocol.coap import CoapCode, CoapMessage, CoapType
from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.events import (
    ChunkArrived,
    DescribeReceived,
    DescribeRequested,
    Event,
    EventDelivered,
    FunctionCallRequested,
    GoodbyeReceived,
    RequestKind,
    ResponseReceived,
    SignalRequested,
    TimeReceived,
    UpdateAborted,
    UpdateBeginRequested,
    UpdateDoneRequested,
    VariableRequested,
)
from cyan.protocol.handshake import DeviceState
from cyan.protocol.limits import SMALL
from cyan.protocol.messages import EventInfo
from cyan.protocol.payloads import Description
from tests.protocol.pair import BODY, CHUNKS, Pair, connected, make_pair, of_type
from tests.protocol.wire import CON, NON, acks_of, read_wire, request_on_wire, sent_after

# -- describe -------------------------------------------------------------------------------------


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


# -- functions and variables ----------------------------------------------------------------------


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


# -- ping, events, goodbye ------------------------------------------------------------------------


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


def test_the_device_says_goodbye_as_device_os_does() -> None:
    # §4.15 as Device OS 2.x sends it when leaving on purpose: NON, No-Response, flags 0.
    pair = connected()

    pair.device.goodbye()
    pair.pump()

    (sent,) = [m for m in read_wire(pair).device_sent if m.uri_path == [b"x"]]
    assert sent.encode() == bytes.fromhex(f"50 02 {sent.message_id:04x} b1 78 d0 ea ff 00")
    assert pair.take_server_events() == [GoodbyeReceived(b"\x00")]
    assert acks_of(read_wire(pair).server_sent, sent.message_id) == []


def test_device_acks_unknown_confirmable_messages_from_the_server() -> None:
    pair = connected()

    pair.server.send(CoapMessage.decode(bytes.fromhex("40 02 66 66 b1 7a")))
    pair.pump()

    assert pair.take_device_events() == []
    assert acks_of(read_wire(pair).device_sent, 0x6666) == [messages.empty_ack(0x6666)]


# -- the handshake as the device sees it -------------------------------------------------------


def test_handshake_state_at_each_step() -> None:
    pair = make_pair()
    server, device = pair.server, pair.device
    seen = [(device.handshake_state, device.established)]

    nonce = server.data_to_send()
    device.receive_data(nonce[:39])
    seen.append((device.handshake_state, device.established))  # 39 of the 40 nonce bytes
    device.receive_data(nonce[39:])
    seen.append((device.handshake_state, device.established))
    server.receive_data(device.data_to_send())
    server.accept_device(pair.registered_key)
    device.receive_data(server.data_to_send())
    seen.append((device.handshake_state, device.established))

    assert seen == [
        (DeviceState.START, False),
        (DeviceState.START, False),
        (DeviceState.ID_SENT, False),
        (DeviceState.KEYED, True),
    ]
    assert not device.server_hello_received  # our Hello is out; the server's is not in


# -- requests the device cannot take -----------------------------------------------------------


@pytest.mark.parametrize(
    "wire_bytes",
    [
        "40 01 12 34 b1 64 41 02",  # describe without a token
        "42 01 12 34 07 07 b1 64 41 02",  # describe with a 2-byte token
        "40 02 12 34 b1 66 04 62 72 65 77 40",  # function call without a token
        "41 02 12 34 07 b1 66 40",  # function call without a name
        "40 01 12 34 b1 76 04 74 65 6d 70",  # variable request without a token
        "41 01 12 34 07 b1 76",  # variable request without a name
        "40 02 12 34 b1 75 ff 01 00 10 00 00 00 28 00 00 00 00 00",  # UpdateBegin, no token
        "40 03 12 34 b1 75",  # UpdateDone without a token
    ],
)
def test_a_request_without_a_one_byte_token_or_a_name_is_a_session_error(wire_bytes: str) -> None:
    # §5.3: device-os drops the connection (MISSING_REQUEST_TOKEN) rather than answer.
    pair = connected()
    pair.server.send(CoapMessage.decode(bytes.fromhex(wire_bytes)))

    with pytest.raises(ProtocolError) as caught:
        pair.device.receive_data(pair.server.data_to_send())

    assert caught.value.stage is Stage.SESSION


# -- what a request carries --------------------------------------------------------------------


def test_a_describe_without_flags_asks_for_system_and_application() -> None:
    # §4.5: the flags byte is optional; without it the default is 0x03.
    pair = connected()
    pair.server.send(CoapMessage.decode(bytes.fromhex("41 01 12 34 09 b1 64")))
    pair.pump()

    assert pair.take_device_events() == [DescribeRequested(9, 0x03, 0x1234)]
    assert acks_of(read_wire(pair).device_sent, 0x1234) == [messages.empty_ack(0x1234)]


def test_a_function_call_without_a_query_has_an_empty_argument() -> None:
    pair = connected()
    pair.server.send(CoapMessage.decode(bytes.fromhex("41 02 12 34 09 b1 66 04 62 72 65 77")))
    pair.pump()

    assert pair.take_device_events() == [FunctionCallRequested(9, "brew", "")]
    assert acks_of(read_wire(pair).device_sent, 0x1234) == [messages.empty_ack(0x1234)]


@pytest.mark.parametrize(
    ("limit", "sent", "called_with", "ack_head"),
    [
        (1024, 1024, 1024, "60 00"),  # at the limit: an empty ACK, the whole argument
        (1024, 1025, 1024, "60 80"),  # over it: ACK 4.00 without the token, cut short
        (SMALL.function_argument_bytes, 63, 63, "60 00"),  # 0.7.0's 64-byte buffer
        (SMALL.function_argument_bytes, 64, 63, "60 80"),
    ],
)
def test_the_argument_limit_decides_the_ack_and_the_argument(
    limit: int, sent: int, called_with: int, ack_head: str
) -> None:
    pair = connected()
    pair.device.function_argument_bytes = limit

    token = pair.server.call_function("brew", "a" * sent)
    pair.pump()

    assert pair.take_device_events() == [FunctionCallRequested(token, "brew", "a" * called_with)]
    request = request_on_wire(read_wire(pair), token)
    (ack,) = acks_of(read_wire(pair).device_sent, request.message_id)
    assert ack.encode() == bytes.fromhex(ack_head) + request.message_id.to_bytes(2, "big")


def test_a_signal_without_its_query_byte_stops_the_signal() -> None:
    pair = connected()
    pair.server.send(CoapMessage.decode(bytes.fromhex("41 03 12 34 09 b1 73")))
    pair.pump()

    assert pair.take_device_events() == [SignalRequested(False)]
    # §4.12: coded ACK 2.04 with the token, 61 44 <id> <tok>.
    (ack,) = acks_of(read_wire(pair).device_sent, 0x1234)
    assert ack.encode() == bytes.fromhex("61 44 12 34 09")


@pytest.mark.parametrize(("kind", "acked"), [(CON, True), (NON, False)])
def test_a_second_server_hello_is_acked_when_confirmable_and_reported_once(
    kind: CoapType, acked: bool
) -> None:
    # §4.4.2: "A device receiving Hello as CON sends an empty ACK".
    pair = connected()

    pair.server.send(CoapMessage(kind, CoapCode.POST, 0x2222, options=((11, b"h"),)))
    pair.pump()

    assert pair.take_device_events() == []
    acks = acks_of(read_wire(pair).device_sent, 0x2222)
    assert acks == ([messages.empty_ack(0x2222)] if acked else [])


def test_asking_the_time_before_the_handshake_fails_and_keeps_no_token() -> None:
    pair = make_pair()

    with pytest.raises(ProtocolError) as raised:
        pair.device.request_time()

    assert raised.value.stage is Stage.SESSION
    assert pair.device.pending_requests == 0
    pair.pump()
    pair.device.request_time()  # after the handshake the first request goes out
    assert pair.device.pending_requests == 1


# -- responses from the server -----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "acked"), [(NON, False), (CON, True)])
def test_any_2_05_with_four_bytes_is_taken_as_the_time(kind: CoapType, acked: bool) -> None:
    # §4.10: the device classifies any 2.05 as a time response, asked for or not.
    pair = connected()

    unix = (1_800_000_000).to_bytes(4, "big")
    pair.server.send(CoapMessage(kind, CoapCode.CONTENT, 0x3333, b"", (), unix))
    pair.pump()

    assert pair.take_device_events() == [TimeReceived(1_800_000_000)]
    acks = acks_of(read_wire(pair).device_sent, 0x3333)
    assert acks == ([messages.empty_ack(0x3333)] if acked else [])


@pytest.mark.parametrize(
    "wire_bytes",
    [
        "51 45 33 33 09 ff 00 01 02",  # 2.05 with 3 bytes: too short for a time
        "51 84 33 33 09",  # 4.04
        "51 44 33 33 09 ff 00 00 00 01",  # 2.04
        "50 80 33 33",  # UpdateAbort (NON 4.00) with no update running
    ],
)
def test_other_responses_are_dropped(wire_bytes: str) -> None:
    pair = connected()
    before = len(read_wire(pair).device_sent)

    pair.server.send(CoapMessage.decode(bytes.fromhex(wire_bytes)))
    pair.pump()

    assert pair.take_device_events() == []
    assert sent_after(read_wire(pair).device_sent, before) == []


# -- over-the-air update answers (protocol.md §4.14) -------------------------------------------

DATA = bytes(range(40))  # three 16-byte chunks, the last one 8 bytes and padding


def update_offered(*, offer_fast: bool) -> tuple[Pair, UpdateBeginRequested]:
    pair = connected()
    pair.server.start_update(DATA, chunk_bytes=16, offer_fast=offer_fast)
    pair.pump()
    (begin,) = of_type(pair.take_device_events(), UpdateBeginRequested)
    return pair, begin


def chunks_arriving(pair: Pair, count: int) -> list[Event]:
    """The device's events after the server sent up to ``count`` chunks (and UpdateDone)."""
    pair.server.pump_update(0.0, max_chunks=count)
    pair.pump()
    return pair.take_device_events()


@pytest.mark.parametrize(("offer_fast", "fast"), [(True, True), (False, False)])
def test_update_ready_says_fast_only_when_both_ends_want_it(offer_fast: bool, fast: bool) -> None:
    pair, begin = update_offered(offer_fast=offer_fast)
    assert begin.params == ota.UpdateParams(offer_fast, 16, 40)

    pair.device.accept_update(begin, fast=True)
    pair.pump()

    assert pair.device.update is not None
    assert pair.device.update.fast is fast
    sent = read_wire(pair).device_sent
    assert acks_of(sent, begin.message_id) == [messages.empty_ack(begin.message_id)]
    (ready,) = [m for m in sent if m.code == CoapCode.CHANGED]
    # UpdateReady: 51 44 <new id> <tok> ff <flags>, bit 0 = fast OTA will be used.
    head = bytes.fromhex("51 44") + ready.message_id.to_bytes(2, "big")
    assert ready.encode() == head + bytes([begin.token, 0xFF, int(fast)])


def test_a_refused_update_is_a_coded_ack_5_03_with_the_token() -> None:
    pair, begin = update_offered(offer_fast=True)

    pair.device.refuse_update(begin)
    pair.pump()

    (ack,) = acks_of(read_wire(pair).device_sent, begin.message_id)
    mid = begin.message_id.to_bytes(2, "big")
    assert ack.encode() == bytes.fromhex("61 a3") + mid + bytes([begin.token])
    assert pair.device.update is None


def test_a_slow_chunk_with_a_bad_crc_is_answered_4_00_and_not_stored() -> None:
    pair, begin = update_offered(offer_fast=False)
    pair.device.accept_update(begin, fast=False)
    pair.pump()
    (arrived,) = of_type(chunks_arriving(pair, 3), ChunkArrived)  # slow: one at a time
    before = len(read_wire(pair).device_sent)

    damaged = dataclasses.replace(arrived.chunk, data=b"\xee" * 16)
    pair.device.take_chunk(dataclasses.replace(arrived, chunk=damaged))
    pair.pump()

    ack, received = sent_after(read_wire(pair).device_sent, before)
    assert ack == messages.empty_ack(arrived.message_id)
    # ChunkReceived 4.00: 51 80 <new id> <tok>
    mid = received.message_id.to_bytes(2, "big")
    assert received.encode() == bytes.fromhex("51 80") + mid + bytes([arrived.token])
    receiver = pair.device.update
    assert receiver is not None
    assert (receiver.next_index, receiver.missing()) == (0, [0, 1, 2])
    assert pair.server.update is not None
    assert pair.server.update.chunks_resent == 1


def test_a_fast_duplicate_is_dropped_not_written_over_the_first() -> None:
    pair, begin = update_offered(offer_fast=True)
    pair.device.accept_update(begin, fast=True)
    pair.pump()
    arrived = of_type(chunks_arriving(pair, 3), ChunkArrived)
    for event in arrived:
        pair.device.take_chunk(event)

    other = b"\x11" * 16
    twin = ota.ChunkInfo(ota.crc32(other), 0, other)  # index 0 again, a good CRC
    pair.device.take_chunk(dataclasses.replace(arrived[0], chunk=twin))

    assert pair.device.data_to_send() == b""
    assert pair.device.update is not None
    assert pair.device.update.image() == DATA


def test_a_chunk_taken_after_the_abort_is_dropped() -> None:
    pair, begin = update_offered(offer_fast=False)
    pair.device.accept_update(begin, fast=False)
    pair.pump()
    (arrived,) = of_type(chunks_arriving(pair, 1), ChunkArrived)

    pair.server.abort_update("the server is stopping")
    pair.pump()
    assert of_type(pair.take_device_events(), UpdateAborted) == [UpdateAborted()]
    pair.device.take_chunk(arrived)

    assert pair.device.data_to_send() == b""  # no ACK and no ChunkReceived


def test_a_chunk_outside_an_update_gets_no_answer() -> None:
    pair = connected()
    before = len(read_wire(pair).device_sent)

    pair.server.send(ota.chunk(0x4444, b"\x09", b"data", None))
    pair.pump()

    assert pair.take_device_events() == []
    assert sent_after(read_wire(pair).device_sent, before) == []


def test_update_done_without_an_update_is_4_00_and_lists_nothing() -> None:
    pair = connected()
    pair.server.send(ota.update_done(0x4545, b"\x09"))
    pair.pump()
    (done,) = of_type(pair.take_device_events(), UpdateDoneRequested)
    before = len(read_wire(pair).device_sent)

    def never(image: bytes) -> int:
        raise AssertionError("nothing to validate")

    assert pair.device.answer_update_done(done, never) is None
    pair.pump()

    (ack,) = sent_after(read_wire(pair).device_sent, before)
    assert ack.encode() == bytes.fromhex("61 80 45 45 09")


def test_update_done_with_chunks_missing_is_4_00_then_chunk_missed() -> None:
    pair, begin = update_offered(offer_fast=True)
    pair.device.accept_update(begin, fast=True)
    pair.pump()
    events = chunks_arriving(pair, 3)  # three chunks, then UpdateDone
    first, _, last = of_type(events, ChunkArrived)
    pair.device.take_chunk(first)
    pair.device.take_chunk(last)
    (done,) = of_type(events, UpdateDoneRequested)
    before = len(read_wire(pair).device_sent)

    assert pair.device.answer_update_done(done, lambda image: 0) is None
    pair.pump()

    ack, missed = sent_after(read_wire(pair).device_sent, before)
    mid = done.message_id.to_bytes(2, "big")
    assert ack.encode() == bytes.fromhex("61 80") + mid + bytes([done.token])
    # ChunkMissed: 50 01 <id> b1 63 ff + BE16 indices.
    assert missed.encode()[:2] + missed.encode()[4:] == bytes.fromhex("50 01 b1 63 ff 00 01")


def test_update_done_with_every_chunk_returns_the_validation_result() -> None:
    pair, begin = update_offered(offer_fast=True)
    pair.device.accept_update(begin, fast=True)
    pair.pump()
    events = chunks_arriving(pair, 3)
    for event in of_type(events, ChunkArrived):
        pair.device.take_chunk(event)
    (done,) = of_type(events, UpdateDoneRequested)
    images: list[bytes] = []
    before = len(read_wire(pair).device_sent)

    def validate(image: bytes) -> int:
        images.append(image)
        return 7

    assert pair.device.answer_update_done(done, validate) == 7
    pair.pump()

    assert images == [DATA]  # padding cut off at the announced file size
    assert pair.device.update is None
    (ack,) = sent_after(read_wire(pair).device_sent, before)
    mid = done.message_id.to_bytes(2, "big")
    assert ack.encode() == bytes.fromhex("61 44") + mid + bytes([done.token, 0xFF]) + b'{"r":7}'
