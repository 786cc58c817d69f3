"""Options shared by several commands, declared once (style.md §12)."""

from __future__ import annotations

import os
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


def data_dir_origin(flag: Path | None) -> str:
    """Why a command looks in the data directory it uses, for its error messages."""
    if flag is not None:
        return "from --data-dir"
    if os.environ.get("CYAN_DATA_DIR"):
        return "from CYAN_DATA_DIR"
    return "the default; --data-dir or CYAN_DATA_DIR choose another"
