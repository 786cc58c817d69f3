"""What the router asks of a connected device: function calls and variables it waits for,
and events to deliver where the device subscribed.

Mixed into ``DeviceSession`` (session.py), which owns the connection and its waiters;
kept apart so that the session file holds the connection's life and this one the
requests riding on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from cyan.cloud.errors import (
    CloudError,
    DeviceBusy,
    DeviceOffline,
    DeviceTimedOut,
    VariableNotFound,
)
from cyan.cloud.types import VARIABLE_TYPE_NAMES, CloudEvent, LiveDevice, VariableValue
from cyan.protocol import NoTokenFree, ProtocolError, ServerConnection, messages, payloads
from cyan.protocol.coap import CoapCode, format_code
from cyan.protocol.events import ResponseReceived

_TYPE_CODES = {name: code for code, name in VARIABLE_TYPE_NAMES.items()}


class DeviceRequests:
    __slots__ = ()

    # Provided by DeviceSession.
    connection: ServerConnection
    owner_id: int | None
    _waiters: dict[int, asyncio.Future[ResponseReceived]]
    _subscriptions: list[messages.SubscriptionInfo]

    @property
    def is_online(self) -> bool:
        raise NotImplementedError

    @property
    def live(self) -> LiveDevice:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def fail(self, error: ProtocolError) -> None:
        raise NotImplementedError

    async def _request(
        self, start: Callable[..., int], timeout_s: float, *args: object
    ) -> ResponseReceived:
        if not self.is_online:
            raise DeviceOffline("Device is offline")
        try:
            token = start(*args)
        except NoTokenFree as exc:
            raise DeviceBusy("Too many requests are waiting for this device") from exc
        future: asyncio.Future[ResponseReceived] = asyncio.get_running_loop().create_future()
        self._waiters[token] = future
        self._flush()
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise DeviceTimedOut("Timed out.") from None
        finally:
            self._waiters.pop(token, None)
            self.connection.forget(token)

    async def call_function(self, name: str, argument: str, timeout_s: float) -> int:
        reply = await self._request(self.connection.call_function, timeout_s, name, argument)
        if reply.code != CoapCode.CHANGED:
            raise CloudError(f"The device refused the call ({format_code(reply.code)})")
        try:
            return payloads.decode_function_result(reply.payload)
        except ProtocolError as exc:
            raise CloudError(f"The device answered the call with {exc.reason}") from exc

    async def get_variable(self, name: str, timeout_s: float) -> VariableValue:
        type_code = _TYPE_CODES.get(self.live.variables.get(name, ""), payloads.VARIABLE_STRING)
        reply = await self._request(self.connection.request_variable, timeout_s, name)
        if reply.code == CoapCode.NOT_FOUND:
            raise VariableNotFound("Variable not found")
        if reply.code != CoapCode.CONTENT:
            raise CloudError(f"The device refused the variable read ({format_code(reply.code)})")
        try:
            return payloads.decode_variable(type_code, reply.payload)
        except ProtocolError as exc:
            raise CloudError(f"The device answered with {exc.reason}") from exc

    def deliver_event(self, event: CloudEvent) -> None:
        if not self.is_online or not self._matches(event):
            return
        try:
            self.connection.send_event(
                messages.EventInfo(
                    event.name,
                    event.data.encode() if event.data is not None else None,
                    event.ttl,
                    event.public,
                )
            )
        except ProtocolError as error:
            self.fail(error)
            return
        self._flush()

    def _matches(self, event: CloudEvent) -> bool:
        for sub in self._subscriptions:
            if not event.name.startswith(sub.prefix):
                continue
            if sub.device_id is not None and sub.device_id != event.device_id:
                continue
            if sub.my_devices:
                if self.owner_id is not None and event.owner_id == self.owner_id:
                    return True
            elif event.public:
                return True
        return False
