"""Which events a device may publish: Particle's rate and Device OS's sizes; and how many
connections one address may have in the handshake at once.

Particle lets a device publish about one event a second, with bursts of up to four
(docs, Particle.publish()); Device OS counts the same on the device, so firmware that
keeps to the rule never sees a drop here. Firmware that ignores it (or a modified
device) would otherwise push every event it can into every subscriber. System events
(``spark/…``, ``particle/…``: status, claim codes, OTA chunk sizes) are the cloud's own
conversation with the device and are not counted.

A device that keeps publishing past the rate (``FLOOD_DROPS`` dropped in a row) floods:
dropping its events one by one would still spend the loop on every frame it can send,
so its socket is not read until the rate allows an event again (``EventGate.hold_s``).
TCP then pushes back on the sender; what it sends meanwhile waits in the kernel. So is
a device that keeps subscribing past its cap.

Sizes: a name of at most 64 bytes and data within what the device's own Device OS allows
(protocol/limits.py), as the API holds published events to.
"""

from __future__ import annotations

from enum import Enum

from cyan.cloud.router import SYSTEM_EVENT_PREFIXES
from cyan.protocol import messages
from cyan.protocol.limits import DeviceLimits
from cyan.rates import TokenBucket
from cyan.settings import GatewaySettings


class Refusal(Enum):
    OVER_RATE = "over the rate limit"
    TOO_BIG = "too big"


def refusal(
    info: messages.EventInfo,
    limits: DeviceLimits,
    bucket: TokenBucket | None,
    now: float,
) -> Refusal | None:
    """Why ``info`` is dropped, or None to publish it. ``bucket`` None: no rate limit."""
    if len(info.name.encode()) > limits.event_name_bytes or (
        info.data is not None and len(info.data) > limits.event_data_bytes
    ):
        return Refusal.TOO_BIG
    if bucket is None or info.name.startswith(SYSTEM_EVENT_PREFIXES):
        return None
    return None if bucket.take(now) else Refusal.OVER_RATE


def event_bucket(settings: GatewaySettings, now: float) -> TokenBucket | None:
    if settings.events_per_s <= 0:
        return None
    return TokenBucket(settings.event_burst, settings.events_per_s, now)


# Twice a burst: firmware a little over the rate loses events but is never held.
FLOOD_DROPS = 8
# At least this long a hold, so a flood costs a few batches a second, whatever the rate.
MIN_HOLD_S = 0.25
# A device that keeps subscribing past gateway.max_subscriptions (FLOOD_DROPS refused)
# is read a batch of frames a second (DeviceSession._subscribe).
FLOOD_HOLD_S = 1.0


class EventGate:
    """One connection's event admission: its rate bucket, and whether it floods."""

    __slots__ = ("_bucket", "_over_rate_in_a_row")

    def __init__(self, settings: GatewaySettings, now: float) -> None:
        self._bucket = event_bucket(settings, now)
        self._over_rate_in_a_row = 0

    def refusal(self, info: messages.EventInfo, limits: DeviceLimits, now: float) -> Refusal | None:
        why = refusal(info, limits, self._bucket, now)
        if why is Refusal.OVER_RATE:
            self._over_rate_in_a_row += 1
        elif why is None:
            self._over_rate_in_a_row = 0
        return why

    def hold_s(self, now: float) -> float:
        """Seconds not to read this device's socket: 0 unless it floods."""
        if self._bucket is None or self._over_rate_in_a_row < FLOOD_DROPS:
            return 0.0
        return max(MIN_HOLD_S, self._bucket.wait_s(now))


class HandshakesPerAddress:
    """Connections from each remote address still in the handshake, held to ``most`` (0:
    no bound), so one address cannot hold every handshake the server can run."""

    def __init__(self, most: int) -> None:
        self.most = most
        self._counts: dict[str, int] = {}

    def start(self, remote_ip: str) -> bool:
        """Count one more from ``remote_ip``; False (not counted) if it has ``most``."""
        count = self._counts.get(remote_ip, 0)
        if 0 < self.most <= count:
            return False
        self._counts[remote_ip] = count + 1
        return True

    def end(self, remote_ip: str) -> None:
        count = self._counts.pop(remote_ip, 1) - 1
        if count > 0:
            self._counts[remote_ip] = count

    def count(self, remote_ip: str) -> int:
        return self._counts.get(remote_ip, 0)
