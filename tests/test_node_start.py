"""A node listens for devices before it loads the HTTP API (node.py ``_start_api``)."""

from __future__ import annotations

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
