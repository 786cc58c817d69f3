"""The Particle-compatible HTTP API as one FastAPI app.

``create_app`` only assembles: routes live in devices.py and events.py, auth in auth.py,
every error shape in errors.py. Wiring the router's events into the bus
(``router.add_listener(bus.publish)``) is the caller's job, done once where the router,
bus and gateway are assembled, so that no event is delivered twice.
"""

from __future__ import annotations

from fastapi import FastAPI

from cyan import __version__
from cyan.api import accounts, devices, diagnosis, events, manage
from cyan.api.auth import ApiContext, ServerIdentity
from cyan.api.body_limit import BodyLimitMiddleware
from cyan.api.errors import install_error_handlers
from cyan.api.hot import HotRoutes
from cyan.api.limits import ApiLimits, RequestLimitMiddleware
from cyan.api.stream_guard import StreamGuard
from cyan.bus import EventBus
from cyan.cloud.flash import Flasher
from cyan.cloud.router import Router
from cyan.settings import ApiSettings
from cyan.store import Store


def create_app(
    *,
    store: Store,
    router: Router,
    bus: EventBus,
    settings: ApiSettings,
    flasher: Flasher | None = None,
    server: ServerIdentity | None = None,
) -> FastAPI:
    app = FastAPI(
        title="Cyan",
        version=__version__,
        summary="A self-hosted, Particle Cloud API v1 compatible device cloud",
    )
    limits = ApiLimits(settings)
    context = app.state.cyan = ApiContext(
        store=store,
        router=router,
        bus=bus,
        settings=settings,
        streams=StreamGuard(store, router, settings.stream_check_s),
        limits=limits,
        flasher=flasher,
        server=server,
    )
    # Innermost of Cyan's layers: the limits, body caps and the internal-error answer
    # installed next wrap the hot routes as they wrap FastAPI's.
    app.add_middleware(HotRoutes, context=context)
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, before_auth_bytes=settings.max_body_before_auth_bytes)
    # Outermost: a client over its limit costs no body read, auth or routing.
    app.add_middleware(RequestLimitMiddleware, limits=limits)
    # Event routes first: /v1/devices/events and /v1/devices/:id/events must win over the
    # variable and function routes /v1/devices/:id/:name (rest-api.md §10 item 5).
    app.include_router(events.router)
    app.include_router(devices.router)
    app.include_router(manage.router)
    app.include_router(accounts.router)
    app.include_router(diagnosis.router)
    return app
