"""protocol/connection.py: what both ends share, checked through a pair in memory.

Tokens and their bookkeeping, message-id counters, the encrypted channel's framing, and the
rule that anything malformed after the handshake is a session error at either end
(protocol.md §3, §4.2, §5.3).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import NoTokenFree
from cyan.protocol.coap import CoapCode
from cyan.protocol.errors import ProtocolError, Stage
from cyan.protocol.events import (
    EventPublished,
    FunctionCallRequested,
    RequestKind,
    ResponseReceived,
)
from cyan.protocol.messages import EventInfo
from tests.protocol.pair import Pair, connected, make_pair, of_type, scripted
from tests.protocol.wire import ACK, aes_cbc_encrypt, open_frames, read_wire, seal_frames

# -- tokens ---------------------------------------------------------------------------------------


def test_256_tokens_in_flight_then_no_token_free() -> None:
    pair = connected()

    tokens = [pair.server.call_function("f", str(i)) for i in range(256)]

    assert sorted(tokens) == list(range(256))
    assert pair.server.pending_requests == 256
    with pytest.raises(NoTokenFree):
        pair.server.request_variable("temp")
    assert pair.server.pending_requests == 256
    pair.server.forget(77)
    assert pair.server.request_variable("temp") == 77
    with pytest.raises(NoTokenFree):
        pair.server.signal(True)


def test_answered_tokens_are_free_again() -> None:
    pair = connected()
    tokens = [pair.server.call_function("f", "") for _ in range(256)]
    pair.pump()
    requests = of_type(pair.take_device_events(), FunctionCallRequested)
    assert sorted(r.token for r in requests) == sorted(tokens)

    for request in requests[:3]:
        pair.device.reply_function(request.token, 0)
    pair.pump()

    assert len(of_type(pair.take_server_events(), ResponseReceived)) == 3
    assert pair.server.pending_requests == 253
    assert {pair.server.signal(False) for _ in range(3)} == {r.token for r in requests[:3]}


def test_a_forgotten_token_is_not_the_next_one_given_out() -> None:
    # Tokens go round: a late answer to a request its caller gave up on cannot be taken for
    # the answer to the request made right after it.
    pair = connected()
    first = pair.server.call_function("slow", "")
    pair.server.forget(first)
    pair.server.forget(200)  # never given out: nothing happens

    second = pair.server.call_function("fast", "")
    pair.pump()
    pair.device.reply_function(first, 1)
    pair.device.reply_function(second, 2)
    pair.pump()

    assert second == (first + 1) % 256
    assert pair.take_server_events() == [
        ResponseReceived(RequestKind.FUNCTION, second, CoapCode.CHANGED, b"\x00\x00\x00\x02")
    ]


def test_tokens_wrap_from_255_to_0() -> None:
    pair = connected()
    tokens = [pair.server.call_function("f", "") for _ in range(255)]
    for token in tokens:
        pair.server.forget(token)

    assert [pair.server.call_function("f", "") for _ in range(3)] == [255, 0, 1]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.lists(st.integers(0, 255), max_size=40))))
def test_tokens_in_flight_are_unique_and_counted(steps: list[tuple[int, list[int]]]) -> None:
    # Each step: that many new requests, then forget those tokens (given out or not).
    server = connected().server
    waiting: set[int] = set()
    for requests, forgotten in steps:
        for _ in range(requests):
            if len(waiting) == 256:
                with pytest.raises(NoTokenFree):
                    server.call_function("f", "")
                continue
            token = server.call_function("f", "")
            assert 0 <= token < 256
            assert token not in waiting
            waiting.add(token)
        for token in forgotten:
            server.forget(token)
            waiting.discard(token)
        assert server.pending_requests == len(waiting)


# -- message ids -------------------------------------------------------------------------------


def test_message_ids_wrap_at_65536_at_both_ends() -> None:
    # §4.2: each side counts up by one and wraps. The server's Hello takes a random id (here
    # ff ff); the device's Hello takes the little-endian salt plus one (here fe ff + 1).
    session = bytes(range(32)) + bytes.fromhex("feff") + bytes(6)
    random_bytes = scripted(bytes(40), session, bytes.fromhex("ffff"))
    pair = make_pair(server_random=random_bytes)
    pair.pump()

    pair.server.ping()
    pair.device.ping()
    pair.pump()

    wire = read_wire(pair)
    assert [m.message_id for m in wire.server_sent if m.type is not ACK] == [0xFFFF, 0x0000]
    assert [m.message_id for m in wire.device_sent if m.type is not ACK] == [0xFFFF, 0x0000]


def test_bytes_and_events_are_handed_out_once() -> None:
    pair = connected()
    key, to_device_iv, _ = _session_state(pair)
    pair.server.ping()
    pair.server.ping()

    data = pair.server.data_to_send()
    pair.device.publish(EventInfo("t", None, 60, True))
    pair.server.receive_data(pair.device.data_to_send())

    assert pair.server.data_to_send() == b""
    plaintexts, _ = open_frames(data, key, to_device_iv)
    assert [p[:2] for p in plaintexts] == [b"\x40\x00", b"\x40\x00"]  # both pings, in order
    assert pair.server.events_received() == [EventPublished(EventInfo("t", None, 60, True))]
    assert pair.server.events_received() == []


# -- broken sessions ------------------------------------------------------------------------------


def _session_state(pair: Pair) -> tuple[bytes, bytes, bytes]:
    """AES key and the next IV of each direction, read off the wire."""
    wire = read_wire(pair)
    _, to_device_iv = open_frames(bytes(pair.to_device[424:]), wire.aes_key, wire.iv)
    _, to_server_iv = open_frames(bytes(pair.to_server[256:]), wire.aes_key, wire.iv)
    return wire.aes_key, to_device_iv, to_server_iv


def aes_frame(key: bytes, iv: bytes, padded: bytes) -> bytes:
    """One frame of already padded plaintext (to build broken padding on purpose)."""
    ciphertext = aes_cbc_encrypt(key, iv, padded)
    return len(ciphertext).to_bytes(2, "big") + ciphertext


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x00",  # zero-length frame
        b"\x00\x05hello",  # length not a multiple of 16
        b"\xff\xf0",  # over the frame limit
        b"GET / HTTP/1.1\r\n\r\n",  # something else entirely
    ],
)
@pytest.mark.parametrize("end", ["server", "device"])
def test_garbage_framing_after_the_handshake_is_a_session_error(garbage: bytes, end: str) -> None:
    pair = connected()
    receiver = pair.server if end == "server" else pair.device

    with pytest.raises(ProtocolError) as caught:
        receiver.receive_data(garbage)

    assert caught.value.stage is Stage.SESSION


@pytest.mark.parametrize(
    "plaintext",
    [
        b"\x40\x00\x12\x34" + b"\x00" * 11 + b"\x00",  # block whose last byte (pad) is 0
        b"ping" + b"\x11" * 12,  # pad 17
        b"\x40\x00\x12\x34\x05\x05\x05\x05\x05\x05\x05\x05\x04\x03\x03\x03",  # 3 claimed, 04 in it
    ],
)
def test_frame_with_bad_padding_is_a_session_error(plaintext: bytes) -> None:
    pair = connected()
    key, to_device_iv, to_server_iv = _session_state(pair)
    frame_for_server = aes_frame(key, to_server_iv, plaintext)
    frame_for_device = aes_frame(key, to_device_iv, plaintext)

    with pytest.raises(ProtocolError) as at_server:
        pair.server.receive_data(frame_for_server)
    with pytest.raises(ProtocolError) as at_device:
        pair.device.receive_data(frame_for_device)

    assert at_server.value.stage is Stage.SESSION
    assert at_device.value.stage is Stage.SESSION


@pytest.mark.parametrize(
    "plaintext",
    [
        b"\x00\x00\x12\x34",  # CoAP version 0
        b"\x4f\x00\x12\x34",  # token length 15
        b"\x40\x00",  # shorter than a header
        b"\x40\x02\x12\x34\xf1\x00",  # reserved option nibble
    ],
)
def test_frame_that_is_not_coap_is_a_session_error(plaintext: bytes) -> None:
    pair = connected()
    key, to_device_iv, to_server_iv = _session_state(pair)
    frame_for_server, _ = seal_frames([plaintext], key, to_server_iv)
    frame_for_device, _ = seal_frames([plaintext], key, to_device_iv)

    with pytest.raises(ProtocolError) as at_server:
        pair.server.receive_data(frame_for_server)
    with pytest.raises(ProtocolError) as at_device:
        pair.device.receive_data(frame_for_device)

    assert at_server.value.stage is Stage.SESSION
    assert at_device.value.stage is Stage.SESSION


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=100))
def test_any_bytes_after_the_handshake_raise_only_protocol_error(garbage: bytes) -> None:
    pair = connected()
    stages = []
    for end in (pair.server, pair.device):
        try:
            end.receive_data(garbage)
        except ProtocolError as exc:  # anything else fails the test
            stages.append(exc.stage)

    assert set(stages) <= {Stage.SESSION}
