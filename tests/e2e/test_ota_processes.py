"""Over-the-air updates with the installed `cyan`, as a user runs it: `cyan serve`,
`cyan device run`, `cyan device flash`; and a `kill -9` in the middle of an update."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.served import Served, wait_for_line
from tests.e2e.test_cli_processes import BOUND_S, cyan, processes
from tests.firmware.samples import system_part, tinker_binary, user_part

__all__ = ["processes"]  # the fixture, imported for its name


def flash(served: Served, device: str, binary: Path) -> subprocess.CompletedProcess[str]:
    return served.cyan("device", "flash", device, str(binary), "--api", served.api)


def test_cyan_device_flash_follows_the_update_to_the_end(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    server = Served(tmp_path, processes)
    server.device("lab")
    app = tmp_path / "app.bin"
    app.write_bytes(user_part(b"\x21" * 60_000))

    done = flash(server, "lab", app)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "flashing app.bin (user part 1 v6 for the Photon, 60068 bytes) to lab" in said
    assert "the device took the update" in said
    assert "lab is back online with the new user part 1" in said

    p1 = tmp_path / "tinker-p1.bin"
    p1.write_bytes(tinker_binary("p1"))
    refused = flash(server, "lab", p1)
    assert refused.returncode == 1
    assert "this binary is for the P1 (platform 8), not the Photon (platform 6)" in " ".join(
        refused.stderr.split()
    )


def test_cyan_device_flash_says_why_an_update_failed(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    server = Served(tmp_path, processes)
    server.device("shaky", "--disconnect-during-ota")
    app = tmp_path / "app.bin"
    app.write_bytes(user_part(b"\x22" * 60_000))
    failed = flash(server, "shaky", app)
    assert failed.returncode == 1
    said = " ".join(failed.stderr.split())
    assert "the update failed: the device disconnected while the update was" in said
    assert "keeps its old firmware; flash again" in said


def test_kill_9_mid_update_leaves_a_failed_update_and_no_binary(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    server = Served(tmp_path, processes)
    # It hangs a fifth of the way in, so the update is surely under way at the kill.
    running = server.device("lab", "--slow-ota", "--hold-ota-at", "50000")
    device_id, device_log = running.device_id, running.log
    token = cyan("token", "create", data_dir=server.data).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    # A newer system part 1, of about 500 chunks, each answered.
    binary = system_part(1, version=2303, body=b"\x99" * 250_000)
    reply = httpx.put(
        f"{server.api}/v1/devices/lab",
        files={"file": ("part1.bin", binary, "application/octet-stream")},
        headers=headers,
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    wait_for_line(device_log, "update: 250456 bytes coming in chunks of 512")
    wait_for_line(device_log, "holding the update at")
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    assert list((server.data / "updates").iterdir()) != []  # the binary waited there

    server.start()
    deadline = time.monotonic() + BOUND_S
    while True:
        try:
            detail = httpx.get(f"{server.api}/v1/devices/lab", headers=headers, timeout=2).json()
            if detail.get("connected"):
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the device did not come back"
        time.sleep(0.1)
    ota = detail["cyan_ota"]
    assert ota["state"] == "failed"
    assert "the server restarted during the update" in ota["failure"]
    assert list((server.data / "updates").iterdir()) == []
    # The device kept its firmware: system part 1 is still the release's, not 2303.
    modules = {m["module"]: m["version"] for m in detail["cyan_firmware"]["modules"]}
    assert modules["system part 1"] == 2302
    assert "update applied" not in device_log.read_text()
    assert detail["id"] == device_id
