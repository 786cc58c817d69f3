"""driver/timers.py: one heap of deadlines, run from the loop."""

from __future__ import annotations

import asyncio
import functools
import gc
import weakref

from cyan.driver import Timers
from cyan.driver.timers import SWEEP_CANCELLED_AT


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_due_callbacks_run_in_deadline_order_once() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    ran: list[str] = []
    timers.call_at(103, lambda: ran.append("c"))
    timers.call_at(101, lambda: ran.append("a"))
    timers.call_later(2, lambda: ran.append("b"))

    assert timers.run_due() == 0
    clock.now = 102.5
    assert timers.run_due() == 2
    clock.now = 200
    assert timers.run_due() == 1
    assert timers.run_due() == 0
    assert ran == ["a", "b", "c"]


def test_a_cancelled_timer_never_runs() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    ran: list[int] = []
    timer = timers.call_later(1, lambda: ran.append(1))
    timer.cancel()
    clock.now += 5
    assert timers.run_due() == 0
    assert ran == []


class Owner:
    """Stands for a connection: what a timer's bound method keeps alive."""

    def fire(self) -> None:
        raise AssertionError("a cancelled timer ran")


def test_a_cancelled_timer_lets_go_of_its_callback_at_once() -> None:
    """Not when it would have fallen due: closed connections must not wait for their
    deadlines to be freed."""
    timers = Timers(FakeClock())
    owner = Owner()
    alive = weakref.ref(owner)
    timers.call_later(3600, owner.fire).cancel()
    del owner
    gc.collect()
    assert alive() is None
    assert len(timers) == 1  # the empty entry waits in the heap, for now


def test_cancelled_entries_are_swept_once_they_are_half_the_heap() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    ran: list[int] = []
    for index in range(SWEEP_CANCELLED_AT):
        timers.call_later(10 + index, functools.partial(ran.append, index))
    doomed = [timers.call_later(5, Owner().fire) for _ in range(SWEEP_CANCELLED_AT + 1)]
    for timer in doomed[:-1]:
        timer.cancel()
    assert len(timers) == 2 * SWEEP_CANCELLED_AT + 1  # not yet half: kept
    doomed[-1].cancel()
    assert len(timers) == SWEEP_CANCELLED_AT
    clock.now += 10 + SWEEP_CANCELLED_AT
    assert timers.run_due() == SWEEP_CANCELLED_AT
    assert ran == list(range(SWEEP_CANCELLED_AT))
    assert len(timers) == 0


def test_a_callback_may_schedule_itself_again() -> None:
    clock = FakeClock()
    timers = Timers(clock)
    fired: list[float] = []

    def again() -> None:
        fired.append(clock.now)
        if len(fired) < 3:
            timers.call_later(10, again)

    timers.call_later(10, again)
    for _ in range(5):
        clock.now += 10
        timers.run_due()
    assert fired == [110, 120, 130]
    assert len(timers) == 0


async def test_the_loop_runs_them_with_one_armed_handle() -> None:
    timers = Timers()
    done = asyncio.Event()
    order: list[int] = []
    timers.call_later(0.02, lambda: order.append(2))
    timers.call_later(0.01, lambda: order.append(1))
    timers.call_later(0.03, done.set)

    await asyncio.wait_for(done.wait(), 5)

    assert order == [1, 2]
    assert len(timers) == 0


def test_every_wake_up_on_uvloop_finds_a_deadline_due() -> None:
    # uvloop's clock counts whole milliseconds and may wake a little before a deadline;
    # a heap that re-arms then spins (it woke about 48 times per callback).
    import random

    import uvloop

    async def spread() -> tuple[int, int]:
        timers = Timers()
        done = asyncio.Event()
        ran = [0]
        count = 300

        def one() -> None:
            ran[0] += 1
            if ran[0] == count:
                done.set()

        rng = random.Random(7)
        for _ in range(count):
            timers.call_later(rng.uniform(0.01, 0.5), one)
        await asyncio.wait_for(done.wait(), 30)
        return ran[0], timers.wakeups

    ran, wakeups = uvloop.run(spread())
    assert ran == 300
    assert wakeups <= ran
