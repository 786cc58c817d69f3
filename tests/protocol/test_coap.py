"""CoAP bytes of the Spark protocol (protocol.md §4.1 – §4.15), both ways.

Every vector is written out from protocol.md, then checked against the builders in
messages.py (``encode()``) and read back (``decode()``). Hypothesis checks round trips
and that no input makes a decoder raise anything but ProtocolError.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cyan.protocol import messages, payloads
from cyan.protocol.coap import (
    CoapCode,
    CoapMessage,
    CoapType,
    OptionNumber,
    encode_uint,
    format_code,
    is_request,
    is_success,
)
from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.messages import EventInfo, HelloInfo, MessageKind, classify

P = ParamSpec("P")
T = TypeVar("T")

MID = 0x1A2B
MID_BYTES = b"\x1a\x2b"
TOKEN = b"\x07"


def h(text: str) -> bytes:
    """Hex with spaces allowed, for vectors copied from protocol.md."""
    return bytes.fromhex(text)


def check_both_ways(message: CoapMessage, wire: bytes) -> None:
    assert message.encode() == wire
    assert CoapMessage.decode(wire) == message


# -- header and options ----------------------------------------------------------------------


def test_header_bits() -> None:
    wire = CoapMessage(CoapType.RST, 0x84, 0xFFFE, b"\x01\x02\x03").encode()

    assert wire == h("73 84 ff fe 01 02 03")  # version 1, RST (3), TKL 3


@pytest.mark.parametrize(
    ("code", "text"),
    [(0x01, "0.01"), (0x44, "2.04"), (0x45, "2.05"), (0x84, "4.04"), (0xA0, "5.00")],
)
def test_format_code(code: int, text: str) -> None:
    assert format_code(code) == text


def test_request_and_success_classes() -> None:
    assert [is_request(c) for c in (0x00, 0x01, 0x04, 0x1F, 0x20, 0x45)] == [
        False,
        True,
        True,
        True,
        False,
        False,
    ]
    assert [is_success(c) for c in (0x41, 0x45, 0x5F, 0x80, 0x84, 0x02)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


@pytest.mark.parametrize(
    ("value", "wire"),
    [(0, b""), (1, b"\x01"), (60, b"\x3c"), (256, b"\x01\x00"), (0xFFFFFF, b"\xff\xff\xff")],
)
def test_encode_uint_is_minimal_big_endian(value: int, wire: bytes) -> None:
    assert encode_uint(value) == wire


@pytest.mark.parametrize(
    ("length", "head"),
    [
        (0, b"\x40"),
        (12, b"\x4c"),
        (13, b"\x4d\x00"),
        (268, b"\x4d\xff"),
        (269, b"\x4e\x00\x00"),
        (1000, b"\x4e" + (1000 - 269).to_bytes(2, "big")),
    ],
)
def test_option_length_extensions(length: int, head: bytes) -> None:
    # RFC 7252 §3.1: nibble 13 -> one more byte (L-13), 14 -> two more (L-269).
    message = CoapMessage(
        CoapType.CON,
        CoapCode.GET,
        1,
        options=((OptionNumber.URI_PATH, b"f"), (OptionNumber.URI_QUERY, b"q" * length)),
    )

    check_both_ways(message, h("40 01 00 01 b1 66") + head + b"q" * length)


def test_option_delta_extensions() -> None:
    # Deltas 13 and 269 use the same extensions as lengths: d0 00, e0 00 00.
    message = CoapMessage(CoapType.CON, CoapCode.GET, 1, options=((13, b""), (282, b"")))

    check_both_ways(message, h("40 01 00 01 d0 00 e0 00 00"))


def test_options_are_sorted_and_repeated_ones_keep_their_order() -> None:
    message = CoapMessage(
        CoapType.NON,
        CoapCode.POST,
        1,
        options=(
            (OptionNumber.URI_QUERY, b"q"),
            (OptionNumber.URI_PATH, b"a"),
            (OptionNumber.URI_PATH, b"b"),
        ),
    )

    assert message.encode() == h("50 02 00 01 b1 61 01 62 41 71")


def test_no_response_option_258_uses_a_one_byte_delta_extension() -> None:
    # Goodbye (protocol.md §4.15): Uri-Path x then No-Response as d0 ea (258 - 11 - 13 = 234).
    wire = h("50 02 00 05 b1 78 d0 ea ff 00")

    message = CoapMessage.decode(wire)

    assert message.options == ((OptionNumber.URI_PATH, b"x"), (OptionNumber.NO_RESPONSE, b""))
    assert message.payload == b"\x00"
    assert message.encode() == wire


# -- the message catalogue, byte for byte ----------------------------------------------------


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


def test_encode_time_wraps_to_32_bits() -> None:
    assert payloads.encode_time(2**32 + 5) == h("00 00 00 05")


def test_function_return() -> None:
    # §4.6: 51 44 id tok ff r3 r2 r1 r0, signed int32 big-endian.
    payload = payloads.encode_function_result(-2)
    wire = h("51 44") + MID_BYTES + TOKEN + h("ff ff ff ff fe")

    check_both_ways(messages.separate_response(MID, CoapCode.CHANGED, TOKEN, payload), wire)
    assert payloads.decode_function_result(payload) == -2


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, h("00000000")),
        (1, h("00000001")),
        (-1, h("ffffffff")),
        (2**31 - 1, h("7fffffff")),
        (-(2**31), h("80000000")),
    ],
)
def test_function_result_values(value: int, wire: bytes) -> None:
    assert payloads.encode_function_result(value) == wire
    assert payloads.decode_function_result(wire) == value


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00" * 3, b"\x00" * 5])
def test_function_result_of_the_wrong_size_is_a_session_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        payloads.decode_function_result(payload)

    assert caught.value.stage is Stage.SESSION


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


# -- classify --------------------------------------------------------------------------------

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


# -- Hello payloads --------------------------------------------------------------------------


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


# -- variables and describe ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_code", "value", "wire"),
    [
        (payloads.VARIABLE_BOOL, True, h("01")),
        (payloads.VARIABLE_BOOL, False, h("00")),
        (payloads.VARIABLE_INT, 42, h("0000002a")),
        (payloads.VARIABLE_INT, -42, h("ffffffd6")),
        (payloads.VARIABLE_DOUBLE, 1.5, h("000000000000f83f")),  # little-endian (§4.7)
        (payloads.VARIABLE_DOUBLE, -0.1, h("9a9999999999b9bf")),
        (payloads.VARIABLE_STRING, "héllo", "héllo".encode()),
        (payloads.VARIABLE_STRING, "", b""),
    ],
)
def test_variable_values_both_ways(type_code: int, value: Any, wire: bytes) -> None:
    assert payloads.encode_variable(type_code, value) == wire
    assert payloads.decode_variable(type_code, wire) == value


@pytest.mark.parametrize(
    ("type_code", "payload"),
    [
        (payloads.VARIABLE_INT, b"\x00\x01"),
        (payloads.VARIABLE_INT, b"\x00" * 8),
        (payloads.VARIABLE_DOUBLE, b"\x00" * 4),
    ],
)
def test_variable_of_the_wrong_size_is_a_session_error(type_code: int, payload: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        payloads.decode_variable(type_code, payload)

    assert caught.value.stage is Stage.SESSION


def test_empty_bool_variable_is_a_session_error() -> None:
    with pytest.raises(ProtocolError):
        payloads.decode_variable(payloads.VARIABLE_BOOL, b"")


def test_encode_description_is_the_firmware_form_without_spaces() -> None:
    # §4.5: {"f":["fn1","fn2"],"v":{"var1":2,"var2":9}}
    body = payloads.encode_description(["fn1", "fn2"], {"var1": 2, "var2": 9})

    assert body == b'{"f":["fn1","fn2"],"v":{"var1":2,"var2":9}}'


def test_decode_description_application_and_system_parts() -> None:
    application = payloads.decode_description(b'{"f":["fn1","fn2"],"v":{"var1":2,"var2":9}}')
    system = payloads.decode_description(b'{"p":3,"m":[]}')  # §7: 2.3.1's system describe
    both = payloads.decode_description(b'{"f":[],"v":{"a":1,"b":"bad"},"p":6}')

    assert application == payloads.Description(("fn1", "fn2"), {"var1": 2, "var2": 9}, None)
    assert system == payloads.Description(None, None, {"p": 3, "m": []})
    assert both == payloads.Description((), {"a": 1}, {"p": 6})


@pytest.mark.parametrize(
    "payload", [b"", b"not json", b"\xff\xfe", b"[1,2]", b'"text"', b'{"f":{}}', b'{"v":[]}', b"{"]
)
def test_decode_description_rejects_malformed_bodies(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        payloads.decode_description(payload)

    assert caught.value.stage is Stage.SESSION


def test_decode_description_of_deeply_nested_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        payloads.decode_description(b"[" * 5000)


# -- hypothesis: round trips and robustness --------------------------------------------------


def outcome(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | ProtocolError:
    """What ``function`` returns, or the ProtocolError it raises; anything else propagates."""
    try:
        return function(*args, **kwargs)
    except ProtocolError as exc:
        return exc


_option_number = st.one_of(
    st.sampled_from([1, 3, 4, 11, 12, 14, 15, 17, 35, 39, 60, 258, 2049]),
    st.integers(0, 65804),
)


@st.composite
def coap_messages(draw: st.DrawFn) -> CoapMessage:
    options = draw(st.lists(st.tuples(_option_number, st.binary(max_size=300)), max_size=6))
    # The encoder sorts by number (stably); a decoded message lists options in wire order.
    options.sort(key=lambda option: option[0])
    return CoapMessage(
        draw(st.sampled_from(CoapType)),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 0xFFFF)),
        draw(st.binary(max_size=8)),
        tuple(options),
        draw(st.binary(max_size=300)),
    )


@settings(max_examples=300)
@given(coap_messages())
def test_any_message_round_trips(message: CoapMessage) -> None:
    wire = message.encode()

    assert CoapMessage.decode(wire) == message
    assert CoapMessage.decode(wire).encode() == wire


@settings(max_examples=500)
@given(st.binary(max_size=64))
@example(b"\x4f\x00\x00\x00")  # token length 15
@example(b"\x40\x00\x00\x00\xf0")  # reserved option nibble
@example(b"\x40\x00\x00\x00\xd0")  # delta extension cut short
@example(b"\x40\x00\x00\x00\xe0\x01")
@example(b"\x40\x00\x00\x00\x05ab")  # option runs past the end
@example(b"\x40\x00\x00\x00\xff")  # payload marker, nothing after it
def test_decode_raises_only_protocol_error(data: bytes) -> None:
    message = outcome(CoapMessage.decode, data)

    if isinstance(message, ProtocolError):
        assert message.stage is Stage.SESSION
    else:
        classify(message)
        message.describe()


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


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["f", "v", "p", "x"]) | st.text(max_size=3), inner, max_size=3
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=80), _json.map(lambda v: json.dumps(v).encode())))
def test_decode_description_raises_only_protocol_error(payload: bytes) -> None:
    description = outcome(payloads.decode_description, payload)

    if isinstance(description, ProtocolError):
        assert description.stage is Stage.SESSION
        return
    assert description.functions is None or all(isinstance(f, str) for f in description.functions)
    assert description.variables is None or all(
        isinstance(t, int) for t in description.variables.values()
    )


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_decode_hello_payload_raises_only_protocol_error(payload: bytes) -> None:
    info = outcome(messages.decode_hello_payload, payload)

    if isinstance(info, ProtocolError):
        assert info.stage is Stage.HELLO
        assert len(payload) < 4
        return
    assert info.product_id == int.from_bytes(payload[:2], "big")


@settings(max_examples=300)
@given(st.integers(-1, 20), st.binary(max_size=16))
def test_decode_variable_raises_only_protocol_error(type_code: int, payload: bytes) -> None:
    value = outcome(payloads.decode_variable, type_code, payload)

    assert not isinstance(value, ProtocolError) or value.stage is Stage.SESSION


@settings(max_examples=100)
@given(
    st.sampled_from(
        [
            payloads.VARIABLE_BOOL,
            payloads.VARIABLE_INT,
            payloads.VARIABLE_DOUBLE,
            payloads.VARIABLE_STRING,
        ]
    ),
    st.data(),
)
def test_variable_values_round_trip(type_code: int, data: st.DataObject) -> None:
    strategy: st.SearchStrategy[Any] = {
        payloads.VARIABLE_BOOL: st.booleans(),
        payloads.VARIABLE_INT: st.integers(-(2**31), 2**31 - 1),
        payloads.VARIABLE_DOUBLE: st.floats(allow_nan=False),
        payloads.VARIABLE_STRING: st.text(max_size=20),
    }[type_code]
    value = data.draw(strategy)

    assert payloads.decode_variable(type_code, payloads.encode_variable(type_code, value)) == value
