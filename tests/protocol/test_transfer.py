"""protocol/transfer.py's state table: every (state, input) pair, as h2's tests do."""

from __future__ import annotations

import itertools

import pytest

from cyan.protocol.transfer import TRANSITIONS, UpdateInput, UpdateSender, UpdateState

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
