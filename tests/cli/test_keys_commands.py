"""`cyan keys server`, `inspect` and `doctor` (src/cyan/cli/keys.py).

In process with typer's CliRunner against a real SQLite store, plus the installed `cyan`
against a running cloud for the virtual-device doctor. dfu-util is the real one (Debian
package dfu-util, installed by scripts/test) where no Photon is plugged in, and a stand-in
script that keeps a Photon's DCT in a file where the test needs a Photon.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from typer.testing import CliRunner, Result

from cyan.cli.keys import PARTICLE_CLOUD
from cyan.cli.main import app
from cyan.dfu import DEVICE_KEY_OFFSET
from cyan.keydir import DEVICE_KEY_FILE, SERVER_KEY_FILE, KeyStore
from cyan.protocol import crypto, keys
from cyan.settings import ADMIN_USERNAME, sqlite_url
from cyan.store import Store
from tests.served import served_data_dir
from tests.system import LOOPBACK, eventually, failures_at, running_cloud

T = TypeVar("T")
CYAN = str(Path(sys.executable).parent / "cyan")
NO_PHOTON = (
    "no Photon in DFU mode found (hold SETUP, tap RESET, release SETUP when it blinks yellow)"
)
DCT_BYTES = 16 * 1024


def cyan(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def said(result: Result) -> str:
    """What the command printed on stderr, with Rich's line wrapping undone."""
    return " ".join(result.stderr.split())


