"""particle-cli 3.51.0, unchanged, against Cyan: every cloud command a Photon owner uses.

Each test asserts on what the CLI itself prints (and exits with), then on the effect in
Cyan or on the virtual device. rest-api.md §3 lists the requests behind each command.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cyan.device import VirtualDevice
from cyan.protocol import crypto
from cyan.settings import ADMIN_USERNAME
from tests.compat.conftest import (
    KETTLE,
    LAMP,
    ParticleCli,
    next_event,
    unowned_device,
    while_running,
)
from tests.system import Cloud, eventually

PASSWORD = "correct horse battery staple"
OTHER_USER = "ada@example.com"
# particle-cli asks for 90-day tokens (rest-api.md §3.1, `expires_in=7776000`).
NINETY_DAYS = timedelta(days=90)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def device_block(listing: str, name: str) -> str:
    """The lines `particle list` prints for one device: its header and indented details."""
    lines = listing.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"{name} ["):
            return "\n".join([line, *_indented_run(lines[index + 1 :])])
    raise AssertionError(f"no device {name!r} in:\n{listing}")


def _indented_run(lines: list[str]) -> list[str]:
    run = []
    for line in lines:
        if not line.startswith(" "):
            break
        run.append(line)
    return run


async def status_with(token: str, cloud: Cloud) -> int:
    """The status GET /v1/devices answers for ``token``."""
    response = await cloud.http.get("/v1/devices", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


# -- logging in and out ---------------------------------------------------------------------


async def test_login_with_username_and_password(
    particle_logged_out: ParticleCli, cloud: Cloud
) -> None:
    store = cloud.node.store
    ada = await store.users.add(OTHER_USER, PASSWORD)
    before = datetime.now(UTC)

    result = await particle_logged_out("login", "--username", OTHER_USER, "--password", PASSWORD)

    assert result.code == 0, result
    assert "> Successfully completed login!" in result.stdout
    config = particle_logged_out.config()
    assert config["username"] == OTHER_USER
    assert re.fullmatch(r"[0-9a-f]{40}", config["access_token"]), config
    user = await store.tokens.user_for(config["access_token"])
    assert user is not None
    assert user.id == ada.id
    # The CLI stores now + expires_in, and asks for 90 days.
    expires_at = parse_time(config["access_token_expires_at"])
    assert before + NINETY_DAYS - timedelta(minutes=5) < expires_at
    assert expires_at < datetime.now(UTC) + NINETY_DAYS + timedelta(minutes=5)


async def test_login_with_a_wrong_password_says_so_and_stores_nothing(
    particle_logged_out: ParticleCli, cloud: Cloud
) -> None:
    await cloud.node.store.users.add(OTHER_USER, PASSWORD)

    result = await particle_logged_out("login", "-u", OTHER_USER, "-p", "not the password")

    assert result.code == 1, result
    assert "! There was an error logging you in!" in result.stdout
    # The reason is the server's error_description, not the client's generic fallback.
    reason = result.stderr.strip().splitlines()[0]
    assert re.fullmatch(r"! \S.*", reason), result
    assert "HTTP error" not in reason, result
    assert "Not found" not in reason, result
    assert "It seems we're having trouble with logging in." in result.stdout
    assert not particle_logged_out.config().get("access_token")


async def test_login_with_a_token(particle_logged_out: ParticleCli, cloud: Cloud) -> None:

    result = await particle_logged_out("login", "--token", cloud.token)

    assert result.code == 0, result
    assert "> Successfully completed login!" in result.stdout
    config = particle_logged_out.config()
    assert config["access_token"] == cloud.token
    assert config["username"] == ADMIN_USERNAME  # from GET /v1/user


async def test_login_with_a_token_records_when_it_expires(
    particle_logged_out: ParticleCli, cloud: Cloud
) -> None:
    expires = datetime.now(UTC) + timedelta(days=3)
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
    token = await cloud.node.store.tokens.create(admin.id, expires_at=expires)

    result = await particle_logged_out("login", "--token", token)

    assert result.code == 0, result
    # From GET /v1/access_tokens/current's expires_at (rest-api.md §1.3 step 2).
    stored = parse_time(particle_logged_out.config()["access_token_expires_at"])
    assert abs(stored - expires) < timedelta(seconds=2)


async def test_login_with_an_unknown_token_fails(
    particle_logged_out: ParticleCli, cloud: Cloud
) -> None:

    result = await particle_logged_out("login", "--token", "0" * 40)

    assert result.code == 1, result
    assert "! There was an error logging you in!" in result.stdout
    assert "invalid" in result.stderr.lower(), result
    assert not particle_logged_out.config().get("access_token")


async def test_whoami(particle: ParticleCli, cloud: Cloud) -> None:

    result = await particle.ok("whoami")

    # whoami always asks the server (GET /v1/user); with no answer it prints "> unknown".
    assert result.stdout.strip() == f"> {ADMIN_USERNAME}"


async def test_commands_need_a_login_first(particle_logged_out: ParticleCli) -> None:
    result = await particle_logged_out("list")

    assert result.code == 1
    assert result.output == "! You're not logged in. Run `particle login` to authenticate.\n"


async def test_logout(particle: ParticleCli, cloud: Cloud) -> None:

    result = await particle.ok("logout")

    assert f"> You have been logged out from {ADMIN_USERNAME}" in result.stdout
    config = particle.config()
    assert config["access_token"] is None
    assert config["username"] is None
    # The token was revoked at the server, not only forgotten by the CLI.
    assert await status_with(cloud.token, cloud) == 401


async def test_token_revoke(particle: ParticleCli, cloud: Cloud) -> None:
    admin = await cloud.node.store.users.ensure(ADMIN_USERNAME)
    other = await cloud.node.store.tokens.create(admin.id)
    assert await status_with(other, cloud) == 200

    result = await particle("token", "revoke", other)

    # Exit code 0 even on failure (the command returns -1, which the CLI drops): only the
    # output tells success from failure.
    assert result.code == 0, result
    assert "Successfully revoked all provided tokens" in result.stdout, result
    assert await status_with(other, cloud) == 401
    assert await status_with(cloud.token, cloud) == 200  # the CLI's own token still works


async def test_token_revoke_refuses_the_clis_own_token(particle: ParticleCli, cloud: Cloud) -> None:
    result = await particle("token", "revoke", cloud.token)

    # Decided locally, before any request; exit code 0 all the same.
    assert result.code == 0
    assert f"WARNING: {cloud.token} is this CLI's access token" in result.stdout
    assert "use --force to delete it" in result.stdout
    assert await status_with(cloud.token, cloud) == 200


async def test_token_list_no_longer_exists(particle: ParticleCli) -> None:
    """rest-api.md §3.1: `token list` was removed in 3.28; 3.51 has only revoke and create."""
    listed = await particle("token", "list")

    assert listed.code == 1
    assert "No such command 'token list'" in listed.stdout
    help_text = (await particle.ok("token", "--help")).output
    commands = re.findall(r"^  (\w+)  ", help_text.split("Commands:")[1], re.MULTILINE)
    assert commands == ["revoke", "create"]


# -- devices ----------------------------------------------------------------------------------


async def test_list_shows_devices_functions_and_variables(
    particle: ParticleCli, lamp: VirtualDevice, kettle: VirtualDevice
) -> None:
    result = await particle.ok("list")

    # Sorted by name; the type comes from product_id (6: Photon).
    assert result.stdout.index(f"{KETTLE} [") < result.stdout.index(f"{LAMP} [")
    for name, device in ((LAMP, lamp), (KETTLE, kettle)):
        assert device_block(result.stdout, name).splitlines() == [
            f"{name} [{device.device_id}] (Photon) is online",
            "  Variables:",
            "    uptime (int32)",
            "    temperature (double)",
            "    build (string)",
            "  Functions:",
            "    int digitalwrite (String args) ",
            "    int digitalread (String args) ",
            "    int analogwrite (String args) ",
            "    int analogread (String args) ",
        ]


async def test_list_shows_an_offline_device_without_details(
    particle: ParticleCli, cloud: Cloud, kettle: VirtualDevice
) -> None:
    await kettle.stop()
    await eventually(lambda: cloud.node.router.live(kettle.device_id) is None, 10, "kettle gone")

    result = await particle.ok("list")

    assert device_block(result.stdout, KETTLE) == (
        f"{KETTLE} [{kettle.device_id}] (Photon) is offline"
    )
    assert f"{LAMP} [" in result.stdout


async def test_call_a_function(particle: ParticleCli, lamp: VirtualDevice) -> None:
    result = await particle.ok("call", LAMP, "digitalwrite", "D7,HIGH")

    assert result.stdout.strip() == "1"
    assert lamp.tinker.digital["D7"] == 1


async def test_call_by_device_id_and_read_back(particle: ParticleCli, lamp: VirtualDevice) -> None:
    await particle.ok("call", lamp.device_id.upper(), "digitalwrite", "D7,HIGH")

    result = await particle.ok("call", LAMP, "digitalread", "D7")

    assert result.stdout.strip() == "1"


async def test_call_an_unknown_function(particle: ParticleCli) -> None:
    result = await particle("call", LAMP, "selfdestruct", "now")

    assert result.code == 1
    assert "Function call failed: Function `selfdestruct` not found" in result.output


async def test_call_a_function_registered_after_connecting(
    particle: ParticleCli, cloud: Cloud
) -> None:
    # Device OS 0.7.0 runs setup() after it connects and never describes itself again
    # (protocol.md §7.1); the schedule that would find it is an hour away here.
    gateway = cloud.node.gateway
    gateway.settings = replace(gateway.settings, describe_again_s=3600.0)
    old = await cloud.add_device(name="old", firmware="0.7.0", setup_after_s=None)
    await eventually(lambda: cloud.node.router.live(old.device_id) is not None, 10, "online")
    old.run_setup()

    call = await particle.ok("call", "old", "digitalwrite", "D7,HIGH")
    read = await particle.ok("get", "old", "uptime")

    assert call.stdout.strip() == "1"
    assert old.tinker.digital["D7"] == 1
    assert read.stdout.strip().isdigit()


async def test_call_with_an_argument_too_long_for_the_device(
    particle: ParticleCli, cloud: Cloud
) -> None:
    old = await cloud.add_device(name="old", firmware="0.7.0")
    await cloud.online(old)

    result = await particle("call", "old", "digitalwrite", "D7,HIGH" + " " * 57)

    assert result.code == 1
    assert "64 bytes; this device (Device OS 0.7.0) takes at most 63" in result.output
    assert old.status.calls == 0


async def test_get_a_variable(particle: ParticleCli) -> None:
    result = await particle.ok("get", LAMP, "temperature")

    # The virtual Photon reads 21.5 ± 0.5 °C.
    assert 21.0 <= float(result.stdout.strip()) <= 22.0


async def test_get_a_string_variable(particle: ParticleCli, lamp: VirtualDevice) -> None:
    result = await particle.ok("get", LAMP, "build")

    assert result.stdout.strip() == lamp.tinker.build


async def test_get_an_unknown_variable(particle: ParticleCli) -> None:
    result = await particle("get", LAMP, "humidity")

    assert result.code == 1
    assert "Error: Variable not found" in result.output


async def test_publish(particle: ParticleCli, event_lines: AsyncIterator[str]) -> None:
    result = await particle.ok("publish", "compat/publish", "hello from the CLI")

    assert result.stdout.strip() == "Published event: compat/publish"
    event = await next_event(event_lines)
    assert event["name"] == "compat/publish"
    assert event["data"] == "hello from the CLI"


async def test_subscribe_reads_a_device_event(particle: ParticleCli, lamp: VirtualDevice) -> None:
    result = await while_running(
        particle("subscribe", "compat", "--max", "1"),
        lambda: lamp.publish("compat/ping", "42"),
    )

    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == 'Subscribing to "compat" from my devices'
    assert lines[1] == "This command will exit after receiving 1 event(s)..."
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(events) == 1
    event = events[0]
    assert event["name"] == "compat/ping"
    assert event["data"] == "42"
    assert event["coreid"] == lamp.device_id
    assert event["ttl"] == 60
    assert parse_time(event["published_at"]) <= datetime.now(UTC)
    assert lines[-1] == "1 event(s) received. Exiting..."


async def test_subscribe_to_one_device(
    particle: ParticleCli, lamp: VirtualDevice, kettle: VirtualDevice
) -> None:
    def both_publish() -> None:
        lamp.publish("compat/which", "lamp")
        kettle.publish("compat/which", "kettle")

    result = await while_running(
        particle("subscribe", "compat", "--device", KETTLE, "--max", "2"), both_publish
    )

    assert result.code == 0, result
    assert f'Subscribing to "compat" from device {KETTLE}\'s stream' in result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [e["data"] for e in events] == ["kettle", "kettle"]


async def test_nyan_on_and_off(particle: ParticleCli, lamp: VirtualDevice) -> None:
    result = await particle.ok("nyan", LAMP, "on")

    assert result.stdout.strip() == ""
    await eventually(lambda: lamp.status.led == "rainbow", 5, "the lamp shouting rainbows")
    assert lamp.status.signaling

    await particle.ok("nyan", LAMP, "off")

    await eventually(lambda: lamp.status.led == "breathing cyan", 5, "the lamp calm again")
    assert not lamp.status.signaling


async def test_device_rename(particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice) -> None:
    result = await particle.ok("device", "rename", LAMP, "lantern")

    assert result.stdout.splitlines() == [
        f"Renaming device {LAMP}",
        f"Successfully renamed device {LAMP} to: lantern",
    ]
    listing = (await particle.ok("list")).stdout
    assert f"lantern [{lamp.device_id}] (Photon) is online" in listing
    assert f"{LAMP} [" not in listing
    # The new name works in every device path.
    assert (await particle.ok("call", "lantern", "digitalwrite", "D7,HIGH")).stdout.strip() == "1"


async def test_device_add_claims_a_device(particle: ParticleCli, cloud: Cloud) -> None:
    device = await unowned_device(cloud)
    cloud.start(device)
    await cloud.online(device)
    assert device.device_id not in (await particle.ok("list")).stdout

    result = await particle.ok("device", "add", device.device_id.upper())

    # Printed as typed; the request carries it lower-cased (rest-api.md §3.2).
    typed = device.device_id.upper()
    assert result.stdout.splitlines() == [
        f"Claiming device {typed}",
        f"Successfully claimed device {typed}",
    ]
    listing = (await particle.ok("list")).stdout
    assert f"<no name> [{device.device_id}] (Photon) is online" in listing
    call = await particle.ok("call", device.device_id, "digitalwrite", "D7,HIGH")
    assert call.stdout.strip() == "1"


async def test_device_add_refuses_another_users_device(particle: ParticleCli, cloud: Cloud) -> None:
    store = cloud.node.store
    bob = await store.users.ensure("bob")
    device = await cloud.add_device(register=False, start=False)
    await store.devices.add(
        device.device_id,
        crypto.public_key_der(device.keys.device_key.public_key()),
        owner_id=bob.id,
    )

    # The CLI offers to request a transfer (rest-api.md §3.2); the answer here is no.
    result = await particle("device", "add", device.device_id, stdin="n\n")

    assert result.code == 1, result
    assert "That device belongs to someone else. Would you like to request a transfer?" in (
        result.stdout
    )
    assert "You cannot claim a device owned by someone else" in result.output
    record = await store.devices.get(device.device_id)
    assert record is not None
    assert record.owner_id == bob.id


async def test_device_remove(particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice) -> None:
    result = await particle.ok("device", "remove", LAMP, "--yes")

    assert result.stdout.splitlines() == [f"releasing device {LAMP}", "Okay!"]
    listing = (await particle.ok("list")).stdout
    assert lamp.device_id not in listing
    assert f"{KETTLE} [" in listing
    record = await cloud.node.store.devices.get(lamp.device_id)
    assert record is not None
    assert record.owner_id is None
    gone = await particle("call", lamp.device_id, "digitalwrite", "D7,HIGH")
    assert gone.code == 1


async def test_keys_send_lets_a_new_device_connect(
    particle: ParticleCli, cloud: Cloud, tmp_path: Path
) -> None:
    device = await cloud.add_device(register=False, start=False)
    pem = tmp_path / "new-photon.pem"
    pem.write_bytes(device.keys.public_key_pem)

    result = await particle.ok("keys", "send", device.device_id, str(pem))

    assert result.stdout.splitlines() == [
        f"attempting to add a new public key for device {device.device_id}",
        "submitting public key succeeded!",
    ]
    cloud.start(device)
    await cloud.online(device)
    listing = (await particle.ok("list")).stdout
    assert f"[{device.device_id}] (Photon) is online" in listing


async def test_keys_send_takes_the_private_key_in_der(
    particle: ParticleCli, cloud: Cloud, lamp: VirtualDevice, tmp_path: Path
) -> None:
    """The CLI turns any key file into a public PEM with openssl; a new key replaces the old."""
    replacement = crypto.generate_rsa_key(1024)
    der = tmp_path / "lamp.der"
    der.write_bytes(crypto.private_key_der(replacement))

    # By id: the CLI lower-cases what it is given and sends it as deviceID, so a name
    # would be sent as an id.
    await particle.ok("keys", "send", lamp.device_id, str(der))

    stored = await cloud.node.store.devices.key(lamp.device_id)
    assert stored == crypto.public_key_der(replacement.public_key())
