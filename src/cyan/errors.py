"""The root of every error Cyan raises on purpose.

    CyanError
    ├── cyan.protocol.errors.ProtocolError    a device connection broke (carries a Stage)
    ├── cyan.protocol.errors.ConnectionBusy   a connection cannot take a request now
    │   ├── NoTokenFree                       all 256 tokens wait for answers
    │   └── UpdateBusy                        an update already runs on it
    ├── cyan.store.errors.StoreError          the database refused or lost something
    │   ├── StoreUnavailable                  not reachable or busy: try the write again
    │   ├── MigrationFailed                   Alembic could not bring the schema to head
    │   └── AccountError                      a username, password or token id refused
    │       └── UserExists, UnknownUser       (cyan.store.users)
    ├── cyan.cloud.errors.CloudError          a device request could not be served
    ├── cyan.bus.local.BusError               a subscription ended
    ├── cyan.firmware.FirmwareError           a firmware binary is refused (why, in words)
    ├── cyan.api.errors.ApiError              an HTTP request was bad (Particle-shaped JSON)
    ├── cyan.settings.SettingsError           a setting is bad (names where it came from)
    ├── cyan.datadir.DataDirError             the data directory cannot be used
    ├── cyan.keydir.KeyStoreError             a device's key directory is unusable
    ├── cyan.node.CannotListen                a port is taken or not ours to bind
    └── cyan.dfu.DfuError                     dfu-util failed or found no device

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
