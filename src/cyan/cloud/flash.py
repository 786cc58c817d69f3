"""Over-the-air updates as the cloud runs them.

One update at a time per device. The binary waits in the data directory until its
update ends, and the update has a row in the store from the start, so a server that
dies mid-update comes back to a recorded failure, never to an update stuck "sending"
(the device, whose flash was never told UpdateDone, keeps its old firmware). Progress
lives in memory while the update runs; the owner's event stream gets the events
Particle's cloud sends: spark/flash/status "started", then "success" or "failed".
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cyan.bus.events import CloudEvent
from cyan.cloud.errors import CloudError, DeviceOffline, UpdateInProgress
from cyan.cloud.router import Router
from cyan.cloud.types import FlashOptions, UpdateProgress
from cyan.files import write_atomically
from cyan.protocol.transfer import UpdateState
from cyan.store import FirmwareUpdateRecord, Store

log = logging.getLogger("cyan.cloud.flash")

FLASH_STATUS_EVENT = "spark/flash/status"
UPDATES_DIR = "updates"
RESTARTED = (
    "the server restarted during the update; the device keeps its old firmware (flash again)"
)
STOPPED = "the server stopped during the update; the device keeps its old firmware"


@dataclass
class FlashJob:
    """One update while it runs (and the last one of each device, once it ended)."""

    record: FirmwareUpdateRecord
    owner_id: int | None
    progress: UpdateProgress
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def state(self) -> UpdateState:
        if not self.done.is_set():
            return UpdateState.SENDING
        return (
            UpdateState.SUCCEEDED
            if self.progress.state is UpdateState.SUCCEEDED
            else UpdateState.FAILED
        )


class Flasher:
    def __init__(
        self, router: Router, store: Store, data_dir: Path, options: FlashOptions | None = None
    ) -> None:
        self.router = router
        self.store = store
        self.directory = data_dir / UPDATES_DIR
        self.options = options or FlashOptions()
        self._running: dict[str, FlashJob] = {}
        # Devices whose update is being set up (binary kept, row written) but not yet in
        # _running: claimed before the first await, so two starts at once are one update.
        self._starting: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._listeners: list[Callable[[FlashJob], None]] = []

    def _keep(self, path: Path, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomically(path, data, 0o600)

    def _remove_leftovers(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*.bin"):
            leftover.unlink(missing_ok=True)

    async def recover(self) -> None:
        """At start: updates a previous run left unfinished fail, and their binaries go."""
        unfinished = await self.store.updates.fail_unfinished(RESTARTED, datetime.now(UTC))
        for record in unfinished:
            log.warning("update %d of device %s: %s", record.id, record.device_id, RESTARTED)
        await asyncio.to_thread(self._remove_leftovers)

    def job(self, device_id: str) -> FlashJob | None:
        """The device's running update, if any."""
        return self._running.get(device_id)

    def on_finished(self, listener: Callable[[FlashJob], None]) -> None:
        self._listeners.append(listener)

    async def start(
        self, device_id: str, owner_id: int | None, data: bytes, *, file_name: str, module: str
    ) -> FlashJob:
        """Keep the binary, record the update, tell the owner, and send it in the background."""
        if device_id in self._running or device_id in self._starting:
            raise UpdateInProgress(
                "An update is already in progress for this device",
                fix="Wait for it to end: its state is in GET /v1/devices/ID (cyan_ota).",
            )
        if self.router.live(device_id) is None:
            raise DeviceOffline(
                "Device is offline", fix="Flash it once it is breathing cyan again."
            )
        path = self.directory / f"{device_id}-{secrets.token_hex(4)}.bin"
        self._starting.add(device_id)
        try:
            await asyncio.to_thread(self._keep, path, data)
            record = await self.store.updates.begin(
                device_id,
                file_name=file_name,
                file_path=str(path),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                module=module,
                at=datetime.now(UTC),
            )
        finally:
            self._starting.discard(device_id)
        progress = UpdateProgress(UpdateState.BEGIN_SENT, 0, len(data), 0, None, None)
        job = FlashJob(record, owner_id, progress)
        self._running[device_id] = job
        self._status(job, "started")
        task = asyncio.create_task(self._run(job, data, path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: FlashJob, data: bytes, path: Path) -> None:
        device_id = job.record.device_id

        def progressed(progress: UpdateProgress) -> None:
            job.progress = progress

        # Only the sending is cancelled when the server stops (stop()); recording how it
        # ended must run to its end, or the store would say "sending" for ever.
        sending = asyncio.create_task(self.router.flash(device_id, data, self.options, progressed))
        self._sending[device_id] = sending
        failure: str | None = None
        try:
            await sending
        except CloudError as exc:
            failure = exc.message
        except asyncio.CancelledError:
            if not sending.cancelled():
                raise
            failure = STOPPED
        except Exception as exc:  # never leave an update without an outcome
            log.exception("update of device %s failed unexpectedly", device_id)
            failure = f"internal error: {exc}"
        finally:
            del self._sending[device_id]
        await self._finish(job, path, failure)

    async def _finish(self, job: FlashJob, path: Path, failure: str | None) -> None:
        device_id = job.record.device_id
        progress = job.progress
        if failure is not None and progress.state is not UpdateState.FAILED:
            progress = UpdateProgress(
                UpdateState.FAILED,
                progress.bytes_sent,
                progress.total_bytes,
                progress.chunks_resent,
                progress.fast,
                failure,
            )
        job.progress = progress
        job.done.set()
        del self._running[device_id]
        await asyncio.to_thread(path.unlink, missing_ok=True)
        self._status(job, "success" if job.state is UpdateState.SUCCEEDED else "failed")
        try:
            await self.store.updates.end(
                job.record.id,
                state=job.state,
                fast=progress.fast,
                bytes_sent=progress.bytes_sent,
                chunks_resent=progress.chunks_resent,
                failure=progress.failure,
                at=datetime.now(UTC),
            )
        except Exception:  # the next start marks it failed; nothing is lost but the detail
            log.exception("could not record the end of update %d", job.record.id)
        for listener in self._listeners:
            listener(job)

    def _status(self, job: FlashJob, status: str) -> None:
        # Particle's cloud publishes these to the owner, as if from the device (private).
        self.router.publish(
            CloudEvent(
                name=FLASH_STATUS_EVENT,
                data=status,
                ttl=60,
                public=False,
                published_at=datetime.now(UTC),
                device_id=job.record.device_id,
                owner_id=job.owner_id,
            )
        )

    async def stop(self) -> None:
        """Abort what runs (each device keeps its old firmware) and record why."""
        for sending in self._sending.values():
            sending.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
