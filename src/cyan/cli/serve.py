"""`cyan serve`: the whole cloud in one process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Annotated

import typer
from rich.panel import Panel

from cyan.cli.options import DatabaseUrl, DataDir
from cyan.cli.output import LogFormat, console, reports_errors, setup_logging
from cyan.settings import DEFAULT_API_PORT, DEFAULT_DEVICE_PORT, Settings, load_settings


@reports_errors
def serve(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Address to listen on, for devices and the API. Default: 0.0.0.0 (every "
            "address), or CYAN_GATEWAY_HOST / CYAN_API_HOST, or cyan.toml.",
            show_default=False,
        ),
    ] = None,
    device_host: Annotated[
        str | None,
        typer.Option(help="Address for devices only (over --host).", show_default=False),
    ] = None,
    api_host: Annotated[
        str | None,
        typer.Option(help="Address for the API only (over --host).", show_default=False),
    ] = None,
    device_port: Annotated[
        int | None,
        typer.Option(
            help=f"TCP port for devices. Default: {DEFAULT_DEVICE_PORT}, or CYAN_GATEWAY_PORT, "
            "or cyan.toml.",
            show_default=False,
        ),
    ] = None,
    api_port: Annotated[
        int | None,
        typer.Option(
            help=f"HTTP port for the REST API. Default: {DEFAULT_API_PORT}, or CYAN_API_PORT, "
            "or cyan.toml.",
            show_default=False,
        ),
    ] = None,
    demo: Annotated[
        int, typer.Option(help="Register and connect N virtual Tinker devices in this process.")
    ] = 0,
    allow_signup: Annotated[
        bool,
        typer.Option(
            "--allow-signup", help="Let anyone who reaches the API sign up (POST /v1/users)."
        ),
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            help="text: plain lines (cheap); json: one JSON object per line; rich: coloured."
        ),
    ] = LogFormat.TEXT,
) -> None:
    """Run the device gateway and the REST API (and demo devices with --demo N)."""
    setup_logging(verbose, log_format)
    settings = load_settings(
        data_dir=data_dir,
        database_url=database_url,
        # A flag left out is None, so the environment and cyan.toml decide (settings.py).
        gateway={"host": device_host or host, "port": device_port},
        # The flag only turns sign-up on; without it CYAN_API_ALLOW_SIGNUP or cyan.toml decide.
        api={
            "host": api_host or host,
            "port": api_port,
            "allow_signup": True if allow_signup else None,
        },
    )
    _use_uvloop()
    asyncio.run(_serve(settings, demo))


def _use_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _serve(settings: Settings, demo: int) -> None:
    from cyan.node import Node, tune_gc_for_serving  # the store, the gateway

    node = Node(settings, demo_devices=demo)
    await node.start()
    tune_gc_for_serving()
    shown_host = "127.0.0.1" if settings.api.host in ("0.0.0.0", "::") else settings.api.host
    console.print(
        Panel.fit(
            f"[bold cyan]Cyan is running[/]\n"
            f"data directory  {settings.data_dir}\n"
            f"devices         tcp {settings.gateway.host}:{node.gateway.port}\n"
            f"REST API        http://{shown_host}:{node.api_port}\n"
            f"demo devices    {demo}\n"
            f"sign-up         {'open to anyone' if settings.api.allow_signup else 'off'}\n\n"
            f"Get a token:    cyan token create --data-dir {settings.data_dir}\n"
            f"List devices:   curl -H 'Authorization: Bearer TOKEN' "
            f"http://{shown_host}:{node.api_port}/v1/devices",
            title="cyan serve",
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        console.print("stopping…")
        await node.stop()
