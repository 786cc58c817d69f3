"""`cyan keys …`: device key directories, server key images, inspecting and replacing keys.

DCT offsets, the 512-byte server key image and the doctor steps: rest-api.md §8.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cyan.cli.admin import with_store
from cyan.cli.options import DatabaseUrl, DataDir
from cyan.cli.output import console, fail, out, reports_errors
from cyan.datadir import SERVER_KEY_FILE as OWN_KEY_FILE
from cyan.datadir import load_or_create_server_key
from cyan.device import KeyStore
from cyan.device.keystore import DEVICE_KEY_FILE, SERVER_KEY_FILE
from cyan.errors import CyanError
from cyan.protocol import crypto, keys
from cyan.settings import ADMIN_USERNAME, load_settings, sqlite_url

if TYPE_CHECKING:
    from cyan.store import Store

keys_app = typer.Typer(help="Device and server keys.", no_args_is_help=True)

PUBLIC_PEM_FILE = "device-key.pub.pem"
# A Photon in DFU mode, and where its DCT (alt 1) keeps the keys (rest-api.md §8.1).
PHOTON_DFU = "2b04:d006"
DCT_ALT = "1"
DEVICE_KEY_OFFSET = 34
SERVER_KEY_OFFSET = 2082
DFU_MODE = "hold SETUP, tap RESET, release SETUP when it blinks yellow"
DFU_TIMEOUT_S = 60.0
INSTALL_DFU_UTIL = (
    "Install it: sudo apt install dfu-util (Debian, Ubuntu), brew install dfu-util (macOS); "
    "or give --dfu-util PATH. For a virtual device give --keys DIR instead."
)
PARTICLE_CLOUD = "not set: device goes to Particle's cloud (device.spark.io)"


def server_public_key(path: Path | None, data_dir: Path | None) -> crypto.RsaPublicKey:
    """The key in ``path`` (PEM, DER or a key image), else this server's from the data dir."""
    if path is None:
        return load_or_create_server_key(load_settings(data_dir=data_dir).data_dir).public_key()
    try:
        public = crypto.load_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read the server key {path}: {exc}") from None
    if crypto.key_bits(public) != keys.SERVER_KEY_BITS:
        # The firmware reads exactly 294 bytes of DER at 2082 (rest-api.md §8.1).
        raise fail(f"{path} is RSA-{crypto.key_bits(public)}; a Photon's server key is RSA-2048")
    return public


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a temporary file beside ``path``, then rename it over: never half a key."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def unused_name(path: Path) -> Path:
    """``path``, or ``name-1.der``, ``name-2.der``…: a backup never replaces an older one."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


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
        stored = await store.device_key(hint)
        if stored is None:
            return f"device {hint} is not registered in this server's store", None
        if stored != der:
            other = crypto.fingerprint(crypto.load_public_key(stored))[:16]
            return f"device {hint} is registered with another key ({other}…)", None
        return f"device {hint} in this server's store", hint
    # The store has no lookup by key; a scan is fine for a command run by hand.
    for record in await store.list_devices(owner_id=None):
        if await store.device_key(record.id) == der:
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


@dataclass(frozen=True, slots=True)
class Dfu:
    """dfu-util aimed at one Photon's DCT (alt 1)."""

    tool: str
    serial: str

    def run(self, *args: str) -> bool:
        argv = [self.tool, "-d", PHOTON_DFU, "-S", self.serial, "-a", DCT_ALT, *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=DFU_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            console.print(f"[red]{' '.join(argv)}:[/] {exc}")
            return False
        if done.returncode != 0:
            console.print(f"[red]{' '.join(argv)} exited {done.returncode}:[/] {done.stderr}")
        return done.returncode == 0

    def read_key(self, path: Path) -> bool:
        return self.run("-s", f"{DEVICE_KEY_OFFSET}:{keys.DEVICE_KEY_SLOT_BYTES}", "-U", str(path))

    def write_key(self, path: Path, *, leave: bool = False) -> bool:
        return self.run("-s", f"{DEVICE_KEY_OFFSET}{':leave' * leave}", "-D", str(path))


FOUND_DFU = re.compile(r'Found DFU: \[(?P<usb>[0-9a-fA-F:]+)\].*?serial="(?P<serial>[^"]*)"')


def find_photon(dfu_util: str | None, device_id: str) -> Dfu:
    """dfu-util and the Photon in DFU mode with this id, or a plain error saying what is not."""
    tool = shutil.which(dfu_util or "dfu-util")
    if tool is None:
        missing = f"no dfu-util at {dfu_util}" if dfu_util else "dfu-util is not on PATH"
        raise fail(f"{missing}; it is needed to write a key to a Photon", INSTALL_DFU_UTIL)
    try:
        listed = subprocess.run([tool, "-l"], capture_output=True, text=True, timeout=DFU_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise fail(f"{tool} -l failed: {exc}", INSTALL_DFU_UTIL) from None
    found = FOUND_DFU.finditer(listed.stdout)
    serials = {m["serial"] for m in found if m["usb"].lower() == PHOTON_DFU}
    if not serials:
        denied = "LIBUSB_ERROR_ACCESS" in listed.stdout + listed.stderr
        raise fail(
            f"no Photon in DFU mode found ({DFU_MODE})",
            "Run as root or add a udev rule for 2b04:d006."
            if denied
            else f"Connect it over USB, then check with: {tool} -l",
        )
    # A Photon in DFU mode gives its device id as its USB serial number.
    for serial in serials:
        if serial.lower() == device_id:
            return Dfu(tool, serial)
    raise fail(
        f"the Photon in DFU mode is {', '.join(sorted(serials))}, not {device_id}",
        "Put the right device in DFU mode, or unplug the others.",
    )


def replace_photon_key(dfu: Dfu, device_id: str, der: bytes) -> tuple[Path, Path]:
    """Save the Photon's key slot, write the new key, read it back: (backup, new key file)."""
    backup = unused_name(Path(f"backup_rsa_{device_id}.der"))  # particle-cli's name for it
    if not dfu.read_key(backup):
        raise fail(f"could not read the Photon's current key; nothing was changed ({DFU_MODE})")
    new_file = unused_name(Path(f"{device_id}_rsa_new.der"))
    write_atomically(new_file, der, 0o600)
    check = unused_name(Path(f".{device_id}_rsa_check.der"))
    try:
        written = dfu.write_key(new_file) and dfu.read_key(check)
        written = written and check.read_bytes()[: len(der)] == der
    finally:
        check.unlink(missing_ok=True)
    if not written:
        raise fail(
            "writing the new key to the Photon failed; the store was not changed",
            f"Put the old key back: dfu-util -d {PHOTON_DFU} -a {DCT_ALT} -s "
            f"{DEVICE_KEY_OFFSET} -D {backup}",
        )
    return backup, new_file


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
        existing = await store.get_device(device_id)
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
            owner = None if existing else (await store.ensure_user(ADMIN_USERNAME)).id
            await store.add_device(
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
    if dfu is not None and not dfu.write_key(new_file, leave=True):
        console.print("[yellow]The Photon did not restart by itself:[/] tap its RESET button.")
    console.print(
        f"device [bold]{device_id}[/] registered with its new key "
        f"{crypto.fingerprint(key.public_key())[:16]}…; it connects at its next try"
    )
