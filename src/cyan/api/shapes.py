"""The JSON shapes of Particle Cloud API v1 replies, built from store records and live state.

Field lists follow rest-api.md §6 (device objects), §3.2 and §6 (variable and function
replies) and §5 (event stream data). While a device is connected its live state (from the
router) wins over the stored record, which is written in batches (design.md).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from cyan.bus.events import CloudEvent
from cyan.cloud.types import LiveDevice, VariableValue
from cyan.firmware.platforms import PHOTON
from cyan.store import DeviceRecord

# SSE "coreid" for events published through the API rather than by a device; the real
# cloud shows "api" there for POST /v1/devices/events.
API_COREID = "api"


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and ``Z``, as Particle writes times (rest-api.md §5)."""
    if moment is None:
        return None
    # SQLite hands back naive datetimes; the store writes UTC.
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def platform_id_of(record: DeviceRecord, live: LiveDevice | None) -> int:
    """The platform a device is (a Core is 0: only None means unknown)."""
    # A device that never sent its Hello has no known platform; the devices Cyan serves
    # are Photons (6), P1s (8) and Cores (0), and the Photon is the common one (rest-api.md
    # §6).
    if live is not None:
        return live.platform_id
    return record.platform_id if record.platform_id is not None else PHOTON


def _product_id(record: DeviceRecord, live: LiveDevice | None) -> int:
    if live is not None:
        return live.product_id
    if record.product_id is not None:
        return record.product_id
    # A device outside any product reports its platform id as product id, and the CLI
    # names the device type from product_id (rest-api.md §6).
    return platform_id_of(record, None)


def _system_version(record: DeviceRecord, live: LiveDevice | None) -> str | None:
    if live is not None and live.system_version is not None:
        return live.system_version
    return record.system_firmware_version


def device_summary(record: DeviceRecord, live: LiveDevice | None) -> dict[str, Any]:
    """One entry of GET /v1/devices (rest-api.md §6, "In list")."""
    system_version = _system_version(record, live)
    return {
        "id": record.id,
        "name": record.name,
        # Cyan does not track application names (no compile service, rest-api.md §3.2).
        # null here and "" in call and variable replies: both are Particle's own, the
        # first in the device objects of particle-cli's fixtures (src/lib/ui/index.test.js),
        # the second in every captured reply of api.particle.io to a call or a read.
        "last_app": None,
        "last_ip_address": live.remote_ip if live is not None else record.last_ip,
        "last_heard": iso(live.last_heard if live is not None else record.last_heard),
        "last_handshake_at": iso(
            live.connected_at if live is not None else record.last_handshake_at
        ),
        "product_id": _product_id(record, live),
        "platform_id": platform_id_of(record, live),
        # The CLI fetches details only for connected devices, and reads either field.
        "connected": live is not None,
        "online": live is not None,
        "cellular": False,
        "notes": record.notes,
        "status": "normal",
        # The sticker serial is not sent over the device protocol, so Cyan cannot know it;
        # null says so (the CLI does not read this field).
        "serial_number": None,
        "system_firmware_version": system_version,
        # No build service: the running Device OS is the only build target Cyan knows.
        "current_build_target": system_version,
        "default_build_target": system_version,
    }


def device_detail(record: DeviceRecord, live: LiveDevice | None) -> dict[str, Any]:
    """GET /v1/devices/:id: the summary plus what the device described (rest-api.md §6)."""
    shape = device_summary(record, live)
    if live is not None:
        functions, variables = list(live.functions), dict(live.variables)
    else:
        # The last describe the store kept, so an offline device still lists its API.
        functions, variables = list(record.functions), dict(record.variables)
    shape["functions"] = functions
    shape["variables"] = variables
    shape["firmware_updates_enabled"] = True
    shape["firmware_updates_forced"] = False
    return shape


def json_value(value: VariableValue) -> VariableValue | None:
    # JSON has no NaN or infinity; Particle's Node server would have written null
    # (JavaScript's JSON.stringify does), so a double variable holding NaN reads as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def raw_value(value: VariableValue) -> str:
    """The ``?format=raw`` body: the bare value as text (spark-server, rest-api.md §9.1)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def variable_reply(
    record: DeviceRecord, live: LiveDevice | None, name: str, value: VariableValue
) -> dict[str, Any]:
    """GET /v1/devices/:id/:var (rest-api.md §3.2 ``get``, §6 "Other response shapes")."""
    return {
        "cmd": "VarReturn",
        "name": name,
        "result": json_value(value),
        "coreInfo": {
            "last_app": "",  # Particle's, see device_summary
            "last_heard": iso(live.last_heard if live is not None else record.last_heard),
            "connected": True,
            "last_handshake_at": iso(
                live.connected_at if live is not None else record.last_handshake_at
            ),
            "deviceID": record.id,
            "product_id": _product_id(record, live),
        },
    }


def function_reply(record: DeviceRecord, return_value: int) -> dict[str, Any]:
    """POST /v1/devices/:id/:fn; ``return_value`` must be present (rest-api.md §3.2)."""
    return {
        "id": record.id,
        "name": record.name,
        "last_app": "",  # Particle's, see device_summary
        "connected": True,
        "return_value": return_value,
    }


def sse_event(event: CloudEvent) -> bytes | None:
    """One event in the stream format of rest-api.md §5, or None if it cannot be framed.

    A name holding CR or LF would end the ``event:`` line early and corrupt the stream for
    every later event, so such an event is skipped. ``data`` is JSON-encoded, which escapes
    any line breaks it holds.
    """
    if "\n" in event.name or "\r" in event.name:
        return None
    payload = {
        "data": event.data,
        "ttl": event.ttl,
        "published_at": iso(event.published_at),
        "coreid": event.device_id if event.device_id is not None else API_COREID,
    }
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return f"event: {event.name}\ndata: {data}\n\n".encode()
