"""Every fault a Photon meets on its way to breathing cyan, named and then fixed."""

from __future__ import annotations

from cyan.device import VirtualDevice
from cyan.device.faults import Fault, apply_fault
from cyan.diagnose import explain_stage
from cyan.diagnose.history import NOTHING_REACHED_US
from cyan.net.resolver import parse_dns_choice
from cyan.protocol import Stage
from tests.dns import fake_dns
from tests.scenarios.conftest import Scene, cyan
from tests.system import LOOPBACK


async def pin_server_by_ip(scene: Scene, fix: str) -> None:
    """The fix for every "cannot reach the server" fault: a key image naming this server."""
    assert "cyan keys server --host" in fix
    run = await cyan(
        "keys",
        "server",
        "--host",
        LOOPBACK,
        "--port",
        str(scene.cloud.device_port),
        "--out",
        str(scene.keys_dir / "server-key.der"),
        "--data-dir",
        str(scene.data_dir),
    )
    assert run.code == 0, run.stderr


async def breathes_cyan(scene: Scene, device: VirtualDevice) -> None:
    await scene.cloud.online(device, timeout_s=15)
    assert device.status.led == "breathing cyan"


async def test_dhcp_handed_out_no_dns_server(scene: Scene) -> None:
    # The seed thread: the server is known by name and the network gave DNS 0.0.0.0.
    keystore = scene.fresh_keys(host="localhost")
    await scene.register(keystore)
    device = await scene.cloud.add_device(
        keystore=keystore, register=False, server=None, dns_server=parse_dns_choice("0.0.0.0")
    )
    failed_at = await scene.failed_attempt(device, Stage.DNS)
    assert device.status.last_error is not None
    assert "DNS 0.0.0.0" in device.status.last_error.reason
    await scene.named_by_every_surface(
        device.device_id,
        failed_at,
        server_stage=None,
        verdict_state="silent",
        doctor_args=["--keys", str(scene.keys_dir), "--dns-server", "0.0.0.0"],
        doctor_stage="dns",
        doctor_cause="did not resolve",
    )
    await pin_server_by_ip(scene, NOTHING_REACHED_US[1])
    await breathes_cyan(scene, device)


async def test_a_name_that_does_not_resolve(scene: Scene) -> None:
    keystore = scene.fresh_keys()
    await scene.register(keystore)
    keystore, _ = apply_fault(keystore, Fault.UNRESOLVABLE_NAME)
    async with fake_dns() as dns_server:  # the network's DNS server: it knows no such name
        device = await scene.cloud.add_device(
            keystore=keystore,
            register=False,
            server=None,
            dns_server=parse_dns_choice(dns_server.address),
        )
        failed_at = await scene.failed_attempt(device, Stage.DNS)
        await scene.named_by_every_surface(
            device.device_id,
            failed_at,
            server_stage=None,
            verdict_state="silent",
            doctor_args=["--keys", str(scene.keys_dir), "--dns-server", dns_server.address],
            doctor_stage="dns",
            doctor_cause="did not resolve",
        )
        await pin_server_by_ip(scene, NOTHING_REACHED_US[1])
        await breathes_cyan(scene, device)


async def test_a_closed_port(scene: Scene) -> None:
    keystore = scene.fresh_keys()
    await scene.register(keystore)
    keystore, _ = apply_fault(keystore, Fault.CLOSED_PORT)
    device = await scene.cloud.add_device(keystore=keystore, register=False, server=None)
    failed_at = await scene.failed_attempt(device, Stage.TCP)
    await scene.named_by_every_surface(
        device.device_id,
        failed_at,
        server_stage=None,
        verdict_state="silent",
        doctor_args=["--keys", str(scene.keys_dir)],
        doctor_stage="tcp",
        doctor_cause=explain_stage(Stage.TCP, "").cause,
    )
    await pin_server_by_ip(scene, explain_stage(Stage.TCP, "").fix)
    await breathes_cyan(scene, device)


