"""The chunked update on the wire: UpdateBegin, UpdateReady, Chunk, ChunkReceived,
ChunkMissed, UpdateDone, UpdateAbort (protocol.md §4.14).

Confirmed against device-os v2.3.1 ``communication/src/chunked_transfer.cpp``:

- UpdateBegin (CON POST /u, token) carries 12 bytes: flags (bit 0: fast OTA offered), chunk
  size BE16, file size BE32, store, address BE32. The device answers an empty ACK, then
  UpdateReady: a separate NON 2.04 with the same token and one flags byte (bit 0: fast OTA
  will be used). It refuses with a coded ACK 5.03 instead.
- Chunk (CON POST /c, token): Uri-Query CRC-32 BE32 of the data as sent, then, in fast
  mode only, Uri-Query index BE16. Without an index the device places the chunk at its own
  counter, which moves on only after a good chunk: slow mode is strictly in order.
- Slow mode: the device ACKs each chunk and sends ChunkReceived (NON, same token, 2.04 or
  4.00 for a bad CRC). Fast mode: no ACK and no reply at all; a duplicate is ignored.
- UpdateDone (CON PUT /u, token): the device answers with a piggy-backed ACK, 2.04 when it
  holds every chunk (its payload ``{"r":N}``: the module validation result, 0 = valid) or
  4.00 followed by ChunkMissed (GET /c, no token, up to 40 BE16 indices).
- The original server zero-pads the last chunk to the full chunk size (spark-protocol
  ``Flasher.js``); the device writes whole chunks, and the module's own length ends it.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

from cyan.protocol.coap import CoapCode, CoapMessage, CoapType, OptionNumber
from cyan.protocol.errors import ProtocolError, Stage

PATH, QUERY = OptionNumber.URI_PATH, OptionNumber.URI_QUERY

DEFAULT_CHUNK_BYTES = 512  # what a Photon announces in CHUNK_SIZE_EVENT
# Device OS announces the chunk size it takes in this private event on connect (§7).
CHUNK_SIZE_EVENT = "spark/hardware/ota_chunk_size"
MAX_CHUNK_BYTES = 594  # spark-protocol Flasher.js MAX_CHUNK_SIZE
MAX_CHUNKS = 65535  # protocol_defs.h MAX_CHUNKS: indices are 16 bits
MAX_MISSED_PER_MESSAGE = 40  # protocol_defs.h MISSED_CHUNKS_TO_SEND on a Photon
FAST_OTA = 0x01
STORE_FIRMWARE = 0
_PARAMS = struct.Struct(">BHIBI")


@dataclass(frozen=True, slots=True)
class UpdateParams:
    """What UpdateBegin announces."""

    fast: bool
    chunk_bytes: int
    file_bytes: int
    store: int = STORE_FIRMWARE
    address: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(f"chunk size {self.chunk_bytes} is outside 1..{MAX_CHUNK_BYTES}")
        if self.chunk_count > MAX_CHUNKS:
            raise ValueError(f"{self.file_bytes} bytes need more than {MAX_CHUNKS} chunks")

    @property
    def chunk_count(self) -> int:
        return -(-self.file_bytes // self.chunk_bytes)

    def encode(self) -> bytes:
        flags = FAST_OTA if self.fast else 0
        return _PARAMS.pack(flags, self.chunk_bytes, self.file_bytes, self.store, self.address)

    @classmethod
    def decode(cls, payload: bytes) -> UpdateParams:
        if len(payload) < _PARAMS.size:
            raise ProtocolError(
                Stage.SESSION, f"UpdateBegin carries {len(payload)} bytes, not {_PARAMS.size}"
            )
        flags, chunk_bytes, file_bytes, store, address = _PARAMS.unpack_from(payload)
        try:
            return cls(bool(flags & FAST_OTA), chunk_bytes, file_bytes, store, address)
        except ValueError as exc:
            raise ProtocolError(Stage.SESSION, f"UpdateBegin: {exc}") from exc


def chunk_data(data: bytes, index: int, chunk_bytes: int) -> bytes:
    """Chunk ``index`` of ``data``, the last one zero-padded to the full chunk size."""
    piece = data[index * chunk_bytes : (index + 1) * chunk_bytes]
    return piece.ljust(chunk_bytes, b"\x00")


def crc32(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, as zlib and the firmware's HAL_Core_Compute_CRC32 compute it)."""
    return zlib.crc32(data) & 0xFFFFFFFF


