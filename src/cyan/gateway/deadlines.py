"""A device session's timers on the process's one heap (driver/timers.py): the handshake
deadline, the keepalive and the describes asked again.

None of them is touched per frame: each looks at the clock when it fires and goes back
on the heap if the device spoke meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyan.driver import Keepalive, TimerGroup, Timers
from cyan.protocol import ProtocolError, Stage, messages

if TYPE_CHECKING:
    from cyan.gateway.session import DeviceSession
    from cyan.settings import GatewaySettings

# A device that never describes itself is asked again at these multiples of
# describe_again_s after it connects: its setup() may be slow to register.
DESCRIBE_AGAIN_FACTORS = (1, 5, 30)


class SessionDeadlines:
    __slots__ = ("_group", "_keepalive", "_session", "_settings")

    def __init__(self, session: DeviceSession, timers: Timers, settings: GatewaySettings) -> None:
        self._session = session
        self._settings = settings
        self._group = TimerGroup(timers)
        self._keepalive = Keepalive(
            self._group,
            session.driver,
            session.connection.ping,
            self._silent,
            idle_s=settings.idle_ping_s,
            timeout_s=settings.ping_timeout_s,
        )

    def connected(self) -> None:
        self._group.at(self._settings.handshake_timeout_s, self._handshake_due)

    def online(self, describe_again: bool) -> None:
        self._keepalive.start()
        if describe_again:
            for factor in DESCRIBE_AGAIN_FACTORS:
                self._group.at(self._settings.describe_again_s * factor, self._describe_due)

    def cancel(self) -> None:
        self._group.cancel()

    @property
    def pings_answered(self) -> int:
        return self._keepalive.answered

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

    def _silent(self) -> None:
        settings = self._settings
        if self._session.is_online:
            self._session.fail(
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
