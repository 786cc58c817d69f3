"""`cyan device …`: register, list and run devices."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cyan.cli.admin import device_add, device_list
from cyan.cli.output import console, fail, reports_errors, setup_logging
from cyan.cli.serve import _use_uvloop
from cyan.device import PROFILES, DeviceOptions, KeyStore, VirtualDevice

device_app = typer.Typer(help="Register, list and run devices.", no_args_is_help=True)
device_app.command("add")(device_add)
device_app.command("list")(device_list)


@device_app.command("run")
@reports_errors
def device_run(
    keys_dir: Annotated[Path, typer.Option("--keys", help="The device's key directory.")],
    server: Annotated[
        str | None,
        typer.Option(help="HOST[:PORT] to connect to. Default: the address in the key image."),
    ] = None,
    firmware: Annotated[
        str, typer.Option(help=f"Device OS behaviour to copy: {', '.join(PROFILES)}.")
    ] = "2.3.1",
    heartbeat: Annotated[float, typer.Option(help="Seconds between heartbeat events.")] = 30.0,
    claim_code: Annotated[
        str | None,
        typer.Option(help="A claim code (POST /v1/device_claims) to present after connecting."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a virtual Photon with Tinker. It reconnects by itself until you press Ctrl-C.

    It runs no ARM code: it answers Tinker's functions and variables in Python.
    """
    setup_logging(verbose)
    if firmware not in PROFILES:
        raise fail(f"unknown firmware {firmware!r}", f"Use one of {', '.join(PROFILES)}.")
    keystore = KeyStore.load(keys_dir)
    device = VirtualDevice(
        keystore,
        DeviceOptions(
            server=server, profile=PROFILES[firmware], heartbeat_s=heartbeat, claim_code=claim_code
        ),
    )
    console.print(f"virtual device [bold]{keystore.device_id}[/] (Device OS {firmware})")
    _use_uvloop()
    try:
        asyncio.run(device.run())
    except KeyboardInterrupt:
        console.print("stopped")
