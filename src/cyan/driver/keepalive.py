"""A connection's timers as one group on the process heap, and the keepalive both ends run.

The gateway and the virtual device keep a session alive the same way (protocol.md §4.9):
ping once nothing has arrived for ``idle_s``, and give up when nothing at all arrives
within ``timeout_s`` of the ping. Neither timer is touched per frame: each looks at the
driver's ``last_received`` when it fires and goes back on the heap if the peer spoke.
"""

from __future__ import annotations

from collections.abc import Callable

from cyan.driver.connection import Driver
from cyan.driver.timers import Timer, Timers


class TimerGroup:
    """The timers of one connection, cancelled together when it ends; none start after."""

    __slots__ = ("_pending", "ended", "timers")

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self._pending: list[Timer] = []
        self.ended = False

    def at(self, delay_s: float, callback: Callable[[], None]) -> None:
        if self.ended:
            return
        self._pending = [t for t in self._pending if not t.cancelled]
        self._pending.append(self.timers.call_later(delay_s, callback))

    def cancel(self) -> None:
        self.ended = True
        for timer in self._pending:
            timer.cancel()
        self._pending.clear()


class Keepalive:
    """``start()`` once the session is up; ``silent()`` is called if a ping goes unanswered.

    ``ping`` is the core's method that queues the ping; the driver writes it.
    """

    __slots__ = (
        "_driver",
        "_group",
        "_ping",
        "_sent_at",
        "answered",
        "idle_s",
        "silent",
        "timeout_s",
    )

    def __init__(
        self,
        group: TimerGroup,
        driver: Driver,
        ping: Callable[[], None],
        silent: Callable[[], None],
        *,
        idle_s: float,
        timeout_s: float,
    ) -> None:
        self._group = group
        self._driver = driver
        self._ping = ping
        self.silent = silent
        self.idle_s = idle_s
        self.timeout_s = timeout_s
        self._sent_at: float | None = None
        self.answered = 0  # pings the peer answered (or talked over) in time

    def start(self) -> None:
        self._group.at(self.idle_s, self._quiet_due)

    def _quiet_due(self) -> None:
        now = self._group.timers.clock()
        quiet_since = self._driver.last_received
        if now - quiet_since < self.idle_s:  # it spoke meanwhile: look again later
            self._group.at(quiet_since + self.idle_s - now, self._quiet_due)
            return
        self._sent_at = now
        self._driver.drive(self._ping)
        self._group.at(self.timeout_s, self._answer_due)

    def _answer_due(self) -> None:
        sent = self._sent_at
        if sent is None:
            return
        self._sent_at = None
        if self._driver.last_received >= sent:  # it answered, or said anything at all
            self.answered += 1
            self._quiet_due()
            return
        self.silent()
