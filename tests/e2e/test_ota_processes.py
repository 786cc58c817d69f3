"""Over-the-air updates with the installed `cyan`, as a user runs it: `cyan serve`,
`cyan device run`, `cyan device flash`; and a `kill -9` in the middle of an update."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.e2e.test_cli_processes import BOUND_S, cyan, new_registered_device, processes, start
from tests.e2e.test_device_faults import wait_for_line
from tests.firmware.samples import system_part, tinker_binary, user_part
from tests.net import free_port

__all__ = ["processes"]  # the fixture, imported for its name

LOOPBACK = "127.0.0.1"


class Server:
    def __init__(self, tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
        self.data = tmp_path / "data"
        self.log = tmp_path / "serve.log"
        self.device_port, self.api_port = free_port(), free_port()
        self.api = f"http://{LOOPBACK}:{self.api_port}"
        self.processes = processes
        self.args = [
            "serve",
            "--host",
            LOOPBACK,
            "--device-port",
            str(self.device_port),
            "--api-port",
            str(self.api_port),
        ]
        self.process = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        process = start(self.args, self.data, self.log)
        self.processes.append(process)
        return process

    def device(self, name: str, tmp_path: Path, *run_args: str) -> tuple[str, Path]:
        keys_dir, log = tmp_path / name, tmp_path / f"{name}.log"
        args = ("--server-port", str(self.device_port))
        device_id = new_registered_device(keys_dir, name, self.data, *args)
        self.processes.append(
            start(["device", "run", "--keys", str(keys_dir), *run_args], self.data, log)
        )
        wait_for_line(log, "cloud: connected")
        return device_id, log

    def flash(self, device: str, binary: Path) -> subprocess.CompletedProcess[str]:
        return cyan(
            "device",
            "flash",
            device,
            str(binary),
            "--api",
            self.api,
            data_dir=self.data,
            check=False,
        )


def test_cyan_device_flash_follows_the_update_to_the_end(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    server = Server(tmp_path, processes)
    wait_for_line(server.log, "Cyan is running")
    server.device("lab", tmp_path)
    app = tmp_path / "app.bin"
    app.write_bytes(user_part(b"\x21" * 60_000))

    done = server.flash("lab", app)
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stderr.split())
    assert "flashing app.bin (user part 1 v6 for the Photon, 60068 bytes) to lab" in said
    assert "the device took the update" in said
    assert "lab is back online with the new user part 1" in said

    p1 = tmp_path / "tinker-p1.bin"
    p1.write_bytes(tinker_binary("p1"))
    refused = server.flash("lab", p1)
    assert refused.returncode == 1
    assert "this binary is for the P1 (platform 8), not the Photon (platform 6)" in " ".join(
        refused.stderr.split()
    )


def test_cyan_device_flash_says_why_an_update_failed(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    server = Server(tmp_path, processes)
    wait_for_line(server.log, "Cyan is running")
    server.device("shaky", tmp_path, "--disconnect-during-ota")
    app = tmp_path / "app.bin"
    app.write_bytes(user_part(b"\x22" * 60_000))
    failed = server.flash("shaky", app)
    assert failed.returncode == 1
    said = " ".join(failed.stderr.split())
    assert "the update failed: the device disconnected while the update was" in said
    assert "keeps its old firmware; flash again" in said


def test_kill_9_mid_update_leaves_a_failed_update_and_no_binary(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    server = Server(tmp_path, processes)
    wait_for_line(server.log, "Cyan is running")
    device_id, device_log = server.device("lab", tmp_path, "--slow-ota")
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
