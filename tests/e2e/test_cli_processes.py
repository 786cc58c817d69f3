"""The installed `cyan` command as a user runs it: serve, keys, device, token; kill -9 and back."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port
from tests.served import served_data_dir

CYAN = shutil.which("cyan") or str(Path(sys.executable).parent / "cyan")
# Hang bound for processes to come up; not a speed check. A loaded CI machine has taken
# over 20 s for a restarted serve's cold start plus the devices' reconnect backoff.
BOUND_S = 90.0


def cyan(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CYAN_DATA_DIR": str(data_dir), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [CYAN, *args], env=env, capture_output=True, text=True, timeout=60, check=check
    )


def start(args: list[str], data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CYAN_DATA_DIR": str(data_dir), "NO_COLOR": "1"}
    with log.open("ab") as sink:
        return subprocess.Popen([CYAN, *args], env=env, stdout=sink, stderr=subprocess.STDOUT)


def wait_connected(
    api: str, token: str, want: int, serve: subprocess.Popen[bytes], log: Path
) -> list[dict[str, object]]:
    """The device list once ``want`` devices are online; fails early if serve has died."""
    deadline = time.monotonic() + BOUND_S
    devices: list[dict[str, object]] = []
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if serve.poll() is not None:
            raise AssertionError(f"cyan serve exited ({serve.returncode}):\n{log.read_text()}")
        try:
            devices = httpx.get(
                f"{api}/v1/devices", headers={"Authorization": f"Bearer {token}"}, timeout=2
            ).json()
            if sum(bool(d["connected"]) for d in devices) >= want:
                return devices
        except httpx.HTTPError as error:
            last_error = repr(error)
        time.sleep(0.1)
    raise AssertionError(f"fewer than {want} devices online: {devices} (last: {last_error})")


def new_registered_device(keys_dir: Path, name: str, data: Path, *extra: str) -> str:
    """`cyan keys new` then `cyan device add`, as README tells a user; returns the id."""
    device_id = cyan("keys", "new", "--out", str(keys_dir), *extra, data_dir=data).stdout.strip()
    assert device_id == (keys_dir / "device-id").read_text().strip()
    public_key = str(keys_dir / "device-key.pub.pem")
    cyan("device", "add", device_id, "--public-key", public_key, "--name", name, data_dir=data)
    return device_id


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_kill_9_and_restart_brings_every_device_back(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "data"
    device_port, api_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    serve = [
        "serve",
        "--host",
        "127.0.0.1",
        "--device-port",
        str(device_port),
        "--api-port",
        str(api_port),
        "--demo",
        "2",
    ]
    processes.append(start(serve, data, tmp_path / "serve.log"))

    keys_dir = tmp_path / "lab-keys"
    new_registered_device(keys_dir, "lab", data, "--server-port", str(device_port))
    processes.append(
        start(
            ["device", "run", "--keys", str(keys_dir), "--server", f"127.0.0.1:{device_port}"],
            data,
            tmp_path / "device.log",
        )
    )
    token = cyan("token", "create", data_dir=data).stdout.strip()
    before = wait_connected(api, token, 3, processes[0], tmp_path / "serve.log")
    assert sorted(str(d["name"]) for d in before) == ["demo-1", "demo-2", "lab"]

    processes[0].send_signal(signal.SIGKILL)
    processes[0].wait()
    processes[0] = start(serve, data, tmp_path / "serve.log")
    after = wait_connected(
        api, token, 3, processes[0], tmp_path / "serve.log"
    )  # the same token still works after the crash
    assert sorted(str(d["id"]) for d in after) == sorted(str(d["id"]) for d in before)

    call = httpx.post(
        f"{api}/v1/devices/lab/digitalwrite",
        json={"args": "D7,HIGH"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert call.json()["return_value"] == 1
    device_log = (tmp_path / "device.log").read_text()
    assert device_log.count("cloud: connected") >= 2  # reconnected by itself


def test_cli_errors_say_what_and_how_to_fix(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad_id = cyan("device", "add", "not-an-id", "--public-key", "x.pem", data_dir=data, check=False)
    assert bad_id.returncode == 1
    assert "not a device id" in bad_id.stderr
    missing = cyan(
        "device",
        "add",
        "0" * 24,
        "--public-key",
        str(tmp_path / "nope.pem"),
        data_dir=data,
        check=False,
    )
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    no_keys = cyan("device", "run", "--keys", str(tmp_path / "empty"), data_dir=data, check=False)
    assert no_keys.returncode == 1
    assert "Fix:" in no_keys.stderr
    assert "cyan keys new" in no_keys.stderr


def test_device_list_shows_registered_devices(tmp_path: Path) -> None:
    data = served_data_dir(tmp_path / "data")
    keys_dir = tmp_path / "k"
    device_id = new_registered_device(keys_dir, "shed", data)
    listing = cyan("device", "list", data_dir=data).stdout
    assert device_id in listing
    assert "shed" in listing
    again = cyan("keys", "new", "--out", str(keys_dir), data_dir=data, check=False)
    assert again.returncode == 1
    assert "already holds a device key" in again.stderr


def test_a_port_in_use_is_an_error_with_a_fix_not_a_traceback(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    device_port, api_port = free_port(), free_port()
    ports = ["--host", "127.0.0.1", "--device-port", str(device_port), "--api-port", str(api_port)]
    log = tmp_path / "first.log"
    processes.append(start(["serve", *ports], tmp_path / "first", log))
    deadline = time.monotonic() + BOUND_S
    while "Cyan is running" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the first server did not start"
        time.sleep(0.1)
    for taken, option in (
        (ports, "--device-port"),
        ([*ports[:3], str(free_port()), *ports[4:]], "--api-port"),
    ):
        second = cyan("serve", *taken, data_dir=tmp_path / "second", check=False)
        said = " ".join(second.stderr.split())
        assert second.returncode == 1, said
        assert "Traceback" not in said
        assert "cannot listen for" in said
        assert f"pick another with {option}" in said