# -- server to device ---------------------------------------------------------------------------


def update_begin(message_id: int, token: bytes, params: UpdateParams) -> CoapMessage:
    return CoapMessage(
        CoapType.CON, CoapCode.POST, message_id, token, ((PATH, b"u"),), params.encode()
    )


def chunk(message_id: int, token: bytes, data: bytes, index: int | None) -> CoapMessage:
    """``index`` only in fast mode (device-os takes a second query as the fast-OTA index)."""
    options = [(PATH, b"c"), (QUERY, crc32(data).to_bytes(4, "big"))]
    if index is not None:
        options.append((QUERY, index.to_bytes(2, "big")))
    return CoapMessage(CoapType.CON, CoapCode.POST, message_id, token, tuple(options), data)


def update_done(message_id: int, token: bytes) -> CoapMessage:
    return CoapMessage(CoapType.CON, CoapCode.PUT, message_id, token, ((PATH, b"u"),))


def update_abort(message_id: int, token: bytes) -> CoapMessage:
    return CoapMessage(CoapType.NON, CoapCode.BAD_REQUEST, message_id, token)


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    crc: int
    index: int | None  # None: slow mode, the device's own counter places it
    data: bytes

    @property
    def crc_ok(self) -> bool:
        return crc32(self.data) == self.crc


def decode_chunk(message: CoapMessage) -> ChunkInfo:
    query = message.uri_query
    if not query or len(query[0]) != 4:
        raise ProtocolError(Stage.SESSION, "a chunk without its 4-byte CRC")
    index = int.from_bytes(query[1], "big") if len(query) > 1 and len(query[1]) == 2 else None
    return ChunkInfo(int.from_bytes(query[0], "big"), index, message.payload)


# -- device to server ---------------------------------------------------------------------------


def update_ready(message_id: int, token: bytes, fast: bool) -> CoapMessage:
    flags = bytes([FAST_OTA if fast else 0])
    return CoapMessage(CoapType.NON, CoapCode.CHANGED, message_id, token, (), flags)


def chunk_received(message_id: int, token: bytes, ok: bool) -> CoapMessage:
    code = CoapCode.CHANGED if ok else CoapCode.BAD_REQUEST
    return CoapMessage(CoapType.NON, code, message_id, token)


def chunk_missed(message_id: int, indices: list[int]) -> CoapMessage:
    payload = b"".join(index.to_bytes(2, "big") for index in indices[:MAX_MISSED_PER_MESSAGE])
    return CoapMessage(CoapType.NON, CoapCode.GET, message_id, b"", ((PATH, b"c"),), payload)


def decode_missed(payload: bytes) -> list[int]:
    if len(payload) % 2:
        raise ProtocolError(Stage.SESSION, f"ChunkMissed list of {len(payload)} bytes is odd")
    return [int.from_bytes(payload[i : i + 2], "big") for i in range(0, len(payload), 2)]


def done_result(result: int) -> bytes:
    """The UpdateDone ACK payload: the module validation result (system_cloud_internal.cpp)."""
    return json.dumps({"r": result}, separators=(",", ":")).encode()


def decode_done_result(payload: bytes) -> int | None:
    """``r`` of an UpdateDone ACK, or None when the device sent none (older firmware)."""
    try:
        value = json.loads(payload.rstrip(b"\x00").decode()) if payload else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    result = value.get("r") if isinstance(value, dict) else None
    return result if isinstance(result, int) else None
