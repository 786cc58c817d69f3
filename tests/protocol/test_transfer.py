"""protocol/transfer.py: the state table (every (state, input) pair, as h2's tests do), then
each end of the update on its own: transitions, timeouts and chunk bookkeeping."""

from __future__ import annotations

import itertools
import json
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import ota
from cyan.protocol.transfer import (
    DOING,
    TRANSITIONS,
    Resend,
    UpdateInput,
    UpdateReceiver,
    UpdateSender,
    UpdateState,
    UpdateTimeouts,
)

FINISHED = (UpdateState.SUCCEEDED, UpdateState.FAILED)


@pytest.mark.parametrize(("state", "given"), list(itertools.product(UpdateState, UpdateInput)))
def test_every_pair_moves_as_the_table_says_or_not_at_all(
    state: UpdateState, given: UpdateInput
) -> None:
    sender = UpdateSender(b"x" * 100, chunk_bytes=16, offer_fast=True)
    sender.state = state

    moved = sender._move(given)

    expected = TRANSITIONS.get((state, given))
    assert moved is (expected is not None)
    assert sender.state is (expected or state)


def test_nothing_leaves_a_finished_update() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] in FINISHED]


def test_every_unfinished_state_can_give_up() -> None:
    for state in UpdateState:
        if state not in FINISHED:
            assert TRANSITIONS[(state, UpdateInput.GIVE_UP)] is UpdateState.FAILED


def test_the_state_values_are_what_the_api_and_the_store_show() -> None:
    assert [s.value for s in UpdateState] == [
        "begin_sent",
        "sending",
        "done_sent",
        "succeeded",
        "failed",
    ]


def test_the_table_is_the_update_of_protocol_md() -> None:
    # §4.14: UpdateReady starts the chunks, a 5.03 refuses; ChunkMissed (while sending, or
    # after UpdateDone was answered 4.00) sends chunks again; once every chunk is out,
    # UpdateDone; its 2.04 ends the update, with a validation result other than 0 as a refusal.
    begin, sending, done = UpdateState.BEGIN_SENT, UpdateState.SENDING, UpdateState.DONE_SENT
    assert {
        (begin, UpdateInput.RECV_READY): sending,
        (begin, UpdateInput.RECV_REFUSAL): UpdateState.FAILED,
        (sending, UpdateInput.RECV_MISSED): sending,
        (done, UpdateInput.RECV_MISSED): sending,
        (sending, UpdateInput.ALL_SENT): done,
        (done, UpdateInput.RECV_DONE_OK): UpdateState.SUCCEEDED,
        (done, UpdateInput.RECV_DONE_REFUSED): UpdateState.FAILED,
        (begin, UpdateInput.GIVE_UP): UpdateState.FAILED,
        (sending, UpdateInput.GIVE_UP): UpdateState.FAILED,
        (done, UpdateInput.GIVE_UP): UpdateState.FAILED,
    } == TRANSITIONS


def test_states_and_resends_are_strings_for_the_api_and_the_store() -> None:
    assert issubclass(UpdateState, StrEnum)
    assert issubclass(Resend, StrEnum)
    assert UpdateState("done_sent") is UpdateState.DONE_SENT
    assert f"{UpdateState.FAILED}" == "failed"
    assert json.dumps({"state": UpdateState.SENDING}) == '{"state": "sending"}'
    assert [r.value for r in Resend] == ["begin", "chunk", "done"]


# -- each transition through the method that makes it ------------------------------------------

DATA = bytes(range(100))  # 7 chunks of 16: six whole, the last 4 bytes and 12 of padding
TIMEOUTS = UpdateTimeouts(ready_s=5.0, answer_s=2.0, retries=2)


def new_sender(*, offer_fast: bool = True, data: bytes = DATA) -> UpdateSender:
    return UpdateSender(data, chunk_bytes=16, offer_fast=offer_fast, timeouts=TIMEOUTS)


def in_state(state: UpdateState, *, fast: bool = True) -> UpdateSender:
    """A sender brought to ``state`` through its own methods."""
    sender = new_sender(offer_fast=fast)
    if state is not UpdateState.BEGIN_SENT:
        sender.ready(fast)
    if state is UpdateState.DONE_SENT:
        while sender.next_chunks(16):
            sender.chunk_answer(True)
        assert sender.done_due()
    assert sender.state is state
    return sender


def test_update_ready_starts_the_chunks() -> None:
    sender = in_state(UpdateState.BEGIN_SENT)
    assert sender.chunks_waiting == 0

    sender.ready(True)

    assert (sender.state, sender.fast, sender.chunks_waiting) == (UpdateState.SENDING, True, 7)


