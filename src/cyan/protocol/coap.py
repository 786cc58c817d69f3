"""CoAP messages (RFC 7252 §3) as the Spark protocol uses them (protocol.md §4.1).

Written by hand rather than taken from aiocoap: the protocol runs CoAP over its own
encrypted TCP frames, devices parse requests at fixed offsets (so option order and
1-byte tokens matter), and the core must stay free of asyncio.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from cyan.protocol.errors import ProtocolError, Stage

COAP_VERSION = 1
PAYLOAD_MARKER = 0xFF


class CoapType(IntEnum):
    CON = 0
    NON = 1
    ACK = 2
    RST = 3


class CoapCode(IntEnum):
    """Codes used by the protocol; other values still decode as plain ints."""

    EMPTY = 0x00
    GET = 0x01
    POST = 0x02
    PUT = 0x03
    DELETE = 0x04
    CREATED = 0x41
    DELETED = 0x42
    VALID = 0x43
    CHANGED = 0x44
    CONTENT = 0x45
    BAD_REQUEST = 0x80
    UNAUTHORIZED = 0x81
    BAD_OPTION = 0x82
    FORBIDDEN = 0x83
    NOT_FOUND = 0x84
    METHOD_NOT_ALLOWED = 0x85
    INTERNAL_SERVER_ERROR = 0xA0
    SERVICE_UNAVAILABLE = 0xA3


def format_code(code: int) -> str:
    """``0x45`` -> ``"2.05"``."""
    return f"{code >> 5}.{code & 0x1F:02d}"


def is_request(code: int) -> bool:
    return 0 < code < 0x20


def is_success(code: int) -> bool:
    return code >> 5 == 2


class OptionNumber(IntEnum):
    URI_PATH = 11
    MAX_AGE = 14
    URI_QUERY = 15
    NO_RESPONSE = 258


Option = tuple[int, bytes]


def _encode_option_part(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, (value - 269).to_bytes(2, "big")


def encode_uint(value: int) -> bytes:
    """Minimal big-endian unsigned integer, as CoAP uint options use (0 is empty)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


@dataclass(frozen=True, slots=True)
class CoapMessage:
    type: CoapType
    code: int
    message_id: int
    token: bytes = b""
    options: tuple[Option, ...] = ()
    payload: bytes = b""

    # -- reading --------------------------------------------------------------------------

    def option_values(self, number: int) -> list[bytes]:
        return [value for num, value in self.options if num == number]

    @property
    def uri_path(self) -> list[bytes]:
        return self.option_values(OptionNumber.URI_PATH)

    @property
    def uri_query(self) -> list[bytes]:
        return self.option_values(OptionNumber.URI_QUERY)

    @property
    def max_age(self) -> int | None:
        values = self.option_values(OptionNumber.MAX_AGE)
        return int.from_bytes(values[0], "big") if values else None

    @property
    def is_empty_ack(self) -> bool:
        return self.type == CoapType.ACK and self.code == CoapCode.EMPTY

    def describe(self) -> str:
        """A short trace line: ``CON 0.02 /e/temp mid=12 tok=07``."""
        path = "/" + "/".join(p.decode("latin-1") for p in self.uri_path) if self.uri_path else ""
        token = f" tok={self.token.hex()}" if self.token else ""
        return f"{self.type.name} {format_code(self.code)} {path} mid={self.message_id}{token}"

    # -- bytes ----------------------------------------------------------------------------

    def encode(self) -> bytes:
        if len(self.token) > 8:
            raise ValueError("CoAP token is at most 8 bytes")
        out = bytearray(
            (
                (COAP_VERSION << 6) | (self.type << 4) | len(self.token),
                self.code,
                (self.message_id >> 8) & 0xFF,
                self.message_id & 0xFF,
            )
        )
        out += self.token
        previous = 0
        # sorted() is stable, so repeated options (Uri-Path segments) keep their order.
        for number, value in sorted(self.options, key=lambda opt: opt[0]):
            delta, delta_ext = _encode_option_part(number - previous)
            length, length_ext = _encode_option_part(len(value))
            out.append((delta << 4) | length)
            out += delta_ext + length_ext + value
            previous = number
        if self.payload:
            out.append(PAYLOAD_MARKER)
            out += self.payload
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> CoapMessage:
        """Parse one message; anything malformed raises ProtocolError(stage=session)."""
        if len(data) < 4:
            raise _bad(f"CoAP message of {len(data)} bytes is shorter than its 4-byte header")
        version, kind, token_length = data[0] >> 6, (data[0] >> 4) & 3, data[0] & 0x0F
        if version != COAP_VERSION:
            raise _bad(f"CoAP version {version}, expected 1")
        if token_length > 8:
            raise _bad(f"CoAP token length {token_length} is over 8")
        position = 4 + token_length
        if len(data) < position:
            raise _bad("CoAP message ends inside its token")
        token = data[4:position]
        options: list[Option] = []
        number = 0
        payload = b""
        while position < len(data):
            head = data[position]
            position += 1
            if head == PAYLOAD_MARKER:
                payload = data[position:]
                break
            delta, position = _read_option_part(data, position, head >> 4)
            length, position = _read_option_part(data, position, head & 0x0F)
            if position + length > len(data):
                raise _bad("CoAP option runs past the end of the message")
            number += delta
            options.append((number, data[position : position + length]))
            position += length
        return cls(
            CoapType(kind),
            data[1],
            int.from_bytes(data[2:4], "big"),
            token,
            tuple(options),
            payload,
        )


def _bad(reason: str) -> ProtocolError:
    return ProtocolError(Stage.SESSION, reason)


def _read_option_part(data: bytes, position: int, nibble: int) -> tuple[int, int]:
    if nibble < 13:
        return nibble, position
    if nibble == 13:
        if position >= len(data):
            raise _bad("CoAP option header is cut short")
        return data[position] + 13, position + 1
    if nibble == 14:
        if position + 2 > len(data):
            raise _bad("CoAP option header is cut short")
        return int.from_bytes(data[position : position + 2], "big") + 269, position + 2
    raise _bad("CoAP option uses the reserved nibble 15")
