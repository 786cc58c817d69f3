"""Settings: overrides beat CYAN_* variables, which beat cyan.toml, which beats defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cyan.settings import SettingsError, load_settings


def test_precedence_and_types(tmp_path: Path) -> None:
    (tmp_path / "cyan.toml").write_text(
        "[gateway]\nport = 6000\nhandshake_timeout_s = 7.5\n[api]\nport = 9000\n"
        "allow_signup = true\n"
    )
    settings = load_settings(
        data_dir=tmp_path, environ={"CYAN_API_PORT": "9100"}, api={"host": "127.0.0.1"}
    )
    assert settings.gateway.port == 6000
    assert settings.gateway.handshake_timeout_s == 7.5
    assert settings.api.port == 9100  # environment over file
    assert settings.api.host == "127.0.0.1"  # override over everything
    assert settings.api.allow_signup is True
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'cyan.db'}"


@pytest.mark.parametrize(("raw", "expected"), [("false", False), ("0", False), ("yes", True)])
def test_bool_from_environment(tmp_path: Path, raw: str, expected: bool) -> None:
    settings = load_settings(data_dir=tmp_path, environ={"CYAN_API_ALLOW_SIGNUP": raw})
    assert settings.api.allow_signup is expected


def test_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CYAN_GATEWAY_PORT"):
        load_settings(data_dir=tmp_path, environ={"CYAN_GATEWAY_PORT": "lots"})
    with pytest.raises(SettingsError, match="CYAN_API_ALLOW_SIGNUP"):
        load_settings(data_dir=tmp_path, environ={"CYAN_API_ALLOW_SIGNUP": "perhaps"})
    assert "secret" not in repr(
        load_settings(
            data_dir=tmp_path, database_url="postgresql+asyncpg://u:secret@h/db", environ={}
        )
    )


@pytest.mark.parametrize(
    ("sources", "named", "fix"),
    [
        ({"api": {"port": 99999}}, "api.port (command line) = 99999", "the option you gave"),
        ({"environ": {"CYAN_GATEWAY_PORT": "-1"}}, "CYAN_GATEWAY_PORT = '-1'", "unset it"),
    ],
    ids=["flag", "environment"],
)
def test_a_port_out_of_range_is_named_with_its_fix(
    tmp_path: Path, sources: dict[str, Any], named: str, fix: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(data_dir=tmp_path, **{"environ": {}, **sources})
    assert named in str(caught.value)
    assert fix in caught.value.fix


def test_a_port_out_of_range_in_the_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "cyan.toml").write_text("[api]\nport = 70000\n")
    with pytest.raises(SettingsError, match=r"api\.port in .*cyan\.toml = 70000"):
        load_settings(data_dir=tmp_path, environ={})
