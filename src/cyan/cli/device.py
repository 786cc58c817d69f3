"""`cyan device …`: register, list and run devices."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from cyan.cli.admin import device_add, device_list
from cyan.cli.flash import device_flash
from cyan.cli.output import console, fail, reports_errors, setup_logging
from cyan.cli.serve import _use_uvloop
from cyan.cli.why import device_why
from cyan.device import PROFILES, DeviceOptions, VirtualDevice
from cyan.device.faults import Fault, apply_fault
from cyan.device.updater import OtaFaults
from cyan.keydir import KeyStore
from cyan.net.resolver import parse_dns_choice

device_app = typer.Typer(help="Register, list and run devices.", no_args_is_help=True)
device_app.command("add")(device_add)
device_app.command("list")(device_list)
device_app.command("why")(device_why)
device_app.command("flash")(device_flash)


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
    dns: Annotated[
        str,
        typer.Option(
            help="The DNS server the network gave the device: system, none (as when DHCP "
            "hands out DNS 0.0.0.0), or IP[:PORT]."
        ),
    ] = "system",
    dns_fallback: Annotated[
        bool,
        typer.Option(
            "--dns-fallback",
            help="When the name does not resolve, connect to the IP in the key image, then to "
            "the last address that worked (as Device OS 0.5.5 did).",
        ),
    ] = False,
    fault: Annotated[
        Fault | None,
        typer.Option(
            help="Break the key directory on purpose before starting (it stays broken until "
            "you apply the fix Cyan names)."
        ),
    ] = None,
    stall_handshakes: Annotated[
        int, typer.Option(help="Ignore the server's nonce on the first N attempts.")
    ] = 0,
    drop_chunks: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Lose this share of over-the-air update chunks (0.05: one in twenty).",
        ),
    ] = 0.0,
    disconnect_during_ota: Annotated[
        bool,
        typer.Option(
            "--disconnect-during-ota",
            help="Lose the connection halfway through the first update (it keeps its firmware).",
        ),
    ] = False,
    slow_ota: Annotated[
        bool,
        typer.Option(
            "--slow-ota", help="Offer no fast OTA: the server waits for every chunk's answer."
        ),
    ] = False,
    hold_ota_at: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Stop taking an update's chunks once this many bytes are in (a device that "
            "hangs mid-update); the server's deadline, or its stop, ends the update.",
            show_default=False,
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a virtual Photon with Tinker. It reconnects by itself until you press Ctrl-C.

    It runs no ARM code: it answers Tinker's functions and variables in Python. It re-reads
    its key directory after each failed attempt, as a Photon does when it restarts, so a
    repaired key directory takes effect without restarting it.

    Over-the-air updates are received and checked as a Photon checks them (platform, slot,
    dependencies, CRC); an accepted one is recorded in the key directory (firmware.json)
    and reported after the restart, while the device keeps running Tinker.
    """
    setup_logging(verbose)
    if firmware not in PROFILES:
        raise fail(f"unknown firmware {firmware!r}", f"Use one of {', '.join(PROFILES)}.")
    try:
        dns_server = parse_dns_choice(dns)
    except ValueError as exc:
        raise fail(str(exc)) from None
    keystore = KeyStore.load(keys_dir)
    if fault is not None:
        keystore, what = apply_fault(keystore, fault)
        console.print(f"[yellow]fault {fault.value}:[/] {what}")
    device = VirtualDevice(
        keystore,
        DeviceOptions(
            server=server,
            profile=PROFILES[firmware],
            heartbeat_s=heartbeat,
            claim_code=claim_code,
            dns_server=dns_server,
            dns_fallback=dns_fallback,
            stall_handshakes=stall_handshakes,
            ota_faults=OtaFaults(drop_chunks, disconnect_during_ota, slow_ota, hold_ota_at),
        ),
    )
    console.print(f"virtual device [bold]{keystore.device_id}[/] (Device OS {firmware})")
    _use_uvloop()
    asyncio.run(_run_until_stopped(device))
    console.print("stopped")


async def _run_until_stopped(device: VirtualDevice) -> None:
    """Run until Ctrl-C or SIGTERM, then leave as Device OS 2.x does: with a goodbye, so the
    server records a device that left, not a connection that broke."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    running = asyncio.create_task(device.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    await device.stop()  # the goodbye is written before the socket closes
    running.cancel()  # it may be sleeping before its next attempt
    stopping.cancel()
    await asyncio.gather(running, stopping, return_exceptions=True)
