"""Events between the cloud and its subscribers: the in-process bus (design.md).

A NATS bus for several nodes will offer the same interface.
"""

from __future__ import annotations

from cyan.bus.local import (
    DEFAULT_MAX_QUEUE,
    BusError,
    EventBus,
    Scope,
    Subscription,
    SubscriptionEnded,
)

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "BusError",
    "EventBus",
    "Scope",
    "Subscription",
    "SubscriptionEnded",
]
