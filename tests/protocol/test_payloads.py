"""protocol/payloads.py: function results, time, variable values and describes (protocol.md
§4.5 – §4.10), as plain bytes, checked against values written out from protocol.md.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import payloads
from cyan.protocol.errors import ProtocolError, Stage
from tests.protocol.wire import h, outcome

# -- function results and time -----------------------------------------------------------------


def test_encode_time_wraps_to_32_bits() -> None:
    assert payloads.encode_time(2**32 + 5) == h("00 00 00 05")


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (0, h("00000000")),
        (1, h("00000001")),
        (-1, h("ffffffff")),
        (2**31 - 1, h("7fffffff")),
        (-(2**31), h("80000000")),
    ],
)
def test_function_result_values(value: int, wire: bytes) -> None:
    assert payloads.encode_function_result(value) == wire
    assert payloads.decode_function_result(wire) == value


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x00" * 3, b"\x00" * 5])
def test_function_result_of_the_wrong_size_is_a_session_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        payloads.decode_function_result(payload)

    assert caught.value.stage is Stage.SESSION


# -- variables and describe --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_code", "value", "wire"),
    [
        (payloads.VARIABLE_BOOL, True, h("01")),
        (payloads.VARIABLE_BOOL, False, h("00")),
        (payloads.VARIABLE_INT, 42, h("0000002a")),
        (payloads.VARIABLE_INT, -42, h("ffffffd6")),
        (payloads.VARIABLE_DOUBLE, 1.5, h("000000000000f83f")),  # little-endian (§4.7)
        (payloads.VARIABLE_DOUBLE, -0.1, h("9a9999999999b9bf")),
        (payloads.VARIABLE_STRING, "héllo", "héllo".encode()),
        (payloads.VARIABLE_STRING, "", b""),
    ],
)
def test_variable_values_both_ways(type_code: int, value: Any, wire: bytes) -> None:
    assert payloads.encode_variable(type_code, value) == wire
    assert payloads.decode_variable(type_code, wire) == value


@pytest.mark.parametrize(
    ("type_code", "payload"),
    [
        (payloads.VARIABLE_INT, b"\x00\x01"),
        (payloads.VARIABLE_INT, b"\x00" * 8),
        (payloads.VARIABLE_DOUBLE, b"\x00" * 4),
    ],
)
def test_variable_of_the_wrong_size_is_a_session_error(type_code: int, payload: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        payloads.decode_variable(type_code, payload)

    assert caught.value.stage is Stage.SESSION


def test_empty_bool_variable_is_a_session_error() -> None:
    with pytest.raises(ProtocolError):
        payloads.decode_variable(payloads.VARIABLE_BOOL, b"")


def test_encode_description_is_the_firmware_form_without_spaces() -> None:
    # §4.5: {"f":["fn1","fn2"],"v":{"var1":2,"var2":9}}
    body = payloads.encode_description(["fn1", "fn2"], {"var1": 2, "var2": 9})

    assert body == b'{"f":["fn1","fn2"],"v":{"var1":2,"var2":9}}'


def test_encode_description_of_the_system_part_and_of_both() -> None:
    # §7: 2.3.1's system describe is {"p":3,"m":[]}; with the system flag, device-os puts the
    # system fields inside the same object as f and v (§4.5).
    system = {"p": 3, "m": []}

    assert payloads.encode_description(None, None, system) == b'{"p":3,"m":[]}'
    assert payloads.encode_description(["led"], {}, system) == b'{"f":["led"],"v":{},"p":3,"m":[]}'
    both = payloads.decode_description(payloads.encode_description(["led"], {}, system))
    assert both == payloads.Description(("led",), {}, system)


def test_decode_description_application_and_system_parts() -> None:
    application = payloads.decode_description(b'{"f":["fn1","fn2"],"v":{"var1":2,"var2":9}}')
    system = payloads.decode_description(b'{"p":3,"m":[]}')  # §7: 2.3.1's system describe
    both = payloads.decode_description(b'{"f":[],"v":{"a":1,"b":"bad"},"p":6}')

    assert application == payloads.Description(("fn1", "fn2"), {"var1": 2, "var2": 9}, None)
    assert system == payloads.Description(None, None, {"p": 3, "m": []})
    assert both == payloads.Description((), {"a": 1}, {"p": 6})


@pytest.mark.parametrize(
    "payload", [b"", b"not json", b"\xff\xfe", b"[1,2]", b'"text"', b'{"f":{}}', b'{"v":[]}', b"{"]
)
def test_decode_description_rejects_malformed_bodies(payload: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        payloads.decode_description(payload)

    assert caught.value.stage is Stage.SESSION


def test_decode_description_of_deeply_nested_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        payloads.decode_description(b"[" * 5000)


# -- hypothesis: round trips and robustness ----------------------------------------------------


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["f", "v", "p", "x"]) | st.text(max_size=3), inner, max_size=3
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=80), _json.map(lambda v: json.dumps(v).encode())))
def test_decode_description_raises_only_protocol_error(payload: bytes) -> None:
    description = outcome(payloads.decode_description, payload)

    if isinstance(description, ProtocolError):
        assert description.stage is Stage.SESSION
        return
    assert description.functions is None or all(isinstance(f, str) for f in description.functions)
    assert description.variables is None or all(
        isinstance(t, int) for t in description.variables.values()
    )


@settings(max_examples=300)
@given(st.integers(-1, 20), st.binary(max_size=16))
def test_decode_variable_raises_only_protocol_error(type_code: int, payload: bytes) -> None:
    value = outcome(payloads.decode_variable, type_code, payload)

    assert not isinstance(value, ProtocolError) or value.stage is Stage.SESSION


@settings(max_examples=100)
@given(
    st.sampled_from(
        [
            payloads.VARIABLE_BOOL,
            payloads.VARIABLE_INT,
            payloads.VARIABLE_DOUBLE,
            payloads.VARIABLE_STRING,
        ]
    ),
    st.data(),
)
def test_variable_values_round_trip(type_code: int, data: st.DataObject) -> None:
    strategy: st.SearchStrategy[Any] = {
        payloads.VARIABLE_BOOL: st.booleans(),
        payloads.VARIABLE_INT: st.integers(-(2**31), 2**31 - 1),
        payloads.VARIABLE_DOUBLE: st.floats(allow_nan=False),
        payloads.VARIABLE_STRING: st.text(max_size=20),
    }[type_code]
    value = data.draw(strategy)

    assert payloads.decode_variable(type_code, payloads.encode_variable(type_code, value)) == value
