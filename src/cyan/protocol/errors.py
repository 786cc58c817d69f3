"""Protocol errors, each tagged with the connection stage where it happened.

The stage names are the ones design.md lists; ``cyan.diagnose.stages`` maps each
to a human sentence and a fix, so a failure is classified once, here.
"""

from __future__ import annotations

from enum import StrEnum

from cyan.errors import CyanError


class Stage(StrEnum):
    DNS = "dns"
    TCP = "tcp"
    NONCE = "nonce"
    HANDSHAKE_DECRYPT = "handshake-decrypt"
    # Only a device sees this one: the server hung up after the device's handshake block,
    # without saying why (the server's own log names the exact stage).
    REFUSED = "refused"
    SERVER_KEY = "server-key"
    UNKNOWN_DEVICE = "unknown-device"
    KEY_MISMATCH = "key-mismatch"
    HELLO = "hello"
    SESSION = "session"
    TIMEOUT = "timeout"
    KEEPALIVE_TIMEOUT = "keepalive-timeout"
    # The server turned the connection away before the handshake: too many from one address.
    BUSY = "busy"


class ConnectionBusy(CyanError):
    """The connection cannot take this request now; it stays up, and the caller may retry."""


class NoTokenFree(ConnectionBusy):
    """All 256 one-byte tokens wait for answers (protocol.md §4.2)."""


class UpdateBusy(ConnectionBusy):
    """An update is already running on this connection."""


class ProtocolError(CyanError):
    """A connection cannot go on. ``stage`` says where; the message says why."""

    def __init__(self, stage: Stage, reason: str, *, device_id: str | None = None) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason
        self.device_id = device_id

    def __repr__(self) -> str:
        return f"ProtocolError(stage={self.stage.value!r}, reason={self.reason!r})"
