"""Driving one over-the-air update on one device connection.

The protocol core (protocol/transfer.py) decides what to send and when to give up; this
loop feeds it the time and the flow control: chunks go out while the socket's write
buffer holds less than WRITE_WINDOW_BYTES, so a 256 KB system part is never queued
whole, and function calls and variable reads still reach the device between chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cyan.cloud.errors import DeviceOffline, UpdateFailed, UpdateInProgress
from cyan.cloud.types import FlashOptions, UpdateProgress
from cyan.protocol.errors import UpdateBusy
from cyan.protocol.transfer import UpdateSender, UpdateState

if TYPE_CHECKING:
    from cyan.gateway.session import DeviceSession

# Enough in flight to keep a LAN busy (16 chunks of 512 bytes), little enough that a
# function call queued behind it waits milliseconds, not seconds.
WRITE_WINDOW_BYTES = 8 * 1024
# Frame overhead on top of a chunk's data: length, CoAP header, options, AES padding.
CHUNK_OVERHEAD_BYTES = 48
# How often the loop looks at timeouts when the device is silent.
POLL_S = 0.05


def progress_of(sender: UpdateSender) -> UpdateProgress:
    return UpdateProgress(
        state=sender.state,
        bytes_sent=sender.bytes_sent,
        total_bytes=sender.total_bytes,
        chunks_resent=sender.chunks_resent,
        fast=sender.fast if sender.state is not UpdateState.BEGIN_SENT else None,
        failure=sender.failure,
    )


async def run_update(
    session: DeviceSession,
    data: bytes,
    options: FlashOptions,
    on_progress: Callable[[UpdateProgress], None],
) -> None:
    """Send ``data`` to the device; returns once it accepted it, raises UpdateFailed if not."""
    if not session.is_online:
        raise DeviceOffline("Device is offline")
    connection = session.connection
    # The size the device announced on connect, else the Photon's 512.
    chunk_bytes = session.live.ota_chunk_bytes or options.chunk_bytes
    try:
        sender = connection.start_update(
            data, chunk_bytes=chunk_bytes, offer_fast=options.offer_fast
        )
    except UpdateBusy as exc:
        raise UpdateInProgress("An update is already in progress for this device") from exc
    # The socket wakes the loop (resume_writing) once its buffer drains below a quarter.
    activity = session.watch_activity(WRITE_WINDOW_BYTES)
    deadline = time.monotonic() + options.deadline_s
    try:
        while not sender.finished:
            now = time.monotonic()
            if now > deadline:
                session.drive(
                    connection.abort_update,
                    f"the update did not finish within {options.deadline_s:g} s",
                )
                break
            room = WRITE_WINDOW_BYTES - session.write_buffer_size
            chunks = max(0, room // (chunk_bytes + CHUNK_OVERHEAD_BYTES))
            session.drive(connection.pump_update, now, chunks)
            on_progress(progress_of(sender))
            if sender.finished:
                break
            if sender.fast and sender.chunks_waiting and session.write_buffer_size < room:
                # The socket took the window at once (loopback, a fast LAN): go on, letting
                # the rest of the loop run between windows.
                await asyncio.sleep(0)
                continue
            activity.clear()
            # Woken by the device's answers, by the socket draining, or by the poll.
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation
            # that arrives as the event is set, and the server could not stop the update.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await activity.wait()
    finally:
        session.stop_watching_activity()
        if not sender.finished:  # cancelled: the server is stopping
            session.drive(connection.abort_update, "the server stopped during the update")
    on_progress(progress_of(sender))
    if sender.state is not UpdateState.SUCCEEDED:
        raise UpdateFailed(sender.failure or "the update failed")
