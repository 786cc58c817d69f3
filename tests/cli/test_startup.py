"""The `cyan` command starts without loading what only some commands need.

`cyan doctor`, `cyan explain`, `cyan keys server` and `cyan device run` are run by hand on a
laptop, and by the scenario suite within seconds of a failure: none of them needs the web
framework or the database layer, which cost most of a second at every start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HEAVY = ("sqlalchemy", "alembic", "fastapi", "uvicorn", "starlette", "asyncpg", "aiosqlite")


def test_the_cli_loads_no_web_framework_or_database_layer() -> None:
    script = (
        "import sys, cyan.cli.main\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} & set(heavy))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded == []


def test_a_migrated_database_opens_without_alembic(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from cyan.store import Store\n"
        "async def main():\n"
        "    store = await Store.open(sys.argv[1])\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    url = f"sqlite+aiosqlite:///{tmp_path / 'cyan.db'}"

    def opened_with_alembic() -> str:
        return subprocess.run(
            [sys.executable, "-c", script, url],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    assert opened_with_alembic() == "True"  # a new database: Alembic creates the schema
    assert opened_with_alembic() == "False"  # at head: read without it
