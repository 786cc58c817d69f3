"""The scenario suite: each fault a Photon meets, named by every surface, then fixed.

For every fault: a live Cyan on loopback and a virtual device broken on purpose. The test
asserts the stage, cause and fix that the server log, the API, `cyan device why` and
`cyan doctor` give, each within 5 s of the device's failed attempt; then it applies the
fix exactly as the printed sentence says and waits for the device to breathe cyan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cyan.device import VirtualDevice
from cyan.diagnose import explain_stage
from cyan.diagnose.history import NOTHING_REACHED_US
from cyan.keydir import KeyStore
from cyan.protocol import Stage
from tests.system import LOOPBACK, Cloud, eventually, running_cloud

CYAN = str(Path(sys.executable).with_name("cyan"))
NAMED_WITHIN_S = 5.0


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def cyan(*args: str, timeout_s: float = 30.0) -> Run:
    """The installed `cyan`, as a user runs it; async, so the in-process server keeps going."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CYAN_")}
    environ["NO_COLOR"] = "1"
    environ["COLUMNS"] = "200"
    process = await asyncio.create_subprocess_exec(
        CYAN,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


@dataclass
class Scene:
    cloud: Cloud
    caplog: pytest.LogCaptureFixture
    keys_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.cloud.node.settings.data_dir

    def fresh_keys(self, *, host: str = LOOPBACK, port: int | None = None) -> KeyStore:
        return KeyStore.create(
            self.keys_dir,
            self.cloud.node.gateway.server_key.public_key(),
            host=host,
            port=self.cloud.device_port if port is None else port,
        )

    async def register(self, keystore: KeyStore) -> None:
        run = await cyan(
            "device",
            "add",
            keystore.device_id,
            "--public-key",
            str(self.keys_dir / "device-key.der"),
            "--data-dir",
            str(self.data_dir),
        )
        assert run.code == 0, run.stderr

    async def failed_attempt(self, device: VirtualDevice, stage: Stage) -> float:
        """Wait for the device's first failure; returns when it happened (monotonic)."""
        await eventually(lambda: device.status.last_error is not None, 15, "a failed attempt")
        failed_at = time.monotonic()
        error = device.status.last_error
        assert error is not None
        assert error.stage is stage, (error.stage, error.reason)
        return failed_at

    async def named_by_every_surface(
        self,
        device_id: str,
        failed_at: float,
        *,
        server_stage: Stage | None,
        verdict_state: str,
        doctor_args: list[str],
        doctor_stage: str,
        doctor_cause: str,
    ) -> None:
        """Server log, API, `cyan device why`, `cyan doctor`: each names it within 5 s."""
        if server_stage is None:
            cause, fix = NOTHING_REACHED_US
        else:
            diagnosis = explain_stage(server_stage, "")
            cause, fix = diagnosis.cause, diagnosis.fix

        def deadline() -> float:
            left = NAMED_WITHIN_S - (time.monotonic() - failed_at)
            assert left > 0, "not named within 5 s of the failed attempt"
            return left

        # 1. The server's log: one line with stage, cause and fix (nothing, if nothing
        # reached the server).
        if server_stage is not None:

            def logged() -> bool:
                marker = f"failed at stage {server_stage.value}: {cause}"
                return any(
                    marker in r.getMessage() and f"Fix: {fix}" in r.getMessage()
                    for r in self.caplog.records
                )

            await eventually(logged, deadline(), f"a log line at stage {server_stage}")

        # 2. The API (the admin's view of the device).
        async def api_names_it() -> bool:
            reply = await self.cloud.http.get(f"/cyan/v1/devices/{device_id}/failures")
            assert reply.status_code == 200, reply.text
            verdict = reply.json()["verdict"]
            return bool(
                verdict["state"] == verdict_state
                and verdict["stage"] == (server_stage.value if server_stage else None)
                and verdict["cause"] == cause
                and verdict["fix"] == fix
            )

        await eventually(api_names_it, deadline(), "the API's verdict")

        # 3. `cyan device why ID`, where the server runs.
        why = await cyan(
            "device",
            "why",
            device_id,
            "--json",
            "--data-dir",
            str(self.data_dir),
            timeout_s=deadline(),
        )
        assert why.code == 1, why.stderr
        verdict = why.json()["verdict"]
        assert verdict["state"] == verdict_state
        assert verdict["stage"] == (server_stage.value if server_stage else None)
        assert (verdict["cause"], verdict["fix"]) == (cause, fix)
        deadline()

        # 4. `cyan doctor`, from the device's network.
        doctor = await cyan(
            "doctor", "--json", "--timeout", "2", *doctor_args, timeout_s=deadline()
        )
        assert doctor.code == 1, doctor.stdout + doctor.stderr
        failing = [row for row in doctor.json() if row["status"] == "fail"]
        assert failing, doctor.stdout
        assert failing[0]["stage"] == doctor_stage, failing
        assert doctor_cause in (failing[0]["cause"] or ""), failing[0]
        assert failing[0]["fix"], failing[0]
        deadline()


@pytest.fixture
async def scene(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Scene]:
    caplog.set_level(logging.INFO, "cyan")
    async with running_cloud(tmp_path / "server", handshake_timeout_s=1.0) as cloud:
        yield Scene(cloud, caplog, tmp_path / "device-keys")
