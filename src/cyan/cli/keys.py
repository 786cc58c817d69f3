"""`cyan keys …`: device key directories, server key images, inspecting and replacing keys.

DCT offsets, the 512-byte server key image and the doctor steps: rest-api.md §8.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cyan.cli.admin import with_store
from cyan.cli.options import DatabaseUrl, DataDir, data_dir_origin
from cyan.cli.output import console, fail, out, reports_errors
from cyan.datadir import SERVER_KEY_FILE as OWN_KEY_FILE
from cyan.datadir import load_or_create_server_key, load_server_key
from cyan.dfu import (
    DCT_ALT,
    DFU_MODE,
    PHOTON_DFU,
    SERVER_KEY_OFFSET,
    DfuError,
    find_photon,
    replace_photon_key,
)
from cyan.errors import CyanError
from cyan.files import unused_name, write_atomically
from cyan.keydir import DEVICE_KEY_FILE, SERVER_KEY_FILE, KeyStore
from cyan.protocol import crypto, keys
from cyan.settings import ADMIN_USERNAME, load_settings, sqlite_url

if TYPE_CHECKING:
    from cyan.store import Store

keys_app = typer.Typer(help="Device and server keys.", no_args_is_help=True)

PUBLIC_PEM_FILE = "device-key.pub.pem"
PARTICLE_CLOUD = "not set: device goes to Particle's cloud (device.spark.io)"


def server_public_key(path: Path | None, data_dir: Path | None) -> crypto.RsaPublicKey:
    """The key in ``path`` (PEM, DER or a key image), else this server's from the data dir."""
    if path is None:
        # Only `cyan serve` makes a server key: one made here would be trusted by nobody.
        directory = load_settings(data_dir=data_dir).data_dir
        return load_server_key(directory, data_dir_origin(data_dir)).public_key()
    try:
        public = crypto.load_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read the server key {path}: {exc}") from None
    if crypto.key_bits(public) != keys.SERVER_KEY_BITS:
        # The firmware reads exactly 294 bytes of DER at 2082 (rest-api.md §8.1).
        raise fail(f"{path} is RSA-{crypto.key_bits(public)}; a Photon's server key is RSA-2048")
    return public


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
    server_public = server_public_key(server_key, data_dir)
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


