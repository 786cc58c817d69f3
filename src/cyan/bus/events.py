"""What the bus carries: one published event, from a device or from the API.

Here, below the router and the API that both use it, so that the bus depends on nothing
above it (design.md: nothing below imports from above).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One published event, from a device or from the API."""

    name: str
    data: str | None
    ttl: int
    public: bool
    published_at: datetime
    # 24-hex device id, or None for events published through the API.
    device_id: str | None
    # Owner of the publishing device or API user; private events reach only this user.
    owner_id: int | None
