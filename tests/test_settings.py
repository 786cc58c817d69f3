"""Settings: overrides beat CYAN_* variables, which beat cyan.toml, which beats defaults."""

from __future__ import annotations

from pathlib import Path

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
