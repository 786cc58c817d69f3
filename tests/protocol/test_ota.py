"""The chunked update, both ends in memory: byte layouts (protocol.md §4.14) and whole updates
in fast and slow mode, with lost chunks, refusals, silence and a dropped connection."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import ProtocolError, messages, ota
from cyan.protocol.coap import CoapCode, CoapMessage
from cyan.protocol.errors import Stage, UpdateBusy
from cyan.protocol.events import (
    ChunkArrived,
    FunctionCallRequested,
    ResponseReceived,
    UpdateAborted,
    UpdateAccepted,
    UpdateBeginRequested,
    UpdateDoneRequested,
    UpdateFinished,
)
from cyan.protocol.transfer import UpdateReceiver, UpdateState, UpdateTimeouts
from tests.protocol.pair import Pair, connected, make_pair, of_type
from tests.protocol.wire import acks_of, read_wire

IMAGE = bytes(range(256)) * 9 + b"tail"  # 2308 bytes: 5 chunks of 512, the last one short
QUICK = UpdateTimeouts(ready_s=1.0, answer_s=1.0, retries=2)
STEP_S = 0.25


# -- byte layouts ---------------------------------------------------------------------------------


def test_update_begin_carries_flags_chunk_size_file_size_store_and_address() -> None:
    params = ota.UpdateParams(fast=True, chunk_bytes=512, file_bytes=131_072)
    wire = ota.update_begin(0x1234, b"\x07", params).encode()
    assert wire.hex(" ") == "41 02 12 34 07 b1 75 ff 01 02 00 00 02 00 00 00 00 00 00 00"
    assert ota.UpdateParams.decode(wire[8:]) == params


def test_a_fast_chunk_carries_its_crc_then_its_index() -> None:
    data = b"\x01\x02\x03"
    crc = zlib.crc32(data).to_bytes(4, "big").hex(" ")
    wire = ota.chunk(0x0102, b"\x09", data, 0x0203).encode()
    # The index is a second Uri-Query: option delta 0, so "02", where protocol.md §4.14 shows
    # "42" (delta 4 would be option 19). device-os reads the options by position only.
    assert wire.hex(" ") == f"41 02 01 02 09 b1 63 44 {crc} 02 02 03 ff 01 02 03"
    decoded = ota.decode_chunk(CoapMessage.decode(wire))
    assert (decoded.index, decoded.data, decoded.crc_ok) == (0x0203, data, True)


def test_a_slow_chunk_has_no_index() -> None:
    wire = ota.chunk(1, b"\x09", b"ab", None).encode()
    assert ota.decode_chunk(CoapMessage.decode(wire)).index is None
    assert wire[5:8] == bytes.fromhex("b1 63 44")
    assert wire[12] == 0xFF


def test_device_answers_have_device_os_layouts() -> None:
    assert ota.update_ready(0x0A0B, b"\x05", True).encode().hex(" ") == "51 44 0a 0b 05 ff 01"
    assert ota.chunk_received(0x0A0B, b"\x05", True).encode().hex(" ") == "51 44 0a 0b 05"
    assert ota.chunk_received(0x0A0B, b"\x05", False).encode().hex(" ") == "51 80 0a 0b 05"
    missed = ota.chunk_missed(0x0A0B, [1, 0x0203])
    assert missed.encode().hex(" ") == "50 01 0a 0b b1 63 ff 00 01 02 03"
    assert ota.decode_missed(missed.payload) == [1, 0x0203]
    assert ota.update_done(0x0A0B, b"\x05").encode().hex(" ") == "41 03 0a 0b 05 b1 75"


def test_chunk_missed_lists_at_most_40_and_odd_lists_are_refused() -> None:
    assert len(ota.chunk_missed(1, list(range(100))).payload) == 80
    with pytest.raises(ProtocolError, match="odd"):
        ota.decode_missed(b"\x00\x01\x02")


def test_the_last_chunk_is_zero_padded_and_the_done_result_parses() -> None:
    assert ota.chunk_data(b"abcde", 1, 3) == b"de\x00"
    assert ota.decode_done_result(ota.done_result(-3)) == -3
    assert ota.decode_done_result(b'{"r":0}\x00\x00') == 0
    assert ota.decode_done_result(b"") is None
    assert ota.decode_done_result(b"not json") is None


@pytest.mark.parametrize(("chunk", "size"), [(0, 10), (595, 10), (1, 65_536)])
def test_impossible_parameters_are_refused(chunk: int, size: int) -> None:
    with pytest.raises(ValueError, match="chunk"):
        ota.UpdateParams(fast=True, chunk_bytes=chunk, file_bytes=size)


# -- whole updates --------------------------------------------------------------------------------


@dataclass
class Device:
    """What the virtual device does with update events, with faults on request."""

    fast: bool = True
    refuse: bool = False
    result: int = 0
    drop: Callable[[int, int], bool] = lambda index, seen: False  # (chunk index, times seen)
    seen: dict[int, int] = field(default_factory=dict)
    images: list[bytes] = field(default_factory=list)

    def handle(self, pair: Pair) -> None:
        for event in pair.take_device_events():
            if isinstance(event, UpdateBeginRequested):
                if self.refuse:
                    pair.device.refuse_update(event)
                else:
                    pair.device.accept_update(event, fast=self.fast)
            elif isinstance(event, ChunkArrived):
                receiver = pair.device.update
                assert receiver is not None
                index = event.chunk.index if event.chunk.index is not None else receiver.next_index
                self.seen[index] = self.seen.get(index, 0) + 1
                if not self.drop(index, self.seen[index]):
                    pair.device.take_chunk(event)
            elif isinstance(event, UpdateDoneRequested):
                pair.device.answer_update_done(event, self.validate)

    def validate(self, image: bytes) -> int:
        self.images.append(image)
        return self.result


def run_update(
    pair: Pair, device: Device, data: bytes = IMAGE, *, steps: int = 400, chunk: int | None = None
) -> UpdateFinished:
    sender = pair.server.start_update(data, timeouts=QUICK)
    now = 0.0
    for _ in range(steps):
        pair.server.pump_update(now, max_chunks=3)
        pair.pump(chunk)
        device.handle(pair)
        pair.pump(chunk)
        finished = of_type(pair.server_events, UpdateFinished)
        if finished:
            assert sender.finished
            return finished[0]
        now += STEP_S
    raise AssertionError(f"no UpdateFinished; the sender is {sender.state}")


def test_a_fast_update_delivers_the_exact_file() -> None:
    pair, device = connected(), Device()
    assert run_update(pair, device) == UpdateFinished(True, None)
    assert device.images == [IMAGE]
    sender = pair.server.update
    assert sender is not None
    assert (sender.fast, sender.bytes_sent, sender.total_bytes, sender.chunks_resent) == (
        True,
        len(IMAGE),
        len(IMAGE),
        0,
    )
    assert of_type(pair.server_events, UpdateAccepted) == [UpdateAccepted(fast=True)]
    # Fast mode: chunks carry their index, and the device answers none of them.
    wire = read_wire(pair)
    chunks = [m for m in wire.server_sent if m.uri_path == [b"c"]]
    assert [ota.decode_chunk(m).index for m in chunks] == [0, 1, 2, 3, 4]
    assert all(len(m.payload) == 512 for m in chunks)  # the last one padded
    # No ChunkReceived (a NON 2.04 without payload) and no ACK of a chunk.
    assert not [m for m in wire.device_sent if m.code == 0x44 and not m.payload]
    chunk_ids = {m.message_id for m in chunks}
    assert not [m for m in wire.device_sent if m.type.name == "ACK" and m.message_id in chunk_ids]


def test_lost_chunks_are_listed_by_the_device_and_sent_again() -> None:
    pair = connected()
    device = Device(drop=lambda index, seen: index in (1, 3) and seen == 1)
    assert run_update(pair, device).succeeded
    assert device.images == [IMAGE]
    assert pair.server.update is not None
    assert pair.server.update.chunks_resent == 2
    missed = [m for m in read_wire(pair).device_sent if m.uri_path == [b"c"]]
    assert [ota.decode_missed(m.payload) for m in missed] == [[1, 3]]


def test_a_slow_update_waits_for_each_chunk_and_resends_the_lost_one() -> None:
    pair = connected()
    device = Device(fast=False, drop=lambda index, seen: index == 2 and seen == 1)
    assert run_update(pair, device).succeeded
    assert device.images == [IMAGE]
    sender = pair.server.update
    assert sender is not None
    assert (sender.fast, sender.chunks_resent) == (False, 1)
    wire = read_wire(pair)
    chunks = [m for m in wire.server_sent if m.uri_path == [b"c"]]
    assert all(ota.decode_chunk(m).index is None for m in chunks)
    assert len(chunks) == 6  # five, and the lost one again after the silence
    received = [m for m in wire.device_sent if m.code == 0x44 and not m.options and m.token]
    assert len(received) >= 5  # a ChunkReceived 2.04 per stored chunk (and UpdateReady)


def test_a_device_that_refuses_the_file_keeps_its_firmware() -> None:
    pair = connected()
    finished = run_update(pair, Device(result=-1100))
    assert not finished.succeeded
    assert "module validation result -1100" in str(finished.failure)


def test_a_device_that_cannot_take_an_update_answers_5_03() -> None:
    finished = run_update(connected(), Device(refuse=True))
    assert not finished.succeeded
    assert "refused the update" in str(finished.failure)
    assert "5.03" in str(finished.failure)


def test_silence_after_update_begin_fails_after_the_retries() -> None:
    pair = connected()
    sender = pair.server.start_update(IMAGE, timeouts=QUICK)
    now = 0.0
    while not sender.finished and now < 30:
        pair.server.pump_update(now, max_chunks=8)
        pair.pump()
        pair.take_device_events()  # the device never answers
        now += STEP_S
    assert sender.state is UpdateState.FAILED
    assert sender.failure == "no answer from the device while waiting for UpdateReady"
    begins = [m for m in read_wire(pair).server_sent if m.uri_path == [b"u"] and m.code == 2]
    assert len(begins) == 1 + QUICK.retries


def test_a_dropped_connection_fails_the_update_and_frees_the_connection() -> None:
    pair = connected()
    sender = pair.server.start_update(IMAGE, timeouts=QUICK)
    pair.pump()
    Device().handle(pair)
    pair.pump()
    pair.server.pump_update(0.0, max_chunks=2)
    pair.server.closed()
    (finished,) = of_type(pair.server.events_received(), UpdateFinished)
    assert not finished.succeeded
    assert finished.failure == "the device disconnected while the update was sending chunks"
    assert sender.bytes_sent == 1024
    assert pair.server.pending_requests == 0


def test_abort_tells_the_device_which_drops_what_it_has() -> None:
    pair = connected()
    pair.server.start_update(IMAGE, timeouts=QUICK)
    pair.pump()
    Device().handle(pair)
    pair.pump()
    assert pair.device.update is not None
    pair.server.abort_update("the server is stopping")
    pair.pump()
    assert of_type(pair.take_device_events(), UpdateAborted) == [UpdateAborted()]
    assert pair.device.update is None
    (finished,) = of_type(pair.server_events, UpdateFinished)
    assert finished == UpdateFinished(False, "the server is stopping")


def test_one_update_at_a_time() -> None:
    pair = connected()
    pair.server.start_update(IMAGE)
    with pytest.raises(UpdateBusy):
        pair.server.start_update(IMAGE)


def test_function_calls_are_answered_during_an_update() -> None:
    pair = connected()
    pair.server.start_update(IMAGE, timeouts=QUICK)
    pair.pump()
    device = Device()
    device.handle(pair)
    pair.server.pump_update(0.0, max_chunks=2)
    token = pair.server.call_function("digitalread", "D7")
    pair.pump()
    calls = of_type(pair.device_events, FunctionCallRequested)
    assert [c.name for c in calls] == ["digitalread"]
    pair.device.reply_function(calls[0].token, 1)
    pair.pump()
    replies = of_type(pair.server_events, ResponseReceived)
    assert [(r.token, r.payload) for r in replies] == [(token, b"\x00\x00\x00\x01")]
    device.handle(pair)
    now = 0.0
    while not of_type(pair.server_events, UpdateFinished):
        pair.server.pump_update(now, max_chunks=4)
        pair.pump()
        device.handle(pair)
        pair.pump()
        now += STEP_S
    assert device.images == [IMAGE]


def test_a_byte_at_a_time_changes_nothing() -> None:
    device = Device(drop=lambda index, seen: index == 0 and seen == 1)
    assert run_update(connected(1), device, chunk=1).succeeded
    assert device.images == [IMAGE]


@settings(max_examples=30, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=3000),
    lost=st.sets(st.integers(min_value=0, max_value=5)),
    fast=st.booleans(),
)
def test_any_file_and_any_lost_chunks_arrive_whole(data: bytes, lost: set[int], fast: bool) -> None:
    device = Device(fast=fast, drop=lambda index, seen: index in lost and seen == 1)
    assert run_update(connected(), device, data).succeeded
    assert device.images == [data]


def test_the_receiver_lists_what_is_missing_in_order() -> None:
    receiver = UpdateReceiver(ota.UpdateParams(True, 4, 18), fast=True)
    for index in (0, 2, 4):
        receiver.store(index, b"abcd")
    assert receiver.missing() == [1, 3]
    assert receiver.missing(limit=1) == [1]
    assert not receiver.complete
    # Chunks 0 and 2 hold 4 bytes each; chunk 4 covers bytes 16 and 17 of the 18-byte file.
    assert receiver.received_bytes == 10


# -- the server's update calls at the edges -----------------------------------------------------


def test_update_calls_without_an_update_send_and_report_nothing() -> None:
    pair = connected()

    pair.server.pump_update(0.0, max_chunks=8)
    pair.server.abort_update("nothing to abort")
    pair.server.closed()

    assert pair.server.data_to_send() == b""
    assert pair.server.events_received() == []
    assert pair.server.update is None


def test_an_update_cannot_start_before_the_handshake_ends() -> None:
    pair = make_pair()

    with pytest.raises(ProtocolError) as caught:
        pair.server.start_update(b"x" * 10)

    assert caught.value.stage is Stage.SESSION
    assert (pair.server.update, pair.server.pending_requests) == (None, 0)
    pair.pump()
    pair.server.start_update(b"x" * 10)  # no UpdateBusy: the failed start left nothing behind


def test_a_finished_update_ignores_pumps_aborts_closes_and_chunk_missed() -> None:
    pair = connected()
    sender = pair.server.start_update(b"x" * 100, chunk_bytes=16)
    pair.pump()
    (begin,) = of_type(pair.take_device_events(), UpdateBeginRequested)
    pair.device.refuse_update(begin)
    pair.pump()
    (finished,) = of_type(pair.take_server_events(), UpdateFinished)
    assert not finished.succeeded
    failure = sender.failure

    pair.server.pump_update(1000.0, max_chunks=8)
    pair.server.abort_update("too late")
    pair.server.closed()
    assert pair.server.data_to_send() == b""
    pair.device.send(CoapMessage.decode(bytes.fromhex("40 01 44 44 b1 63 ff 00 01")))
    pair.pump()

    assert pair.take_server_events() == []
    assert (sender.state, sender.failure) == (UpdateState.FAILED, failure)
    assert acks_of(read_wire(pair).server_sent, 0x4444) == [messages.empty_ack(0x4444)]
    assert pair.server.pending_requests == 0


def test_silence_after_update_done_resends_it_then_fails() -> None:
    # answer_s 2 s, 2 retries: UpdateDone goes out 1 + 2 times, 2 s apart, then the update fails.
    timeouts = UpdateTimeouts(ready_s=1.0, answer_s=2.0, retries=2)
    pair = connected()
    sender = pair.server.start_update(b"\x5a" * 40, chunk_bytes=16, timeouts=timeouts)
    pair.pump()
    (begin,) = of_type(pair.take_device_events(), UpdateBeginRequested)
    pair.device.accept_update(begin, fast=True)
    pair.pump()
    pair.server.pump_update(0.0, max_chunks=8)  # three chunks, then UpdateDone
    pair.pump()
    events = pair.take_device_events()
    for event in of_type(events, ChunkArrived):
        pair.device.take_chunk(event)  # UpdateDoneRequested is never answered
    assert sender.state is UpdateState.DONE_SENT

    dones = []
    for now in (0.5, 2.4, 2.5, 4.4, 4.5, 6.5):
        pair.server.pump_update(now, max_chunks=8)
        pair.pump()
        done = [m for m in read_wire(pair).server_sent if m.code == CoapCode.PUT]
        dones.append(len(done))

    assert dones == [1, 1, 2, 2, 3, 3]
    assert {m.token for m in done} == {bytes([begin.token])}
    events += pair.take_device_events()
    assert len(of_type(events, UpdateDoneRequested)) == 3
    assert of_type(pair.take_server_events(), UpdateFinished) == [
        UpdateFinished(False, "no answer from the device while waiting for the UpdateDone answer")
    ]
    assert pair.server.pending_requests == 0
