"""protocol/messages.py: the Particle messages on top of CoAP (protocol.md §4.3 – §4.15).

Every vector is written out from protocol.md, then checked against the builders in
messages.py (``encode()``) and read back (``decode()``). Hypothesis checks round trips
and that no input makes a decoder raise anything but ProtocolError.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import messages, payloads
from cyan.protocol.coap import CoapCode, CoapMessage, CoapType, OptionNumber
from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.messages import EventInfo, HelloFlags, HelloInfo, MessageKind, classify
from tests.protocol.wire import MID, MID_BYTES, TOKEN, check_both_ways, coap_messages, h, outcome

# -- the message catalogue, byte for byte ------------------------------------------------------


def test_server_hello() -> None:
    # §4.4.2: NON POST /h, no payload.
    check_both_ways(messages.hello(MID), h("50 02") + MID_BYTES + h("b1 68"))


def test_device_hello_photon() -> None:
    # §4.4.1: 50 02 id id b1 68 ff, product id, version, 00, flags, platform id.
    payload = messages.encode_hello_payload(HelloInfo(6, 3, 0x36, 6))
    wire = h("50 02") + MID_BYTES + h("b1 68 ff 0006 0003 00 36 0006")

    check_both_ways(messages.hello(MID, payload), wire)


def test_ping() -> None:
    # §4.11
    check_both_ways(messages.ping(MID), h("40 00") + MID_BYTES)


def test_empty_ack() -> None:
    check_both_ways(messages.empty_ack(MID), h("60 00") + MID_BYTES)


@pytest.mark.parametrize("flags", [0x01, 0x02, 0x03, 0x04])
def test_describe_request_always_carries_the_flags_query(flags: int) -> None:
    # §4.5, §7 (Device OS 5 answers 4.00 without the flags byte).
    wire = h("41 01") + MID_BYTES + TOKEN + h("b1 64 41") + bytes([flags])

    check_both_ways(messages.describe_request(MID, TOKEN, flags), wire)


def test_describe_post_from_the_device() -> None:
    # §4.5: 40 02 id b1 64 41 <flags> ff <json>
    body = b'{"f":["led"],"v":{"temp":9}}'
    wire = h("40 02") + MID_BYTES + h("b1 64 41 02 ff") + body

    check_both_ways(messages.describe_post(MID, messages.DescribeFlags.APPLICATION, body), wire)


@pytest.mark.parametrize(
    ("name", "argument", "name_head", "argument_head"),
    [
        ("led", "on", h("03"), h("42")),
        ("abcdefghijkl", "", h("0c"), h("40")),  # 12: last one-nibble length; empty args: 40
        ("abcdefghijklm", "x", h("0d 00"), h("41")),  # 13 -> 0d, L-13
        ("f" * 64, "a" * 12, h("0d 33"), h("4c")),
        ("brew", "a" * 13, h("04"), h("4d 00")),  # argument 13 -> 4d, M-13
        ("brew", "a" * 268, h("04"), h("4d ff")),
        ("brew", "a" * 269, h("04"), h("4e 00 00")),  # 269 -> 4e, M-269 in 2 bytes
        ("brew", "a" * 1024, h("04"), h("4e") + (1024 - 269).to_bytes(2, "big")),
    ],
)
def test_function_call(name: str, argument: str, name_head: bytes, argument_head: bytes) -> None:
    # §4.6: 41 02 id id tok b1 66 0L <name> 4M <args>
    wire = (
        h("41 02")
        + MID_BYTES
        + TOKEN
        + h("b1 66")
        + name_head
        + name.encode()
        + argument_head
        + argument.encode()
    )

    check_both_ways(messages.function_call(MID, TOKEN, name, argument), wire)


@pytest.mark.parametrize(
    ("name", "head"), [("temp", h("04")), ("temperature", h("0b")), ("temperature_c", h("0d 00"))]
)
def test_variable_request(name: str, head: bytes) -> None:
    # §4.7: 41 01 id id tok b1 76 0L <name>
    wire = h("41 01") + MID_BYTES + TOKEN + h("b1 76") + head + name.encode()

    check_both_ways(messages.variable_request(MID, TOKEN, name), wire)


@pytest.mark.parametrize(("on", "flag"), [(True, h("01")), (False, h("00"))])
def test_signal(on: bool, flag: bytes) -> None:
    # §4.12: 41 03 id id tok b1 73 41 <01|00>
    check_both_ways(
        messages.signal(MID, TOKEN, on), h("41 03") + MID_BYTES + TOKEN + h("b1 73 41") + flag
    )


@pytest.mark.parametrize(("public", "letter"), [(True, h("65")), (False, h("45"))])
def test_event_with_the_default_ttl_has_no_max_age(public: bool, letter: bytes) -> None:
    # §4.8: 50 02 id id b1 'e'|'E' <name> [ff data]
    info = EventInfo("temp", b"21.5", 60, public)
    wire = h("50 02") + MID_BYTES + h("b1") + letter + h("04") + b"temp" + h("ff") + b"21.5"

    check_both_ways(messages.event(MID, info), wire)


def test_confirmable_event_without_data() -> None:
    info = EventInfo("spark/status", None, 60, False)
    wire = h("40 02") + MID_BYTES + h("b1 45 0c") + b"spark/status"

    check_both_ways(messages.event(MID, info, confirmable=True), wire)


def test_event_name_of_13_or_more_bytes_is_one_option() -> None:
    name = "spark/hardware/max_binary"  # slashes are not split (§4.8)
    wire = h("50 02") + MID_BYTES + h("b1 45 0d") + bytes([len(name) - 13]) + name.encode()

    check_both_ways(messages.event(MID, EventInfo(name, None, 60, False)), wire)


@pytest.mark.parametrize(
    "ttl",
    [
        0,
        30,
        3600,
        65535,
        65536,
        messages.MAX_EVENT_TTL,
    ],
)
def test_event_ttl_other_than_60_is_a_three_byte_max_age(ttl: int) -> None:
    # §4.8: 33 ttl2 ttl1 ttl0, "omitted when TTL = 60" (device-os messages.cpp).
    info = EventInfo("temp", b"x", ttl, True)
    wire = (
        h("50 02")
        + MID_BYTES
        + h("b1 65 04")
        + b"temp"
        + h("33")
        + ttl.to_bytes(3, "big")
        + h("ff")
        + b"x"
    )

    assert messages.event(MID, info).encode() == wire


@pytest.mark.parametrize("ttl", [0, 1, 30, 61, 3600, 65536, messages.MAX_EVENT_TTL])
def test_event_ttl_round_trips_through_decode_event(ttl: int) -> None:
    info = EventInfo("temp", b"x", ttl, True)

    assert messages.decode_event(CoapMessage.decode(messages.event(MID, info).encode())) == info


def test_decode_event_from_firmware_bytes() -> None:
    wire = h("50 02") + MID_BYTES + h("b1 45 04") + b"temp" + h("33 00 0e 10 ff") + b"21.5"

    info = messages.decode_event(CoapMessage.decode(wire))

    assert info == EventInfo("temp", b"21.5", 3600, False)


def test_decode_event_joins_split_name_segments_and_defaults() -> None:
    # A server may split the name at '/' (§4.8); no payload means data None, TTL 60.
    wire = h("50 02") + MID_BYTES + h("b1 65 05") + b"spark" + h("06") + b"status"

    assert messages.decode_event(CoapMessage.decode(wire)) == EventInfo(
        "spark/status", None, 60, True
    )


@pytest.mark.parametrize("wire", [h("50 02 00 01 b1 65"), h("50 02 00 01 b1 65 00")])
def test_decode_event_without_a_name_is_a_session_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        messages.decode_event(CoapMessage.decode(wire))

    assert caught.value.stage is Stage.SESSION


@pytest.mark.parametrize(
    ("my_devices", "device_id", "tail"),
    [
        (True, None, h("41 75")),
        (False, None, b""),
        (False, "0123456789abcdef01234567", h("ff") + b"0123456789abcdef01234567"),
    ],
)
def test_subscribe(my_devices: bool, device_id: str | None, tail: bytes) -> None:
    # §4.9: 40 01 id b1 65 <prefix> [41 75] [ff <device id>]
    wire = h("40 01") + MID_BYTES + h("b1 65 04") + b"temp" + tail

    message = messages.subscribe(MID, "temp", my_devices=my_devices, device_id=device_id)

    check_both_ways(message, wire)
    assert messages.decode_subscribe(message) == messages.SubscriptionInfo(
        "temp", my_devices, device_id
    )


def test_time_request() -> None:
    # §4.10: 41 01 id tok b1 74
    check_both_ways(messages.time_request(MID, TOKEN), h("41 01") + MID_BYTES + TOKEN + h("b1 74"))


def test_time_reply() -> None:
    # §4.10: 61 45 id tok ff t3 t2 t1 t0, big-endian Unix seconds.
    payload = payloads.encode_time(1_700_000_000)
    wire = h("61 45") + MID_BYTES + TOKEN + h("ff 65 53 f1 00")

    check_both_ways(messages.coded_ack(MID, CoapCode.CONTENT, TOKEN, payload), wire)


def test_function_return() -> None:
    # §4.6: 51 44 id tok ff r3 r2 r1 r0, signed int32 big-endian.
    payload = payloads.encode_function_result(-2)
    wire = h("51 44") + MID_BYTES + TOKEN + h("ff ff ff ff fe")

    check_both_ways(messages.separate_response(MID, CoapCode.CHANGED, TOKEN, payload), wire)
    assert payloads.decode_function_result(payload) == -2


def test_separate_describe_response_is_con() -> None:
    # §4.5 device-os 2.x: 41 45 <new id> <tok> ff <json>
    body = b'{"f":[],"v":{}}'
    wire = h("41 45") + MID_BYTES + TOKEN + h("ff") + body

    check_both_ways(
        messages.separate_response(MID, CoapCode.CONTENT, TOKEN, body, confirmable=True), wire
    )


def test_piggy_backed_variable_and_not_found() -> None:
    # §4.7: 61 45 id tok ff <value>; not found 61 84 id tok.
    check_both_ways(
        messages.coded_ack(MID, CoapCode.CONTENT, TOKEN, h("00 00 00 2a")),
        h("61 45") + MID_BYTES + TOKEN + h("ff 00 00 00 2a"),
    )
    check_both_ways(
        messages.coded_ack(MID, CoapCode.NOT_FOUND, TOKEN), h("61 84") + MID_BYTES + TOKEN
    )


def test_subscribe_fail_ack() -> None:
    # §4.9: ACK 4.00, no token.
    check_both_ways(messages.coded_ack(MID, CoapCode.BAD_REQUEST), h("60 80") + MID_BYTES)


# -- classify ----------------------------------------------------------------------------------


_CLASSIFY_VECTORS: list[tuple[bytes, MessageKind]] = [
    (h("50 02 00 01 b1 68"), MessageKind.HELLO),
    (h("41 01 00 01 07 b1 64 41 02"), MessageKind.DESCRIBE),
    (h("40 02 00 01 b1 64 41 01 ff 7b 7d"), MessageKind.DESCRIBE_POST),
    (h("41 02 00 01 07 b1 66 03 6c 65 64 40"), MessageKind.FUNCTION_CALL),
    (h("41 01 00 01 07 b1 76 01 74"), MessageKind.VARIABLE_REQUEST),
    (h("50 02 00 01 b1 65 01 74"), MessageKind.EVENT),
    (h("50 02 00 01 b1 45 01 74"), MessageKind.EVENT),
    (h("40 01 00 01 b1 65 01 74 41 75"), MessageKind.SUBSCRIBE),
    (h("41 01 00 01 07 b1 74"), MessageKind.TIME_REQUEST),
    (h("41 03 00 01 07 b1 73 41 01"), MessageKind.SIGNAL),
    (h("40 03 00 01 b1 6b"), MessageKind.KEY_CHANGE),
    (h("41 02 00 01 07 b1 75 ff 00"), MessageKind.UPDATE_BEGIN),
    (h("41 03 00 01 07 b1 75"), MessageKind.UPDATE_DONE),
    (h("41 02 00 01 07 b1 63 44 01 02 03 04 ff 00"), MessageKind.CHUNK),
    (h("40 01 00 01 b1 63 ff 00 03"), MessageKind.CHUNK_MISSED),
    (h("50 02 00 01 b1 78 d0 ea ff 00"), MessageKind.GOODBYE),
    (h("40 00 00 01"), MessageKind.PING),
    (h("60 00 00 01"), MessageKind.EMPTY_ACK),
    (h("70 00 00 01"), MessageKind.RESET),
    (h("61 45 00 01 07 ff 00"), MessageKind.RESPONSE),
    (h("51 44 00 01 07 ff 00 00 00 01"), MessageKind.RESPONSE),
    (h("41 45 00 01 07 ff 7b 7d"), MessageKind.RESPONSE),
    (h("61 84 00 01 07"), MessageKind.RESPONSE),
    (h("60 80 00 01"), MessageKind.RESPONSE),
    (h("50 00 00 01"), MessageKind.UNKNOWN),  # NON empty
    (h("50 02 00 01 b1 7a"), MessageKind.UNKNOWN),  # POST /z
    (h("40 01 00 01"), MessageKind.UNKNOWN),  # GET without a path
    (h("40 04 00 01 b1 65 01 74"), MessageKind.UNKNOWN),  # DELETE /e/t
    (h("40 01 00 01 b1 68"), MessageKind.UNKNOWN),  # GET /h
    (h("40 02 00 01 b2 68 68"), MessageKind.UNKNOWN),  # POST /hh
]


@pytest.mark.parametrize(("wire", "kind"), _CLASSIFY_VECTORS)
def test_classify(wire: bytes, kind: MessageKind) -> None:
    assert classify(CoapMessage.decode(wire)) is kind


def test_classify_vectors_cover_every_kind() -> None:
    assert {kind for _, kind in _CLASSIFY_VECTORS} == set(MessageKind)


# -- Hello payloads ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "info"),
    [
        # §4.4.1 Photon 8-byte form; §7: 2.3.1 sends 0003 ffff 00 36 0003.
        (h("0006 0003 00 36 0006"), HelloInfo(6, 3, 0x36, 6)),
        (h("0003 ffff 00 36 0003"), HelloInfo(3, 0xFFFF, 0x36, 3)),
        (h("0003 ffff 00 00 0003"), HelloInfo(3, 0xFFFF, 0, 3)),  # 0.7.0
        # The Core's 6 bytes: product, version, reserved, OTA flag; platform 0.
        (h("ffff ffff 00 01"), HelloInfo(0xFFFF, 0xFFFF, 1, 0)),
        # Four bytes are enough (PS-HS reads only these).
        (h("0006 0003"), HelloInfo(6, 3, 0, 0)),
    ],
)
def test_decode_hello_payload(payload: bytes, info: HelloInfo) -> None:
    assert messages.decode_hello_payload(payload) == info


def test_decode_hello_payload_device_os_5_twenty_bytes() -> None:
    # §7: 5.0.0 sends 20 bytes, 16-bit flags, then a reserved byte, the device id's length
    # (0: no id on TCP), the system module version (5002 is 5.0.0), max message size 960,
    # max binary 10 MiB, OTA chunk 512 (device-os v5.0.0 messages.cpp hello).
    payload = struct.pack(">HHHH", 3, 0xFFFF, 0x0136, 3) + struct.pack(
        ">BBHHIH", 0, 0, 5002, 960, 10 * 1024 * 1024, 512
    )

    assert len(payload) == 20
    assert messages.decode_hello_payload(payload) == HelloInfo(
        3, 0xFFFF, 0x0136, 3, 5002, 960, 10 * 1024 * 1024, 512
    )


def test_long_hello_payload_round_trips() -> None:
    info = HelloInfo(3, 0xFFFF, 0x0136, 3, 5002, 960, 10 * 1024 * 1024, 512)
    payload = messages.encode_hello_payload(info)
    assert len(payload) == 20
    assert messages.decode_hello_payload(payload) == info


def test_decode_hello_payload_long_form_skips_the_device_id() -> None:
    # The UDP platforms put their 12-byte id in the long Hello; the fields follow it.
    device_id = bytes(range(12))
    payload = (
        struct.pack(">HHHHBB", 12, 7, 0x0002, 12, 0, len(device_id))
        + device_id
        + struct.pack(">HHIH", 5004, 1024, 2 * 1024 * 1024, 1024)
    )

    info = messages.decode_hello_payload(payload)

    assert (info.platform_id, info.system_module_version, info.ota_chunk_bytes) == (12, 5004, 1024)


def test_decode_hello_payload_cut_short_after_the_platform_keeps_the_short_form() -> None:
    payload = struct.pack(">HHHHBB", 3, 1, 0x0136, 3, 0, 0) + b"\x13"

    assert messages.decode_hello_payload(payload) == HelloInfo(3, 1, 0x0136, 3)


def test_encode_hello_payload_is_the_photon_form() -> None:
    assert messages.encode_hello_payload(HelloInfo(8, 0x0102, 0x1F6, 8)) == h(
        "0008 0102 00 f6 0008"
    )


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00\x06\x00"])
def test_hello_payload_too_short_is_a_hello_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        messages.decode_hello_payload(payload)

    assert caught.value.stage is Stage.HELLO


# -- hypothesis: robustness --------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_decode_event_and_subscribe_raise_only_protocol_error(data: bytes) -> None:
    message = outcome(CoapMessage.decode, data)

    if not isinstance(message, ProtocolError):
        messages.decode_subscribe(message)
        outcome(messages.decode_event, message)


@settings(max_examples=200)
@given(coap_messages())
def test_decode_event_of_any_message_raises_only_protocol_error(message: CoapMessage) -> None:
    info = outcome(messages.decode_event, message)

    assert isinstance(info, ProtocolError | EventInfo)


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_decode_hello_payload_raises_only_protocol_error(payload: bytes) -> None:
    info = outcome(messages.decode_hello_payload, payload)

    if isinstance(info, ProtocolError):
        assert info.stage is Stage.HELLO
        assert len(payload) < 4
        return
    assert info.product_id == int.from_bytes(payload[:2], "big")


# -- flags -----------------------------------------------------------------------------------


def test_hello_flag_bits_are_device_os_hello_flag() -> None:
    # §4.4.1 byte 12: 0x01 OTA upgrade successful, 0x02 diagnostics, 0x04 immediate updates,
    # 0x10 Goodbye, 0x20 device-initiated describe, 0x40 compressed OTA (0x08 is reserved).
    f = HelloFlags
    assert [f.OTA_UPGRADE_SUCCESSFUL, f.DIAGNOSTICS, f.IMMEDIATE_UPDATES] == [0x01, 0x02, 0x04]
    assert [f.GOODBYE, f.DEVICE_INITIATED_DESCRIBE, f.COMPRESSED_OTA] == [0x10, 0x20, 0x40]
    # §7: 2.3.1 sends 0x36, "diagnostics, immediate updates, goodbye, device-initiated describe".
    assert f.DIAGNOSTICS | f.IMMEDIATE_UPDATES | f.GOODBYE | f.DEVICE_INITIATED_DESCRIBE == 0x36


def test_describe_flag_bits_are_device_os_description_type() -> None:
    # §4.5: 0x01 system (modules), 0x02 application, 0x04 metrics; the device's default is 3.
    flags = messages.DescribeFlags
    assert (flags.SYSTEM, flags.APPLICATION, flags.METRICS) == (0x01, 0x02, 0x04)
    assert flags.SYSTEM | flags.APPLICATION == 0x03


# -- the long Hello of Device OS ≥ 3 -----------------------------------------------------------


def test_encode_long_hello_payload_is_the_device_os_5_layout() -> None:
    # §7: product, version, 16-bit flags, platform, reserved 00, id length 00 (no id over TCP),
    # system version 5002, max message 960, max binary 10 MiB (BE32), OTA chunk 512.
    info = HelloInfo(3, 0xFFFF, 0x0136, 3, 5002, 960, 10 * 1024 * 1024, 512)

    assert messages.encode_hello_payload(info) == h(
        "0003 ffff 0136 0003 00 00 138a 03c0 00a00000 0200"
    )


def test_long_hello_payload_without_the_sizes_writes_zeros() -> None:
    payload = messages.encode_hello_payload(HelloInfo(6, 1, 0x02, 6, system_module_version=1512))

    assert payload == h("0006 0001 0002 0006 00 00 05e8 0000 00000000 0000")
    assert messages.decode_hello_payload(payload) == HelloInfo(6, 1, 0x02, 6, 1512, 0, 0, 0)


_u16 = st.integers(0, 0xFFFF)


@given(_u16, _u16, st.integers(0, 0xFF), _u16)
def test_short_hello_payload_round_trips(product: int, version: int, flags: int, pid: int) -> None:
    info = HelloInfo(product, version, flags, pid)
    payload = messages.encode_hello_payload(info)

    assert len(payload) == 8
    assert messages.decode_hello_payload(payload) == info


@given(_u16, _u16, _u16, _u16, st.integers(1, 0xFFFF), _u16, st.integers(0, 2**32 - 1), _u16)
def test_long_hello_payload_round_trips_any_values(
    product: int,
    version: int,
    flags: int,
    pid: int,
    system: int,
    max_message: int,
    max_binary: int,
    chunk: int,
) -> None:
    info = HelloInfo(product, version, flags, pid, system, max_message, max_binary, chunk)
    payload = messages.encode_hello_payload(info)

    assert len(payload) == 20
    assert payload[8:10] == b"\x00\x00"  # reserved, and no device id
    assert messages.decode_hello_payload(payload) == info


# -- builders and classify agree ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (messages.hello(MID), MessageKind.HELLO),
        (messages.describe_request(MID, TOKEN, 2), MessageKind.DESCRIBE),
        (messages.describe_post(MID, 2, b"{}"), MessageKind.DESCRIBE_POST),
        (messages.function_call(MID, TOKEN, "brew", ""), MessageKind.FUNCTION_CALL),
        (messages.variable_request(MID, TOKEN, "temp"), MessageKind.VARIABLE_REQUEST),
        (messages.event(MID, EventInfo("t", None, 60, True)), MessageKind.EVENT),
        (messages.event(MID, EventInfo("t", None, 60, False)), MessageKind.EVENT),
        (messages.subscribe(MID, "t", my_devices=True), MessageKind.SUBSCRIBE),
        (messages.time_request(MID, TOKEN), MessageKind.TIME_REQUEST),
        (messages.signal(MID, TOKEN, True), MessageKind.SIGNAL),
        (messages.goodbye(MID), MessageKind.GOODBYE),
        (messages.ping(MID), MessageKind.PING),
        (messages.empty_ack(MID), MessageKind.EMPTY_ACK),
        (messages.coded_ack(MID, CoapCode.BAD_REQUEST), MessageKind.RESPONSE),
        (messages.separate_response(MID, CoapCode.CHANGED, TOKEN), MessageKind.RESPONSE),
    ],
)
def test_what_each_builder_makes_classifies_as_its_kind(
    message: CoapMessage, kind: MessageKind
) -> None:
    assert classify(CoapMessage.decode(message.encode())) is kind


@given(st.sampled_from(CoapType), st.integers(0x40, 0xFF))
def test_any_response_code_is_a_response_whatever_its_path(kind: CoapType, code: int) -> None:
    # Classes 2 to 7: what ``(path, code)`` would name as a request does not matter.
    response = CoapMessage(kind, code, 1, b"", ((OptionNumber.URI_PATH, b"h"),))

    assert classify(response) is MessageKind.RESPONSE


def test_goodbye_is_the_device_os_form() -> None:
    # §4.15: NON POST /x, No-Response (258: d0 ea), flags varint 0.
    check_both_ways(messages.goodbye(MID), h("50 02") + MID_BYTES + h("b1 78 d0 ea ff 00"))


# -- requests the firmware reads at fixed offsets (§4.1) ---------------------------------------

_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=64)


@given(_names, st.text(st.characters(codec="utf-8"), max_size=1024), st.integers(0, 255))
def test_any_function_call_keeps_the_fixed_offsets(name: str, argument: str, token: int) -> None:
    wire = messages.function_call(MID, bytes([token]), name, argument).encode()

    # TKL 1 and the token at byte 4, b1 'f' at 5-6, the name as a delta-0 option at byte 7.
    assert (wire[0], wire[4], wire[5:7], wire[7] >> 4) == (0x41, token, h("b1 66"), 0)
    message = CoapMessage.decode(wire)
    assert message.uri_path == [b"f", name.encode()]
    assert message.uri_query == [argument.encode()]
    assert classify(message) is MessageKind.FUNCTION_CALL


@given(_names, st.integers(0, 255))
def test_any_variable_request_keeps_the_fixed_offsets(name: str, token: int) -> None:
    wire = messages.variable_request(MID, bytes([token]), name).encode()

    assert (wire[0], wire[1], wire[4], wire[5:7], wire[7] >> 4) == (0x41, 1, token, h("b1 76"), 0)
    message = CoapMessage.decode(wire)
    assert (message.uri_path, message.uri_query) == ([b"v", name.encode()], [])


# -- events and subscriptions ------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [-1, messages.MAX_EVENT_TTL + 1])
def test_event_ttl_outside_three_bytes_is_refused(ttl: int) -> None:
    # §4.8: Max-Age is always 3 bytes; the largest TTL is 16 777 215.
    with pytest.raises(ValueError, match="TTL"):
        messages.event(MID, EventInfo("temp", None, ttl, True))


@given(
    _names,
    st.binary(max_size=1024),
    st.just(60) | st.integers(0, messages.MAX_EVENT_TTL),  # 60: the default, no Max-Age
    st.booleans(),
    st.booleans(),
)
def test_any_event_round_trips(
    name: str, data: bytes, ttl: int, public: bool, confirmable: bool
) -> None:
    wire = messages.event(MID, EventInfo(name, data, ttl, public), confirmable=confirmable).encode()

    message = CoapMessage.decode(wire)
    assert message.type is (CoapType.CON if confirmable else CoapType.NON)
    assert message.uri_path == [b"e" if public else b"E", name.encode()]  # one name option
    max_age = message.option_values(OptionNumber.MAX_AGE)
    assert max_age == ([] if ttl == 60 else [ttl.to_bytes(3, "big")])
    # Empty data and no data are the same on the wire: no payload, data None.
    assert messages.decode_event(message) == EventInfo(name, data or None, ttl, public)


def test_decode_subscribe_joins_the_prefix_and_normalizes_the_device_id() -> None:
    wire = h("40 01") + MID_BYTES + h("b1 65 05") + b"spark" + h("06") + b"status"
    scoped = wire + h("41 75 ff") + b" 0123456789ABCDEF01234567\n"

    assert messages.decode_subscribe(CoapMessage.decode(wire)) == messages.SubscriptionInfo(
        "spark/status", False, None
    )
    assert messages.decode_subscribe(CoapMessage.decode(scoped)) == messages.SubscriptionInfo(
        "spark/status", True, "0123456789abcdef01234567"
    )
