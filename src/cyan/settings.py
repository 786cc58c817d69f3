"""One settings object, read once at start.

Order of precedence: explicit overrides (CLI flags) > ``CYAN_*`` environment
variables > ``cyan.toml`` in the data directory (or ``CYAN_CONFIG``) > defaults.
This module is the only reader of ``os.environ`` in Cyan.

The sections are frozen dataclasses (read on hot paths: plain attributes); pydantic
checks and converts what the three sources give (``"yes"`` to True, ``"6000"`` to 6000).
pydantic-settings would read ``os.environ`` itself, where tests hand in an environment of
their own, so the sources are merged here and only the validation is the library's.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Annotated, Any, TypeVar

import platformdirs
from pydantic import Field, TypeAdapter, ValidationError

from cyan.errors import CyanError

DEFAULT_DEVICE_PORT = 5683
DEFAULT_API_PORT = 8080
T = TypeVar("T")
# The account that owns the demo devices and the CLI's tokens, and may see everything.
ADMIN_USERNAME = "admin"


class SettingsError(CyanError):
    fix = "Check the CYAN_* environment variables and cyan.toml."


# A TCP port; 0 asks the system for any free one (the tests do).
Port = Annotated[int, Field(ge=0, le=65535)]


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str = "0.0.0.0"
    port: Port = DEFAULT_DEVICE_PORT
    # Whole handshake guard; Brewskey's server uses 10 s, a Photon gives up after 20 s per read.
    handshake_timeout_s: float = 10.0
    # A silent device is pinged after this long, and dropped if the ping goes unanswered.
    idle_ping_s: float = 20.0
    ping_timeout_s: float = 10.0
    max_frame_bytes: int = 8192
    function_timeout_s: float = 15.0
    variable_timeout_s: float = 15.0
    # A device that never describes itself (Device OS ≤ 1.5) is asked again this long after
    # it connects, then at 5× and 30× that, to learn what its setup() registered.
    describe_again_s: float = 1.0
    # How long a call or read naming something new waits for the device's describe.
    describe_timeout_s: float = 5.0
    # Subscriptions one connection may hold; more are refused and counted. Device OS keeps 4
    # event handlers on a Photon (Particle's docs, Particle.subscribe()), later releases a
    # dozen or so; without a cap one device could make every event's routing slower.
    max_subscriptions: int = 20
    # Failed connections from one address at one stage are logged once per this many
    # seconds, the rest counted in one line (a scanner must not be able to grow the log).
    failure_log_interval_s: float = 60.0
    # Application events a device may publish: Particle's "about 1 a second, bursts of 4".
    # Over it they are dropped and counted per device; 0 turns the limit off.
    events_per_s: float = 1.0
    event_burst: int = 4
    # Connections from one address still in the handshake at once; more are closed at
    # once (stage busy). Holds a scanner's half-open connections, and the RSA they would
    # cost, to a bound; devices behind one NAT that reconnect together retry by themselves.
    max_handshakes_per_address: int = 100
    # Worker processes for the server key's RSA (cyan/rsa_pool.py): none given, one per
    # core; 0 runs it on the event loop, where every RSA operation stalls all devices.
    rsa_processes: int | None = None


@dataclass(frozen=True, slots=True)
class ApiSettings:
    # Every address by default, as the device port: particle-cli on a laptop of the LAN
    # reaches it (put TLS in front before it crosses a network you do not trust).
    host: str = "0.0.0.0"
    port: Port = DEFAULT_API_PORT
    sse_keepalive_s: float = 9.0
    # POST /v1/users: anyone who reaches the API may create an account; off unless asked.
    allow_signup: bool = False
    # Request bodies: what an authenticated caller may send (firmware uploads are held to
    # their slot's size instead), and what anyone may send before the token is known (a
    # login, a sign-up, a legacy form token): a body is never buffered whole for a stranger.
    max_body_bytes: int = 1024 * 1024
    max_body_before_auth_bytes: int = 64 * 1024
    # How often open event streams are checked against revoked tokens and devices that
    # changed hands (api/stream_guard.py): the most such a stream can run on after.
    stream_check_s: float = 0.5
    # Particle's limits (api/limits.py), per client address unless said; 0 turns one off.
    requests_per_5_min: int = 10_000
    logins_per_5_min: int = 100
    login_failures_before_lockout: int = 10  # in a row, per account
    login_lockout_s: float = 1800.0
    stream_opens_per_5_min: int = 100
    streams_per_address: int = 100
    # Events held for one stream whose client reads too slowly; past it the stream is
    # dropped (the client reconnects). With the socket's own buffer, what a stalled
    # subscriber can cost.
    stream_buffer_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    @property
    def server_key_path(self) -> Path:
        return self.data_dir / "server-key.pem"

    def __repr__(self) -> str:
        # The database URL may carry a password: keep it out of logs.
        return f"Settings(data_dir={str(self.data_dir)!r}, database_url=<hidden>)"


def default_data_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("CYAN_DATA_DIR"):
        return Path(env["CYAN_DATA_DIR"]).expanduser()
    return Path(platformdirs.user_data_dir("cyan", appauthor=False))


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir / 'cyan.db'}"


def _section(
    cls: type[T],
    prefix: str,
    env: dict[str, str],
    toml: dict[str, Any],
    overrides: dict[str, Any],
    config_path: Path,
) -> T:
    """One section from its three sources, by precedence; pydantic checks and converts.

    A value's origin is kept so that a bad one is named as the user wrote it: the
    variable CYAN_GATEWAY_PORT, the file's gateway.port, or the flag.
    """
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(toml) - names)
    if unknown:
        raise SettingsError(
            f"{config_path}: unknown setting {prefix}.{unknown[0]}",
            fix=f"The [{prefix}] settings are: {', '.join(sorted(names))}.",
        )
    values: dict[str, Any] = {}
    origins: dict[str, tuple[str, str]] = {}  # where a value came from, and how to change it
    for name in names:
        env_name = f"CYAN_{prefix}_{name}".upper()
        if overrides.get(name) is not None:
            values[name] = overrides[name]
            origins[name] = (f"{prefix}.{name} (command line)", "Correct the option you gave.")
        elif env_name in env:
            values[name] = env[env_name]
            origins[name] = (env_name, f"Correct {env_name} or unset it.")
        elif name in toml:
            values[name] = toml[name]
            origins[name] = (f"{prefix}.{name} in {config_path}", "Correct it in that file.")
    try:
        return TypeAdapter(cls).validate_python(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        field_name = str(error["loc"][0]) if error["loc"] else "?"
        raw = values.get(field_name)
        where, fix = origins.get(field_name, (field_name, SettingsError.fix))
        raise SettingsError(f"setting {where} = {raw!r}: {error['msg']}", fix=fix) from None


def load_settings(
    *,
    data_dir: Path | None = None,
    database_url: str | None = None,
    gateway: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from overrides, environment, optional TOML file and defaults."""
    env = dict(os.environ if environ is None else environ)
    directory = (data_dir or default_data_dir(env)).expanduser().resolve()
    config_path = Path(env["CYAN_CONFIG"]) if env.get("CYAN_CONFIG") else directory / "cyan.toml"
    toml: dict[str, Any] = {}
    if config_path.is_file():
        try:
            toml = tomllib.loads(config_path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_path} is not valid TOML: {exc}") from exc
    url = database_url or env.get("CYAN_DATABASE_URL") or toml.get("database_url")
    return Settings(
        data_dir=directory,
        database_url=str(url) if url else sqlite_url(directory),
        gateway=_section(
            GatewaySettings, "gateway", env, toml.get("gateway", {}), gateway or {}, config_path
        ),
        api=_section(ApiSettings, "api", env, toml.get("api", {}), api or {}, config_path),
    )


def with_data_dir(settings: Settings, data_dir: Path) -> Settings:
    return replace(settings, data_dir=data_dir, database_url=sqlite_url(data_dir))
