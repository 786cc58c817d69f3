"""The root of every error Cyan raises on purpose.

    CyanError
    ├── cyan.protocol.errors.ProtocolError   a device connection broke (carries a Stage)
    ├── cyan.store.errors.StoreError         the database refused or lost something
    ├── cyan.cloud.errors.CloudError         a device request could not be served
    ├── cyan.firmware.FirmwareError          a firmware binary is refused (why, in words)
    └── cyan.api.errors.ApiError             an HTTP request was bad (Particle-shaped JSON)

Each carries a one-line message; ``fix`` is what the CLI prints after "Fix:".
"""

from __future__ import annotations


class CyanError(Exception):
    """Base class; ``fix`` says what the user can do about it, if anything."""

    fix: str | None = None

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        if fix is not None:
            self.fix = fix

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__
