"""Device routes: list, detail, variables and function calls (rest-api.md §3.2, §6, §10).

Every device request goes through the router (design.md); this module only resolves the
caller's device, shapes replies and leaves failures to the handlers in errors.py.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, field_validator

from cyan.api.auth import ApiContext, Context, CurrentUser, body_params
from cyan.api.bodies import parse_body
from cyan.api.flash import firmware_json, ota_json
from cyan.api.shapes import (
    device_detail,
    device_summary,
    function_reply,
    raw_value,
    variable_reply,
)
from cyan.cloud.errors import DeviceNotFound
from cyan.diagnose.history import dropped_counts, dropped_json, failure_json, report
from cyan.store import DeviceRecord, UserRecord

router = APIRouter(prefix="/v1/devices", tags=["devices"])

# One message for "no such device" and "not yours", so that ids of other users' devices
# cannot be probed. 404 rather than 403 or 401: particle-cli logs the user out on a 401
# (rest-api.md §1.3), and `usb` commands skip 403 and 404 alike (§3.2).
DEVICE_NOT_FOUND = "Device not found."


async def resolve_device(context: ApiContext, user: UserRecord, id_or_name: str) -> DeviceRecord:
    """The caller's device named by id (any case) or name, as typed (rest-api.md §2)."""
    record = await context.devices.get_or_load(
        (user.id, id_or_name), lambda: context.store.devices.find(id_or_name, owner_id=user.id)
    )
    if record is None:
        raise DeviceNotFound(DEVICE_NOT_FOUND)
    return record


@router.get("", summary="List the caller's devices")
async def list_devices(context: Context, user: CurrentUser) -> JSONResponse:
    # A bare array: the CLI calls forEach on it (rest-api.md §3.2 `list`).
    records = await context.store.devices.all(owner_id=user.id)
    return JSONResponse([device_summary(r, context.router.live(r.id)) for r in records])


@router.get("/{id_or_name}", summary="One device, with its functions and variables")
async def get_device(context: Context, user: CurrentUser, id_or_name: str) -> JSONResponse:
    record = await resolve_device(context, user, id_or_name)
    live = context.router.live(record.id)
    shape = device_detail(record, live)
    # Cyan's fields; Particle's clients ignore fields they do not know.
    last = await context.store.failures.for_device(record.id, limit=1)
    shape["cyan_last_failure"] = failure_json(report(last[0])) if last else None
    job = context.flasher.job(record.id) if context.flasher is not None else None
    last_update = None if job is not None else await context.store.updates.latest(record.id)
    shape["cyan_ota"] = ota_json(job, last_update)
    shape["cyan_events_dropped"] = dropped_json(dropped_counts(record))
    modules = live.modules if live is not None and live.modules else record.modules
    shape["cyan_firmware"] = firmware_json(modules)
    return JSONResponse(shape)


# Variable (GET) and function (POST) share one path template: OpenAPI forbids two templates
# that differ only in their parameter names.
@router.get("/{id_or_name}/{name}", summary="Read a variable")
async def get_variable(
    context: Context,
    user: CurrentUser,
    id_or_name: str,
    name: str,
    fmt: Annotated[str | None, Query(alias="format")] = None,
) -> Response:
    return await read_variable(context, user, id_or_name, name, fmt)


async def read_variable(
    context: ApiContext, user: UserRecord, id_or_name: str, name: str, fmt: str | None
) -> Response:
    """The variable read, shared with its route outside FastAPI (hot.py)."""
    record = await resolve_device(context, user, id_or_name)
    value = await context.router.get_variable(record.id, name)
    if fmt == "raw":
        return PlainTextResponse(raw_value(value))
    live = context.router.live(record.id)
    return JSONResponse(variable_reply(record, live, name, value))


class CallRequest(BaseModel):
    """A function call's argument: JSON ``{"args": …}`` from particle-cli and api-js (the
    key left out with no argument), form ``arg=…`` in the Particle docs' curl examples
    (rest-api.md §3.2, §10 item 7)."""

    args: str | None = None
    arg: str | None = None

    @field_validator("args", "arg", mode="before")
    @classmethod
    def _text(cls, value: object) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return json.dumps(value)
        raise ValueError("The function argument must be a string")

    @property
    def argument(self) -> str:
        """Empty when none was given."""
        value = self.args if self.args is not None else self.arg
        return value or ""


@router.post("/{id_or_name}/{name}", summary="Call a function")
async def call_function(
    request: Request, context: Context, user: CurrentUser, id_or_name: str, name: str
) -> JSONResponse:
    return await make_call(request, context, user, id_or_name, name)


async def make_call(
    request: Request, context: ApiContext, user: UserRecord, id_or_name: str, name: str
) -> JSONResponse:
    """The function call, shared with its route outside FastAPI (hot.py)."""
    record = await resolve_device(context, user, id_or_name)
    argument = parse_body(CallRequest, await body_params(request)).argument
    return_value = await context.router.call_function(record.id, name, argument)
    return JSONResponse(function_reply(record, return_value))
