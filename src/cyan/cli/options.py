"""Options shared by several commands, declared once (style.md §12)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the database and server key live. Default: $CYAN_DATA_DIR or the "
        "platform's user data directory.",
        show_default=False,
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+asyncpg://user:pw@host/db. Default: SQLite in "
        "the data directory.",
        show_default=False,
    ),
]
