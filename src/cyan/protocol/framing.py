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

    def feed(self, data: bytes, limit: int | None = None) -> list[bytes]:
        """Buffer ``data`` and take up to ``limit`` whole frames (all of them if None);
        the rest stay buffered for the next call (``ready`` says whether one is whole)."""
        if data:
            self._buffer += data
        buffer, start = self._buffer, 0
        frames: list[bytes] = []
        # One cut of the buffer at the end, not one per frame: a 256 KB read holds
        # thousands of small frames, and a cut per frame copies the rest each time.
        try:
            while limit is None or len(frames) < limit:
                end = self._frame_end(start)
                if end is None:
                    break
                frames.append(bytes(buffer[start + LENGTH_BYTES : end]))
                start = end
        finally:
            del buffer[:start]
        return frames

    @property
    def ready(self) -> bool:
        """A whole frame is buffered (a bad length counts: the next feed raises it)."""
        if len(self._buffer) < LENGTH_BYTES:
            return False
        length = int.from_bytes(self._buffer[:LENGTH_BYTES], "big")
        bad = length == 0 or length % AES_BLOCK or length > self.max_frame_bytes
        return bool(bad) or len(self._buffer) >= LENGTH_BYTES + length

    def _frame_end(self, start: int) -> int | None:
        buffer = self._buffer
        if len(buffer) - start < LENGTH_BYTES:
            return None
        length = int.from_bytes(buffer[start : start + LENGTH_BYTES], "big")
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
        end = start + LENGTH_BYTES + length
        return end if len(buffer) >= end else None
