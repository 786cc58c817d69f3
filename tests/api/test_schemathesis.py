"""Property-based requests from the OpenAPI document against a real `cyan serve`: no 5xx.

Schemathesis generates requests for every operation in /openapi.json and sends them with a
logged-in user's token over real HTTP on loopback. Event streams are left out: they are
endless by design and covered by the SSE tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import BaseSchema
from schemathesis.core.result import Ok

from tests.ports import free_port

CYAN = shutil.which("cyan") or str(Path(sys.executable).parent / "cyan")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data = tmp_path_factory.mktemp("schemathesis")
    env = {**os.environ, "CYAN_DATA_DIR": str(data), "NO_COLOR": "1"}
    api_port = free_port()
    command = [
        CYAN,
        "serve",
        "--host",
        "127.0.0.1",
        "--device-port",
        str(free_port()),
        "--api-port",
        str(api_port),
        "--demo",
        "1",
    ]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("cyan serve did not come up") from None
                time.sleep(0.1)
        token = subprocess.run(
            [CYAN, "token", "create"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        yield url, token
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def api_schema(server: tuple[str, str]) -> BaseSchema:
    url, _ = server
    loaded = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return loaded.exclude(method="GET", path_regex=r"events")


def test_no_server_errors(api_schema: BaseSchema, server: tuple[str, str]) -> None:
    # Driven per operation with Hypothesis directly: schemathesis's lazy pytest fixture
    # integration does not work under pytest 9.
    url, token = server
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # every operation in the document is usable
        operations.append(result.ok())
    assert len(operations) >= 10  # the document really lists the API
    sent = 0

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def no_5xx(case: Any) -> None:
            nonlocal sent
            sent += 1
            response = case.call(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
            )
            if response.content:
                response.json()  # every answer, errors included, is JSON

        no_5xx()
    assert sent >= 5 * len(operations)