async def test_a_device_holding_another_servers_key(scene: Scene) -> None:
    keystore = scene.fresh_keys()
    await scene.register(keystore)
    keystore, _ = apply_fault(keystore, Fault.WRONG_SERVER_KEY)
    device = await scene.cloud.add_device(keystore=keystore, register=False, server=None)
    failed_at = await scene.failed_attempt(device, Stage.REFUSED)
    await scene.named_by_every_surface(
        device.device_id,
        failed_at,
        server_stage=Stage.HANDSHAKE_DECRYPT,
        verdict_state="unnamed-failures",
        doctor_args=["--keys", str(scene.keys_dir), "--api", api_url(scene)],
        doctor_stage="server-key",
        doctor_cause="another server",
    )
    await pin_server_by_ip(scene, explain_stage(Stage.HANDSHAKE_DECRYPT, "").fix)
    await breathes_cyan(scene, device)


async def test_a_device_whose_key_is_not_registered(scene: Scene) -> None:
    keystore = scene.fresh_keys()  # made, never registered
    device = await scene.cloud.add_device(keystore=keystore, register=False, server=None)
    failed_at = await scene.failed_attempt(device, Stage.REFUSED)
    await scene.named_by_every_surface(
        device.device_id,
        failed_at,
        server_stage=Stage.UNKNOWN_DEVICE,
        verdict_state="failing",
        doctor_args=doctor_with_token(scene),
        doctor_stage="handshake",
        doctor_cause=explain_stage(Stage.UNKNOWN_DEVICE, "").cause,
    )
    fix = explain_stage(Stage.UNKNOWN_DEVICE, "").fix
    assert "cyan device add ID --public-key" in fix
    await scene.register(keystore)
    await breathes_cyan(scene, device)


async def test_a_device_whose_key_differs_from_the_registered_one(scene: Scene) -> None:
    keystore = scene.fresh_keys()
    await scene.register(keystore)
    keystore, _ = apply_fault(keystore, Fault.DIFFERENT_KEY)
    device = await scene.cloud.add_device(keystore=keystore, register=False, server=None)
    failed_at = await scene.failed_attempt(device, Stage.REFUSED)
    await scene.named_by_every_surface(
        device.device_id,
        failed_at,
        server_stage=Stage.KEY_MISMATCH,
        verdict_state="failing",
        doctor_args=doctor_with_token(scene),
        doctor_stage="handshake",
        doctor_cause=explain_stage(Stage.KEY_MISMATCH, "").cause,
    )
    fix = explain_stage(Stage.KEY_MISMATCH, "").fix
    assert "cyan keys doctor ID" in fix
    run = await cyan(
        "keys",
        "doctor",
        device.device_id,
        "--keys",
        str(scene.keys_dir),
        "--data-dir",
        str(scene.data_dir),
    )
    assert run.code == 0, run.stdout + run.stderr
    await breathes_cyan(scene, device)


async def test_a_handshake_that_stalls(scene: Scene) -> None:
    keystore = scene.fresh_keys()
    await scene.register(keystore)
    device = await scene.cloud.add_device(
        keystore=keystore, register=False, server=None, stall_handshakes=3
    )
    failed_at = await scene.failed_attempt(device, Stage.TIMEOUT)
    await scene.named_by_every_surface(
        device.device_id,
        failed_at,
        server_stage=Stage.TIMEOUT,
        verdict_state="unnamed-failures",
        doctor_args=doctor_with_token(scene),
        doctor_stage="server-record",
        doctor_cause=explain_stage(Stage.TIMEOUT, "").cause,
    )
    # "the device retries by itself": once the network stops stalling, it connects.
    assert "retries by itself" in explain_stage(Stage.TIMEOUT, "").fix
    await breathes_cyan(scene, device)


def api_url(scene: Scene) -> str:
    return str(scene.cloud.http.base_url).rstrip("/")


def doctor_with_token(scene: Scene) -> list[str]:
    return ["--keys", str(scene.keys_dir), "--api", api_url(scene), "--token", scene.cloud.token]
