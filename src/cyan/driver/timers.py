"""One heap of deadlines for the whole process, with one loop timer armed at a time.

A connection's timers (handshake deadline, keepalive, heartbeat) are entries here, not a
task or a loop timer each, so a fleet of idle connections costs the loop one wake-up per
deadline that actually falls due. A deadline that moves (the keepalive, after every frame)
is not rescheduled per frame: its callback looks at the clock when it fires and
schedules itself again if it is early (``Timer`` callbacks decide, the heap never does).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

Clock = Callable[[], float]
# The coarsest event-loop clock in use (uvloop's: one millisecond).
LOOP_RESOLUTION_S = 0.001
# Cancelled entries are swept out of the heap once there are this many and they are half
# of it (asyncio's own rule for its timer handles).
SWEEP_CANCELLED_AT = 100


def _nothing() -> None:
    pass


class Timer:
    """One scheduled callback; ``cancel()`` drops it without touching the heap."""

    __slots__ = ("_timers", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None], timers: Timers) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._timers = timers

    def cancel(self) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        # The entry stays in the heap until it falls due or is swept; its callback (a
        # connection, through a bound method) must not stay with it. A scanner's closed
        # connections, each held until its 10 s handshake deadline, once kept about
        # 10,000 sessions alive and made each full garbage collection take 0.2 s.
        self.callback = _nothing
        self._timers.cancelled_one()


class Timers:
    """Deadlines on ``clock`` (monotonic seconds), run from the event loop."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._armed: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")
        self._cancelled = 0
        # How often the loop woke up for these timers (a benchmark's figure).
        self.wakeups = 0

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback, self)
        heapq.heappush(self._heap, (when, next(self._order), timer))
        if when < self._armed_for:
            self._arm()
        return timer

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.clock() + delay_s, callback)

    def run_due(self) -> int:
        """Run every callback that is due now; how many ran. The loop calls this itself."""
        ran = 0
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                self._cancelled -= 1
            else:
                timer.cancelled = True  # a timer runs once
                timer.callback()
                ran += 1
        return ran

    def cancelled_one(self) -> None:
        """A timer still in the heap was cancelled (``Timer.cancel``)."""
        self._cancelled += 1
        if self._cancelled >= SWEEP_CANCELLED_AT and 2 * self._cancelled > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0

    def _arm(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
            self._cancelled -= 1
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        if not self._heap:
            self._armed_for = float("inf")
            return
        self._armed_for = self._heap[0][0]
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # scheduled before a loop runs: armed by the next call_at
            self._armed_for = float("inf")
            return
        # uvloop keeps time in whole milliseconds and may wake up to 1 ms before the
        # deadline; nothing is due then, so the heap re-armed with a delay that rounds to
        # 0 and spun (about 48 wake-ups per callback, measured). Arming a millisecond late
        # makes every wake-up find its deadline due.
        delay = max(0.0, self._armed_for - self.clock()) + LOOP_RESOLUTION_S
        self._armed = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self.wakeups += 1
        self._armed = None
        self._armed_for = float("inf")
        try:
            self.run_due()
        finally:
            self._arm()


_per_loop: dict[asyncio.AbstractEventLoop, Timers] = {}


def process_timers() -> Timers:
    """The running loop's shared ``Timers`` (one per loop, made on first use)."""
    loop = asyncio.get_running_loop()
    timers = _per_loop.get(loop)
    if timers is None:
        for old in [other for other in _per_loop if other.is_closed()]:
            del _per_loop[old]
        timers = _per_loop[loop] = Timers()
    return timers
