"""cyan.protocol.framing: 2-byte big-endian length + ciphertext (protocol.md §3.1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.framing import FrameDecoder, encode_frame

LIMIT = 1024
FRAMES = [bytes([i]) * (16 * (i + 1)) for i in range(4)]  # 16, 32, 48, 64 bytes
STREAM = b"".join(len(f).to_bytes(2, "big") + f for f in FRAMES)


def test_encode_frame_prefixes_a_big_endian_length() -> None:
    assert encode_frame(b"\xab" * 32) == b"\x00\x20" + b"\xab" * 32
    assert encode_frame(b"\x01" * 0x110) == b"\x01\x10" + b"\x01" * 0x110


def test_encode_frame_refuses_more_than_a_two_byte_length() -> None:
    assert len(encode_frame(b"\x00" * 0xFFFF)) == 0x10001
    with pytest.raises(ValueError, match="2-byte length"):
        encode_frame(b"\x00" * 0x10000)


def test_decode_a_whole_stream_in_one_read() -> None:
    decoder = FrameDecoder(LIMIT)

    assert decoder.feed(STREAM) == FRAMES
    assert decoder.buffered == 0


def test_decode_byte_by_byte() -> None:
    decoder = FrameDecoder(LIMIT)
    out: list[bytes] = []

    for i in range(len(STREAM)):
        out += decoder.feed(STREAM[i : i + 1])

    assert out == FRAMES
    assert decoder.buffered == 0


@pytest.mark.parametrize("cut", [1, 2, 3, 17, 18, 19, len(STREAM) - 1])
def test_trailing_partial_frame_waits_for_the_rest(cut: int) -> None:
    # The stream's first frame is 2 + 16 bytes; a cut anywhere keeps what is incomplete.
    decoder = FrameDecoder(LIMIT)
    whole_before_cut = 0
    position = 0
    for frame in FRAMES:
        if position + 2 + len(frame) <= cut:
            whole_before_cut += 1
        position += 2 + len(frame)

    first = decoder.feed(STREAM[:cut])
    assert first == FRAMES[:whole_before_cut]
    assert decoder.buffered == cut - sum(2 + len(f) for f in first)

    assert first + decoder.feed(STREAM[cut:]) == FRAMES
    assert decoder.buffered == 0


def test_empty_feed_returns_nothing() -> None:
    decoder = FrameDecoder(LIMIT)

    assert decoder.feed(b"") == []
    assert decoder.feed(STREAM[:1]) == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 1


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(64)

    assert decoder.feed(encode_frame(b"\x07" * 64)) == [b"\x07" * 64]


@pytest.mark.parametrize(
    ("header", "limit"),
    [
        (b"\x00\x00", LIMIT),  # zero length
        (b"\x00\x01", LIMIT),  # not a multiple of 16
        (b"\x00\x0f", LIMIT),
        (b"\x00\x11", LIMIT),
        (b"\x01\x01", LIMIT),
        (b"\x00\x50", 64),  # 80 > 64
        (b"\xff\xf0", LIMIT),  # 65520, far over
    ],
)
def test_impossible_length_raises_on_the_header_alone(header: bytes, limit: int) -> None:
    # Only the two length bytes arrive: the decoder must not wait for (or buffer) a body.
    decoder = FrameDecoder(limit)

    with pytest.raises(ProtocolError) as caught:
        decoder.feed(header)

    assert caught.value.stage is Stage.SESSION


def test_impossible_length_after_good_frames_raises() -> None:
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(STREAM) == FRAMES

    with pytest.raises(ProtocolError) as caught:
        decoder.feed(b"\x00\x07")

    assert caught.value.stage is Stage.SESSION


def test_length_split_across_reads_is_checked_once_whole() -> None:
    decoder = FrameDecoder(64)

    assert decoder.feed(b"\x10") == []  # half a length: nothing to check yet
    assert decoder.buffered == 1
    with pytest.raises(ProtocolError):
        decoder.feed(b"\x00")  # 0x1000 = 4096 > 64


_frame = st.integers(1, 8).flatmap(
    lambda blocks: st.binary(min_size=16 * blocks, max_size=16 * blocks)
)


@settings(max_examples=200)
@given(
    frames=st.lists(_frame, max_size=10),
    cuts=st.lists(st.integers(0, 2000), max_size=12),
)
def test_any_split_of_any_frames_gives_the_same_frames(
    frames: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    decoder = FrameDecoder(128)

    out = [frame for piece in pieces for frame in decoder.feed(piece)]

    assert out == frames
    assert decoder.buffered == 0


@given(st.integers(1, 5), st.integers(0, len(STREAM)))
def test_a_limit_takes_frames_in_order_and_leaves_the_rest_ready(limit: int, cut: int) -> None:
    decoder = FrameDecoder(LIMIT)
    taken = decoder.feed(STREAM[:cut], limit)
    while decoder.ready:
        more = decoder.feed(b"", limit)
        assert 0 < len(more) <= limit
        taken += more
    taken += decoder.feed(STREAM[cut:])

    assert taken == FRAMES
    assert not decoder.ready
    assert decoder.buffered == 0


def test_a_bad_length_counts_as_ready_so_that_the_next_feed_raises_it() -> None:
    decoder = FrameDecoder(LIMIT)
    assert decoder.feed(STREAM[:18] + b"\x00\x05", 1) == [FRAMES[0]]
    assert decoder.ready
    with pytest.raises(ProtocolError, match="multiple of 16"):
        decoder.feed(b"", 1)
