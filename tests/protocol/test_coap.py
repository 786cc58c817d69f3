"""protocol/coap.py: CoAP headers and options (RFC 7252 §3, protocol.md §4.1), both ways.

Vectors are written out from the RFC and protocol.md, encoded and read back. Hypothesis
checks that any message round-trips and that no input makes the decoder raise anything but
ProtocolError. The Particle messages built on top are in test_messages.py.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

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
from cyan.protocol.messages import classify
from tests.protocol.wire import check_both_ways, coap_messages, h, outcome

# -- header and options ------------------------------------------------------------------------


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


# -- hypothesis: round trips and robustness ----------------------------------------------------


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
