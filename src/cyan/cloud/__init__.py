"""The cloud layer: which device is connected where, and requests to it."""

from cyan.cloud.errors import (
    BadArgument,
    CloudError,
    DeviceBusy,
    DeviceNotFound,
    DeviceOffline,
    DeviceTimedOut,
    FunctionNotFound,
    VariableNotFound,
)
from cyan.cloud.router import DeviceLink, Router
from cyan.cloud.types import LiveDevice

__all__ = [
    "BadArgument",
    "CloudError",
    "DeviceBusy",
    "DeviceLink",
    "DeviceNotFound",
    "DeviceOffline",
    "DeviceTimedOut",
    "FunctionNotFound",
    "LiveDevice",
    "Router",
    "VariableNotFound",
]
