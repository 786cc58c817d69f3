"""Length-prefixed frames after the handshake (protocol.md §3.1).

Each frame is a 2-byte big-endian length and that many bytes of AES ciphertext,
one CoAP message per frame. TCP may split or merge frames in any way, so the
decoder buffers and checks the announced length before it buffers the body.
"""

from __future__ import annotations

from cyan.protocol.crypto import AES_BLOCK
from cyan.protocol.errors import ProtocolError, Stage

LENGTH_BYTES = 2
MAX_FRAME_LIMIT = 0xFFFF


def encode_frame(ciphertext: bytes) -> bytes:
    if len(ciphertext) > MAX_FRAME_LIMIT:
        raise ValueError(f"frame of {len(ciphertext)} bytes does not fit a 2-byte length")
    return len(ciphertext).to_bytes(LENGTH_BYTES, "big") + ciphertext


class FrameDecoder:
    """Turns a byte stream into whole frames; raises ProtocolError on an impossible length."""

    __slots__ = ("_buffer", "max_frame_bytes")

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= LENGTH_BYTES:
            length = int.from_bytes(self._buffer[:LENGTH_BYTES], "big")
            if length == 0 or length % AES_BLOCK:
                raise ProtocolError(
                    Stage.SESSION,
                    f"frame length {length} is not a positive multiple of 16 "
                    "(the stream is out of step or not this protocol)",
                )
            if length > self.max_frame_bytes:
                raise ProtocolError(
                    Stage.SESSION,
                    f"frame of {length} bytes is over the limit of {self.max_frame_bytes}",
                )
            end = LENGTH_BYTES + length
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[LENGTH_BYTES:end]))
            del self._buffer[:end]
        return frames
