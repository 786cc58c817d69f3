"""Fixtures for the firmware tests: the real Tinker binaries (see samples.py)."""

from __future__ import annotations

import pytest

from tests.firmware.samples import tinker_binary


@pytest.fixture(scope="session")
def photon_tinker() -> bytes:
    return tinker_binary("photon")


@pytest.fixture(scope="session")
def p1_tinker() -> bytes:
    return tinker_binary("p1")
