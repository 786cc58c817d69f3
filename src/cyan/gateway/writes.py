"""Batched writes to the store that one bad record cannot hold back."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cyan.store import StoreUnavailable

log = logging.getLogger("cyan.gateway")


R = TypeVar("R")


async def write_isolated(
    what: str, write: Callable[[list[R]], Awaitable[None]], batch: list[R]
) -> None:
    """``write(batch)``; if the database refuses it, each record alone, dropping (and
    logging once) those it refuses alone. StoreUnavailable passes through untouched."""
    if not batch:
        return
    try:
        await write(batch)
        return
    except StoreUnavailable:
        raise
    except Exception:
        if len(batch) == 1:
            log.exception("dropping a %s record the store refuses: %r", what, batch[0])
            return
        log.warning(
            "the store refused a batch of %d %s records; writing them one by one", len(batch), what
        )
    for record in batch:
        try:
            await write([record])
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("dropping a %s record the store refuses: %r", what, record)
