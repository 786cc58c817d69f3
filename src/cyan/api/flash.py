"""Flashing over the air: PUT /v1/devices/{id} with a multipart binary (rest-api.md §3.2
`flash`, §10 item 8), and the Cyan fields that show firmware and update progress.

particle-cli sends the part ``file`` (named by its full local path) plus ``latest``;
particle-api-js renames its files ``file``, ``file2``…; both stream the body chunked,
without a Content-Length. The binary is checked before anything reaches the device: a
refused file costs the device nothing.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from cyan.api.auth import ApiContext
from cyan.api.body_limit import allow_body
from cyan.api.errors import BadRequest, NotAvailable
from cyan.api.shapes import iso, platform_id_of
from cyan.cloud.flash import FlashJob
from cyan.firmware import (
    MAX_BINARY_BYTES,
    FirmwareError,
    ModuleFunction,
    check_for_platform,
    parse_module,
    platform_name,
    system_version_name,
)
from cyan.firmware.layout import module_name
from cyan.store import DeviceRecord, FirmwareUpdateRecord

MULTIPART_OVERHEAD_BYTES = 64 * 1024


async def flash_from_upload(
    request: Request, context: ApiContext, record: DeviceRecord
) -> JSONResponse:
    if context.flasher is None:
        raise NotAvailable("This API runs without a device gateway: nothing can be flashed")
    # The binary, its part headers and particle-cli's few small fields.
    allow_body(request, MAX_BINARY_BYTES + MULTIPART_OVERHEAD_BYTES)
    form = await request.form(max_files=16, max_fields=16)
    try:
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        upload = _one_binary(uploads)
        data = await upload.read(MAX_BINARY_BYTES + 1)
    finally:
        await form.close()
    if len(data) > MAX_BINARY_BYTES:
        raise BadRequest(f"The binary is larger than the {MAX_BINARY_BYTES} bytes a Photon takes")
    live = context.router.live(record.id)
    platform_id = platform_id_of(record, live)
    try:
        module = parse_module(data)
        check_for_platform(module, platform_id)
    except FirmwareError as exc:
        raise BadRequest(f"The binary was refused: {exc.message}") from None
    await context.flasher.start(
        record.id,
        record.owner_id,
        data,
        file_name=PurePath(upload.filename or "firmware.bin").name,
        module=f"{module.name} v{module.version} for the {platform_name(module.platform_id)}",
    )
    # particle-cli needs a truthy status or message (rest-api.md §3.2 `flash`).
    return JSONResponse({"id": record.id, "status": "Update started"})


def _one_binary(uploads: list[UploadFile]) -> UploadFile:
    if not uploads:
        raise BadRequest("No firmware binary in the request: send it as the multipart part file")
    binaries = [u for u in uploads if (u.filename or "").lower().endswith(".bin")] or uploads
    if len(binaries) > 1:
        # Several files are sources to compile; Cyan has no compiler (rest-api.md §3.2).
        raise BadRequest(
            "Cyan flashes one compiled .bin and compiles nothing: compile locally "
            "(particle compile photon --saveTo app.bin) and flash the binary"
        )
    return binaries[0]


# -- what GET /v1/devices/{id} shows (fields Particle's clients ignore) ---------------------


def ota_json(job: FlashJob | None, last: FirmwareUpdateRecord | None) -> dict[str, Any] | None:
    """The running update (from memory) or the last one (from the store), or None."""
    record = job.record if job is not None else last
    if record is None:
        return None
    shape: dict[str, Any] = {
        "state": record.state,
        "stage": record.state,
        "file": record.file_name,
        "module": record.module,
        "bytes_sent": record.bytes_sent,
        "total_bytes": record.size,
        "chunks_resent": record.chunks_resent,
        "fast": record.fast,
        "failure": record.failure,
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
    }
    if job is not None:
        # Running: its progress is in memory; the store has it only once it ends.
        progress = job.progress
        shape.update(
            state=job.state,
            stage=progress.state,
            bytes_sent=progress.bytes_sent,
            total_bytes=progress.total_bytes,
            chunks_resent=progress.chunks_resent,
            fast=progress.fast,
            failure=progress.failure,
        )
    return shape


def firmware_json(modules: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    """The modules of the device's last system describe, in words."""
    described = []
    user_hash = None
    for entry in modules:
        function = ModuleFunction.of_describe_char(str(entry.get("f")))
        if function is None:
            continue
        index, version = int(entry.get("n", 0)), entry.get("v")
        item = {"module": module_name(function, index), "version": version}
        if function is ModuleFunction.SYSTEM_PART and isinstance(version, int):
            item["release"] = system_version_name(version)
        if function is ModuleFunction.USER_PART:
            user_hash = entry.get("u")
            item["sha256"] = user_hash
        described.append(item)
    return {"modules": described, "app_hash": user_hash}
