"""Errors from device requests; the API maps each to Particle's status and body."""

from __future__ import annotations

from cyan.errors import CyanError


class CloudError(CyanError):
    """A request to a device could not be served."""

    http_status = 400


class DeviceNotFound(CloudError):
    http_status = 404


class DeviceOffline(CloudError):
    # Particle documents 404 for "device not connected".
    http_status = 404


class FunctionNotFound(CloudError):
    http_status = 404


class VariableNotFound(CloudError):
    http_status = 404


class DeviceTimedOut(CloudError):
    http_status = 408


class DeviceBusy(CloudError):
    """Too many requests already in flight to one device (a 1-byte CoAP token space)."""

    http_status = 429


class BadArgument(CloudError):
    http_status = 400


class UpdateInProgress(CloudError):
    """One update at a time per device; a second one waits for the first to end."""

    http_status = 409


class UpdateFailed(CloudError):
    """An over-the-air update ended without the device taking the new firmware."""

    http_status = 500
