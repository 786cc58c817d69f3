"""What the server knows, asked over Cyan's HTTP API: the parts of `cyan doctor` that a
device cannot see from its own end of the connection.

A device that is hung up on right after its handshake block cannot tell why (protocol.md
§2: the server just closes). The server recorded the stage (cyan.diagnose.history), and
``GET /cyan/v1/devices/{id}/failures`` hands it out; ``GET /cyan/v1/server`` gives the
server's key fingerprint and device port to compare a key image with.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from cyan.diagnose.checks import KEYS_NEEDED, Check, Status, Step
from cyan.diagnose.stages import diagnose_device_side, explain_stage
from cyan.protocol import ProtocolError, Stage

# The gateway may record a refused handshake a moment after it hangs up: poll this long.
SERVER_VIEW_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """GET /cyan/v1/server: the server's key fingerprint and device port."""

    fingerprint: str
    device_port: int


@dataclass(frozen=True, slots=True)
class CyanApi:
    http: httpx.AsyncClient
    url: str  # without a trailing /
    token: str | None

    async def server_info(self) -> ServerInfo | str:
        """The server's key and port, or a sentence saying why not (no token needed)."""
        url = f"{self.url}/cyan/v1/server"
        try:
            response = await self.http.get(url)
            response.raise_for_status()
            body = response.json()
            return ServerInfo(str(body["fingerprint"]), int(body["device_port"]))
        except httpx.HTTPStatusError as exc:
            return f"{url} answered HTTP {exc.response.status_code}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return f"{url} did not answer ({type(exc).__name__})"
        except (ValueError, KeyError, TypeError):
            return f"{url} did not answer with the server's key and port"

    async def device_history(self, device_id: str) -> dict[str, Any] | str:
        """The server's failure history and verdict for a device, or why it gave none."""
        url = f"{self.url}/cyan/v1/devices/{device_id}/failures"
        if not self.token:
            return "pass --token (or CYAN_TOKEN) to ask the server"
        try:
            response = await self.http.get(url, headers={"Authorization": f"Bearer {self.token}"})
            body = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            return f"{url} did not answer ({type(exc).__name__})"
        if response.status_code in (401, 403):
            status = response.status_code
            return f"the API refused the token (HTTP {status}): use the owner's or the admin's"
        if not isinstance(body, dict) or not isinstance(body.get("verdict"), dict):
            return f"{url} answered HTTP {response.status_code}"
        return body


async def server_record(api: CyanApi | None, device_id: str | None) -> Check:
    """The server's verdict on the device's own attempts, read before doctor's handshake."""
    step = Step.SERVER_RECORD
    if device_id is None:
        return Check(step, Status.SKIPPED, KEYS_NEEDED)
    if api is None or not api.token:
        return Check(step, Status.SKIPPED, "pass --token (or CYAN_TOKEN) to read it")
    body = await api.device_history(device_id)
    if isinstance(body, str):
        return Check(step, Status.SKIPPED, body)
    verdict: dict[str, Any] = body["verdict"]
    state = verdict.get("state")
    if state == "online":
        return Check(step, Status.PASS, "the server has the device connected")
    summary = f"the server's record of the device: {verdict.get('summary')}"
    if verdict.get("stage"):
        summary += f": stage {verdict['stage']} at {verdict.get('at')}: {verdict.get('reason')}"
    # "silent": nothing from the device reached the server; "dropped": it was connected and
    # went away. Neither fails anything here (the device may simply be off), but if it is on
    # and blinking, "silent" is the clue: the device's own network fails where this
    # computer's does not (its DHCP, its DNS).
    status = Status.NOTE if state in ("silent", "dropped") else Status.FAIL
    cause, fix, stage = verdict.get("cause"), verdict.get("fix"), verdict.get("stage")
    return Check(step, status, summary, cause, fix, stage)


@dataclass(frozen=True, slots=True)
class Probe:
    """Who asks the server about a refused handshake: which device, from where, since when."""

    device_id: str
    local_ip: str
    started_at: datetime


async def refused_handshake(api: CyanApi | None, probe: Probe, error: ProtocolError) -> Check:
    """The handshake row when the server hung up on us: the server's own record of why."""
    found = "pass --token (or CYAN_TOKEN) to ask the server which"
    if api is not None and api.token:
        failure = await _newest_failure(api, probe)
        if not isinstance(failure, str):
            stage, device_view = str(failure.get("stage")), diagnose_device_side(error)
            hung_up = "the server hung up after our handshake block"
            detail = (
                f"{hung_up if error.stage is Stage.REFUSED else error.reason}. The server's "
                f"view ({stage}, from "
                f"{failure.get('remote_address')} at {failure.get('at')}): {failure.get('reason')}"
            )
            cause = str(failure.get("cause") or device_view.cause)
            fix = str(failure.get("fix") or device_view.fix)
            return Check(Step.HANDSHAKE, Status.FAIL, detail, cause, fix, stage)
        found = f"asked the server why: {failure}"
    diagnosis = explain_stage(error.stage, f"{error.reason}; {found}", device_side=True)
    return Check.failed(Step.HANDSHAKE, diagnosis)


async def _newest_failure(api: CyanApi, probe: Probe) -> dict[str, Any] | str:
    """The server's newest failure record for our connection, or why there is none.

    A connection the server could not tie to a device (our block did not decrypt: we hold
    another server's key) is listed under ``unnamed_failures``, by remote address.
    """
    deadline = time.monotonic() + SERVER_VIEW_WAIT_S
    while True:
        body = await api.device_history(probe.device_id)
        if isinstance(body, str):
            return body
        named = _since(body.get("failures"), probe.started_at)
        unnamed = [
            (at, record)
            for at, record in _since(body.get("unnamed_failures"), probe.started_at)
            if record.get("remote_address") == probe.local_ip
        ]
        if named or unnamed:
            return max(named or unnamed, key=lambda pair: pair[0])[1]
        if time.monotonic() >= deadline:
            return "it recorded no failure for this device since doctor started"
        await asyncio.sleep(0.1)


def _since(records: Any, started_at: datetime) -> list[tuple[datetime, dict[str, Any]]]:
    """(at, record) for the records at or after ``started_at``; unreadable ones left out."""
    found = []
    for record in records if isinstance(records, list) else []:
        try:
            at = datetime.fromisoformat(str(record["at"]).replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError):
            continue
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if at >= started_at:
            found.append((at, record))
    return found
