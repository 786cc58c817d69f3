"""How the CLI talks: Rich on stderr for messages, plain stdout for values scripts read."""

from __future__ import annotations

import logging
from collections.abc import Callable
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


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=console, show_path=False, rich_tracebacks=True)],
        force=True,
    )
    for noisy in ("alembic", "uvicorn.error", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: str, fix: str | None = None, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]Error:[/] {message}")
    if fix:
        console.print(f"[bold]Fix:[/] {fix}")
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
