"""`cyan keys …`: device key directories and server keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cyan.cli.options import DataDir
from cyan.cli.output import console, fail, out, reports_errors
from cyan.datadir import load_or_create_server_key
from cyan.device import KeyStore
from cyan.device.keystore import DEVICE_KEY_FILE
from cyan.protocol import crypto, keys
from cyan.settings import load_settings

keys_app = typer.Typer(help="Device and server keys.", no_args_is_help=True)

PUBLIC_PEM_FILE = "device-key.pub.pem"


@keys_app.command("new")
@reports_errors
def keys_new(
    out_dir: Annotated[Path, typer.Option("--out", help="Key directory to create.")],
    server_host: Annotated[
        str, typer.Option(help="Server address written into the server key image.")
    ] = "127.0.0.1",
    server_port: Annotated[
        int | None, typer.Option(help="Server port in the image (default: 5683).")
    ] = None,
    server_key: Annotated[
        Path | None,
        typer.Option(help="Server public key (PEM/DER). Default: the one in --data-dir."),
    ] = None,
    device_id: Annotated[
        str | None, typer.Option(help="Device id to use (default: a new random one).")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Make a key directory for a virtual device: a new device key and the server key image."""
    if (out_dir / DEVICE_KEY_FILE).exists():
        raise fail(f"{out_dir} already holds a device key", "Pick another --out directory.")
    if server_key is not None:
        try:
            server_public = crypto.load_public_key(server_key.read_bytes())
        except (OSError, ValueError) as exc:
            raise fail(f"cannot read the server key {server_key}: {exc}") from None
    else:
        settings = load_settings(data_dir=data_dir)
        server_public = load_or_create_server_key(settings.data_dir).public_key()
    try:
        store = KeyStore.create(
            out_dir, server_public, host=server_host, port=server_port, device_id=device_id
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    pem_path = out_dir / PUBLIC_PEM_FILE
    pem_path.write_bytes(store.public_key_pem)
    console.print(
        f"device id   [bold]{store.device_id}[/]\n"
        f"key dir     {out_dir}\n"
        f"server      {store.server.address}\n\n"
        f"Next: cyan device add {store.device_id} --public-key {pem_path}\n"
        f"      cyan device run --keys {out_dir} --server "
        f"{server_host}:{server_port or keys.DEFAULT_SERVER_PORT}"
    )
    out.print(store.device_id)
