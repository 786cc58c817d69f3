"""The one exception `cyan.firmware` raises on purpose."""

from __future__ import annotations

from cyan.errors import CyanError


class FirmwareError(CyanError):
    """A firmware binary was refused; the message names the reason in one plain sentence."""
