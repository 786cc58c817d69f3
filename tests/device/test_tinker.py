"""device/tinker.py: Tinker's four functions and three variables, alone and over the wire."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cyan.device.tinker import ANALOG_MAX, FUNCTIONS, PINS, PWM_MAX, VARIABLES, Tinker
from cyan.protocol import payloads
from tests.driver.test_timers import FakeClock
from tests.system import running_cloud


def tinker(clock: FakeClock | None = None, seed: int = 1) -> Tinker:
    return Tinker(clock=clock or FakeClock(), build="test build", rng=random.Random(seed))


def test_it_has_tinkers_pins_functions_and_variables() -> None:
    assert [*(f"D{i}" for i in range(8)), *(f"A{i}" for i in range(8))] == PINS
    assert FUNCTIONS == ["digitalwrite", "digitalread", "analogwrite", "analogread"]
    assert VARIABLES == {
        "uptime": payloads.VARIABLE_INT,
        "temperature": payloads.VARIABLE_DOUBLE,
        "build": payloads.VARIABLE_STRING,
    }


def test_digitalwrite_then_digitalread() -> None:
    board = tinker()
    assert all(board.call("digitalread", pin) == 0 for pin in PINS)
    assert board.call("digitalwrite", "D7,HIGH") == 1
    assert board.call("digitalread", "D7") == 1
    assert board.call("digitalwrite", " A3,HIGH ") == 1  # the argument is trimmed
    assert board.call("digitalread", "A3") == 1
    assert board.call("digitalwrite", "D7,LOW") == 1
    assert board.call("digitalread", "D7") == 0


@pytest.mark.parametrize("argument", ["D8,HIGH", "D7,high", "D7", "D7,", ",HIGH", "B1,LOW"])
def test_digitalwrite_refuses_a_bad_pin_or_level(argument: str) -> None:
    board = tinker()
    assert board.call("digitalwrite", argument) == -1
    assert set(board.digital.values()) == {0}


def test_digitalread_of_no_such_pin_is_minus_one() -> None:
    assert tinker().call("digitalread", "D9") == -1


def test_analogwrite_reads_back_scaled_and_refuses_bad_values() -> None:
    board = tinker()
    assert board.call("analogwrite", "A1,255") == 1
    assert board.call("analogread", "A1") == ANALOG_MAX
    assert board.call("analogwrite", "A1,128") == 1
    assert board.call("analogread", "A1") == 128 * ANALOG_MAX // PWM_MAX
    assert board.call("analogwrite", "D2,0") == 1  # a PWM pin that analogread cannot read
    for bad in ("A1,256", "A1,-1", "A1,x", "A1", "A9,10"):
        assert board.call("analogwrite", bad) == -1, bad
    assert board.analog == {"A1": 128, "D2": 0}


def test_analogread_of_an_undriven_pin_is_noise_in_range() -> None:
    board = tinker(seed=7)
    readings = [board.call("analogread", "A0") for _ in range(50)]
    assert all(r is not None and 0 <= r <= ANALOG_MAX for r in readings)
    assert len(set(readings)) > 1
    # The same seed gives the same noise.
    again = tinker(seed=7)
    assert [again.call("analogread", "A0") for _ in range(50)] == readings
    assert board.call("analogread", "D0") == -1
    assert board.call("analogread", "A8") == -1


def test_a_function_tinker_lacks_has_no_answer() -> None:
    assert tinker().call("toggle", "D7") is None


def test_variables_uptime_temperature_and_build() -> None:
    clock = FakeClock()
    board = tinker(clock)
    clock.now += 42.7
    assert board.uptime_s == 42
    uptime = board.variable("uptime")
    assert uptime is not None
    assert payloads.decode_variable(payloads.VARIABLE_INT, uptime) == 42
    board.reboot()
    assert board.uptime_s == 0
    temperature = board.variable("temperature")
    assert temperature is not None
    value = payloads.decode_variable(payloads.VARIABLE_DOUBLE, temperature)
    assert isinstance(value, float)
    assert 21.0 <= value <= 22.0
    assert round(value, 2) == value
    build = board.variable("build")
    assert build is not None
    assert payloads.decode_variable(payloads.VARIABLE_STRING, build) == "test build"
    assert board.variable("humidity") is None


async def test_a_virtual_device_answers_tinker_over_the_wire(tmp_path: Path) -> None:
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(firmware="2.3.1", heartbeat_s=3600)
        await cloud.online(device)
        router, device_id = cloud.node.router, device.device_id
        assert await router.call_function(device_id, "digitalwrite", "D4,HIGH") == 1
        assert await router.call_function(device_id, "digitalread", "D4") == 1
        assert device.tinker.digital["D4"] == 1
        assert await router.call_function(device_id, "analogwrite", "A2,51") == 1
        assert await router.call_function(device_id, "analogread", "A2") == 51 * 4095 // 255
        assert await router.call_function(device_id, "digitalwrite", "D4,ON") == -1
        assert device.status.calls == 5
        uptime = await router.get_variable(device_id, "uptime")
        assert isinstance(uptime, int)
        assert uptime >= 0
        temperature = await router.get_variable(device_id, "temperature")
        assert isinstance(temperature, float)
        assert 21.0 <= temperature <= 22.0
        build = await router.get_variable(device_id, "build")
        assert build == "cyan virtual Tinker, Device OS 2.3.1"