@pytest.mark.parametrize(
    ("offered", "ready", "fast"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_fast_mode_only_when_offered_and_accepted(offered: bool, ready: bool, fast: bool) -> None:
    sender = new_sender(offer_fast=offered)

    sender.ready(ready)

    assert sender.fast is fast


def test_a_refusal_fails_the_update_with_its_reason() -> None:
    sender = in_state(UpdateState.BEGIN_SENT)

    sender.refused("it answered UpdateBegin with ACK 5.03")

    assert sender.state is UpdateState.FAILED
    assert sender.failure == "the device refused the update: it answered UpdateBegin with ACK 5.03"


def test_chunk_missed_while_sending_queues_the_chunk_again() -> None:
    sender = in_state(UpdateState.SENDING)
    assert sender.next_chunks(3) == [0, 1, 2]

    sender.missed([1])

    assert (sender.state, sender.chunks_resent) == (UpdateState.SENDING, 1)
    assert sender.next_chunks(16) == [3, 4, 5, 6, 1]


def test_chunk_missed_after_update_done_sends_them_and_update_done_again() -> None:
    sender = in_state(UpdateState.DONE_SENT)

    sender.missed([6, 2])

    assert sender.state is UpdateState.SENDING
    assert sender.next_chunks(16) == [6, 2]
    assert sender.done_due()
    assert not sender.done_due()  # once
    assert (sender.state, sender.chunks_resent) == (UpdateState.DONE_SENT, 2)


@pytest.mark.parametrize(
    ("result", "state"), [(0, UpdateState.SUCCEEDED), (-1100, UpdateState.FAILED)]
)
def test_the_update_done_answer_ends_the_update(result: int, state: UpdateState) -> None:
    sender = in_state(UpdateState.DONE_SENT)

    sender.done_answer(True, result)

    assert (sender.state, sender.validation_result, sender.finished) == (state, result, True)
    assert (sender.failure is None) is (result == 0)
    assert sender.failure is None or "module validation result -1100" in sender.failure


def test_update_done_answered_4_00_waits_for_the_chunk_missed_list() -> None:
    sender = in_state(UpdateState.DONE_SENT)

    sender.done_answer(False, None)

    assert (sender.state, sender.failure) == (UpdateState.DONE_SENT, None)


@pytest.mark.parametrize(
    "state", [UpdateState.BEGIN_SENT, UpdateState.SENDING, UpdateState.DONE_SENT]
)
def test_every_unfinished_state_gives_up_on_a_lost_connection_or_an_abort(
    state: UpdateState,
) -> None:
    lost, aborted = in_state(state), in_state(state)

    lost.disconnected()
    aborted.abort("the server is stopping")

    assert (lost.state, aborted.state) == (UpdateState.FAILED, UpdateState.FAILED)
    assert lost.failure == f"the device disconnected while the update was {DOING[state]}"
    assert aborted.failure == "the server is stopping"


# -- inputs the table does not allow change nothing --------------------------------------------


def test_a_repeated_update_ready_queues_nothing_twice() -> None:
    sender = in_state(UpdateState.SENDING, fast=False)

    sender.ready(True)

    assert (sender.state, sender.fast, sender.chunks_waiting) == (UpdateState.SENDING, False, 7)


def test_answers_out_of_turn_are_ignored() -> None:
    begin, sending = in_state(UpdateState.BEGIN_SENT), in_state(UpdateState.SENDING)

    begin.missed([0])
    begin.done_answer(True, 0)
    begin.chunk_answer(False)
    sending.refused("late")
    sending.done_answer(True, 0)

    assert (begin.state, begin.chunks_resent, begin.done_due()) == (
        UpdateState.BEGIN_SENT,
        0,
        False,
    )
    assert (sending.state, sending.failure) == (UpdateState.SENDING, None)
    assert (begin.validation_result, sending.validation_result) == (None, None)


def test_nothing_moves_a_finished_update() -> None:
    done, failed = in_state(UpdateState.DONE_SENT), in_state(UpdateState.SENDING)
    done.done_answer(True, 0)
    failed.abort("first")

    for sender in (done, failed):
        sender.abort("second")
        sender.disconnected()
        sender.missed([0])
        sender.ready(True)
        sender.done_answer(True, 5)
        assert sender.timed_out(1e9) is None
        assert sender.next_chunks(16) == []

    assert (done.state, done.failure) == (UpdateState.SUCCEEDED, None)
    assert (failed.state, failed.failure) == (UpdateState.FAILED, "first")


_CALLS = st.one_of(
    st.tuples(st.just("ready"), st.booleans()),
    st.tuples(st.just("refused"), st.none()),
    st.tuples(st.just("chunk_answer"), st.booleans()),
    st.tuples(st.just("missed"), st.lists(st.integers(-2, 9), max_size=4)),
    st.tuples(st.just("done_answer"), st.tuples(st.booleans(), st.integers(-2, 2) | st.none())),
    st.tuples(st.just("disconnected"), st.none()),
    st.tuples(st.just("next_chunks"), st.integers(0, 9)),
    st.tuples(st.just("done_due"), st.none()),
    st.tuples(st.just("timed_out"), st.floats(0, 5)),
)


@settings(max_examples=300)
@given(st.booleans(), st.lists(_CALLS, max_size=40))
def test_the_methods_move_only_along_the_table(offer_fast: bool, calls: list[Any]) -> None:
    sender = new_sender(offer_fast=offer_fast)
    now, sent = 0.0, 0
    for name, argument in calls:
        before = sender.state
        if name == "timed_out":
            now += argument
            sender.timed_out(now)
        elif name == "done_answer":
            sender.done_answer(*argument)
        elif name in ("refused", "disconnected", "done_due"):
            getattr(sender, name)(*(["why"] if name == "refused" else []))
        else:
            getattr(sender, name)(argument)
        reachable = {TRANSITIONS.get((before, given)) for given in UpdateInput} | {before}
        assert sender.state in reachable
        assert sent <= sender.bytes_sent <= sender.total_bytes
        sent = sender.bytes_sent


# -- timeouts ----------------------------------------------------------------------------------


def test_silence_after_update_begin_resends_it_then_fails() -> None:
    # ready_s 5 s, 2 retries: the wait starts at the first call; UpdateBegin goes out again
    # at 5 s and 10 s; at 15 s the tries are over.
    sender = in_state(UpdateState.BEGIN_SENT)

    answers = [sender.timed_out(now) for now in (0.0, 4.9, 5.0, 9.9, 10.0, 14.9, 15.0)]

    assert answers == [None, None, Resend.BEGIN, None, Resend.BEGIN, None, None]
    assert sender.state is UpdateState.FAILED
    assert sender.failure == "no answer from the device while waiting for UpdateReady"


def test_silence_after_update_done_resends_update_done() -> None:
    sender = in_state(UpdateState.DONE_SENT)

    answers = [sender.timed_out(now) for now in (0.0, 1.9, 2.0, 4.0, 6.0)]

    assert answers == [None, None, Resend.DONE, Resend.DONE, None]
    assert sender.failure == "no answer from the device while waiting for the UpdateDone answer"


def test_fast_mode_waits_for_no_chunk_answer() -> None:
    sender = in_state(UpdateState.SENDING, fast=True)
    sender.next_chunks(2)

    assert [sender.timed_out(now) for now in (0.0, 100.0, 1e6)] == [None, None, None]
    assert sender.state is UpdateState.SENDING


def test_a_slow_chunk_is_resent_and_an_answer_restarts_the_tries() -> None:
    sender = in_state(UpdateState.SENDING, fast=False)
    assert sender.timed_out(0.0) is None  # nothing in flight: nothing to wait for
    assert sender.next_chunks(5) == [0]  # slow mode: one at a time

    first = [sender.timed_out(now) for now in (0.0, 2.0)]
    sender.chunk_answer(True)
    assert sender.next_chunks(5) == [1]
    second = [sender.timed_out(now) for now in (2.5, 4.5, 6.5, 8.5)]

    assert first == [None, Resend.CHUNK]
    # Chunk 1 gets its own two retries: the resend of chunk 0 did not use them up.
    assert second == [None, Resend.CHUNK, Resend.CHUNK, None]
    assert (sender.in_flight, sender.chunks_resent) == (1, 3)
    assert sender.failure == "no answer from the device while sending chunks"


# -- chunk bookkeeping -------------------------------------------------------------------------


def test_the_last_chunk_is_padded_but_counted_by_its_real_bytes() -> None:
    sender = in_state(UpdateState.SENDING)
    assert sender.params.chunk_count == 7
    assert sender.chunk(6) == DATA[96:] + bytes(12)

    assert sender.next_chunks(2) == [0, 1]
    assert sender.bytes_sent == 32
    sender.next_chunks(16)
    assert sender.bytes_sent == 100

    sender.done_due()
    sender.missed([0, 6])
    sender.next_chunks(16)
    assert (sender.bytes_sent, sender.chunks_resent) == (100, 2)  # resends count once


@given(st.binary(min_size=1, max_size=2000), st.integers(1, 64), st.integers(0, 200))
def test_bytes_sent_is_the_length_of_the_file_sent_so_far(
    data: bytes, chunk_bytes: int, taken: int
) -> None:
    sender = UpdateSender(data, chunk_bytes=chunk_bytes, offer_fast=True)
    sender.ready(True)

    sender.next_chunks(taken)

    assert sender.bytes_sent == len(data[: taken * chunk_bytes])


def test_fast_chunks_go_out_in_order_up_to_the_limit() -> None:
    sender = in_state(UpdateState.SENDING, fast=True)

    assert [sender.next_chunks(3), sender.next_chunks(0), sender.next_chunks(3)] == [
        [0, 1, 2],
        [],
        [3, 4, 5],
    ]
    assert sender.chunks_waiting == 1
    assert not sender.done_due()  # chunk 6 is still to go


@pytest.mark.parametrize("fast", [True, False])
def test_a_limit_of_nothing_sends_nothing_in_either_mode(fast: bool) -> None:
    # The gateway asks for 0 chunks while the socket's buffer is full.
    sender = in_state(UpdateState.SENDING, fast=fast)

    assert sender.next_chunks(0) == []
    assert (sender.bytes_sent, sender.in_flight, sender.chunks_waiting) == (0, None, 7)


def test_a_slow_chunk_answered_4_00_goes_out_again_first() -> None:
    sender = in_state(UpdateState.SENDING, fast=False)
    assert sender.next_chunks(1) == [0]
    assert sender.next_chunks(1) == []  # chunk 0 awaits its ChunkReceived

    sender.chunk_answer(False)

    assert (sender.next_chunks(1), sender.chunks_resent) == ([0], 1)
    sender.chunk_answer(True)
    assert sender.next_chunks(1) == [1]


def test_chunk_missed_takes_each_listed_chunk_once() -> None:
    sender = in_state(UpdateState.SENDING)
    sender.next_chunks(4)  # 0 to 3 out, 4 to 6 waiting

    sender.missed([2, 2, 5, 99, -1, 0])  # 5 is still queued; 99 and -1 are no chunks

    assert sender.chunks_resent == 2
    assert sender.next_chunks(16) == [4, 5, 6, 2, 0]


# -- the receiver ------------------------------------------------------------------------------

PARAMS = ota.UpdateParams(fast=True, chunk_bytes=4, file_bytes=10)  # 3 chunks, the last 2 bytes


def chunk_info(data: bytes, index: int | None) -> ota.ChunkInfo:
    return ota.ChunkInfo(ota.crc32(data), index, data)


def test_slow_chunks_go_where_the_device_counter_says() -> None:
    receiver = UpdateReceiver(PARAMS, fast=False)

    assert receiver.place(chunk_info(b"abcd", 2)) == 0  # an index is not read in slow mode
    receiver.store(0, b"abcd")
    assert receiver.place(chunk_info(b"efgh", None)) == 1
    receiver.store(1, b"efgh")
    receiver.store(2, b"ij\x00\x00")

    assert receiver.place(chunk_info(b"more", None)) is None  # past the last chunk
    assert (receiver.complete, receiver.image(), receiver.received_bytes) == (
        True,
        b"abcdefghij",
        10,
    )


def test_fast_chunks_go_to_their_index_once() -> None:
    receiver = UpdateReceiver(PARAMS, fast=True)

    assert receiver.place(chunk_info(b"ij\x00\x00", 2)) == 2
    receiver.store(2, b"ij\x00\x00")
    assert receiver.place(chunk_info(b"abcd", 0)) == 0
    receiver.store(0, b"abcd" + b"overflow")  # no more than one chunk is written

    assert receiver.place(chunk_info(b"ij\x00\x00", 2)) is None  # a duplicate
    assert receiver.place(chunk_info(b"zzzz", 3)) is None  # no chunk 3
    assert (receiver.missing(), receiver.next_index) == ([1], 0)
    assert receiver.image() == b"abcd" + bytes(4) + b"ij"


def test_missing_lists_at_most_40_by_default() -> None:
    # §4.14: ChunkMissed carries up to 40 indices on a Photon.
    receiver = UpdateReceiver(ota.UpdateParams(True, 1, 100), fast=True)

    assert receiver.missing() == list(range(40))


@given(st.integers(1, 2000), st.integers(1, 64), st.sets(st.integers(0, 200)), st.booleans())
def test_received_bytes_counts_the_file_bytes_the_stored_chunks_cover(
    file_bytes: int, chunk_bytes: int, stored: set[int], fast: bool
) -> None:
    params = ota.UpdateParams(fast=fast, chunk_bytes=chunk_bytes, file_bytes=file_bytes)
    receiver = UpdateReceiver(params, fast=fast)
    kept = {index for index in stored if index < params.chunk_count}
    for index in kept:
        receiver.store(index, bytes(chunk_bytes))

    covered = {
        byte for index in kept for byte in range(index * chunk_bytes, (index + 1) * chunk_bytes)
    }
    assert receiver.received_bytes == len(covered & set(range(file_bytes)))
