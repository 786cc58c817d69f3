"""What the `cyan` command prints when it is asked for help, its version or something it
cannot do: words for a person, never a traceback, and no value type beside a flag."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cyan import __version__
from cyan.cli.main import app


def cyan(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CYAN_DATA_DIR": str(data_dir), "COLUMNS": "100", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "cyan", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def every_command_path() -> list[list[str]]:
    import typer

    command = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(node: object, path: list[str]) -> None:
        found.append(path)
        for name, child in getattr(node, "commands", {}).items():
            walk(child, [*path, name])

    walk(command, [])
    return found


@pytest.mark.parametrize("path", every_command_path(), ids=lambda p: " ".join(p) or "cyan")
def test_no_flag_reads_as_taking_a_value(path: list[str], tmp_path: Path) -> None:
    result = cyan(*path, "--help", data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--help" in result.stdout
    assert "<bool>" not in result.stdout


def test_version_as_a_flag_and_as_a_command(tmp_path: Path) -> None:
    for args in (["--version"], ["version"]):
        result = cyan(*args, data_dir=tmp_path)
        assert (result.returncode, result.stdout.strip()) == (0, __version__)


@pytest.mark.parametrize(
    "args", [["serve", "--api-port", "99999"], ["serve", "--device-port", "-5"]]
)
def test_a_port_out_of_range_is_an_error_not_a_traceback(args: list[str], tmp_path: Path) -> None:
    result = cyan(*args, data_dir=tmp_path)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "Error: setting" in output
    assert "65535" in output or "greater than or equal to 0" in output
    assert "Fix:" in output


@pytest.mark.parametrize(
    "args",
    [
        ["token", "create"],
        ["device", "list"],
        ["user", "list"],
        ["keys", "server", "--out", "image.der"],
        ["keys", "new", "--out", "my-photon"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_a_data_directory_serve_never_made_is_refused_and_not_created(
    args: list[str], tmp_path: Path
) -> None:
    typo = tmp_path / "typo"
    result = subprocess.run(
        [sys.executable, "-m", "cyan", *args, "--data-dir", str(typo)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        timeout=60,
    )
    assert result.returncode == 1, result
    assert f"{typo} (from --data-dir)" in result.stderr
    assert "cyan serve" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
