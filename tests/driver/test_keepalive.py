"""driver/keepalive.py: a ping after silence, a verdict after an unanswered ping."""

from __future__ import annotations

from cyan.driver import Driver, Keepalive, TimerGroup, Timers
from cyan.protocol import ProtocolError
from cyan.protocol.events import Event
from tests.driver.test_timers import FakeClock
from tests.system import BytesCore


class NoHandler:
    def connected(self, driver: Driver) -> None:
        pass

    def event_received(self, event: Event) -> None:
        pass

    def failed(self, error: ProtocolError) -> None:
        pass

    def closed(self, exc: Exception | None) -> None:
        pass


class Peer:
    """A keepalive on a fake clock, with the pings it sent and whether it gave up."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.timers = Timers(self.clock)
        self.group = TimerGroup(self.timers)
        self.driver = Driver(BytesCore(), NoHandler(), clock=self.clock)
        self.pings: list[float] = []
        self.silent_at: list[float] = []
        self.keepalive = Keepalive(
            self.group,
            self.driver,
            lambda: self.pings.append(self.clock.now),
            lambda: self.silent_at.append(self.clock.now),
            idle_s=10,
            timeout_s=3,
        )

    def at(self, now: float) -> None:
        self.clock.now = now
        self.timers.run_due()

    def hears(self, now: float) -> None:
        self.clock.now = now
        self.driver.last_received = now


def test_a_quiet_peer_is_pinged_after_idle_s_and_given_up_after_timeout_s() -> None:
    peer = Peer()
    peer.keepalive.start()
    peer.at(109.9)
    assert peer.pings == []
    peer.at(110)
    assert peer.pings == [110]
    peer.at(112.9)
    assert peer.silent_at == []
    peer.at(113)
    assert peer.silent_at == [113]


def test_anything_heard_moves_the_ping_and_answers_it() -> None:
    peer = Peer()
    peer.keepalive.start()
    peer.hears(105)
    peer.at(110)  # heard 5 s ago: not yet
    assert peer.pings == []
    peer.at(115)
    assert peer.pings == [115]
    peer.hears(116)  # the answer
    peer.at(118)
    assert peer.silent_at == []
    peer.at(126)  # quiet again for 10 s since 116
    assert peer.pings == [115, 126]
    assert peer.silent_at == []


def test_nothing_fires_once_the_group_is_cancelled() -> None:
    peer = Peer()
    peer.keepalive.start()
    peer.group.cancel()
    peer.at(1000)
    peer.keepalive.start()
    peer.at(2000)
    assert peer.pings == []
    assert peer.silent_at == []
