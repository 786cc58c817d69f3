"""How the CLI talks: Rich on stderr for messages, plain stdout for values scripts read."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler

from cyan.errors import CyanError

console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


class LogFormat(StrEnum):
    RICH = "rich"  # coloured and wrapped, for a person at a terminal (the default but serve's)
    TEXT = "text"  # one plain line per record: a server's log, cheap per line
    JSON = "json"  # one JSON object per line, for journald, Loki and friends


class JsonLines(logging.Formatter):
    """One JSON object per record. The standard library has none, and the few fields a
    log shipper needs do not justify a dependency."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def setup_logging(verbose: bool = False, log_format: LogFormat = LogFormat.RICH) -> None:
    # Rich costs about 0.9 ms a line against 8 µs for a plain handler: fine for a person,
    # 40% of a handshake for a server that logs every connection.
    handler: logging.Handler
    if log_format is LogFormat.RICH:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=True)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        if log_format is LogFormat.JSON:
            handler.setFormatter(JsonLines())
        else:
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True
    )
    for noisy in ("alembic", "uvicorn.error", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, fix: str | None = None, code: int = 1) -> typer.Exit:
    # Not wrapped: an error names paths, ids and commands a user copies whole.
    console.print(f"[bold red]Error:[/] {message}", soft_wrap=True)
    if fix:
        console.print(f"[bold]Fix:[/] {fix}", soft_wrap=True)
    return typer.Exit(code)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """A CyanError becomes a red line and a Fix: line, and exit code 1."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CyanError as error:
            raise fail(error.message, error.fix) from None

    return wrapper
