"""Event streams end when their right to the events ends.

An SSE stream is authorised once, when it opens, and may stay open for days. A token can
be revoked meanwhile (by the API, by `cyan token revoke` in another process, on another
node) and a device can change hands (`particle device remove`, `cyan device add --owner`).
Once a second or so the guard checks every open stream against the store in two queries,
whoever changed what and wherever:

- a stream whose token is no longer live is ended;
- a stream of one device (/v1/devices/ID/events) whose device is no longer the caller's
  is ended;
- a device whose events carried an owner the store no longer has is told its owner
  (``Router.registration_changed``), so its next events go to the new owner's streams
  only: that is how the caller's other streams stop carrying a device they lost.

A revoke through this API ends the token's streams at once (``revoked``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from cyan.bus import Scope, Subscription
from cyan.bus.events import CloudEvent
from cyan.cloud.router import Router
from cyan.store import Store

log = logging.getLogger(__name__)

TOKEN_ENDED = "its access token was revoked or has expired"
DEVICE_LOST = "the device is no longer the caller's"


@dataclass(eq=False, slots=True)
class WatchedStream:
    token: str
    subscription: Subscription


class StreamGuard:
    def __init__(self, store: Store, router: Router, check_s: float) -> None:
        self._store = store
        self._router = router
        self.check_s = check_s
        self._streams: set[WatchedStream] = set()
        # device id -> the owner its latest event carried, since the last check
        self._carried: dict[str, int | None] = {}
        self._task: asyncio.Task[None] | None = None
        router.add_listener(self._heard)

    @property
    def watched(self) -> int:
        return len(self._streams)

    def watch(self, token: str, subscription: Subscription) -> WatchedStream:
        stream = WatchedStream(token, subscription)
        self._streams.add(stream)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return stream

    def unwatch(self, stream: WatchedStream) -> None:
        self._streams.discard(stream)

    def revoked(self, token: str) -> None:
        for stream in list(self._streams):
            if stream.token == token:
                stream.subscription.drop(TOKEN_ENDED)

    def _heard(self, event: CloudEvent) -> None:
        if event.device_id is not None and self._streams:
            self._carried[event.device_id.lower()] = event.owner_id

    async def _run(self) -> None:
        try:
            while self._streams:
                await asyncio.sleep(self.check_s)
                try:
                    await self.check()
                except Exception:
                    # The store may be restarting; the next round checks again.
                    log.warning("could not check open event streams", exc_info=True)
        finally:
            self._task = None

    async def check(self) -> None:
        """One round: end what must end, tell the router of owners that changed."""
        streams = list(self._streams)
        carried, self._carried = self._carried, {}
        if not streams:
            return
        live = await self._store.tokens.live_among({stream.token for stream in streams})
        one_device = {
            stream.subscription.device_id
            for stream in streams
            if stream.subscription.scope is Scope.DEVICE and stream.subscription.device_id
        }
        owners = await self._store.devices.owners(one_device | carried.keys())
        for device_id, owner_id in carried.items():
            if device_id in owners and owners[device_id] != owner_id:
                self._router.registration_changed(device_id, owners[device_id])
        for stream in streams:
            subscription = stream.subscription
            if stream.token not in live:
                subscription.drop(TOKEN_ENDED)
            elif (
                subscription.scope is Scope.DEVICE
                and owners.get(subscription.device_id or "") != subscription.owner_id
            ):
                subscription.drop(DEVICE_LOST)
