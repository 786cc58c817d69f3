"""A node listens for devices before it loads the store and the HTTP API (node.py), and
`cyan serve` starts without the other commands (cli/entry.py)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_loading_the_node_loads_no_http_framework() -> None:
    """FastAPI, uvicorn and the routes are about 0.3 s of imports that devices do not need:
    loaded when the gateway already listens, not when the node module is."""
    probe = (
        "import sys, cyan.node; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'cyan.api.app') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"


def test_loading_the_gateway_loads_no_database_library() -> None:
    """SQLAlchemy and the store are about 0.2 s of imports: the node listens for devices
    first and imports them after (on a thread, so the loop keeps answering devices)."""
    probe = (
        "import sys, cyan.node, cyan.gateway.server; "
        "print(sorted(m for m in ('sqlalchemy', 'alembic', 'cyan.store.store') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert loaded.stdout.strip() == "[]"


def test_cyan_serve_starts_without_the_other_commands() -> None:
    probe = (
        "import sys; sys.argv = ['cyan', 'serve', '--help']\n"
        "from cyan.cli import entry\n"
        "try:\n    entry.main()\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('cyan.cli.main', 'cyan.cli.device', 'cyan.cli.doctor', "
        "'cyan.device', 'httpx', 'dns') if m in sys.modules), file=sys.stderr)"
    )
    alone = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert alone.stderr.strip() == "[]"
    assert "Usage: cyan serve [OPTIONS]" in alone.stdout
    # The same help as the whole app gives for it.
    helps = []
    whole = (
        "import typer; from cyan.cli.main import app; from cyan.cli.entry import _untyped_flags; "
        "command = typer.main.get_command(app); _untyped_flags(command); command()"
    )
    for run in ("from cyan.cli.entry import main; main()", whole):
        shown = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.argv = ['cyan', 'serve', '--help']; {run}"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "COLUMNS": "100"},
        )
        assert shown.returncode == 0, shown.stderr
        helps.append(shown.stdout)
    assert helps[0] == helps[1]
