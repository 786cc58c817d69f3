"""A device connection at the cloud's boundary, by hand: what the gateway's ``DeviceSession``
offers the router (cloud.router.DeviceLink), with no sockets behind it.

The router and the flasher are the real ones in these tests; only the link is stood in for,
because the real one is a whole gateway (the gateway-backed tests use running_cloud).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from cyan.bus.events import CloudEvent
from cyan.cloud.types import FlashOptions, LiveDevice, UpdateProgress, VariableValue
from cyan.protocol.limits import MEDIUM, DeviceLimits
from cyan.protocol.transfer import UpdateState

DEVICE = "0123456789abcdef01234567"
OTHER = "89abcdef0123456789abcdef"
THIRD = "0123456789abcdef0123abcd"
AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def live_device(
    device_id: str = DEVICE,
    *,
    functions: tuple[str, ...] = ("led",),
    variables: dict[str, str] | None = None,
    limits: DeviceLimits = MEDIUM,
) -> LiveDevice:
    return LiveDevice(
        device_id=device_id,
        remote_ip="127.0.0.1",
        connected_at=AT,
        last_heard=AT,
        platform_id=6,
        product_id=6,
        product_firmware_version=1,
        functions=functions,
        variables={"temp": "double"} if variables is None else variables,
        limits=limits,
    )


def progress(state: UpdateState, sent: int, total: int, **more: object) -> UpdateProgress:
    base = UpdateProgress(state, sent, total, 0, True, None)
    return replace(base, **more)  # type: ignore[arg-type]


@dataclass
class FakeLink:
    """Records what reaches it; answers as a test sets it up."""

    live: LiveDevice
    # What ``describe_again`` learns (a function registered since the last describe).
    described_later: LiveDevice | None = None
    function_result: int = 1
    variable_value: VariableValue = 21.5
    describes: int = 0
    calls: list[tuple[str, str, float]] = field(default_factory=list)
    reads: list[tuple[str, float]] = field(default_factory=list)
    signals: list[tuple[bool, float]] = field(default_factory=list)
    delivered: list[CloudEvent] = field(default_factory=list)
    owners: list[int | None] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    # -- flash: reports ``reports`` in order, waits for ``release``, then ends with
    # ``outcome`` (raised) or returns.
    reports: list[UpdateProgress] = field(default_factory=list)
    outcome: BaseException | None = None
    flashes: list[tuple[bytes, FlashOptions]] = field(default_factory=list)
    flashing: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def call_function(self, name: str, argument: str, timeout_s: float) -> int:
        self.calls.append((name, argument, timeout_s))
        return self.function_result

    async def get_variable(self, name: str, timeout_s: float) -> VariableValue:
        self.reads.append((name, timeout_s))
        return self.variable_value

    async def signal(self, on: bool, timeout_s: float) -> None:
        self.signals.append((on, timeout_s))

    async def describe_again(self) -> LiveDevice:
        self.describes += 1
        if self.described_later is not None:
            self.live = self.described_later
        return self.live

    async def flash(
        self, data: bytes, options: FlashOptions, on_progress: Callable[[UpdateProgress], None]
    ) -> None:
        self.flashes.append((data, options))
        for report in self.reports:
            on_progress(report)
        self.flashing.set()
        await self.release.wait()
        if self.outcome is not None:
            raise self.outcome

    def deliver_event(self, event: CloudEvent) -> None:
        self.delivered.append(event)

    def set_owner(self, owner_id: int | None) -> None:
        self.owners.append(owner_id)

    def close(self, reason: str) -> None:
        self.closed.append(reason)
