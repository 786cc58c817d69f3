"""Which events a device may publish: Particle's rate and Device OS's sizes.

Particle lets a device publish about one event a second, with bursts of up to four
(docs, Particle.publish()); Device OS counts the same on the device, so firmware that
keeps to the rule never sees a drop here. Firmware that ignores it (or a modified
device) would otherwise push every event it can into every subscriber. System events
(``spark/…``, ``particle/…``: status, claim codes, OTA chunk sizes) are the cloud's own
conversation with the device and are not counted.

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