@keys_app.command("server")
@reports_errors
def keys_server(
    host: Annotated[
        str | None, typer.Option(help="IPv4 address or name devices reach this server at.")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Device port, if not 5683.")] = None,
    out_file: Annotated[Path, typer.Option("--out", help="Image file to write.")] = Path(
        SERVER_KEY_FILE
    ),
    key: Annotated[
        Path | None, typer.Option("--key", help="Server public key, PEM or DER. Default: ours.")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Write the 512-byte server key image a Photon keeps at DCT offset 2082."""
    if port is not None and host is None:
        # particle-cli 3.51 drops a port given without a host; refuse rather than do the same.
        raise fail("--port needs --host", "Give --host with this server's address.")
    public = server_public_key(key, data_dir)
    try:
        image = keys.build_server_key_image(public, host, port)
    except ValueError as exc:
        raise fail(str(exc)) from None
    write_atomically(out_file, image)
    if host is None:
        console.print(
            "[bold yellow]Warning: no --host.[/] A Photon with this image connects to "
            "[bold]Particle's cloud (device.spark.io), not to this server[/]."
        )
    console.print(
        f"server key  {crypto.fingerprint(public)[:16]}…\n"
        f"address     {keys.ServerAddress(host, port) if host else PARTICLE_CLOUD}\n"
        f"image       {out_file} ({len(image)} bytes)\n\n"
        f"Next: put the Photon in DFU mode ({DFU_MODE}), then\n"
        f"      dfu-util -d {PHOTON_DFU} -a {DCT_ALT} -s {SERVER_KEY_OFFSET} -D {out_file}\n"
        f"  or  particle keys server {out_file}"
    )
    out.print(str(out_file))


@dataclass(frozen=True, slots=True)
class KeyFacts:
    """What `cyan keys inspect` says about one key; also its --json shape."""

    path: str
    kind: str
    bits: int
    fingerprint: str
    belongs_to: str
    this_server: bool | None = None  # server keys, when this server has a key
    device_id: str | None = None  # device keys registered in the store
    host: str | None = None  # key images: None means Particle's cloud
    port: int | None = None
    port_is_default: bool | None = None  # 0xFFFF in the image: the device uses 5683


def identify(data: bytes) -> tuple[str, crypto.RsaPublicKey, keys.ServerAddress | None]:
    """(kind, public key, address if a key image) of a key file's bytes, or ValueError."""
    if len(data) == keys.SERVER_KEY_IMAGE_BYTES and not data.lstrip().startswith(b"-----"):
        try:
            image = keys.parse_server_key_image(data)
            return "server key image", image.public_key, image.address
        except ValueError:
            pass  # 512 bytes but no image: a key read from a slot, maybe
    try:
        public, kind = crypto.load_private_key(data).public_key(), "private key"
    except ValueError:
        try:
            public, kind = crypto.load_public_key(data), "public key"
        except ValueError:
            raise ValueError("not a key image, RSA public key or RSA private key") from None
    role = {keys.DEVICE_KEY_BITS: "device", keys.SERVER_KEY_BITS: "server"}
    if (bits := crypto.key_bits(public)) not in role:
        raise ValueError(f"an RSA-{bits} {kind}; Photon keys are RSA-1024, server keys RSA-2048")
    return f"{role[bits]} {kind}", public, None


async def registered_to(store: Store, der: bytes, hint: str | None) -> tuple[str, str | None]:
    """Which registered device has this public key: ``hint`` (from a key directory), else any."""
    if hint is not None:
        stored = await store.devices.key(hint)
        if stored is None:
            return f"device {hint} is not registered in this server's store", None
        if stored != der:
            other = crypto.fingerprint(crypto.load_public_key(stored))[:16]
            return f"device {hint} is registered with another key ({other}…)", None
        return f"device {hint} in this server's store", hint
    # The store has no lookup by key; a scan is fine for a command run by hand.
    for record in await store.devices.all(owner_id=None):
        if await store.devices.key(record.id) == der:
            return f"device {record.id} in this server's store", record.id
    return "no device in this server's store has this key", None


@keys_app.command("inspect")
@reports_errors
def keys_inspect(
    path: Annotated[Path, typer.Argument(help="A key image, key file or key directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Say what a key file is, where it sends a device, and whose key it is on this server."""
    hint = KeyStore.load(path).device_id if path.is_dir() else None
    found = []
    for file in [path / DEVICE_KEY_FILE, path / SERVER_KEY_FILE] if hint else [path]:
        try:
            found.append((file, *identify(file.read_bytes())))
        except OSError as exc:
            raise fail(f"cannot read {file}: {exc.strerror}") from None
        except ValueError as exc:
            raise fail(
                f"{file}: {exc}",
                "Give a 512-byte server key image, an RSA public key (PEM or DER), a device "
                "private key (device-key.der, particle keys new) or a key directory.",
            ) from None
    settings = load_settings(data_dir=data_dir, database_url=database_url)
    own_file = settings.data_dir / OWN_KEY_FILE
    own = load_or_create_server_key(settings.data_dir).public_key() if own_file.exists() else None

    async def describe(store: Store | None) -> list[KeyFacts]:
        facts = []
        for file, kind, public, address in found:
            this, device = None, None
            if kind.startswith("server"):
                if own is None:
                    belongs = f"unknown: no server key in {settings.data_dir}"
                else:
                    this = crypto.same_public_key(public, own)
                    mine = crypto.fingerprint(own)[:16]
                    belongs = "this server" if this else f"another server (ours is {mine}…)"
            elif store is None:
                belongs = f"unknown: no store in {settings.data_dir}"
            else:
                der = crypto.public_key_der(public)
                belongs, device = await registered_to(store, der, hint)
            key = (crypto.key_bits(public), crypto.fingerprint(public))
            where = (address.host, address.effective_port, address.port is None) if address else ()
            facts.append(KeyFacts(str(file), kind, *key, belongs, this, device, *where))
        return facts

    # Looking must not create a database: no default SQLite file means no store yet.
    default_url = sqlite_url(settings.data_dir)
    no_store = (
        settings.database_url == default_url and not Path(default_url.split(":///")[1]).exists()
    )
    if any(kind.startswith("device") for _, kind, _, _ in found) and not no_store:
        report = with_store(data_dir, database_url, describe)
    else:
        report = asyncio.run(describe(None))
    if as_json:
        typer.echo(json.dumps([asdict(facts) for facts in report], indent=2))
        return
    for facts in report:
        table = Table(title=facts.path, show_header=False, title_justify="left")
        table.add_row("kind", facts.kind, style="bold")
        table.add_row("key", f"RSA-{facts.bits}")
        if facts.kind == "server key image":
            table.add_row("host", facts.host or PARTICLE_CLOUD)
            default = " (0xFFFF in the image: the default)" if facts.port_is_default else ""
            table.add_row("port", f"{facts.port}{default}")
        table.add_row("SHA-256", facts.fingerprint)
        table.add_row("belongs to", facts.belongs_to)
        out.print(table)


def replace_directory_key(directory: Path, device_id: str, key: crypto.RsaPrivateKey) -> Path:
    """Put ``key`` in a virtual device's key directory; the old key stays in a backup file."""
    keystore = KeyStore.load(directory)
    if keystore.device_id != device_id:
        raise fail(f"{directory} holds the keys of device {keystore.device_id}, not {device_id}")
    key_file = directory / DEVICE_KEY_FILE
    backup = unused_name(directory / f"backup_rsa_{DEVICE_KEY_FILE}")
    write_atomically(backup, key_file.read_bytes(), 0o600)
    write_atomically(key_file, crypto.private_key_der(key), 0o600)
    write_atomically(directory / PUBLIC_PEM_FILE, crypto.public_key_pem(key.public_key()))
    return backup


@keys_app.command("doctor")
@reports_errors
def keys_doctor(
    device_id: Annotated[str, typer.Argument(help="The device's id (24 hex characters).")],
    keys_dir: Annotated[
        Path | None, typer.Option("--keys", help="A virtual device's key directory.")
    ] = None,
    dfu_util: Annotated[
        str | None, typer.Option("--dfu-util", help="dfu-util to run. Default: from PATH.")
    ] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Give a device a new RSA-1024 key and register it in place of the old one.

    With --keys: a virtual device's key directory. Without: a Photon in DFU mode on USB,
    through dfu-util. The store changes only once the device holds the new key.
    """
    try:
        device_id = keys.normalize_device_id(device_id)
    except ValueError as exc:
        raise fail(str(exc)) from None
    dfu = None if keys_dir is not None else find_photon(dfu_util, device_id)
    key = keys.generate_device_key()

    async def replace(store: Store) -> Path:
        # Read first: a store we cannot reach fails here, before the device is touched.
        existing = await store.devices.get(device_id)
        if dfu is None:
            assert keys_dir is not None
            new_file = keys_dir / DEVICE_KEY_FILE
            backup = replace_directory_key(keys_dir, device_id, key)
        else:
            der = crypto.private_key_der(key)
            backup, new_file = await asyncio.to_thread(replace_photon_key, dfu, device_id, der)
        console.print(f"new key written to {keys_dir or 'the Photon'}; the old one is in {backup}")
        try:
            # Like POST /v1/provisioning: the key is replaced, a new device goes to the admin.
            owner = None if existing else (await store.users.ensure(ADMIN_USERNAME)).id
            await store.devices.add(
                device_id, crypto.public_key_der(key.public_key()), owner_id=owner
            )
        except CyanError as exc:
            raise fail(
                f"the device holds its new key, but registering it failed: {exc.message}",
                f"cyan device add {device_id} --public-key {new_file}",
            ) from None
        return new_file

    new_file = with_store(data_dir, database_url, replace)
    # Restart the Photon only now, so its first handshake finds the new key registered.
    if dfu is not None:
        try:
            dfu.write_key(new_file, leave=True)
        except DfuError as exc:
            console.print(
                f"[yellow]The Photon did not restart by itself ({exc.message}):[/] "
                "tap its RESET button."
            )
    console.print(
        f"device [bold]{device_id}[/] registered with its new key "
        f"{crypto.fingerprint(key.public_key())[:16]}…; it connects at its next try"
    )
