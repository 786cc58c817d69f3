"""What the router asks of a connected device: requests waiting for answers by token,
describes asked for on demand, and events delivered where the device subscribed.

``DeviceSession`` (session.py) holds one ``DeviceRequests``: the session owns the
connection's life, this object the requests riding on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from cyan.bus.events import CloudEvent
from cyan.cloud.errors import (
    CloudError,
    DeviceBusy,
    DeviceOffline,
    DeviceTimedOut,
    VariableNotFound,
)
from cyan.cloud.types import VariableValue
from cyan.protocol import NoTokenFree, ProtocolError, messages, payloads
from cyan.protocol.coap import CoapCode, format_code
from cyan.protocol.events import ResponseReceived

if TYPE_CHECKING:
    from cyan.gateway.session import DeviceSession

log = logging.getLogger("cyan.gateway")

_TYPE_CODES = {name: code for code, name in payloads.VARIABLE_TYPE_NAMES.items()}
# On-demand describes (a call or read naming what the last describe lacked): a burst of
# this many, then one more every DESCRIBE_REFILL_S, so a client naming unknown functions
# in a loop costs the device a describe now and then, not one per request.
DESCRIBE_BURST = 4
DESCRIBE_REFILL_S = 15.0


class DeviceRequests:
    __slots__ = (
        "_budget",
        "_budget_at",
        "_describing",
        "_session",
        "_waiters",
        "oversized_events",
        "refused_subscriptions",
        "subscriptions",
    )

    def __init__(self, session: DeviceSession) -> None:
        self._session = session
        self._waiters: dict[int, asyncio.Future[ResponseReceived]] = {}
        # In the order they came (a dict for its order and its O(1) look-up).
        self.subscriptions: dict[messages.SubscriptionInfo, None] = {}
        # Subscriptions over the cap (settings.gateway.max_subscriptions), not kept.
        self.refused_subscriptions = 0
        self._describing: asyncio.Future[None] | None = None
        self._budget = float(DESCRIBE_BURST)
        self._budget_at = session.opened_at
        # Events not sent because they were bigger than the device takes.
        self.oversized_events = 0

    # -- what the session reports ---------------------------------------------------------

    def answered(self, event: ResponseReceived) -> None:
        future = self._waiters.pop(event.token, None)
        if future is not None and not future.done():
            future.set_result(event)

    def connection_lost(self) -> None:
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(DeviceOffline("Device went offline"))
        self._waiters.clear()

    # -- requests -------------------------------------------------------------------------

    async def request(
        self, start: Callable[..., int], timeout_s: float, *args: object
    ) -> ResponseReceived:
        """Send a request (``start`` returns its token) and wait for its answer."""
        session = self._session
        if not session.is_online:
            raise DeviceOffline("Device is offline")
        try:
            token = start(*args)
        except NoTokenFree as exc:
            raise DeviceBusy("Too many requests are waiting for this device") from exc
        future: asyncio.Future[ResponseReceived] = asyncio.get_running_loop().create_future()
        self._waiters[token] = future
        session.flush()
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise DeviceTimedOut("Timed out.") from None
        finally:
            self._waiters.pop(token, None)
            session.connection.forget(token)

    async def call_function(self, name: str, argument: str, timeout_s: float) -> int:
        connection = self._session.connection
        reply = await self.request(connection.call_function, timeout_s, name, argument)
        if reply.code != CoapCode.CHANGED:
            raise CloudError(f"The device refused the call ({format_code(reply.code)})")
        try:
            return payloads.decode_function_result(reply.payload)
        except ProtocolError as exc:
            raise CloudError(f"The device answered the call with {exc.reason}") from exc

    async def get_variable(self, name: str, timeout_s: float) -> VariableValue:
        session = self._session
        kind = session.live.variables.get(name, "")
        type_code = _TYPE_CODES.get(kind, payloads.VARIABLE_STRING)
        reply = await self.request(session.connection.request_variable, timeout_s, name)
        if reply.code == CoapCode.NOT_FOUND:
            raise VariableNotFound("Variable not found")
        if reply.code != CoapCode.CONTENT:
            raise CloudError(f"The device refused the variable read ({format_code(reply.code)})")
        try:
            return payloads.decode_variable(type_code, reply.payload)
        except ProtocolError as exc:
            raise CloudError(f"The device answered with {exc.reason}") from exc

    async def describe_again(self, timeout_s: float) -> None:
        """Ask for the application describe now, unless one is on its way or the budget is
        spent; callers at the same time share one describe."""
        if self._describing is None and self._take_budget():
            self._describing = asyncio.ensure_future(self._ask_describe(timeout_s))
        if self._describing is not None:
            # Shielded: one caller's timeout or disconnect must not cancel it for the rest.
            await asyncio.shield(self._describing)

    def _take_budget(self) -> bool:
        now = self._session.monotonic()
        refill = (now - self._budget_at) / DESCRIBE_REFILL_S
        self._budget = min(DESCRIBE_BURST, self._budget + refill)
        self._budget_at = now
        if self._budget < 1:
            return False
        self._budget -= 1
        return True

    async def _ask_describe(self, timeout_s: float) -> None:
        session = self._session
        try:
            flags = messages.DescribeFlags.APPLICATION
            await self.request(session.connection.request_describe, timeout_s, flags)
        except CloudError as exc:  # offline or timed out: answer with what is known
            log.info("device %s did not describe itself again: %s", session.device_id, exc)
        finally:
            self._describing = None

    # -- events to the device -------------------------------------------------------------

    def deliver_event(self, event: CloudEvent) -> None:
        session = self._session
        if not session.is_online or not self._matches(event):
            return
        limits = session.live.limits
        data_bytes = len(event.data.encode()) if event.data is not None else 0
        name_bytes = len(event.name.encode())
        if data_bytes > limits.event_data_bytes or name_bytes > limits.event_name_bytes:
            # Bigger than its release's buffers: it would be cut short, or crash the firmware
            # (protocol/limits.py). Its other subscribers still get it.
            if not self.oversized_events:
                log.info(
                    "device %s (%s) takes events of at most %d bytes of data: event %s "
                    "(%d bytes) and any larger ones are not sent to it",
                    session.device_id,
                    limits.basis,
                    limits.event_data_bytes,
                    event.name,
                    data_bytes,
                )
            self.oversized_events += 1
            return
        try:
            session.connection.send_event(
                messages.EventInfo(
                    event.name,
                    event.data.encode() if event.data is not None else None,
                    event.ttl,
                    event.public,
                )
            )
        except ProtocolError as error:
            session.fail(error)
            return
        session.flush()

    def _matches(self, event: CloudEvent) -> bool:
        owner_id = self._session.owner_id
        for sub in self.subscriptions:
            if not event.name.startswith(sub.prefix):
                continue
            if sub.device_id is not None and sub.device_id != event.device_id:
                continue
            if sub.my_devices:
                if owner_id is not None and event.owner_id == owner_id:
                    return True
            elif event.public:
                return True
        return False
