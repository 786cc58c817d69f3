"""Why is this device not connected? One verdict from its failure history.

The API (`GET /cyan/v1/devices/{id}/failures`, `cyan_last_failure`) and `cyan device why`
both read it from here, so every surface gives the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cyan.diagnose.stages import Diagnosis, explain_stage
from cyan.protocol.errors import Stage

if TYPE_CHECKING:
    from cyan.store import ConnectionFailure, DeviceRecord, Store

# Unnamed failures (the connection never said which device it was) this recent may be the
# device's own attempts, when nothing else explains why it is offline.
UNNAMED_WINDOW = timedelta(minutes=10)

# A connection that got through the handshake and ended later: the device was reached and
# trusted, then went away (reset, power, Wi-Fi). Not a failed attempt.
DROPPED_STAGES = frozenset({Stage.SESSION, Stage.KEEPALIVE_TIMEOUT})

NOTHING_REACHED_US = (
    "no connection attempt from this device has reached this server: it fails before TCP "
    "(Wi-Fi, DHCP, DNS, routing or a closed port)",
    "run cyan doctor --server THIS-SERVER from the device's network; a Photon that blinks "
    "cyan usually cannot resolve the server's name (DHCP handing out DNS 0.0.0.0): pin the "
    "server by IP with cyan keys server --host IP",
)


@dataclass(frozen=True, slots=True)
class FailureReport:
    failure: ConnectionFailure
    diagnosis: Diagnosis


@dataclass(frozen=True, slots=True)
class Verdict:
    """The one answer: why the device is not connected (or that it is)."""

    state: str  # "online", "failing", "dropped", "unnamed-failures", "silent"
    summary: str
    stage: str | None
    cause: str | None
    fix: str | None
    failure: ConnectionFailure | None


@dataclass(frozen=True, slots=True)
class DeviceHistory:
    device_id: str
    failures: list[FailureReport]  # this device's, newest first
    unnamed: list[FailureReport]  # recent ones that named no device, newest first
    verdict: Verdict
    # Events the gateway dropped: over the rate limit, too big; when it last did.
    events_dropped: DroppedCounts | None = None


@dataclass(frozen=True, slots=True)
class DroppedCounts:
    over_rate: int
    too_big: int
    last_at: datetime | None

    @property
    def sentence(self) -> str:
        parts = []
        if self.over_rate:
            parts.append(
                f"{self.over_rate} over the rate limit (about 1 a second, bursts of 4: keep "
                "to it in the firmware, or raise gateway.events_per_s)"
            )
        if self.too_big:
            parts.append(
                f"{self.too_big} too big for the device's Device OS (64-byte names; data "
                "within its release's limit)"
            )
        return "; ".join(parts)


def dropped_counts(record: DeviceRecord | None) -> DroppedCounts | None:
    if record is None or not (record.events_over_rate or record.events_too_big):
        return None
    return DroppedCounts(
        record.events_over_rate, record.events_too_big, record.last_event_dropped_at
    )


def dropped_json(counts: DroppedCounts | None) -> dict[str, Any]:
    if counts is None:
        return {"over_rate": 0, "too_big": 0, "last_at": None}
    return {
        "over_rate": counts.over_rate,
        "too_big": counts.too_big,
        "last_at": _iso(counts.last_at) if counts.last_at else None,
    }


def report(failure: ConnectionFailure) -> FailureReport:
    try:
        stage = Stage(failure.stage)
    except ValueError:  # a stage a newer Cyan wrote; keep it readable
        stage = Stage.SESSION
    return FailureReport(failure, explain_stage(stage, failure.reason))


async def device_history(
    store: Store,
    device_id: str,
    record: DeviceRecord | None,
    *,
    online: bool,
    any_address: bool,
    now: datetime,
) -> DeviceHistory:
    """The device's history and verdict.

    ``record``: None for a device that is not registered (its failures are still kept).
    ``online``: whether it is connected now (the router knows better than the stored row).
    ``any_address``: for a device whose address is not known yet, whether unnamed failures
    from any address may be shown (an admin) or none (its owner: they may be anyone's).
    A device whose address is known is only ever tied to failures from that address.
    """
    failures = [report(f) for f in await store.failures.for_device(device_id)]
    address = record.last_ip if record else None
    handshake = record.last_handshake_at if record else None
    unnamed: list[FailureReport] = []
    if address is not None or any_address:
        unnamed = [
            report(f)
            for f in await store.failures.unnamed(
                since=now - UNNAMED_WINDOW, remote_address=address
            )
        ]
    verdict = _verdict(handshake, online, failures, unnamed, address_known=address is not None)
    return DeviceHistory(device_id, failures, unnamed, verdict, dropped_counts(record))


def _verdict(
    handshake: datetime | None,
    online: bool,
    failures: list[FailureReport],
    unnamed: list[FailureReport],
    *,
    address_known: bool,
) -> Verdict:
    newest = failures[0] if failures else None
    if online and (newest is None or handshake is None or newest.failure.at <= handshake):
        return Verdict("online", "connected (breathing cyan)", None, None, None, None)
    if newest is not None and (handshake is None or newest.failure.at >= handshake):
        lead = _unnamed_lead(newest, handshake, unnamed, address_known=address_known)
        if lead is not None:
            return lead
        if newest.diagnosis.stage in DROPPED_STAGES:
            return _from(newest, "dropped", "offline: its connection dropped after it was up")
        return _from(newest, "failing", "its last connection attempt failed")
    fresh = [r for r in unnamed if handshake is None or r.failure.at >= handshake]
    if fresh:
        where = fresh[0].failure.remote_address
        whose = "this device's last address" if address_known else "this device, if it is there"
        return _from(
            fresh[0],
            "unnamed-failures",
            f"a connection from {where} ({whose}) failed before it named a device",
        )
    cause, fix = NOTHING_REACHED_US
    summary = "offline, and nothing it tried reached this server"
    if handshake is not None:
        # It left cleanly (a goodbye); if it is on again, it fails before TCP now.
        summary = (
            f"offline: it last connected at {_iso(handshake)}, and nothing it tried since "
            "reached this server"
        )
    return Verdict("silent", summary, None, cause, fix, None)


def _unnamed_lead(
    newest: FailureReport,
    handshake: datetime | None,
    unnamed: list[FailureReport],
    *,
    address_known: bool,
) -> Verdict | None:
    """Failures that named no device lead when they come from the device's own address
    after its newest named failure, and outnumber its clean sessions since they began.

    A device that was given another server's key connects, is refused before it can name
    itself, and tries again: every attempt lands among the unnamed, while its own history
    ends with the drop of its last good session ("dropped" would say nothing is wrong).
    """
    if not address_known:
        return None
    since = [r for r in unnamed if r.failure.at > newest.failure.at]
    if not since:
        return None
    first = min(r.failure.at for r in since)
    clean_sessions = 1 if handshake is not None and handshake >= first else 0
    if len(since) <= clean_sessions:
        return None
    where = since[0].failure.remote_address
    attempts = "attempt" if len(since) == 1 else "attempts"
    return _from(
        since[0],
        "unnamed-failures",
        f"{len(since)} connection {attempts} from {where} (this device's last address) "
        "failed before naming a device, since its last session ended",
    )


def _from(item: FailureReport, state: str, summary: str) -> Verdict:
    d = item.diagnosis
    return Verdict(state, summary, d.stage.value, d.cause, d.fix, item.failure)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def failure_json(item: FailureReport) -> dict[str, Any]:
    failure, diagnosis = item.failure, item.diagnosis
    return {
        "at": _iso(failure.at),
        "device_id": failure.device_id,
        "remote_address": failure.remote_address,
        "stage": diagnosis.stage.value,
        "reason": failure.reason,
        "cause": diagnosis.cause,
        "fix": diagnosis.fix,
    }


def history_json(history: DeviceHistory) -> dict[str, Any]:
    verdict = history.verdict
    return {
        "device_id": history.device_id,
        "verdict": {
            "state": verdict.state,
            "summary": verdict.summary,
            "stage": verdict.stage,
            "cause": verdict.cause,
            "fix": verdict.fix,
            "at": _iso(verdict.failure.at) if verdict.failure else None,
            "reason": verdict.failure.reason if verdict.failure else None,
        },
        "failures": [failure_json(item) for item in history.failures],
        "unnamed_failures": [failure_json(item) for item in history.unnamed],
        "events_dropped": dropped_json(history.events_dropped),
    }
