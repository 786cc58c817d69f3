"""`cyan device flash ID FILE`: an over-the-air update through Cyan's API, with progress.

The binary is checked here first (the same checks the server makes), then sent as
particle-cli sends it; progress comes from GET /v1/devices/ID (cyan_ota) until the
device has taken the file and is back online with it, or the update failed.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from cyan.cli.admin import with_store
from cyan.cli.options import DatabaseUrl, DataDir
from cyan.cli.output import console, fail, reports_errors
from cyan.firmware import FirmwareError, Module, ModuleFunction, parse_module, platform_name
from cyan.settings import ADMIN_USERNAME, load_settings

POLL_S = 0.25
BACK_ONLINE_S = 60.0
TOKEN_LIFETIME = timedelta(hours=1)


@reports_errors
def device_flash(
    device: Annotated[str, typer.Argument(help="The device's id or name.")],
    binary: Annotated[Path, typer.Argument(help="A firmware module binary (.bin).")],
    api: Annotated[
        str | None,
        typer.Option(help="Cyan's HTTP API. Default: this machine's, on the configured port."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CYAN_TOKEN",
            help="An access token of the device's owner. Default: a new one-hour token of the "
            "local admin (needs the server's data directory).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds the whole update may take.")] = 600.0,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Flash a firmware binary over the air and follow it: bytes sent, rate, chunks resent.

    Exit code 0 once the device took the binary and is back online with it, 1 with the
    reason otherwise. The virtual device checks and reports a new module but keeps running
    Tinker: it runs no ARM code.
    """
    try:
        data = binary.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {binary}: {exc.strerror}") from None
    try:
        module = parse_module(data)
    except FirmwareError as exc:
        raise fail(f"{binary} is refused: {exc.message}", exc.fix) from None
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    base = (api or f"http://127.0.0.1:{settings.api.port}").rstrip("/")
    if token is None:
        token = with_store(data_dir, database_url, _admin_token)
    headers = {"Authorization": f"Bearer {token}"}
    described = f"{module.name} v{module.version} for the {platform_name(module.platform_id)}"
    console.print(f"flashing [bold]{binary.name}[/] ({described}, {len(data)} bytes) to {device}")
    with httpx.Client(base_url=base, headers=headers, timeout=30, trust_env=False) as http:
        try:
            reply = http.put(
                f"/v1/devices/{device}",
                files={"file": (binary.name, data, "application/octet-stream")},
                data={"latest": "true"},
            )
        except httpx.HTTPError as exc:
            raise fail(
                f"{base} did not answer: {exc}", "Is cyan serve running? See --api."
            ) from None
        if reply.status_code != 200:
            raise fail(_error(reply))
        ota = _follow(http, device, len(data), timeout)
        if ota["state"] != "succeeded":
            raise fail(f"the update failed: {ota.get('failure')}", _fix_for(ota))
        console.print("[green]the device took the update[/]; it restarts into it")
        if _back_online(http, device, module):
            console.print(f"[green]{device} is back online with the new {module.name}[/]")
        else:
            console.print(
                f"[yellow]{device} has not come back with the new {module.name} within "
                f"{BACK_ONLINE_S:g} s[/]: see cyan device why"
            )


async def _admin_token(store: Any) -> str:
    admin = await store.users.ensure(ADMIN_USERNAME)
    expires = datetime.now(UTC) + TOKEN_LIFETIME
    token: str = await store.tokens.create(admin.id, client_id="cyan-cli", expires_at=expires)
    return token


def _follow(http: httpx.Client, device: str, total: int, timeout_s: float) -> dict[str, Any]:
    """Poll the update until it ends, drawing its progress."""
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[resent]} resent"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("sending", total=total, resent=0)
        while True:
            ota = _detail(http, device).get("cyan_ota") or {}
            sent = int(ota.get("bytes_sent") or 0)
            fast = ota.get("fast")
            mode = "starting" if fast is None else "fast OTA" if fast else "chunk by chunk"
            progress.update(
                task, completed=sent, resent=ota.get("chunks_resent") or 0, description=mode
            )
            if ota.get("state") in ("succeeded", "failed"):
                return ota
            if time.monotonic() > deadline:
                raise fail(
                    f"the update did not end within {timeout_s:g} s (last: {ota.get('stage')})"
                )
            time.sleep(POLL_S)


def _back_online(http: httpx.Client, device: str, module: Module) -> bool:
    """Whether the device reconnects reporting the new module."""
    deadline = time.monotonic() + BACK_ONLINE_S
    while time.monotonic() < deadline:
        detail = _detail(http, device)
        firmware = detail.get("cyan_firmware") or {}
        if detail.get("connected") and _reports(firmware, module):
            return True
        time.sleep(POLL_S)
    return False


def _reports(firmware: dict[str, Any], module: Module) -> bool:
    if module.function is ModuleFunction.USER_PART:
        return bool(firmware.get("app_hash") == module.sha256.hex().upper())
    return any(
        m.get("module") == module.name and m.get("version") == module.version
        for m in firmware.get("modules", [])
    )


def _detail(http: httpx.Client, device: str) -> dict[str, Any]:
    try:
        reply = http.get(f"/v1/devices/{device}")
    except httpx.HTTPError as exc:
        raise fail(f"the API stopped answering: {exc}") from None
    if reply.status_code != 200:
        raise fail(_error(reply))
    body: dict[str, Any] = reply.json()
    return body


def _error(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return f"HTTP {reply.status_code}: {reply.text[:200]}"
    message = body.get("error_description") or body.get("error") if isinstance(body, dict) else None
    return f"HTTP {reply.status_code}: {message or body}"


def _fix_for(ota: dict[str, Any]) -> str:
    failure = str(ota.get("failure") or "")
    if "disconnected" in failure or "restarted" in failure or "stopped" in failure:
        return "The device keeps its old firmware; flash again once it is online."
    if "validation" in failure:
        return (
            "The device refused the module (its dependencies or platform): cyan firmware "
            "inspect FILE shows what it needs."
        )
    return "See cyan device why, and the server's log."
