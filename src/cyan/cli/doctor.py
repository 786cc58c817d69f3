"""`cyan doctor`: from the device's network, check each link a Photon needs to reach the cloud."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cyan.cli.output import fail, out, reports_errors
from cyan.diagnose.checks import Check, Status, passed
from cyan.diagnose.doctor import DoctorOptions, run_doctor
from cyan.keydir import DEVICE_KEY_FILE, SERVER_KEY_FILE, KeyStore
from cyan.net.address import parse_server
from cyan.net.resolver import DnsServer, system_dns_servers
from cyan.settings import DEFAULT_API_PORT

_STATUS_STYLE = {
    Status.PASS: "[green]pass[/]",
    Status.FAIL: "[bold red]fail[/]",
    Status.NOTE: "[yellow]note[/]",
    Status.SKIPPED: "[dim]skipped[/]",
}


@reports_errors
def doctor(
    server: Annotated[
        str | None,
        typer.Option(
            help="The device cloud, HOST[:PORT]. Default: the address in the key image of --keys.",
            show_default=False,
        ),
    ] = None,
    keys_dir: Annotated[
        Path | None,
        typer.Option(
            "--keys",
            help="A device key directory: adds the key-image checks and a real handshake as "
            "that device (if it is online, the server drops it and it reconnects by itself).",
            show_default=False,
        ),
    ] = None,
    device_key: Annotated[
        Path | None,
        typer.Option(
            help="The device's private key file, as read off a Photon (particle keys save, or "
            "dfu-util -a 1 -s 34:612 -U FILE): DER or PEM. With --device-id and --server-key, "
            "instead of --keys (or over that directory's own files).",
            show_default=False,
        ),
    ] = None,
    server_key: Annotated[
        Path | None,
        typer.Option(
            help="The server key the device holds: its 512-byte image (dfu-util -a 1 -s "
            "2082:512 -U FILE, or cyan keys server) or a bare public key.",
            show_default=False,
        ),
    ] = None,
    device_id: Annotated[
        str | None,
        typer.Option(
            help="The device's id (24 hex characters), with --device-key.", show_default=False
        ),
    ] = None,
    dns_servers: Annotated[
        list[str] | None,
        typer.Option(
            "--dns-server",
            help="A DNS server to ask, IP or IP:PORT; repeat for several. Default: the "
            "nameservers in /etc/resolv.conf. If this computer uses a local stub (127.0.0.53), "
            "give the ones your router's DHCP hands out: those are what the device asks.",
            show_default=False,
        ),
    ] = None,
    system_resolver: Annotated[
        bool,
        typer.Option(
            help="Also resolve with this computer's own resolver, besides each DNS server."
        ),
    ] = True,
    api: Annotated[
        str | None,
        typer.Option(
            help=f"Cyan's HTTP API. Default: http://HOST:{DEFAULT_API_PORT}.", show_default=False
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="CYAN_TOKEN",
            help="An access token of the device's owner or the admin: lets the server say why "
            "it refused a handshake.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds each step may take.")] = 5.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rows as JSON on stdout, for scripts.")
    ] = False,
) -> None:
    """Check DNS, TCP, the server's nonce, the key image and a handshake, in the device's order.

    Run it from the device's network (a laptop on the same Wi-Fi).
    Exit code 0 if nothing failed, 1 otherwise.
    """
    keystore = _keystore(keys_dir, device_key, server_key, device_id)
    if server:
        host, port = parse_server(server)
    elif keystore is not None and keystore.server.address.host is not None:
        host, port = keystore.server.address.host, keystore.server.address.effective_port
    else:
        raise fail(
            "no server to check",
            "pass --server HOST[:PORT], or --keys DIR whose server key image names the server",
        )
    try:
        servers = [DnsServer.parse(text) for text in dns_servers or ()] or system_dns_servers()
    except ValueError as exc:
        raise fail(str(exc), "Give --dns-server as IP or IP:PORT, e.g. 192.168.1.1.") from None
    options = DoctorOptions(
        host=host,
        port=port,
        dns_servers=tuple(servers),
        system_resolver=system_resolver,
        keystore=keystore,
        api_url=api or f"http://{f'[{host}]' if ':' in host else host}:{DEFAULT_API_PORT}",
        token=token or None,
        timeout_s=timeout,
    )
    checks = asyncio.run(run_doctor(options))
    if as_json:
        typer.echo(json.dumps([check.as_json() for check in checks], indent=2, ensure_ascii=False))
    else:
        out.print(render(checks, f"{host}:{port}"))
        first_failure = next((c for c in checks if c.status is Status.FAIL), None)
        if first_failure is None and any(c.status is Status.NOTE for c in checks):
            out.print("[green]Nothing failed from here.[/] [yellow]Read the note above.[/]")
        elif first_failure is None:
            out.print("[green]Nothing failed.[/]")
        else:
            out.print(f"[bold red]First failure:[/] {first_failure.stage}")
    if not passed(checks):
        raise typer.Exit(1)


def _keystore(
    keys_dir: Path | None, device_key: Path | None, server_key: Path | None, device_id: str | None
) -> KeyStore | None:
    """The keys to check: a key directory, files given one by one, or both (files win)."""
    base = KeyStore.load(keys_dir) if keys_dir is not None else None
    if device_key is None and server_key is None and device_id is None:
        return base
    chosen_id = device_id or (base.device_id if base else None)
    chosen_key = device_key or (base.directory / DEVICE_KEY_FILE if base else None)
    chosen_server = server_key or (base.directory / SERVER_KEY_FILE if base else None)
    if chosen_id is None or chosen_key is None or chosen_server is None:
        missing = [
            name
            for name, value in (
                ("--device-id", chosen_id),
                ("--device-key", chosen_key),
                ("--server-key", chosen_server),
            )
            if value is None
        ]
        raise fail(
            f"the device's keys are incomplete: give {' and '.join(missing)} too",
            "Pass --device-id, --device-key and --server-key together, or --keys DIR.",
        )
    return KeyStore.from_files(chosen_id, chosen_key, chosen_server)


def render(checks: list[Check], target: str) -> Table:
    table = Table(title=f"cyan doctor: {escape(target)}", show_lines=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("found")
    table.add_column("cause and fix")
    for check in checks:
        advice = ""
        if check.cause:
            advice = escape(check.cause)
        if check.fix:
            advice += f"\n[bold]Fix:[/] {escape(check.fix)}"
        table.add_row(str(check.stage), _STATUS_STYLE[check.status], escape(check.detail), advice)
    return table
