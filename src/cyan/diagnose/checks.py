"""The rows `cyan doctor` reports: one per link a Photon needs, in the order it needs them.

Plain data: cli/doctor.py renders them, `--json` prints them, tests compare them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from cyan.diagnose.stages import Diagnosis

# What the key rows say when doctor was given no keys.
KEYS_NEEDED = "needs the device's keys: --keys DIR, or --device-key, --server-key and --device-id"


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    # Worth knowing, fails nothing: the server never heard from a device that may be off.
    NOTE = "note"
    SKIPPED = "skipped"


class Step(StrEnum):
    DNS = "dns"
    TCP = "tcp"
    NONCE = "nonce"
    SERVER_KEY = "server-key"
    HANDSHAKE = "handshake"
    # Not a link doctor tests: what the server recorded of the device's own last attempt,
    # read before doctor's handshake (which would change it). Last, so that the first
    # failing row is what doctor itself found on the way.
    SERVER_RECORD = "server-record"


@dataclass(frozen=True, slots=True)
class Check:
    """One row. ``failure_stage`` names the stages.py entry the cause and fix come from."""

    stage: Step
    status: Status
    detail: str
    cause: str | None = None
    fix: str | None = None
    failure_stage: str | None = None

    @classmethod
    def failed(cls, step: Step, diagnosis: Diagnosis) -> Check:
        cause, fix = diagnosis.cause, diagnosis.fix
        return cls(step, Status.FAIL, diagnosis.detail, cause, fix, diagnosis.stage)

    def as_json(self) -> dict[str, str | None]:
        return {key: None if value is None else str(value) for key, value in asdict(self).items()}


def passed(checks: list[Check]) -> bool:
    """Skipped rows and notes fail no run: without --keys, or the API, doctor checks less."""
    return all(check.status is not Status.FAIL for check in checks)
