"""gateway/versions.py: the release a device runs, from its system describe."""

from __future__ import annotations

from cyan.gateway.versions import release_name, system_module_of, system_version_of


def test_the_oldest_system_part_counts() -> None:
    modules = [
        {"f": "b", "n": "0", "v": 1006},
        {"f": "s", "n": "1", "v": 2302},
        {"f": "s", "n": "2", "v": 1512},
        {"f": "u", "n": "1", "v": 3},
    ]
    assert system_module_of(modules) == 1512
    assert system_version_of(modules) == "1.5.2"


def test_a_monolithic_firmware_carries_the_system_version() -> None:
    # Particle's Linux build of 5.0.0 reports its whole system as one module (§7.1).
    assert system_version_of([{"f": "m", "n": "0", "v": 5002, "d": []}]) == "5.0.0"


def test_an_unknown_version_is_its_number_and_no_module_is_none() -> None:
    assert release_name(9999) == "9999"
    assert system_version_of([{"f": "u", "v": 3}]) is None
    assert system_module_of([{"f": "s", "v": True}]) is None  # JSON true is no version
