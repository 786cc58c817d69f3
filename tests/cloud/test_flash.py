"""cloud/flash.py: one update at a time per device, its binary kept while it runs, its row in
the store from start to end, and the spark/flash/status events the owner sees.

Real router, real store (SQLite in the test's directory), real files; the device's link is
the hand-written one of tests/cloud/links.py, except in the last test, which runs the whole
gateway and a virtual Photon on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cyan.bus.events import CloudEvent
from cyan.cloud import DeviceOffline, Router
from cyan.cloud.errors import UpdateFailed, UpdateInProgress
from cyan.cloud.flash import (
    FLASH_STATUS_EVENT,
    RESTARTED,
    STOPPED,
    UPDATES_DIR,
    Flasher,
    FlashJob,
)
from cyan.cloud.types import FlashOptions
from cyan.protocol.transfer import UpdateState
from cyan.settings import ADMIN_USERNAME
from cyan.store import FirmwareUpdateRecord, Store
from tests.cloud.links import DEVICE, OTHER, FakeLink, live_device, progress
from tests.firmware.samples import user_part
from tests.system import running_cloud

OWNER = 7
DATA = b"\x5a" * 1500
BOUND_S = 10.0  # a hang bound, not a speed check
AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.fixture
def store(sqlite_store: Store) -> Store:
    return sqlite_store


@pytest.fixture
def link(router: Router) -> FakeLink:
    attached = FakeLink(live_device(DEVICE))
    router.attach(DEVICE, attached)
    return attached


@pytest.fixture
def statuses(router: Router) -> list[CloudEvent]:
    """The spark/flash/status events the router fans out, in order."""
    heard: list[CloudEvent] = []
    router.add_listener(lambda e: heard.append(e) if e.name == FLASH_STATUS_EVENT else None)
    return heard


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


class Finished:
    """The jobs ``on_finished`` reported, and a wait for the next one."""

    def __init__(self, flasher: Flasher) -> None:
        self.jobs: list[FlashJob] = []
        self._changed = asyncio.Event()
        flasher.on_finished(self._heard)

    def _heard(self, job: FlashJob) -> None:
        self.jobs.append(job)
        self._changed.set()

    async def count(self, count: int) -> list[FlashJob]:
        async def wait() -> None:
            while len(self.jobs) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), BOUND_S)
        return self.jobs


@pytest.fixture
async def flasher(router: Router, store: Store, data_dir: Path) -> AsyncIterator[Flasher]:
    made = Flasher(router, store, data_dir)
    yield made
    await asyncio.wait_for(made.stop(), BOUND_S)


@pytest.fixture
def finished(flasher: Flasher) -> Finished:
    return Finished(flasher)


async def start(flasher: Flasher, device_id: str = DEVICE, data: bytes = DATA) -> FlashJob:
    return await flasher.start(
        device_id, OWNER, data, file_name="app.bin", module="user part 1 v6 for the Photon"
    )


def kept(data_dir: Path) -> list[Path]:
    directory = data_dir / UPDATES_DIR
    return sorted(directory.iterdir()) if directory.exists() else []


async def latest(store: Store, device_id: str = DEVICE) -> FirmwareUpdateRecord:
    record = await store.updates.latest(device_id)
    assert record is not None
    return record


# -- before anything is sent ------------------------------------------------------------------


async def test_an_offline_device_is_refused_and_nothing_is_kept(
    flasher: Flasher, store: Store, data_dir: Path, statuses: list[CloudEvent]
) -> None:
    with pytest.raises(DeviceOffline) as raised:
        await start(flasher)
    assert raised.value.message == "Device is offline"
    assert raised.value.fix == "Flash it once it is breathing cyan again."
    assert await store.updates.latest(DEVICE) is None
    assert kept(data_dir) == []
    assert statuses == []
    assert flasher.job(DEVICE) is None


async def test_start_keeps_the_binary_records_the_update_and_tells_the_owner(
    flasher: Flasher, link: FakeLink, store: Store, data_dir: Path, statuses: list[CloudEvent]
) -> None:
    job = await start(flasher)
    assert flasher.job(DEVICE) is job
    assert job.state is UpdateState.SENDING
    assert job.owner_id == OWNER
    record = job.record
    assert (record.device_id, record.file_name, record.module) == (
        DEVICE,
        "app.bin",
        "user part 1 v6 for the Photon",
    )
    assert (record.size, record.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())
    assert record.state == UpdateState.SENDING
    assert record.finished_at is None
    assert await latest(store) == record
    # The binary waits in the data directory, readable by the server alone.
    (path,) = kept(data_dir)
    assert record.file_path == str(path)
    assert path.name.startswith(f"{DEVICE}-")
    assert path.suffix == ".bin"
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert job.progress == progress(UpdateState.BEGIN_SENT, 0, len(DATA), fast=None)
    # As Particle's cloud does: to the owner, private, as if from the device.
    (started,) = statuses
    assert (started.data, started.device_id, started.owner_id) == ("started", DEVICE, OWNER)
    assert (started.public, started.ttl) == (False, 60)
    await asyncio.wait_for(link.flashing.wait(), BOUND_S)
    assert link.flashes == [(DATA, flasher.options)]


async def test_progress_is_the_links_latest_report_while_it_runs(
    flasher: Flasher, link: FakeLink
) -> None:
    link.reports = [
        progress(UpdateState.BEGIN_SENT, 0, len(DATA), fast=None),
        progress(UpdateState.SENDING, 512, len(DATA), chunks_resent=2),
    ]
    job = await start(flasher)
    await asyncio.wait_for(link.flashing.wait(), BOUND_S)
    assert job.progress == link.reports[-1]
    assert job.state is UpdateState.SENDING  # the device has not taken it yet
    assert not job.done.is_set()


async def test_a_second_update_waits_for_the_first_to_end(
    flasher: Flasher, link: FakeLink, store: Store, data_dir: Path, finished: Finished
) -> None:
    first = await start(flasher)
    with pytest.raises(UpdateInProgress) as raised:
        await start(flasher, data=b"another")
    assert raised.value.http_status == 409
    assert raised.value.fix is not None
    assert "cyan_ota" in raised.value.fix
    assert flasher.job(DEVICE) is first
    assert (await latest(store)).id == first.record.id
    assert len(kept(data_dir)) == 1
    # Once it ended, the device takes the next one.
    link.reports = [progress(UpdateState.SUCCEEDED, len(DATA), len(DATA))]
    link.release.set()
    await finished.count(1)
    second = await start(flasher, data=b"another")
    assert second.record.id != first.record.id
    assert flasher.job(DEVICE) is second


async def test_updates_of_different_devices_run_side_by_side(
    flasher: Flasher, router: Router, link: FakeLink
) -> None:
    other = FakeLink(live_device(OTHER))
    router.attach(OTHER, other)
    first = await start(flasher)
    second = await start(flasher, OTHER)
    assert flasher.job(DEVICE) is first
    assert flasher.job(OTHER) is second


async def test_the_flashers_options_reach_the_link(
    router: Router, store: Store, data_dir: Path, link: FakeLink
) -> None:
    options = FlashOptions(chunk_bytes=256, offer_fast=False, deadline_s=12.0)
    flasher = Flasher(router, store, data_dir, options)
    try:
        await start(flasher)
        await asyncio.wait_for(link.flashing.wait(), BOUND_S)
        assert link.flashes == [(DATA, options)]
    finally:
        await asyncio.wait_for(flasher.stop(), BOUND_S)


# -- how it ends ------------------------------------------------------------------------------


async def test_a_taken_update_ends_succeeded_everywhere(
    flasher: Flasher,
    link: FakeLink,
    store: Store,
    data_dir: Path,
    statuses: list[CloudEvent],
    finished: Finished,
) -> None:
    link.reports = [progress(UpdateState.SUCCEEDED, len(DATA), len(DATA), chunks_resent=1)]
    link.release.set()
    job = await start(flasher)
    assert await finished.count(1) == [job]
    assert job.done.is_set()
    assert job.state is UpdateState.SUCCEEDED
    assert flasher.job(DEVICE) is None
    assert kept(data_dir) == []
    assert [s.data for s in statuses] == ["started", "success"]
    record = await latest(store)
    assert record.id == job.record.id
    assert (record.state, record.fast, record.failure) == ("succeeded", True, None)
    assert (record.bytes_sent, record.chunks_resent) == (len(DATA), 1)
    assert record.file_path is None
    assert record.finished_at is not None


async def test_a_refused_update_ends_failed_with_the_links_reason(
    flasher: Flasher,
    link: FakeLink,
    store: Store,
    data_dir: Path,
    statuses: list[CloudEvent],
    finished: Finished,
) -> None:
    link.reports = [progress(UpdateState.SENDING, 1024, len(DATA))]
    link.outcome = UpdateFailed("the device refused UpdateBegin")
    link.release.set()
    job = await start(flasher)
    await finished.count(1)
    assert job.state is UpdateState.FAILED
    assert job.progress == progress(
        UpdateState.FAILED, 1024, len(DATA), failure="the device refused UpdateBegin"
    )
    assert kept(data_dir) == []
    assert [s.data for s in statuses] == ["started", "failed"]
    record = await latest(store)
    assert (record.state, record.failure) == ("failed", "the device refused UpdateBegin")
    assert record.bytes_sent == 1024
    assert record.file_path is None
    assert record.finished_at is not None


async def test_a_failure_the_link_reported_itself_is_the_one_kept(
    flasher: Flasher, link: FakeLink, store: Store, finished: Finished
) -> None:
    own = progress(UpdateState.FAILED, 300, len(DATA), failure="chunk 2 missed 5 times")
    link.reports = [own]
    link.outcome = UpdateFailed("the update failed")
    link.release.set()
    job = await start(flasher)
    await finished.count(1)
    assert job.progress == own
    assert (await latest(store)).failure == "chunk 2 missed 5 times"


async def test_an_unexpected_error_still_ends_the_update(
    flasher: Flasher,
    link: FakeLink,
    store: Store,
    statuses: list[CloudEvent],
    finished: Finished,
    caplog: pytest.LogCaptureFixture,
) -> None:
    link.outcome = RuntimeError("socket gremlin")
    link.release.set()
    with caplog.at_level(logging.ERROR, logger="cyan.cloud.flash"):
        job = await start(flasher)
        await finished.count(1)
    assert job.state is UpdateState.FAILED
    assert job.progress.failure == "internal error: socket gremlin"
    assert (await latest(store)).failure == "internal error: socket gremlin"
    assert [s.data for s in statuses] == ["started", "failed"]
    assert f"update of device {DEVICE} failed unexpectedly" in caplog.text
    assert flasher.job(DEVICE) is None


async def test_every_listener_hears_each_update_end_once(
    flasher: Flasher, link: FakeLink, finished: Finished
) -> None:
    also: list[FlashJob] = []
    flasher.on_finished(also.append)
    link.reports = [progress(UpdateState.SUCCEEDED, len(DATA), len(DATA))]
    link.release.set()
    first = await start(flasher)
    await finished.count(1)
    second = await start(flasher)
    assert await finished.count(2) == [first, second]
    assert also == [first, second]


async def test_stopping_the_server_ends_a_running_update_as_failed(
    flasher: Flasher,
    link: FakeLink,
    store: Store,
    data_dir: Path,
    statuses: list[CloudEvent],
    finished: Finished,
) -> None:
    link.reports = [progress(UpdateState.SENDING, 512, len(DATA))]
    job = await start(flasher)
    await asyncio.wait_for(link.flashing.wait(), BOUND_S)
    await asyncio.wait_for(flasher.stop(), BOUND_S)
    # stop() returns once the end is recorded, not merely asked for.
    assert finished.jobs == [job]
    assert job.state is UpdateState.FAILED
    assert job.progress.failure == STOPPED
    record = await latest(store)
    assert (record.state, record.failure, record.bytes_sent) == ("failed", STOPPED, 512)
    assert kept(data_dir) == []
    assert [s.data for s in statuses] == ["started", "failed"]


async def test_stopping_with_nothing_running_does_nothing(flasher: Flasher) -> None:
    await asyncio.wait_for(flasher.stop(), BOUND_S)
    assert flasher.job(DEVICE) is None


async def test_two_updates_started_at_once_are_one_update(
    flasher: Flasher, link: FakeLink, store: Store, data_dir: Path, finished: Finished
) -> None:
    link.reports = [progress(UpdateState.SUCCEEDED, 5, 5)]  # before the first flash reads it
    outcomes = await asyncio.gather(
        start(flasher, data=b"first"), start(flasher, data=b"second"), return_exceptions=True
    )
    link.release.set()
    refused = [o for o in outcomes if isinstance(o, UpdateInProgress)]
    jobs = [o for o in outcomes if isinstance(o, FlashJob)]
    assert (len(refused), len(jobs)) == (1, 1), outcomes
    await finished.count(1)
    assert len(link.flashes) == 1
    assert (await latest(store)).state == "succeeded"
    assert kept(data_dir) == []


# -- after a restart ----------------------------------------------------------------------------


async def test_recover_fails_what_a_previous_run_left_sending_and_removes_its_binaries(
    router: Router, store: Store, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    updates = data_dir / UPDATES_DIR
    updates.mkdir(parents=True)
    left = []
    for device_id in (DEVICE, OTHER):
        path = updates / f"{device_id}-0badf00d.bin"
        path.write_bytes(b"half-sent")
        left.append(
            await store.updates.begin(
                device_id,
                file_name="app.bin",
                file_path=str(path),
                size=9,
                sha256="0" * 64,
                module="user part",
                at=AT,
            )
        )
    done_device = "aaaaaaaaaaaaaaaaaaaaaaaa"
    done = await store.updates.begin(
        done_device, file_name="ok.bin", file_path="", size=1, sha256="1" * 64, module="m", at=AT
    )
    await store.updates.end(
        done.id, state="succeeded", fast=True, bytes_sent=1, chunks_resent=0, failure=None, at=AT
    )
    with caplog.at_level(logging.WARNING, logger="cyan.cloud.flash"):
        await Flasher(router, store, data_dir).recover()
    for record in left:
        now = await latest(store, record.device_id)
        assert (now.id, now.state, now.failure) == (record.id, "failed", RESTARTED)
        assert now.file_path is None
        assert now.finished_at is not None
        assert f"update {record.id} of device {record.device_id}: {RESTARTED}" in caplog.text
    untouched = await latest(store, done_device)
    assert (untouched.state, untouched.failure) == ("succeeded", None)
    assert list(updates.glob("*.bin")) == []


async def test_recover_on_a_fresh_data_directory_makes_the_updates_directory(
    router: Router, store: Store, data_dir: Path
) -> None:
    await Flasher(router, store, data_dir).recover()
    assert (data_dir / UPDATES_DIR).is_dir()


# -- a job's state --------------------------------------------------------------------------------


def _record() -> FirmwareUpdateRecord:
    return FirmwareUpdateRecord(
        id=1,
        device_id=DEVICE,
        file_name="app.bin",
        file_path=None,
        size=10,
        sha256="0" * 64,
        module="m",
        state=UpdateState.SENDING,
        fast=None,
        bytes_sent=0,
        chunks_resent=0,
        failure=None,
        started_at=AT,
        finished_at=None,
    )


@pytest.mark.parametrize(
    ("reported", "done", "state"),
    [
        # Running: "sending" whatever the sender's own step is.
        (UpdateState.BEGIN_SENT, False, UpdateState.SENDING),
        (UpdateState.DONE_SENT, False, UpdateState.SENDING),
        (UpdateState.SUCCEEDED, False, UpdateState.SENDING),
        # Ended: succeeded only if the device took it.
        (UpdateState.SUCCEEDED, True, UpdateState.SUCCEEDED),
        (UpdateState.FAILED, True, UpdateState.FAILED),
        (UpdateState.DONE_SENT, True, UpdateState.FAILED),
    ],
)
async def test_a_jobs_state_is_sending_until_done_then_its_outcome(
    reported: UpdateState, done: bool, state: UpdateState
) -> None:
    job = FlashJob(_record(), OWNER, progress(reported, 0, 10))
    if done:
        job.done.set()
    assert job.state is state


# -- the real gateway behind the router -----------------------------------------------------------


async def test_a_virtual_photon_takes_an_update_started_by_the_flasher(tmp_path: Path) -> None:
    async with running_cloud(tmp_path / "cloud") as cloud:
        device = await cloud.add_device()
        await cloud.online(device)
        node = cloud.node
        admin = await node.store.users.ensure(ADMIN_USERNAME)
        heard: list[str] = []
        node.router.add_listener(
            lambda e: heard.append(e.data or "") if e.name == FLASH_STATUS_EVENT else None
        )
        ended = Finished(node.flasher)
        binary = user_part(b"\x42" * 20_000)
        job = await node.flasher.start(
            device.device_id, admin.id, binary, file_name="app.bin", module="user part"
        )
        await ended.count(1)
        assert job.state is UpdateState.SUCCEEDED
        assert job.progress.bytes_sent == len(binary)
        assert heard == ["started", "success"]
        record = await latest(node.store, device.device_id)
        assert (record.state, record.bytes_sent, record.size) == (
            "succeeded",
            len(binary),
            len(binary),
        )
        assert kept(node.settings.data_dir) == []
