"""Open event streams end when their token is revoked or their device changes hands
(api/stream_guard.py), whether the change came through this API or straight to the store,
as `cyan token revoke` and `cyan device add --owner` in another process make it."""

from __future__ import annotations

import asyncio

import httpx

from cyan.bus import EventBus
from cyan.cloud.router import Router
from cyan.store import Store
from tests.api.conftest import DEVICE_A, Caller, FakeLink
from tests.api.test_sse import device_event, next_event, open_stream, publish
from tests.sse import SseReader
from tests.system import eventually

# A failure bound: a stream the guard misses would stay open for ever.
END_BOUND_S = 10.0


async def ends(reader: SseReader) -> bool:
    """True once the stream ends; events and keep-alives before the end are skipped."""
    async with asyncio.timeout(END_BOUND_S):
        while await reader.next_line() is not None:
            pass
    return True


async def test_a_token_revoked_through_the_api_ends_its_streams_and_no_others(
    http: httpx.AsyncClient, alice: Caller, bob: Caller, store: Store
) -> None:
    second = Caller(alice.user, await store.tokens.create(alice.user.id))
    async with (
        open_stream(http, "/v1/devices/events", alice) as revoked,
        open_stream(http, "/v1/devices/events", second) as kept,
        open_stream(http, "/v1/events", bob) as bobs,
    ):
        reply = await http.delete(f"/v1/access_tokens/{alice.token}")
        assert reply.json() == {"ok": True}
        assert await ends(revoked)
        await publish(http, second, name="still-here")
        assert (await next_event(kept)).name == "still-here"
        await publish(http, bob, name="bob-too")
        assert (await next_event(bobs)).name == "bob-too"


async def test_a_token_revoked_in_the_store_by_another_process_ends_its_stream(
    http: httpx.AsyncClient, alice: Caller, store: Store
) -> None:
    async with open_stream(http, f"/v1/devices/{DEVICE_A}/events", alice) as stream:
        assert await store.tokens.revoke(alice.token)
        assert await ends(stream)


async def test_a_device_that_changes_hands_leaves_its_old_owners_streams(
    http: httpx.AsyncClient,
    alice: Caller,
    bob: Caller,
    store: Store,
    router: Router,
    bus: EventBus,
    link_a: FakeLink,
) -> None:
    """The gateway stamps a device's events with the owner it knows (here the fake link's);
    the store changes under it, as an admin's `cyan device add --owner` would."""
    link_a.owner_id = alice.user.id
    async with (
        open_stream(http, f"/v1/devices/{DEVICE_A}/events", alice, bus) as one_device,
        open_stream(http, "/v1/devices/events", alice, bus) as alices,
        open_stream(http, "/v1/devices/events", bob, bus) as bobs,
    ):
        router.publish(device_event("before", DEVICE_A, link_a.owner_id))
        assert (await next_event(alices)).name == "before"

        assert await store.devices.release(DEVICE_A, alice.user.id)
        await store.devices.claim(DEVICE_A, bob.user.id)
        assert await ends(one_device)
        # "before", stamped with the old owner, told the guard the link is behind.
        await eventually(lambda: link_a.owner_id == bob.user.id, END_BOUND_S, "the new owner")

        router.publish(device_event("after", DEVICE_A, link_a.owner_id))
        await publish(http, alice, name="alices-own")
        assert (await next_event(alices)).name == "alices-own"  # and not "after"
        assert (await next_event(bobs)).name == "after"
