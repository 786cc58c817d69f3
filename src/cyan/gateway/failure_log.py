"""Connection failures to the log, collapsed per remote address.

A scanner or a broken device can fail thousands of connections a minute; one line each
would let it grow the log without bound (40k bad connections wrote 20 MB). The first
failure from an address in an interval is logged whole, with its stage, reason and fix;
the rest in that interval are counted and said in one line when it ends. A failure at
another stage is news of its own (a scanner's nonces, then a real device's bad key), so
the windows are per address and stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("cyan.gateway")

# Addresses followed at once; past that the oldest is summed up early and let go, so that
# a flood from many addresses holds bounded memory.
MAX_ADDRESSES = 10_000


@dataclass(slots=True)
class _Window:
    opened: float
    repeats: int = 0
    last: str = ""  # the last repeat's reason


class FailureLog:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._windows: dict[tuple[str, str], _Window] = {}

    def failed(
        self, remote_ip: str, stage: str, line: Callable[[], str], reason: str, now: float
    ) -> bool:
        """Log ``line()`` unless ``remote_ip`` failed at ``stage`` within the interval; then
        count it, keeping ``reason`` for the line that ends the interval. True if logged.
        The line is made only when it is logged: a scanner's repeats cost a count each."""
        key = (remote_ip, stage)
        window = self._windows.get(key)
        if window is not None and now - window.opened < self.interval_s:
            window.repeats += 1
            window.last = reason
            return False
        if window is not None:
            self._summarize(key, window, now)
        elif len(self._windows) >= MAX_ADDRESSES:
            oldest = next(iter(self._windows))
            self._summarize(oldest, self._windows.pop(oldest), now)
        self._windows.pop(key, None)
        self._windows[key] = _Window(now)  # at the end: the dict is oldest first
        log.warning("%s", line())
        return True

    def flush(self, now: float) -> None:
        """Say the counts of intervals that have ended (the gateway's sweep calls this)."""
        for key, window in list(self._windows.items()):
            if now - window.opened >= self.interval_s:
                self._summarize(key, window, now)
                del self._windows[key]

    @staticmethod
    def _summarize(key: tuple[str, str], window: _Window, now: float) -> None:
        if window.repeats:
            remote_ip, stage = key
            log.warning(
                "%d more connections from %s failed at stage %s in the last %.0f s (the last: %s)",
                window.repeats,
                remote_ip,
                stage,
                now - window.opened,
                window.last,
            )
