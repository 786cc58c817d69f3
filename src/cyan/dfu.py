"""A real Photon in DFU mode, through dfu-util (Debian package dfu-util): find it, read and
write the device key slot of its DCT.

Offsets and the device's USB ids: rest-api.md §8.1. dfu-util does the USB work; what is
done here is choosing the one Photon meant, and never leaving it without a key: the old
slot is saved first, and the new key is read back before anything else changes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cyan.errors import CyanError
from cyan.files import unused_name, write_atomically
from cyan.protocol import keys

# A Photon in DFU mode, and where its DCT (alt 1) keeps the keys (rest-api.md §8.1).
PHOTON_DFU = "2b04:d006"
DCT_ALT = "1"
DEVICE_KEY_OFFSET = 34
SERVER_KEY_OFFSET = 2082
DFU_MODE = "hold SETUP, tap RESET, release SETUP when it blinks yellow"
DFU_TIMEOUT_S = 60.0
INSTALL_DFU_UTIL = (
    "Install it: sudo apt install dfu-util (Debian, Ubuntu), brew install dfu-util (macOS); "
    "or give --dfu-util PATH. For a virtual device give --keys DIR instead."
)
FOUND_DFU = re.compile(r'Found DFU: \[(?P<usb>[0-9a-fA-F:]+)\].*?serial="(?P<serial>[^"]*)"')


class DfuError(CyanError):
    pass


@dataclass(frozen=True, slots=True)
class Dfu:
    """dfu-util aimed at one Photon's DCT (alt 1)."""

    tool: str
    serial: str

    def run(self, *args: str) -> None:
        argv = [self.tool, "-d", PHOTON_DFU, "-S", self.serial, "-a", DCT_ALT, *args]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=DFU_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DfuError(f"{' '.join(argv)}: {exc}") from exc
        if done.returncode != 0:
            why = done.stderr.strip() or done.stdout.strip()
            raise DfuError(f"{' '.join(argv)} exited {done.returncode}: {why}")

    def read_key(self, path: Path) -> None:
        self.run("-s", f"{DEVICE_KEY_OFFSET}:{keys.DEVICE_KEY_SLOT_BYTES}", "-U", str(path))

    def write_key(self, path: Path, *, leave: bool = False) -> None:
        self.run("-s", f"{DEVICE_KEY_OFFSET}{':leave' * leave}", "-D", str(path))


def find_photon(dfu_util: str | None, device_id: str) -> Dfu:
    """dfu-util and the Photon in DFU mode with this id, or a DfuError saying what is not."""
    tool = shutil.which(dfu_util or "dfu-util")
    if tool is None:
        missing = f"no dfu-util at {dfu_util}" if dfu_util else "dfu-util is not on PATH"
        raise DfuError(f"{missing}; it is needed to write a key to a Photon", fix=INSTALL_DFU_UTIL)
    try:
        listed = subprocess.run([tool, "-l"], capture_output=True, text=True, timeout=DFU_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DfuError(f"{tool} -l failed: {exc}", fix=INSTALL_DFU_UTIL) from None
    found = FOUND_DFU.finditer(listed.stdout)
    serials = {m["serial"] for m in found if m["usb"].lower() == PHOTON_DFU}
    if not serials:
        denied = "LIBUSB_ERROR_ACCESS" in listed.stdout + listed.stderr
        raise DfuError(
            f"no Photon in DFU mode found ({DFU_MODE})",
            fix="Run as root or add a udev rule for 2b04:d006."
            if denied
            else f"Connect it over USB, then check with: {tool} -l",
        )
    # A Photon in DFU mode gives its device id as its USB serial number.
    for serial in serials:
        if serial.lower() == device_id:
            return Dfu(tool, serial)
    raise DfuError(
        f"the Photon in DFU mode is {', '.join(sorted(serials))}, not {device_id}",
        fix="Put the right device in DFU mode, or unplug the others.",
    )


def replace_photon_key(dfu: Dfu, device_id: str, der: bytes) -> tuple[Path, Path]:
    """Save the Photon's key slot, write the new key, read it back: (backup, new key file)."""
    backup = unused_name(Path(f"backup_rsa_{device_id}.der"))  # particle-cli's name for it
    try:
        dfu.read_key(backup)
    except DfuError as exc:
        raise DfuError(
            f"could not read the Photon's current key; nothing was changed ({exc.message})",
            fix=f"Check that it is still in DFU mode ({DFU_MODE}) and try again.",
        ) from exc
    new_file = unused_name(Path(f"{device_id}_rsa_new.der"))
    write_atomically(new_file, der, 0o600)
    check = unused_name(Path(f".{device_id}_rsa_check.der"))
    try:
        dfu.write_key(new_file)
        dfu.read_key(check)
        if check.read_bytes()[: len(der)] != der:
            raise DfuError("the key read back differs from the key written")
    except DfuError as exc:
        raise DfuError(
            f"writing the new key to the Photon failed; the store was not changed ({exc.message})",
            fix=f"Put the old key back: dfu-util -d {PHOTON_DFU} -a {DCT_ALT} -s "
            f"{DEVICE_KEY_OFFSET} -D {backup}",
        ) from exc
    finally:
        check.unlink(missing_ok=True)
    return backup, new_file
