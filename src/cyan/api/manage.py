"""What an owner does to devices: claim, release, rename, notes, signal, keys, claim codes
(rest-api.md §3.2 `device add/remove/rename`, `nyan`, `keys send`; §4; §10 items 8–11).

Every change to who owns a device or which key it has is told to the router at once, so a
connected device's events follow its new owner and its next handshake uses the new key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from cyan.api.auth import ApiContext, Context, CurrentUser, body_params
from cyan.api.devices import resolve_device
from cyan.api.errors import BadRequest, Forbidden
from cyan.api.flash import flash_from_upload
from cyan.api.shapes import device_detail, iso
from cyan.cloud.errors import DeviceNotFound
from cyan.protocol import crypto, keys
from cyan.store import MAX_NAME_LENGTH, UNCHANGED, ClaimOutcome, KeyOutcome

router = APIRouter(tags=["device management"])

# particle-cli looks for these words to offer a transfer (rest-api.md §3.2 `device add`).
BELONGS_TO_SOMEONE_ELSE = "That device belongs to someone else."
UNOWNED_WITH_ANOTHER_KEY = (
    "That device is registered with another public key. Claim it with the key it has, or "
    "ask the server's operator to replace its key (cyan device add ID --public-key FILE)."
)


def _changed(context: ApiContext, device_id: str, owner_id: int | None) -> None:
    context.forget_device(device_id)
    context.router.registration_changed(device_id, owner_id)


@router.post("/v1/devices", summary="Claim a device")
async def claim_device(request: Request, context: Context, user: CurrentUser) -> JSONResponse:
    params = await body_params(request)
    raw_id = params.get("id")
    if not isinstance(raw_id, str) or not raw_id:
        raise BadRequest("A device id is required")
    outcome = await context.store.devices.claim(raw_id, user.id)
    if outcome is ClaimOutcome.UNKNOWN:
        raise DeviceNotFound(
            "Device not found.",
            fix="The device must connect or be "
            "registered (cyan device add, particle keys send) before a claim.",
        )
    if outcome is ClaimOutcome.OWNED_BY_OTHER:
        if params.get("request_transfer") in (True, "true"):
            # No transfer approvals on a self-hosted cloud: never hand over another
            # user's device, and say so without the words that make the CLI ask again.
            raise Forbidden(
                "Transfers are not supported here: ask the device's owner to "
                "remove it from their account first"
            )
        raise Forbidden(BELONGS_TO_SOMEONE_ELSE)
    device_id = raw_id.lower()
    _changed(context, device_id, user.id)
    return JSONResponse(
        {"ok": True, "id": device_id, "deviceID": device_id, "claimed": True, "user_id": user.id}
    )


@router.delete("/v1/devices/{id_or_name}", summary="Release (unclaim) a device")
async def release_device(context: Context, user: CurrentUser, id_or_name: str) -> JSONResponse:
    record = await resolve_device(context, user, id_or_name)
    if not await context.store.devices.release(record.id, user.id):
        raise DeviceNotFound("Device not found.")
    _changed(context, record.id, None)
    return JSONResponse({"ok": True})


@router.put(
    "/v1/devices/{id_or_name}", summary="Rename, annotate, signal or flash (multipart) a device"
)
async def update_device(
    request: Request, context: Context, user: CurrentUser, id_or_name: str
) -> JSONResponse:
    record = await resolve_device(context, user, id_or_name)
    if request.headers.get("content-type", "").startswith("multipart/"):
        return await flash_from_upload(request, context, record)
    params = await body_params(request)
    if "signal" in params:
        on = _signal(params["signal"])
        await context.router.signal(record.id, on)
        return JSONResponse({"id": record.id, "connected": True, "signaling": on})
    name: Any = UNCHANGED
    if "name" in params:
        name = _text(params["name"], "name")
        if len(name) > MAX_NAME_LENGTH:
            raise BadRequest(
                f"name is {len(name)} characters; a device name has at most {MAX_NAME_LENGTH}"
            )
        clash = await context.store.devices.find(name, owner_id=user.id)
        if clash is not None and clash.id != record.id:
            raise BadRequest(f"Another of your devices is already called {name}")
    notes: Any = _text(params["notes"], "notes") if "notes" in params else UNCHANGED
    if name is UNCHANGED and notes is UNCHANGED:
        raise BadRequest("Nothing to change: give name, notes or signal")
    updated = await context.store.devices.update(record.id, name=name, notes=notes)
    context.forget_device(record.id)
    body = device_detail(updated, context.router.live(record.id))
    body["updated_at"] = iso(datetime.now(UTC))
    return JSONResponse(body)


def _signal(value: Any) -> bool:
    # particle-cli and api-js send the strings "1" and "0" (rest-api.md §3.2 `nyan`).
    if value in ("1", 1, True, "true", "on"):
        return True
    if value in ("0", 0, False, "false", "off"):
        return False
    raise BadRequest("signal must be 1 or 0")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{what} must be a non-empty string")
    return value.strip()


@router.post("/v1/device_claims", summary="Create a claim code for a setup app")
async def create_claim_code(context: Context, user: CurrentUser) -> JSONResponse:
    code = await context.store.claims.create(user.id)
    devices = await context.store.devices.all(owner_id=user.id)
    return JSONResponse({"claim_code": code, "device_ids": [d.id for d in devices]})


@router.post("/v1/provisioning/{device_id}", summary="Store or replace a device public key")
async def provision_key(
    request: Request, context: Context, user: CurrentUser, device_id: str
) -> JSONResponse:
    params = await body_params(request)
    try:
        normalized = keys.normalize_device_id(str(params.get("deviceID") or device_id))
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if str(params.get("algorithm", "rsa")).lower() != "rsa":
        raise BadRequest("Photon, P1 and Core devices use RSA keys (algorithm=rsa)")
    pem = params.get("publicKey")
    if not isinstance(pem, str) or not pem.strip():
        raise BadRequest("publicKey is required (the device's public key, PEM)")
    try:
        public_key = crypto.load_public_key(pem.encode())
    except ValueError:
        raise BadRequest("publicKey is not an RSA public key in PEM form") from None
    if crypto.key_bits(public_key) != keys.DEVICE_KEY_BITS:
        raise BadRequest(
            f"publicKey is RSA-{crypto.key_bits(public_key)}; Photon keys are "
            f"RSA-{keys.DEVICE_KEY_BITS}"
        )
    # `particle keys send/doctor` for a new device registers it to the caller at once, so a
    # device with a fresh key can connect and be used without a separate claim. A device
    # registered already is re-keyed only by its owner.
    der = crypto.public_key_der(public_key)
    outcome = await context.store.devices.provision(normalized, der, user.id)
    if outcome is KeyOutcome.OWNED_BY_OTHER:
        raise Forbidden(BELONGS_TO_SOMEONE_ELSE)
    if outcome is KeyOutcome.KEY_DIFFERS:
        raise Forbidden(UNOWNED_WITH_ANOTHER_KEY)
    _changed(context, normalized, user.id)
    return JSONResponse({"ok": True, "id": normalized, "deviceID": normalized})
