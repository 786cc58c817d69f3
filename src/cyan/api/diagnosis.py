"""Cyan's own routes for diagnosis (not in Particle's API, so under /cyan/v1).

Under their own prefix because /v1/devices/{id}/{name} is a variable read in Particle's
API: a "failures" there would shadow a device variable of that name.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from cyan.api.auth import Context, CurrentUser
from cyan.api.devices import resolve_device
from cyan.api.errors import NotAvailable
from cyan.cloud.errors import DeviceNotFound
from cyan.diagnose.history import device_history, history_json
from cyan.protocol import keys
from cyan.settings import ADMIN_USERNAME
from cyan.store import DeviceRecord

router = APIRouter(prefix="/cyan/v1", tags=["cyan"])


@router.get("/server", summary="This server's public key and device port (no auth)")
async def server_identity(context: Context) -> JSONResponse:
    identity = context.server
    if identity is None:
        raise NotAvailable("This API runs without a device gateway.")
    return JSONResponse(
        {
            "public_key_pem": identity.public_key_pem,
            "fingerprint": identity.fingerprint,
            "device_port": identity.device_port,
        }
    )


@router.get(
    "/devices/{id_or_name}/failures",
    summary="Why a device is not connected: its failed connections, newest first",
)
async def device_failures(context: Context, user: CurrentUser, id_or_name: str) -> JSONResponse:
    admin = user.username == ADMIN_USERNAME
    try:
        record: DeviceRecord | None = await resolve_device(context, user, id_or_name)
    except DeviceNotFound:
        # The admin may ask about any device by id, another user's or one no one registered:
        # "unknown-device" is exactly the failure such a device has.
        if not admin or not _is_device_id(id_or_name):
            raise
        record = await context.store.devices.get(id_or_name.lower())
    device_id = record.id if record else id_or_name.lower()
    history = await device_history(
        context.store,
        device_id,
        record,
        online=context.router.live(device_id) is not None,
        any_address=admin,
        now=datetime.now(UTC),
    )
    return JSONResponse(history_json(history))


def _is_device_id(text: str) -> bool:
    try:
        keys.normalize_device_id(text)
    except ValueError:
        return False
    return True
