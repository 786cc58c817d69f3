"""Tinker, the firmware a Photon ships with, as a Python application.

It cannot run ARM code; it answers Tinker's four functions the way Tinker does
(1 on success, -1 for a bad pin or value) and keeps the pin state in memory.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from cyan.protocol import payloads

PINS = [f"D{i}" for i in range(8)] + [f"A{i}" for i in range(8)]
ANALOG_MAX = 4095  # Photon ADC is 12-bit
PWM_MAX = 255

FUNCTIONS = ["digitalwrite", "digitalread", "analogwrite", "analogread"]
VARIABLES = {
    "uptime": payloads.VARIABLE_INT,
    "temperature": payloads.VARIABLE_DOUBLE,
    "build": payloads.VARIABLE_STRING,
}


class Tinker:
    def __init__(
        self, *, clock: Callable[[], float], build: str, rng: random.Random | None = None
    ) -> None:
        self._clock = clock
        self._booted_at = clock()
        self._rng = rng or random.Random()
        self.build = build
        self.digital: dict[str, int] = dict.fromkeys(PINS, 0)
        self.analog: dict[str, int] = {}

    def reboot(self) -> None:
        self._booted_at = self._clock()

    @property
    def uptime_s(self) -> int:
        return int(self._clock() - self._booted_at)

    def call(self, name: str, argument: str) -> int | None:
        """The function's return value, or None when the firmware has no such function."""
        handler = {
            "digitalwrite": self._digital_write,
            "digitalread": self._digital_read,
            "analogwrite": self._analog_write,
            "analogread": self._analog_read,
        }.get(name)
        return handler(argument.strip()) if handler else None

    def variable(self, name: str) -> bytes | None:
        if name == "uptime":
            return payloads.encode_variable(payloads.VARIABLE_INT, self.uptime_s)
        if name == "temperature":
            value = 21.5 + self._rng.uniform(-0.5, 0.5)
            return payloads.encode_variable(payloads.VARIABLE_DOUBLE, round(value, 2))
        if name == "build":
            return payloads.encode_variable(payloads.VARIABLE_STRING, self.build)
        return None

    def _digital_write(self, argument: str) -> int:
        pin, _, level = argument.partition(",")
        if pin not in self.digital or level not in ("HIGH", "LOW"):
            return -1
        self.digital[pin] = 1 if level == "HIGH" else 0
        return 1

    def _digital_read(self, argument: str) -> int:
        return self.digital.get(argument, -1)

    def _analog_write(self, argument: str) -> int:
        pin, _, raw = argument.partition(",")
        if pin not in self.digital or not raw.isdigit() or int(raw) > PWM_MAX:
            return -1
        self.analog[pin] = int(raw)
        return 1

    def _analog_read(self, argument: str) -> int:
        if not argument.startswith("A") or argument not in self.digital:
            return -1
        if argument in self.analog:  # a pin we drive reads back its duty cycle, scaled
            return self.analog[argument] * ANALOG_MAX // PWM_MAX
        return self._rng.randint(0, ANALOG_MAX)