def with_store(data_dir: Path, work: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = await Store.open(sqlite_url(data_dir))
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def register(data_dir: Path, device_id: str, public: crypto.RsaPublicKey) -> None:
    async def work(store: Store) -> None:
        admin = await store.users.ensure(ADMIN_USERNAME)
        await store.devices.add(device_id, crypto.public_key_der(public), owner_id=admin.id)

    with_store(data_dir, work)


def stored_key(data_dir: Path, device_id: str) -> bytes | None:
    return with_store(data_dir, lambda store: store.devices.key(device_id))


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands write their files (images, backups) in the current directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return served_data_dir(tmp_path / "data")


@pytest.fixture
def key_dir(tmp_path: Path, data_dir: Path) -> Path:
    """A virtual device's key directory, its key registered in the store."""
    directory = tmp_path / "keys"
    result = cyan("keys", "new", "--out", str(directory), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    keystore = KeyStore.load(directory)
    register(data_dir, keystore.device_id, keystore.device_key.public_key())
    return directory


# -- cyan keys server -------------------------------------------------------------------------


def test_server_image_points_at_the_host_and_says_how_to_flash_it(
    tmp_path: Path, data_dir: Path
) -> None:
    image = tmp_path / "image.der"
    result = cyan(
        "keys",
        "server",
        "--host",
        "cloud.example.lan",
        "--port",
        "15683",
        "--out",
        str(image),
        "--data-dir",
        str(data_dir),
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(image)
    parsed = keys.parse_server_key_image(image.read_bytes())
    assert parsed.address == keys.ServerAddress("cloud.example.lan", 15683)
    own = crypto.load_private_key((data_dir / "server-key.pem").read_bytes()).public_key()
    assert crypto.same_public_key(parsed.public_key, own)
    assert f"dfu-util -d 2b04:d006 -a 1 -s 2082 -D {image}" in said(result)
    assert "Warning" not in said(result)


def test_server_image_without_host_warns_that_the_device_goes_to_particle(
    tmp_path: Path, data_dir: Path
) -> None:
    result = cyan("keys", "server", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    image = (tmp_path / SERVER_KEY_FILE).read_bytes()
    assert keys.parse_server_key_image(image).address.host is None
    assert "Warning: no --host" in said(result)
    assert "Particle's cloud (device.spark.io), not to this server" in said(result)


def test_server_image_refuses_bad_input(tmp_path: Path, data_dir: Path) -> None:
    port_only = cyan("keys", "server", "--port", "5683", "--data-dir", str(data_dir))
    assert port_only.exit_code == 1
    assert "--port needs --host" in said(port_only)
    device_key = tmp_path / "device.pem"
    device_key.write_bytes(crypto.public_key_pem(keys.generate_device_key().public_key()))
    small = cyan("keys", "server", "--host", "10.0.0.2", "--key", str(device_key))
    assert small.exit_code == 1
    assert "RSA-1024; a Photon's server key is RSA-2048" in said(small)
    assert not (tmp_path / SERVER_KEY_FILE).exists()


# -- cyan keys inspect ------------------------------------------------------------------------


def test_inspect_key_directory_names_the_device_and_this_server(
    key_dir: Path, data_dir: Path
) -> None:
    device_id = (key_dir / "device-id").read_text().strip()
    result = cyan("keys", "inspect", str(key_dir), "--json", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    device_key, image = json.loads(result.stdout)
    keystore = KeyStore.load(key_dir)
    assert device_key["kind"] == "device private key"
    assert device_key["bits"] == 1024
    assert device_key["fingerprint"] == crypto.fingerprint(keystore.device_key.public_key())
    assert device_key["device_id"] == device_id
    assert image["kind"] == "server key image"
    assert (image["host"], image["port"], image["port_is_default"]) == ("127.0.0.1", 5683, True)
    assert image["this_server"] is True
    assert image["belongs_to"] == "this server"

    table = cyan("keys", "inspect", str(key_dir / DEVICE_KEY_FILE), "--data-dir", str(data_dir))
    assert table.exit_code == 0, table.output
    assert "device private key" in table.stdout
    assert f"device {device_id} in this server's store" in table.stdout


def test_inspect_tells_other_servers_and_unknown_keys_apart(
    tmp_path: Path, data_dir: Path, key_dir: Path
) -> None:
    other_server = keys.generate_server_key().public_key()
    image = tmp_path / "other.der"
    image.write_bytes(keys.build_server_key_image(other_server))
    stranger = tmp_path / "stranger.pub.pem"
    stranger.write_bytes(crypto.public_key_pem(keys.generate_device_key().public_key()))
    server_pem = tmp_path / "server.pub.pem"
    server_pem.write_bytes(crypto.public_key_pem(other_server))
    found = {}
    for path in (image, stranger, server_pem):
        result = cyan("keys", "inspect", str(path), "--json", "--data-dir", str(data_dir))
        assert result.exit_code == 0, result.output
        (found[path.name],) = json.loads(result.stdout)
    assert found["other.der"]["host"] is None
    assert found["other.der"]["this_server"] is False
    assert found["other.der"]["belongs_to"].startswith("another server")
    assert found["stranger.pub.pem"]["kind"] == "device public key"
    assert found["stranger.pub.pem"]["device_id"] is None
    assert (
        found["stranger.pub.pem"]["belongs_to"] == "no device in this server's store has this key"
    )
    assert found["server.pub.pem"]["kind"] == "server public key"
    assert found["server.pub.pem"]["fingerprint"] == crypto.fingerprint(other_server)

    table = cyan("keys", "inspect", str(image), "--data-dir", str(data_dir))
    assert PARTICLE_CLOUD in " ".join(table.stdout.replace("│", " ").split())


def test_inspect_says_clearly_when_a_file_is_no_key(tmp_path: Path, data_dir: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a key\n")
    result = cyan("keys", "inspect", str(junk), "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "not a key image, RSA public key or RSA private key" in said(result)
    assert "Fix:" in said(result)
    big = tmp_path / "rsa4096.pem"
    big.write_bytes(crypto.public_key_pem(crypto.generate_rsa_key(4096).public_key()))
    result = cyan("keys", "inspect", str(big), "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "an RSA-4096 public key" in said(result)


def test_inspect_creates_no_store(tmp_path: Path) -> None:
    key_file = tmp_path / "device.der"
    key_file.write_bytes(crypto.private_key_der(keys.generate_device_key()))
    data_dir = tmp_path / "nothing-here"
    result = cyan("keys", "inspect", str(key_file), "--json", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["belongs_to"].startswith("unknown: no store")
    assert not data_dir.exists()


# -- cyan keys doctor: a virtual device, end to end ---------------------------------------------


async def test_doctor_lets_a_device_refused_for_its_key_connect(tmp_path: Path) -> None:
    async with running_cloud(tmp_path / "cloud") as cloud:
        keystore = KeyStore.create(
            tmp_path / "keys",
            cloud.node.gateway.server_key.public_key(),
            host=LOOPBACK,
            port=cloud.device_port,
        )
        device_id, old_der = keystore.device_id, (tmp_path / "keys" / DEVICE_KEY_FILE).read_bytes()
        # The store holds another key for this id, as after a lost or reflashed key.
        admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
        elsewhere = crypto.public_key_der(keys.generate_device_key().public_key())
        await cloud.node.store.devices.add(device_id, elsewhere, owner_id=admin.id, name="shed")
        refused = await cloud.add_device(keystore=keystore, register=False)
        await eventually(lambda: bool(failures_at(cloud, "key-mismatch")), what="key-mismatch")
        assert not refused.status.connected
        await refused.stop()

        process = await asyncio.create_subprocess_exec(
            CYAN,
            "keys",
            "doctor",
            device_id.upper(),
            "--keys",
            str(tmp_path / "keys"),
            "--data-dir",
            str(cloud.node.settings.data_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        )
        _, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        assert f"device {device_id} registered with its new key" in err.decode()

        rekeyed = KeyStore.load(tmp_path / "keys")
        new_der = crypto.public_key_der(rekeyed.device_key.public_key())
        assert new_der not in (elsewhere, crypto.public_key_der(keystore.device_key.public_key()))
        assert await cloud.node.store.devices.key(device_id) == new_der
        assert (tmp_path / "keys" / "backup_rsa_device-key.der").read_bytes() == old_der
        assert rekeyed.server == keystore.server  # the server key image is untouched
        record = await cloud.node.store.devices.get(device_id)
        assert record is not None
        assert (record.name, record.owner_id) == ("shed", admin.id)

        device = await cloud.add_device(keystore=rekeyed, register=False)
        await cloud.online(device)


def test_doctor_refuses_a_key_directory_of_another_device(key_dir: Path, data_dir: Path) -> None:
    before = (key_dir / DEVICE_KEY_FILE).read_bytes()
    result = cyan(
        "keys",
        "doctor",
        "0123456789abcdef01234567",
        "--keys",
        str(key_dir),
        "--data-dir",
        str(data_dir),
    )
    assert result.exit_code == 1
    assert "not 0123456789abcdef01234567" in said(result)
    assert (key_dir / DEVICE_KEY_FILE).read_bytes() == before
    assert not (key_dir / "backup_rsa_device-key.der").exists()


# -- cyan keys doctor: a Photon in DFU mode -------------------------------------------------------


def test_doctor_without_dfu_util_says_how_to_install_it(key_dir: Path, data_dir: Path) -> None:
    device_id = (key_dir / "device-id").read_text().strip()
    before = stored_key(data_dir, device_id)
    result = cyan(
        "keys",
        "doctor",
        device_id,
        "--dfu-util",
        "/nonexistent/dfu-util",
        "--data-dir",
        str(data_dir),
    )
    assert result.exit_code == 1
    assert "no dfu-util at /nonexistent/dfu-util" in said(result)
    assert "apt install dfu-util" in said(result)
    assert stored_key(data_dir, device_id) == before


def test_doctor_with_no_photon_plugged_in_changes_nothing(
    tmp_path: Path, key_dir: Path, data_dir: Path
) -> None:
    assert shutil.which("dfu-util"), "dfu-util is missing: apt install dfu-util (scripts/test)"
    device_id = (key_dir / "device-id").read_text().strip()
    before = stored_key(data_dir, device_id)
    result = cyan("keys", "doctor", device_id, "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert NO_PHOTON in said(result)
    assert stored_key(data_dir, device_id) == before
    assert not list(tmp_path.glob("*.der"))


FAKE_DFU_UTIL = """\
#!{python}
# dfu-util 0.11's command line, for one Photon whose DCT (alt 1) is a file.
import json, os, sqlite3, sys
state, serial, database = {state!r}, {serial!r}, {database!r}
args = sys.argv[1:]
# Each call is logged with the key the store holds for the device at that moment.
with sqlite3.connect(database) as db:
    row = db.execute("SELECT public_key_der FROM device_keys WHERE lower(device_id) = ?",
                     (serial.lower(),)).fetchone()
with open(os.path.join(state, "calls.log"), "a") as log:
    log.write(json.dumps([args, row[0].hex() if row else None]) + "\\n")
if args == ["-l"]:
    for alt, name in ((0, "Internal Flash  /0x08000000/03*016Ka"),
                      (1, "DCT Flash   /0x00000000/01*016Ke")):
        print(f'Found DFU: [2b04:d006] ver=0250, devnum=9, cfg=1, intf=0, path="1-1", '
              f'alt={{alt}}, name="@{{name}}", serial="{{serial}}"')
    sys.exit(0)
option = dict(zip(args[::2], args[1::2]))
assert option["-d"] == "2b04:d006" and option["-a"] == "1" and option["-S"] == serial, args
dct_path = os.path.join(state, "dct.bin")
dct = bytearray(open(dct_path, "rb").read())
address, _, modifier = option["-s"].partition(":")
address = int(address)
if "-U" in option:
    fd = os.open(option["-U"], os.O_WRONLY | os.O_CREAT | os.O_EXCL)  # as dfu-util does
    os.write(fd, bytes(dct[address:address + int(modifier)]))
    sys.exit(0)
if os.path.exists(os.path.join(state, "fail-download")):
    print("dfu-util: Error during download", file=sys.stderr)
    sys.exit(74)
if not os.path.exists(os.path.join(state, "ignore-download")):
    data = open(option["-D"], "rb").read()
    dct[address:address + len(data)] = data
    open(dct_path, "wb").write(bytes(dct))
"""


@pytest.fixture
def photon(tmp_path: Path, key_dir: Path, data_dir: Path) -> tuple[Path, Path]:
    """(fake dfu-util, its state dir): a Photon in DFU mode holding the key dir's key."""
    state = tmp_path / "photon"
    state.mkdir()
    device_id = (key_dir / "device-id").read_text().strip()
    dct = bytearray(b"\xff" * DCT_BYTES)
    der = (key_dir / DEVICE_KEY_FILE).read_bytes()
    dct[DEVICE_KEY_OFFSET : DEVICE_KEY_OFFSET + len(der)] = der
    (state / "dct.bin").write_bytes(bytes(dct))
    tool = tmp_path / "fake-dfu-util"
    tool.write_text(
        FAKE_DFU_UTIL.format(
            python=sys.executable,
            state=str(state),
            serial=device_id.upper(),
            database=str(data_dir / "cyan.db"),
        )
    )
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool, state


def dct_key(state: Path) -> crypto.RsaPublicKey:
    dct = (state / "dct.bin").read_bytes()
    slot = dct[DEVICE_KEY_OFFSET : DEVICE_KEY_OFFSET + keys.DEVICE_KEY_SLOT_BYTES]
    return crypto.load_private_key(slot).public_key()


def test_doctor_writes_the_photon_then_registers_then_restarts_it(
    tmp_path: Path, key_dir: Path, data_dir: Path, photon: tuple[Path, Path]
) -> None:
    tool, state = photon
    device_id = (key_dir / "device-id").read_text().strip()
    old_slot = (state / "dct.bin").read_bytes()[DEVICE_KEY_OFFSET : DEVICE_KEY_OFFSET + 612]
    before = stored_key(data_dir, device_id)
    assert before is not None
    result = cyan("keys", "doctor", device_id, "--dfu-util", str(tool), "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output

    new_public = dct_key(state)
    assert stored_key(data_dir, device_id) == crypto.public_key_der(new_public)
    assert (tmp_path / f"backup_rsa_{device_id}.der").read_bytes() == old_slot
    kept = crypto.load_private_key((tmp_path / f"{device_id}_rsa_new.der").read_bytes())
    assert crypto.same_public_key(kept.public_key(), new_public)
    old_key, new_key = before.hex(), crypto.public_key_der(new_public).hex()
    calls = [json.loads(line) for line in (state / "calls.log").read_text().splitlines()]
    # Each step as its address and operation (-s 34:612 -U FILE -> ["34:612", "-U"]).
    steps = [
        (args[args.index("-s") + 1 :][:2] if "-s" in args else args, key) for args, key in calls
    ]
    assert steps == [
        (["-l"], old_key),
        (["34:612", "-U"], old_key),  # back up the key slot
        (["34", "-D"], old_key),  # write the new key
        (["34:612", "-U"], old_key),  # read it back
        (["34:leave", "-D"], new_key),  # registered: now restart it
    ]


@pytest.mark.parametrize("failure", ["fail-download", "ignore-download"])
def test_doctor_registers_nothing_when_the_write_fails(
    tmp_path: Path, key_dir: Path, data_dir: Path, photon: tuple[Path, Path], failure: str
) -> None:
    tool, state = photon
    (state / failure).touch()
    device_id = (key_dir / "device-id").read_text().strip()
    before = stored_key(data_dir, device_id)
    result = cyan("keys", "doctor", device_id, "--dfu-util", str(tool), "--data-dir", str(data_dir))
    assert result.exit_code == 1
    assert "writing the new key to the Photon failed; the store was not changed" in said(result)
    assert f"-D backup_rsa_{device_id}.der" in said(result)
    assert stored_key(data_dir, device_id) == before


def test_doctor_refuses_another_photon(
    tmp_path: Path, data_dir: Path, photon: tuple[Path, Path]
) -> None:
    tool, state = photon
    result = cyan(
        "keys",
        "doctor",
        "0123456789abcdef01234567",
        "--dfu-util",
        str(tool),
        "--data-dir",
        str(data_dir),
    )
    assert result.exit_code == 1
    assert "not 0123456789abcdef01234567" in said(result)
    assert len((state / "calls.log").read_text().splitlines()) == 1  # only listed
