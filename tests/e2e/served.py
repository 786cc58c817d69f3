"""A `cyan serve` process on loopback and `cyan device run` processes beside it, for the tests
that run the installed command as a user does."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.test_cli_processes import BOUND_S, cyan, new_registered_device, start
from tests.ports import free_port

LOOPBACK = "127.0.0.1"


def wait_for_line(log: Path, text: str) -> str:
    """The log's text once it says ``text``; Rich's line wrapping undone."""
    deadline = time.monotonic() + BOUND_S
    content = ""
    while time.monotonic() < deadline:
        content = " ".join(log.read_text().split()) if log.exists() else ""
        if text in content:
            return content
        time.sleep(0.1)
    raise AssertionError(f"{log.name} never said {text!r}:\n{content}")


@dataclass
class RunningDevice:
    device_id: str
    keys_dir: Path
    log: Path
    process: subprocess.Popen[bytes]


@dataclass
class Served:
    """`cyan serve` on free loopback ports, its data in ``tmp_path / "data"``."""

    tmp_path: Path
    processes: list[subprocess.Popen[bytes]]
    device_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        self.data = self.tmp_path / "data"
        self.log = self.tmp_path / "serve.log"
        self.api = f"http://{LOOPBACK}:{self.api_port}"
        self.process = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        """Start (or start again) the server and wait until it is up."""
        args = ["serve", "--host", LOOPBACK, "--device-port", str(self.device_port)]
        banners = self._banners()
        process = start([*args, "--api-port", str(self.api_port)], self.data, self.log)
        self.processes.append(process)
        deadline = time.monotonic() + BOUND_S
        while self._banners() == banners:
            assert process.poll() is None, f"cyan serve exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, "cyan serve did not start"
            time.sleep(0.1)
        return process

    def _banners(self) -> int:
        return self.log.read_text().count("Cyan is running") if self.log.exists() else 0

    def device(
        self, name: str, *run_args: str, host: str = LOOPBACK, connected: bool = True
    ) -> RunningDevice:
        """`cyan keys new`, `cyan device add`, then `cyan device run` with ``run_args``."""
        keys_dir, log = self.tmp_path / name, self.tmp_path / f"{name}.log"
        image = ("--server-host", host, "--server-port", str(self.device_port))
        device_id = new_registered_device(keys_dir, name, self.data, *image)
        process = start(["device", "run", "--keys", str(keys_dir), *run_args], self.data, log)
        self.processes.append(process)
        if connected:
            wait_for_line(log, "cloud: connected")
        return RunningDevice(device_id, keys_dir, log, process)

    def cyan(self, *args: str) -> subprocess.CompletedProcess[str]:
        return cyan(*args, data_dir=self.data, check=False)
