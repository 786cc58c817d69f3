"""A device session's timers on the process's one heap (driver/timers.py): the handshake
deadline, the keepalive and the describes asked again.

None of them is touched per frame: each looks at the clock when it fires and goes back
on the heap if the device spoke meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cyan.driver import Timer, Timers
from cyan.protocol import ProtocolError, Stage, messages

if TYPE_CHECKING:
    from cyan.gateway.session import DeviceSession
    from cyan.settings import GatewaySettings

# A device that never describes itself is asked again at these multiples of
# describe_again_s after it connects: its setup() may be slow to register.
DESCRIBE_AGAIN_FACTORS = (1, 5, 30)


class SessionDeadlines:
    __slots__ = ("_pending", "_ping_sent_at", "_session", "_settings", "_timers")

    def __init__(self, session: DeviceSession, timers: Timers, settings: GatewaySettings) -> None:
        self._session = session
        self._timers = timers
        self._settings = settings
        self._pending: list[Timer] = []
        self._ping_sent_at: float | None = None

    def connected(self) -> None:
        self._at(self._settings.handshake_timeout_s, self._handshake_due)

    def online(self, describe_again: bool) -> None:
        self._at(self._settings.idle_ping_s, self._keepalive_due)
        if describe_again:
            for factor in DESCRIBE_AGAIN_FACTORS:
                self._at(self._settings.describe_again_s * factor, self._describe_due)

    def cancel(self) -> None:
        for timer in self._pending:
            timer.cancel()
        self._pending.clear()

    def _at(self, delay_s: float, callback: Callable[[], None]) -> None:
        self._pending = [t for t in self._pending if not t.cancelled]
        self._pending.append(self._timers.call_later(delay_s, callback))

    # -- when they fire -------------------------------------------------------------------

    def _handshake_due(self) -> None:
        session = self._session
        if session.is_online or session.driver.closing:
            return
        limit = self._settings.handshake_timeout_s
        connection = session.connection
        state = connection.handshake_state.value
        waiting = "the device's Hello" if connection.established else state
        session.fail(
            ProtocolError(
                Stage.TIMEOUT,
                f"handshake not finished within {limit:g} s (stalled waiting in {waiting})",
                device_id=session.device_id,
            )
        )

    def _keepalive_due(self) -> None:
        session, settings = self._session, self._settings
        if not session.is_online:
            return
        now = self._timers.clock()
        quiet_since = session.driver.last_received
        if now - quiet_since < settings.idle_ping_s:
            self._at(quiet_since + settings.idle_ping_s - now, self._keepalive_due)
            return
        self._ping_sent_at = now
        session.driver.drive(session.connection.ping)
        self._at(settings.ping_timeout_s, self._ping_due)

    def _ping_due(self) -> None:
        session, settings = self._session, self._settings
        if not session.is_online or self._ping_sent_at is None:
            return
        if session.driver.last_received >= self._ping_sent_at:  # it answered (or spoke)
            self._ping_sent_at = None
            self._keepalive_due()
            return
        session.fail(
            ProtocolError(
                Stage.KEEPALIVE_TIMEOUT,
                f"no answer to our ping within {settings.ping_timeout_s:g} s "
                f"after {settings.idle_ping_s:g} s of silence",
            )
        )

    def _describe_due(self) -> None:
        session = self._session
        if session.is_online:
            session.driver.drive(
                session.connection.request_describe, messages.DescribeFlags.APPLICATION
            )
