"""The virtual device: a Photon running Tinker, speaking the real protocol over TCP."""

from cyan.device.options import DeviceOptions, DeviceStatus
from cyan.device.profiles import DEFAULT_PROFILE, PROFILES, FirmwareProfile
from cyan.device.runner import VirtualDevice
from cyan.device.tinker import Tinker

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES",
    "DeviceOptions",
    "DeviceStatus",
    "FirmwareProfile",
    "Tinker",
    "VirtualDevice",
]
