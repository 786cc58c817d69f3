"""`cyan serve` listens where its settings say: flags > CYAN_* > cyan.toml > defaults,
with separate hosts for devices and the API. Real processes, real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli_processes import BOUND_S, CYAN, processes  # noqa: F401
from tests.ports import free_port

LOOPBACK, OTHER_LOOPBACK = "127.0.0.1", "127.0.0.2"


def serve(
    data: Path,
    log: Path,
    started: list[subprocess.Popen[bytes]],
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    environment = {**os.environ, "CYAN_DATA_DIR": str(data), "NO_COLOR": "1", **(env or {})}
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [CYAN, "serve", *args], env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    started.append(process)
    deadline = time.monotonic() + BOUND_S
    while "Cyan is running" not in (log.read_text() if log.exists() else ""):
        assert process.poll() is None, f"cyan serve exited: {log.read_text()}"
        assert time.monotonic() < deadline, "cyan serve did not start"
        time.sleep(0.1)
    return process


def device_port_answers(host: str, port: int) -> bool:
    """The gateway's first bytes are its 40-byte nonce (protocol.md §2)."""
    try:
        with socket.create_connection((host, port), timeout=5) as sock:
            sock.settimeout(5)
            received = b""
            while len(received) < 40:
                chunk = sock.recv(40 - len(received))
                if not chunk:
                    break
                received += chunk
            return len(received) == 40
    except OSError:
        return False


def api_answers(host: str, port: int) -> bool:
    try:
        reply = httpx.get(f"http://{host}:{port}/v1/user", timeout=5)
    except httpx.HTTPError:
        return False
    return reply.status_code == 401 and reply.json()["error"] == "invalid_request"


def test_the_environment_places_both_servers(
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    device, api = free_port(), free_port()
    serve(
        tmp_path / "data",
        tmp_path / "serve.log",
        processes,
        env={
            "CYAN_GATEWAY_HOST": LOOPBACK,
            "CYAN_GATEWAY_PORT": str(device),
            "CYAN_API_HOST": LOOPBACK,
            "CYAN_API_PORT": str(api),
        },
    )
    assert device_port_answers(LOOPBACK, device)
    assert api_answers(LOOPBACK, api)


def test_cyan_toml_places_them_and_the_environment_beats_it(
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    device, api, file_api = free_port(), free_port(), free_port()
    (data / "cyan.toml").write_text(
        f'[gateway]\nhost = "{LOOPBACK}"\nport = {device}\n'
        f'[api]\nhost = "{LOOPBACK}"\nport = {file_api}\n'
    )
    serve(data, tmp_path / "serve.log", processes, env={"CYAN_API_PORT": str(api)})
    assert device_port_answers(LOOPBACK, device)
    assert api_answers(LOOPBACK, api)
    assert not api_answers(LOOPBACK, file_api)


def test_flags_win_and_each_server_has_its_own_host(
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    device, api, other = free_port(), free_port(), free_port()
    (data / "cyan.toml").write_text(f"[gateway]\nport = {other}\n")
    serve(
        data,
        tmp_path / "serve.log",
        processes,
        "--device-host",
        LOOPBACK,
        "--device-port",
        str(device),
        "--api-host",
        OTHER_LOOPBACK,
        "--api-port",
        str(api),
        env={"CYAN_API_PORT": str(other), "CYAN_API_HOST": LOOPBACK},
    )
    assert device_port_answers(LOOPBACK, device)
    assert api_answers(OTHER_LOOPBACK, api)
    assert not api_answers(LOOPBACK, api)  # the API is only on the address it was given
    assert not device_port_answers(LOOPBACK, other)


def test_a_typo_in_cyan_toml_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "cyan.toml").write_text("[gateway]\nprot = 5683\n")
    env = {**os.environ, "CYAN_DATA_DIR": str(data), "NO_COLOR": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [CYAN, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert "unknown setting gateway.prot" in result.stdout + result.stderr


@pytest.mark.parametrize(("variable", "value"), [("CYAN_GATEWAY_PORT", "lots")])
def test_a_bad_value_in_the_environment_is_named(tmp_path: Path, variable: str, value: str) -> None:
    env = {**os.environ, "CYAN_DATA_DIR": str(tmp_path), variable: value, "COLUMNS": "200"}
    result = subprocess.run(
        [CYAN, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert f"setting {variable} = '{value}'" in result.stdout + result.stderr
