"""Socket options the gateway sets on device connections."""

from __future__ import annotations

import asyncio
import contextlib
import socket

# Linux only; elsewhere the delayed ACK stays as the system has it.
_TCP_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)


def quick_ack(transport: asyncio.BaseTransport) -> None:
    """Send the ACK for what was just read now instead of after the delayed-ACK timer.

    Linux turns quick ACKs off again by itself, so this is set after each read that
    matters. Setting it sends an ACK that is already due at once (tcp_cleanup_rbuf).
    """
    if _TCP_QUICKACK is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):  # the socket may be closing under us
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
