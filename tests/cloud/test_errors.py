"""cloud/errors.py and the package's face (cloud/__init__.py): what each device-request error
is, the HTTP status Particle's clients expect of it, and the body the API makes of it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import cyan.cloud
from cyan.api import create_app
from cyan.bus import EventBus
from cyan.cloud import errors, router, types
from cyan.cloud.errors import (
    BadArgument,
    CloudError,
    DeviceBusy,
    DeviceNotFound,
    DeviceOffline,
    DeviceTimedOut,
    FunctionNotFound,
    UpdateFailed,
    UpdateInProgress,
    VariableNotFound,
)
from cyan.errors import CyanError
from cyan.settings import ApiSettings
from cyan.store import Store

# Particle's statuses (rest-api.md): 404 for a device that is not connected, 408 for one
# that does not answer in time; 429 and 409 are Cyan's, for what Particle queues instead.
STATUSES: list[tuple[type[CloudError], int]] = [
    (CloudError, 400),
    (DeviceNotFound, 404),
    (DeviceOffline, 404),
    (FunctionNotFound, 404),
    (VariableNotFound, 404),
    (DeviceTimedOut, 408),
    (DeviceBusy, 429),
    (BadArgument, 400),
    (UpdateInProgress, 409),
    (UpdateFailed, 500),
]


@pytest.mark.parametrize(("kind", "status"), STATUSES)
def test_each_error_is_a_cyan_error_with_its_status(kind: type[CloudError], status: int) -> None:
    error = kind("Something about the device")
    assert isinstance(error, CloudError)
    assert isinstance(error, CyanError)
    assert error.http_status == status
    assert error.message == str(error) == "Something about the device"
    assert error.fix is None


def test_a_fix_belongs_to_the_one_error_it_was_given_to() -> None:
    with_fix = DeviceOffline("Device is offline", fix="Power it on.")
    without = DeviceOffline("Device is offline")
    assert with_fix.fix == "Power it on."
    assert without.fix is None
    assert DeviceOffline.fix is None


def test_an_error_without_words_is_named_by_its_class() -> None:
    error = DeviceBusy("Too many requests")
    error.args = ()
    assert error.message == "DeviceBusy"


def test_catching_cloud_error_catches_every_device_request_error() -> None:
    for kind, _ in STATUSES:
        with pytest.raises(CloudError):
            raise kind("refused")


def test_every_error_class_of_the_module_has_a_status_here() -> None:
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, CloudError)
    }
    assert defined == {kind for kind, _ in STATUSES}


# -- what the API makes of them --------------------------------------------------------------


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'cyan.db'}")
    app = create_app(store=store, router=router.Router(), bus=EventBus(), settings=ApiSettings())

    async def refuse(kind: str) -> None:
        chosen = {k.__name__: k for k, _ in STATUSES}[kind]
        raise chosen(f"{kind} said no", fix="a fix is for the CLI, not the body")

    app.add_api_route("/test/refuse/{kind}", refuse)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c
    finally:
        await store.close()


@pytest.mark.parametrize(("kind", "status"), STATUSES)
async def test_the_api_answers_each_with_its_status_and_particles_body(
    client: httpx.AsyncClient, kind: type[CloudError], status: int
) -> None:
    reply = await client.get(f"/test/refuse/{kind.__name__}")
    assert reply.status_code == status
    assert reply.json() == {"ok": False, "error": f"{kind.__name__} said no"}
    assert reply.headers["content-type"] == "application/json"


# -- the package ------------------------------------------------------------------------------


def test_the_package_exports_the_modules_own_objects() -> None:
    homes = {module.__name__: module for module in (errors, router, types)}
    assert cyan.cloud.__all__ == sorted(cyan.cloud.__all__)
    for name in cyan.cloud.__all__:
        exported = getattr(cyan.cloud, name)
        assert exported.__module__ in homes, name  # defined in the layer, not borrowed
        assert getattr(homes[exported.__module__], name) is exported
