"""The Particle message kinds on top of CoAP (protocol.md §4.3 – §4.15).

Builders return ``CoapMessage`` values with the exact option layout the firmware
parses at fixed offsets (§4.1): a 1-byte token on requests that expect an answer,
the one-letter path as the first Uri-Path option, the name as the second, then
Uri-Query. ``classify`` names what a received message is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

from cyan.protocol.coap import CoapCode, CoapMessage, CoapType, OptionNumber
from cyan.protocol.errors import ProtocolError, Stage

DEFAULT_EVENT_TTL = 60
# Device OS publishes the claim code from its setup in this private event right after each
# handshake (device-os system/src/system_cloud_internal.cpp, Spark_Handshake).
CLAIM_CODE_EVENT = "spark/device/claim/code"
MAX_EVENT_TTL = 16_777_215  # protocol_defs.h MAX_EVENT_TTL_SECONDS

PATH, QUERY, MAX_AGE = OptionNumber.URI_PATH, OptionNumber.URI_QUERY, OptionNumber.MAX_AGE


class MessageKind(Enum):
    HELLO = "hello"
    DESCRIBE = "describe"  # server asks (GET /d)
    DESCRIBE_POST = "describe-post"  # device sends on its own (POST /d)
    FUNCTION_CALL = "function-call"
    VARIABLE_REQUEST = "variable-request"
    EVENT = "event"
    SUBSCRIBE = "subscribe"
    TIME_REQUEST = "time-request"
    SIGNAL = "signal"
    KEY_CHANGE = "key-change"
    UPDATE_BEGIN = "update-begin"
    UPDATE_DONE = "update-done"
    CHUNK = "chunk"
    CHUNK_MISSED = "chunk-missed"
    GOODBYE = "goodbye"
    PING = "ping"
    EMPTY_ACK = "empty-ack"
    RESET = "reset"
    RESPONSE = "response"
    UNKNOWN = "unknown"


class DescribeFlags:
    """Uri-Query byte of a describe (protocol_defs.h DescriptionType)."""

    SYSTEM = 0x01
    APPLICATION = 0x02
    METRICS = 0x04


class HelloFlags:
    """Hello flag bits (device-os protocol.cpp HelloFlag)."""

    OTA_UPGRADE_SUCCESSFUL = 0x01
    DIAGNOSTICS = 0x02
    IMMEDIATE_UPDATES = 0x04
    GOODBYE = 0x10
    DEVICE_INITIATED_DESCRIBE = 0x20
    COMPRESSED_OTA = 0x40


_REQUEST_KINDS: dict[tuple[bytes, int], MessageKind] = {
    (b"h", CoapCode.POST): MessageKind.HELLO,
    (b"d", CoapCode.GET): MessageKind.DESCRIBE,
    (b"d", CoapCode.POST): MessageKind.DESCRIBE_POST,
    (b"f", CoapCode.POST): MessageKind.FUNCTION_CALL,
    (b"v", CoapCode.GET): MessageKind.VARIABLE_REQUEST,
    (b"e", CoapCode.POST): MessageKind.EVENT,
    (b"E", CoapCode.POST): MessageKind.EVENT,
    (b"e", CoapCode.GET): MessageKind.SUBSCRIBE,
    (b"t", CoapCode.GET): MessageKind.TIME_REQUEST,
    (b"s", CoapCode.PUT): MessageKind.SIGNAL,
    (b"k", CoapCode.PUT): MessageKind.KEY_CHANGE,
    (b"u", CoapCode.POST): MessageKind.UPDATE_BEGIN,
    (b"u", CoapCode.PUT): MessageKind.UPDATE_DONE,
    (b"c", CoapCode.POST): MessageKind.CHUNK,
    (b"c", CoapCode.GET): MessageKind.CHUNK_MISSED,
    (b"x", CoapCode.POST): MessageKind.GOODBYE,
}


def classify(message: CoapMessage) -> MessageKind:
    if message.code == CoapCode.EMPTY:
        if message.type == CoapType.CON:
            return MessageKind.PING
        if message.type == CoapType.ACK:
            return MessageKind.EMPTY_ACK
        if message.type == CoapType.RST:
            return MessageKind.RESET
        return MessageKind.UNKNOWN
    if message.code >= 0x40:
        return MessageKind.RESPONSE
    path = message.uri_path
    if not path:
        return MessageKind.UNKNOWN
    return _REQUEST_KINDS.get((path[0], message.code), MessageKind.UNKNOWN)


# -- hello ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HelloInfo:
    product_id: int
    product_firmware_version: int
    flags: int
    platform_id: int
    # Only in the long Hello of Device OS ≥ 3 (messages.cpp ``hello``): the system module
    # version (e.g. 5002 for 5.0.0) and what the device can take.
    system_module_version: int | None = None
    max_message_bytes: int | None = None
    max_binary_bytes: int | None = None
    ota_chunk_bytes: int | None = None


def encode_hello_payload(info: HelloInfo) -> bytes:
    """The 8-byte Photon form: product id, version, reserved 0, flags, platform id (§4.4.1);
    the long form of Device OS ≥ 3 (no device id, as over TCP) when a system version is set."""
    if info.system_module_version is None:
        return struct.pack(
            ">HHBBH",
            info.product_id,
            info.product_firmware_version,
            0,
            info.flags & 0xFF,
            info.platform_id,
        )
    return struct.pack(
        ">HHHHBBHHIH",
        info.product_id,
        info.product_firmware_version,
        info.flags & 0xFFFF,
        info.platform_id,
        0,
        0,
        info.system_module_version,
        info.max_message_bytes or 0,
        info.max_binary_bytes or 0,
        info.ota_chunk_bytes or 0,
    )


def decode_hello_payload(payload: bytes) -> HelloInfo:
    """Parse defensively: the Core sends 6 bytes, 0.x–2.x Photons 8, Device OS 5 sends 20.

    The long form (device-os v5.0.0 messages.cpp ``hello``) goes on after the platform id
    with a reserved byte, the device id's length and the id, then the system module
    version, the largest message and binary, and the OTA chunk size, all big-endian.
    """
    if len(payload) < 4:
        raise ProtocolError(Stage.HELLO, f"Hello payload of {len(payload)} bytes is too short")
    product_id, version = struct.unpack_from(">HH", payload)
    flags = int.from_bytes(payload[4:6], "big") if len(payload) >= 6 else 0
    # The Core sends no platform id; it is platform 0 (protocol.md §4.4.1).
    platform_id = int.from_bytes(payload[6:8], "big") if len(payload) >= 8 else 0
    if len(payload) < 10:
        return HelloInfo(product_id, version, flags, platform_id)
    tail = 10 + payload[9]  # after the device id
    if len(payload) < tail + 10:
        return HelloInfo(product_id, version, flags, platform_id)
    system, max_message, max_binary, chunk = struct.unpack_from(">HHIH", payload, tail)
    return HelloInfo(
        product_id, version, flags, platform_id, system or None, max_message, max_binary, chunk
    )


def hello(message_id: int, payload: bytes = b"") -> CoapMessage:
    return CoapMessage(
        CoapType.NON, CoapCode.POST, message_id, options=((PATH, b"h"),), payload=payload
    )


# -- requests from the server ---------------------------------------------------------------


def describe_request(message_id: int, token: bytes, flags: int) -> CoapMessage:
    # Device OS 5 answers 4.00 unless the flags query is present, so it always is (§7).
    return CoapMessage(
        CoapType.CON, CoapCode.GET, message_id, token, ((PATH, b"d"), (QUERY, bytes([flags])))
    )


def function_call(message_id: int, token: bytes, name: str, argument: str) -> CoapMessage:
    # The firmware reads the byte after the name as the query header even when there is
    # no argument, so the Uri-Query option is always present (§4.6).
    return CoapMessage(
        CoapType.CON,
        CoapCode.POST,
        message_id,
        token,
        ((PATH, b"f"), (PATH, name.encode()), (QUERY, argument.encode())),
    )


def variable_request(message_id: int, token: bytes, name: str) -> CoapMessage:
    return CoapMessage(
        CoapType.CON, CoapCode.GET, message_id, token, ((PATH, b"v"), (PATH, name.encode()))
    )


def signal(message_id: int, token: bytes, on: bool) -> CoapMessage:
    return CoapMessage(
        CoapType.CON,
        CoapCode.PUT,
        message_id,
        token,
        ((PATH, b"s"), (QUERY, b"\x01" if on else b"\x00")),
    )


def ping(message_id: int) -> CoapMessage:
    return CoapMessage(CoapType.CON, CoapCode.EMPTY, message_id)


# -- requests from the device ---------------------------------------------------------------


def goodbye(message_id: int) -> CoapMessage:
    """NON POST /x with No-Response and no reason fields: the device is leaving on purpose.

    protocol.md §4.15: ``50 02 <id> b1 78 d0 ea ff 00``; only for a server that saw the
    Goodbye flag (0x10) in the Hello.
    """
    return CoapMessage(
        CoapType.NON,
        CoapCode.POST,
        message_id,
        b"",
        ((PATH, b"x"), (OptionNumber.NO_RESPONSE, b"")),
        b"\x00",  # varint flags: no cloud, reset, sleep or network reason follows
    )


def describe_post(message_id: int, flags: int, body: bytes) -> CoapMessage:
    return CoapMessage(
        CoapType.CON, CoapCode.POST, message_id, b"", ((PATH, b"d"), (QUERY, bytes([flags]))), body
    )


def time_request(message_id: int, token: bytes) -> CoapMessage:
    return CoapMessage(CoapType.CON, CoapCode.GET, message_id, token, ((PATH, b"t"),))


def subscribe(
    message_id: int, prefix: str, *, my_devices: bool, device_id: str | None = None
) -> CoapMessage:
    options: tuple[tuple[int, bytes], ...] = ((PATH, b"e"), (PATH, prefix.encode()))
    if my_devices:
        options += ((QUERY, b"u"),)
    return CoapMessage(
        CoapType.CON,
        CoapCode.GET,
        message_id,
        b"",
        options,
        device_id.encode() if device_id else b"",
    )


# -- events (both directions) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventInfo:
    name: str
    data: bytes | None
    ttl: int
    public: bool


def event(message_id: int, info: EventInfo, *, confirmable: bool = False) -> CoapMessage:
    options: tuple[tuple[int, bytes], ...] = (
        (PATH, b"e" if info.public else b"E"),
        (PATH, info.name.encode()),
    )
    if not 0 <= info.ttl <= MAX_EVENT_TTL:
        raise ValueError(f"event TTL {info.ttl} is outside 0..{MAX_EVENT_TTL}")
    # Max-Age only when the TTL is not the default 60, and always as 3 bytes, as device-os
    # writes it (messages.cpp, protocol.md §4.8).
    if info.ttl != DEFAULT_EVENT_TTL:
        options += ((MAX_AGE, info.ttl.to_bytes(3, "big")),)
    return CoapMessage(
        CoapType.CON if confirmable else CoapType.NON,
        CoapCode.POST,
        message_id,
        b"",
        options,
        info.data or b"",
    )


def decode_event(message: CoapMessage) -> EventInfo:
    path = message.uri_path
    if len(path) < 2 or not path[1]:
        raise ProtocolError(Stage.SESSION, "event without a name")
    # The device sends the whole name as one option; a server may split it at '/'.
    name = "/".join(p.decode("utf-8", errors="replace") for p in path[1:])
    ttl = message.max_age
    return EventInfo(
        name=name,
        data=message.payload or None,
        # A crafted Max-Age may hold up to 4 bytes (or more); kept within what an event
        # can carry on to subscribed devices (3 bytes, as device-os writes it).
        ttl=DEFAULT_EVENT_TTL if ttl is None else min(ttl, MAX_EVENT_TTL),
        public=path[0] == b"e",
    )


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    prefix: str
    my_devices: bool
    device_id: str | None


def decode_subscribe(message: CoapMessage) -> SubscriptionInfo:
    path = message.uri_path
    prefix = "/".join(p.decode("utf-8", errors="replace") for p in path[1:])
    device = message.payload.decode("ascii", errors="replace").strip().lower() or None
    return SubscriptionInfo(prefix, b"u" in message.uri_query, device)


# -- responses ------------------------------------------------------------------------------


def empty_ack(message_id: int) -> CoapMessage:
    return CoapMessage(CoapType.ACK, CoapCode.EMPTY, message_id)


def coded_ack(message_id: int, code: int, token: bytes = b"", payload: bytes = b"") -> CoapMessage:
    return CoapMessage(CoapType.ACK, code, message_id, token, (), payload)


def separate_response(
    message_id: int, code: int, token: bytes, payload: bytes = b"", *, confirmable: bool = False
) -> CoapMessage:
    return CoapMessage(
        CoapType.CON if confirmable else CoapType.NON, code, message_id, token, (), payload
    )
