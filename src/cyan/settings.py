"""One settings object, read once at start.

Order of precedence: explicit overrides (CLI flags) > ``CYAN_*`` environment
variables > ``cyan.toml`` in the data directory (or ``CYAN_CONFIG``) > defaults.
This module is the only reader of ``os.environ`` in Cyan.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from cyan.errors import CyanError

DEFAULT_DEVICE_PORT = 5683
DEFAULT_API_PORT = 8080
# The account that owns the demo devices and the CLI's tokens, and may see everything.
ADMIN_USERNAME = "admin"


class SettingsError(CyanError):
    fix = "Check the CYAN_* environment variables and cyan.toml."


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    host: str = "0.0.0.0"
    port: int = DEFAULT_DEVICE_PORT
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


@dataclass(frozen=True, slots=True)
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_API_PORT
    sse_keepalive_s: float = 9.0
    # POST /v1/users: anyone who reaches the API may create an account; off unless asked.
    allow_signup: bool = False


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


def _coerce(kind: type[Any] | str, raw: Any, name: str) -> Any:
    kind_name = kind if isinstance(kind, str) else kind.__name__
    try:
        if kind_name == "int":
            return int(raw)
        if kind_name == "float":
            return float(raw)
        if kind_name == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        return str(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name} = {raw!r} is not a valid {kind_name}") from exc


def _section(
    cls: type[Any],
    prefix: str,
    env: dict[str, str],
    toml: dict[str, Any],
    overrides: dict[str, Any],
) -> Any:
    values: dict[str, Any] = {}
    for f in fields(cls):
        env_name = f"CYAN_{prefix}_{f.name}".upper()
        if f.name in overrides and overrides[f.name] is not None:
            values[f.name] = overrides[f.name]
        elif env_name in env:
            values[f.name] = _coerce(f.type, env[env_name], env_name)
        elif f.name in toml:
            values[f.name] = _coerce(f.type, toml[f.name], f"{prefix}.{f.name}")
    return cls(**values)


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
        gateway=_section(GatewaySettings, "gateway", env, toml.get("gateway", {}), gateway or {}),
        api=_section(ApiSettings, "api", env, toml.get("api", {}), api or {}),
    )


def with_data_dir(settings: Settings, data_dir: Path) -> Settings:
    return replace(settings, data_dir=data_dir, database_url=sqlite_url(data_dir))
