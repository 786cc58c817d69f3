"""`cyan doctor` against real parts on loopback: a running cloud, listeners that misbehave,
and a DNS server of our own on 127.0.0.1 (never the network's: every address is 127.0.0.0/8).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cyan.cli.main import app
from cyan.diagnose import diagnose_device_side, explain_stage
from cyan.diagnose.checks import Check, Status, Step, passed
from cyan.diagnose.doctor import DoctorOptions, check_dns, run_doctor
from cyan.keydir import KeyStore
from cyan.net.resolver import DnsServer
from cyan.protocol import ProtocolError, Stage, crypto
from tests.dns import FakeDns, fake_dns
from tests.ports import free_port
from tests.system import LOOPBACK, Cloud, eventually, running_cloud
from tests.vectors import other_server_key

# A name under the reserved .invalid TLD (RFC 6761): no real resolver may answer it, and
# only our own DNS server is ever asked about it here.
NO_SUCH_HOST = "photon-cloud.invalid"
CLOUD_NAME = "cloud.cyan.invalid"
CYAN = str(Path(sys.executable).parent / "cyan")  # the installed command, .venv/bin/cyan


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_cloud(tmp_path / "cloud") as started:
        yield started


def dns_of(server: FakeDns) -> DnsServer:
    return DnsServer(LOOPBACK, server.port)


def api_of(cloud: Cloud) -> str:
    return f"http://{LOOPBACK}:{cloud.node.api_port}"


def row(checks: list[Check], step: Step) -> Check:
    (found,) = [check for check in checks if check.stage is step]
    return found


def statuses(checks: list[Check]) -> dict[str, str]:
    return {str(check.stage): str(check.status) for check in checks}


# -- healthy --------------------------------------------------------------------------------


async def test_a_registered_device_passes_every_stage(cloud: Cloud) -> None:
    device = await cloud.add_device(start=False)
    checks = await run_doctor(
        DoctorOptions(
            host=LOOPBACK,
            port=cloud.device_port,
            keystore=device.keys,
            api_url=api_of(cloud),
            token=cloud.token,
            timeout_s=5,
        )
    )
    assert [check.stage for check in checks] == list(Step)
    assert all(check.status is Status.PASS for check in checks[:-1]), checks
    # The device itself never tried: a note, which fails nothing.
    record = row(checks, Step.SERVER_RECORD)
    assert record.status is Status.NOTE
    assert "nothing it tried reached this server" in record.detail
    assert passed(checks)
    assert "no DNS needed" in row(checks, Step.DNS).detail
    assert crypto.fingerprint(cloud.node.gateway.server_key.public_key())[:16] in (
        row(checks, Step.SERVER_KEY).detail
    )
    assert "breathe cyan" in row(checks, Step.HANDSHAKE).detail
    # Doctor said goodbye before hanging up: the server recorded no dropped connection.
    await eventually(lambda: not cloud.node.gateway.sessions, 10, "doctor's session closed")
    await cloud.node.gateway.flush()
    assert await cloud.node.store.failures.for_device(device.device_id) == []


async def test_the_servers_record_of_a_connected_device_passes(cloud: Cloud) -> None:
    device = await cloud.add_device()
    await cloud.online(device)
    api = f"http://{LOOPBACK}:{cloud.node.api_port}"
    checks = await run_doctor(
        DoctorOptions(
            host=LOOPBACK,
            port=cloud.device_port,
            keystore=device.keys,
            api_url=api,
            token=cloud.token,
        )
    )
    assert row(checks, Step.SERVER_RECORD).status is Status.PASS
    assert row(checks, Step.SERVER_RECORD).detail == "the server has the device connected"


async def test_the_servers_record_of_a_failing_device_fails_with_its_cause(
    cloud: Cloud, tmp_path: Path
) -> None:
    device = await cloud.add_device(register=False)  # it tries, and is refused each time
    await eventually(
        lambda: device.status.last_error is not None, 10, "the device's failed attempt"
    )
    await cloud.node.gateway.flush()  # what the sweep would write by itself
    checks = await run_doctor(
        DoctorOptions(
            host=LOOPBACK,
            port=cloud.device_port,
            keystore=device.keys,
            api_url=api_of(cloud),
            token=cloud.token,
        )
    )
    record = row(checks, Step.SERVER_RECORD)
    assert record.status is Status.FAIL
    assert record.failure_stage == "unknown-device"
    assert "its last connection attempt failed: stage unknown-device" in record.detail
    assert record.cause == explain_stage(Stage.UNKNOWN_DEVICE, "").cause


async def test_a_server_name_from_the_devices_dns_server_passes(
    cloud: Cloud, tmp_path: Path
) -> None:
    keystore = KeyStore.create(
        tmp_path / "named",
        cloud.node.gateway.server_key.public_key(),
        host=CLOUD_NAME,
        port=cloud.device_port,
    )
    await cloud.add_device(keystore=keystore, start=False)
    async with fake_dns({CLOUD_NAME: LOOPBACK}) as server:
        checks = await run_doctor(
            DoctorOptions(
                host=CLOUD_NAME,
                port=cloud.device_port,
                dns_servers=(dns_of(server),),
                system_resolver=False,
                keystore=keystore,
                api_url=api_of(cloud),
            )
        )
    assert [check.status for check in checks] == [Status.PASS] * 5 + [Status.SKIPPED], checks
    assert "pass --token" in row(checks, Step.SERVER_RECORD).detail
    assert server.queries == [CLOUD_NAME]
    assert f"{CLOUD_NAME} → 127.0.0.1" in row(checks, Step.DNS).detail


async def test_the_system_resolver_reads_hosts_entries() -> None:
    # localhost must come from /etc/hosts, or this lookup would leave the machine.
    hosts = (await asyncio.to_thread(Path("/etc/hosts").read_text)).split("\n")
    assert any(
        line.split()[:1] == [LOOPBACK] and "localhost" in line.split()[1:] for line in hosts
    ), "/etc/hosts must map localhost to 127.0.0.1 for this test to stay on loopback"
    checks, address = await check_dns(DoctorOptions(host="localhost", port=1))
    assert address == LOOPBACK
    assert [check.status for check in checks] == [Status.PASS]
    assert "this computer's resolver: localhost → 127.0.0.1" in checks[0].detail


# -- network stages -------------------------------------------------------------------------


async def test_a_closed_port_fails_tcp_and_skips_the_rest(tmp_path: Path) -> None:
    port = free_port()
    checks = await run_doctor(DoctorOptions(host=LOOPBACK, port=port, timeout_s=2))
    tcp = row(checks, Step.TCP)
    assert tcp.status is Status.FAIL
    assert f"nothing listens on port {port}: is cyan serve running?" in tcp.detail
    assert tcp.cause == explain_stage(Stage.TCP, "").cause
    assert statuses(checks) == {
        "dns": "pass",
        "tcp": "fail",
        "nonce": "skipped",
        "server-key": "skipped",
        "handshake": "skipped",
        "server-record": "skipped",
    }
    assert not passed(checks)


async def test_a_name_that_does_not_exist_fails_dns() -> None:
    async with fake_dns() as server:
        checks = await run_doctor(
            DoctorOptions(
                host=NO_SUCH_HOST, port=5683, dns_servers=(dns_of(server),), system_resolver=False
            )
        )
    dns_row = row(checks, Step.DNS)
    assert dns_row.status is Status.FAIL
    assert f"{NO_SUCH_HOST} does not exist (NXDOMAIN)" in dns_row.detail
    # Cause and fix come from the one table, with this finding as the detail.
    assert dns_row.cause == explain_stage(Stage.DNS, "").cause
    assert dns_row.failure_stage == "dns"
    assert server.queries == [NO_SUCH_HOST]
    assert [check.status for check in checks[1:]] == [Status.SKIPPED] * 5
    assert row(checks, Step.TCP).detail == "not checked: dns failed"


async def test_an_answer_of_0_0_0_0_fails_dns() -> None:
    async with fake_dns({CLOUD_NAME: "0.0.0.0"}) as server:
        checks = await run_doctor(
            DoctorOptions(
                host=CLOUD_NAME, port=5683, dns_servers=(dns_of(server),), system_resolver=False
            )
        )
    dns_row = row(checks, Step.DNS)
    assert dns_row.status is Status.FAIL
    assert f"{CLOUD_NAME} resolves to 0.0.0.0" in dns_row.detail
    assert row(checks, Step.TCP).status is Status.SKIPPED


async def test_dns_server_0_0_0_0_fails_without_sending_anything() -> None:
    # On Linux a datagram to 0.0.0.0 reaches a socket bound to 127.0.0.1: our DNS server on
    # the same port would see any query doctor sent.
    async with fake_dns({CLOUD_NAME: LOOPBACK}) as server:
        started = time.monotonic()
        checks = await run_doctor(
            DoctorOptions(
                host=CLOUD_NAME,
                port=5683,
                dns_servers=(DnsServer("0.0.0.0", server.port),),
                system_resolver=False,
            )
        )
        await asyncio.sleep(0.2)
    assert time.monotonic() - started < 1
    assert server.queries == []
    dns_row = row(checks, Step.DNS)
    assert dns_row.status is Status.FAIL
    assert "DHCP handed out DNS 0.0.0.0" in dns_row.detail
    assert "nothing was sent" in dns_row.detail


async def test_one_row_per_dns_server_and_any_failure_stops() -> None:
    async with fake_dns({CLOUD_NAME: LOOPBACK}) as good, fake_dns() as bad:
        checks = await run_doctor(
            DoctorOptions(
                host=CLOUD_NAME,
                port=5683,
                dns_servers=(dns_of(good), dns_of(bad)),
                system_resolver=False,
            )
        )
    dns_rows = [check for check in checks if check.stage is Step.DNS]
    assert [check.status for check in dns_rows] == [Status.PASS, Status.FAIL]
    assert str(good.port) in dns_rows[0].detail
    assert str(bad.port) in dns_rows[1].detail
    assert row(checks, Step.TCP).status is Status.SKIPPED


async def test_a_listener_that_sends_nothing_fails_the_nonce() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until doctor hangs up
        writer.close()

    listener = await asyncio.start_server(silent, LOOPBACK, 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        checks = await run_doctor(DoctorOptions(host=LOOPBACK, port=port, timeout_s=0.5))
    finally:
        listener.close()
        await listener.wait_closed()
    nonce = row(checks, Step.NONCE)
    assert row(checks, Step.TCP).status is Status.PASS
    assert nonce.status is Status.FAIL
    assert "sent no 40-byte nonce in 0.5 s" in nonce.detail
    assert nonce.cause == diagnose_device_side(ProtocolError(Stage.NONCE, "")).cause


async def test_without_keys_the_nonce_probe_is_the_last_step(cloud: Cloud) -> None:
    checks = await run_doctor(DoctorOptions(host=LOOPBACK, port=cloud.device_port))
    assert statuses(checks) == {
        "dns": "pass",
        "tcp": "pass",
        "nonce": "pass",
        "server-key": "skipped",
        "handshake": "skipped",
        "server-record": "skipped",
    }
    assert passed(checks)
    assert "--keys DIR" in row(checks, Step.HANDSHAKE).detail


# -- keys -----------------------------------------------------------------------------------


async def test_another_servers_key_fails_server_key(cloud: Cloud, tmp_path: Path) -> None:
    keystore = KeyStore.create(
        tmp_path / "other", other_server_key().public_key(), host=LOOPBACK, port=cloud.device_port
    )
    await cloud.add_device(keystore=keystore, start=False)
    checks = await run_doctor(
        DoctorOptions(
            host=LOOPBACK,
            port=cloud.device_port,
            keystore=keystore,
            api_url=api_of(cloud),
            token=cloud.token,
        )
    )
    server_key = row(checks, Step.SERVER_KEY)
    assert server_key.status is Status.FAIL
    assert server_key.failure_stage == "server-key"
    assert crypto.fingerprint(other_server_key().public_key())[:16] in server_key.detail
    assert server_key.fix == explain_stage(Stage.SERVER_KEY, "").fix
    # The handshake runs anyway; the server could not read our block, so it names no device
    # and doctor finds its record by our address.
    handshake = row(checks, Step.HANDSHAKE)
    assert handshake.status is Status.FAIL
    assert handshake.failure_stage == "handshake-decrypt"
    assert "The server's view (handshake-decrypt" in handshake.detail


async def test_an_unregistered_device_shows_the_servers_view(cloud: Cloud) -> None:
    device = await cloud.add_device(register=False, start=False)
    checks = await run_doctor(
        DoctorOptions(
            host=LOOPBACK,
            port=cloud.device_port,
            keystore=device.keys,
            api_url=api_of(cloud),
            token=cloud.token,
        )
    )
    assert row(checks, Step.SERVER_KEY).status is Status.PASS
    handshake = row(checks, Step.HANDSHAKE)
    assert handshake.status is Status.FAIL
    assert handshake.failure_stage == "unknown-device"
    assert "The server's view (unknown-device" in handshake.detail
    assert handshake.cause == explain_stage(Stage.UNKNOWN_DEVICE, "").cause
    assert handshake.fix == explain_stage(Stage.UNKNOWN_DEVICE, "").fix


async def test_a_refused_handshake_without_a_token_says_how_to_ask(cloud: Cloud) -> None:
    device = await cloud.add_device(register=False, start=False)
    checks = await run_doctor(
        DoctorOptions(host=LOOPBACK, port=cloud.device_port, keystore=device.keys)
    )
    handshake = row(checks, Step.HANDSHAKE)
    assert handshake.status is Status.FAIL
    assert handshake.failure_stage == "refused"
    assert "pass --token" in handshake.detail
    assert handshake.fix == diagnose_device_side(ProtocolError(Stage.REFUSED, "")).fix
    # Without an API to compare with, the key row says so and fails nothing by itself.
    server_key = row(checks, Step.SERVER_KEY)
    assert server_key.status is Status.SKIPPED
    assert "--api URL" in server_key.detail


async def test_a_key_image_without_a_host_would_send_the_device_to_particle(
    cloud: Cloud, tmp_path: Path
) -> None:
    keystore = KeyStore.create(
        tmp_path / "nohost", cloud.node.gateway.server_key.public_key(), host=None, port=None
    )
    closed_api = f"http://{LOOPBACK}:{free_port()}"
    checks = await run_doctor(
        DoctorOptions(host=LOOPBACK, port=cloud.device_port, keystore=keystore, api_url=closed_api)
    )
    server_key = row(checks, Step.SERVER_KEY)
    assert server_key.status is Status.FAIL
    assert "the device would go to Particle's cloud" in server_key.detail
    assert "cannot compare keys" in server_key.detail  # the API is down: said, not fatal
    assert f"the key image names port 5683; the cloud was reached on {cloud.device_port}" in (
        server_key.detail
    )


# -- options --------------------------------------------------------------------------------


# -- the command ----------------------------------------------------------------------------


def test_the_command_prints_a_table_and_exits_1_on_a_failure() -> None:
    port = free_port()
    result = CliRunner().invoke(
        app, ["doctor", "--server", f"{LOOPBACK}:{port}", "--timeout", "2"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 1, result.output
    assert "tcp" in result.output
    assert "fail" in result.output
    assert f"nothing listens on port {port}" in result.output
    assert "Fix:" in result.output


def test_the_command_needs_a_server() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "no server to check" in result.output


async def test_the_installed_command_prints_json(cloud: Cloud) -> None:
    process = await asyncio.create_subprocess_exec(
        CYAN,
        "doctor",
        "--server",
        f"{LOOPBACK}:{cloud.device_port}",
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    rows = json.loads(stdout)
    assert [(r["stage"], r["status"]) for r in rows] == [
        ("dns", "pass"),
        ("tcp", "pass"),
        ("nonce", "pass"),
        ("server-key", "skipped"),
        ("handshake", "skipped"),
        ("server-record", "skipped"),
    ]
    assert set(rows[0]) == {"stage", "status", "detail", "cause", "fix", "failure_stage"}


async def test_keys_read_off_a_photon_are_taken_by_path(cloud: Cloud, tmp_path: Path) -> None:
    # As dfu-util reads them from a Photon's DCT: 612 bytes for the device key (its DER,
    # then 0xFF), 512 for the server key image; no key directory at all.
    device = await cloud.add_device(start=False)
    dumps = tmp_path / "dct"
    dumps.mkdir()
    der = crypto.private_key_der(device.keys.device_key)
    (dumps / "device.der").write_bytes(der + b"\xff" * (612 - len(der)))
    (dumps / "server.der").write_bytes((device.keys.directory / "server-key.der").read_bytes())
    process = await asyncio.create_subprocess_exec(
        CYAN,
        "doctor",
        "--device-key",
        str(dumps / "device.der"),
        "--server-key",
        str(dumps / "server.der"),
        "--device-id",
        device.device_id.upper(),
        "--api",
        api_of(cloud),
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode() + stdout.decode()
    rows = {r["stage"]: r["status"] for r in json.loads(stdout)}
    assert rows["server-key"] == "pass"
    assert rows["handshake"] == "pass"


def test_keys_by_path_must_come_with_the_device_id(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["doctor", "--server", LOOPBACK, "--device-key", str(tmp_path / "k.der")]
    )
    assert result.exit_code == 1
    assert "give --device-id and --server-key too" in result.output


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "app.bin"
    bad.write_bytes(b"\x00" * 64)
    server = tmp_path / "server.der"
    server.write_bytes(b"\xff" * 512)
    result = CliRunner().invoke(
        app,
        [
            "doctor",
            "--server",
            LOOPBACK,
            "--device-key",
            str(bad),
            "--server-key",
            str(server),
            "--device-id",
            "0123456789abcdef01234567",
        ],
    )
    assert result.exit_code == 1
    assert "app.bin" in result.output
    assert "not an RSA private key" in result.output
