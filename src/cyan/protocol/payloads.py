"""Payloads inside Particle messages: function results, time, variable values, describes.

Byte orders and types: protocol.md §4.5 – §4.8. These are plain encoders and decoders;
messages.py wraps them in CoAP.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from cyan.protocol.errors import ProtocolError, Stage


def encode_function_result(value: int) -> bytes:
    return struct.pack(">i", value)


def decode_function_result(payload: bytes) -> int:
    if len(payload) != 4:
        raise ProtocolError(Stage.SESSION, f"function result of {len(payload)} bytes, expected 4")
    return int(struct.unpack(">i", payload)[0])


def encode_time(unix_seconds: int) -> bytes:
    return (unix_seconds & 0xFFFFFFFF).to_bytes(4, "big")


# -- variables ------------------------------------------------------------------------------

VARIABLE_BOOL, VARIABLE_INT, VARIABLE_STRING, VARIABLE_DOUBLE = 1, 2, 4, 9
# The names the Particle API gives these types (GET /v1/devices/ID "variables").
VARIABLE_TYPE_NAMES = {
    VARIABLE_BOOL: "bool",
    VARIABLE_INT: "int32",
    VARIABLE_STRING: "string",
    VARIABLE_DOUBLE: "double",
}
VariableValue = bool | int | float | str


def encode_variable(type_code: int, value: VariableValue) -> bytes:
    """Value bytes by describe type: bool 1 byte, int32 BE, double LE (ARM memory), string raw."""
    if type_code == VARIABLE_BOOL:
        return b"\x01" if value else b"\x00"
    if type_code == VARIABLE_INT:
        return struct.pack(">i", int(value))
    if type_code == VARIABLE_DOUBLE:
        return struct.pack("<d", float(value))
    return str(value).encode()


def decode_variable(type_code: int, payload: bytes) -> VariableValue:
    try:
        if type_code == VARIABLE_BOOL:
            if len(payload) != 1:
                raise struct.error("a bool is one byte")
            return payload != b"\x00"
        if type_code == VARIABLE_INT:
            return int(struct.unpack(">i", payload)[0])
        if type_code == VARIABLE_DOUBLE:
            return float(struct.unpack("<d", payload)[0])
    except struct.error as exc:
        raise ProtocolError(
            Stage.SESSION, f"variable of type {type_code} arrived as {len(payload)} bytes"
        ) from exc
    return payload.decode("utf-8", errors="replace")


# -- describe -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Description:
    """What a describe told: application part, system part, or both."""

    functions: tuple[str, ...] | None
    variables: dict[str, int] | None
    system: dict[str, Any] | None


def encode_description(
    functions: list[str] | None,
    variables: dict[str, int] | None,
    system: dict[str, Any] | None = None,
) -> bytes:
    body: dict[str, Any] = {}
    if functions is not None:
        body["f"] = functions
    if variables is not None:
        body["v"] = variables
    if system:
        body.update(system)
    # Firmware builds this without spaces (§4.5).
    return json.dumps(body, separators=(",", ":")).encode()


def decode_description(payload: bytes) -> Description:
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: a frame of "[[[[…" nests deeper than the JSON parser goes.
        raise ProtocolError(Stage.SESSION, f"describe is not JSON: {exc!r:.80}") from exc
    if not isinstance(body, dict):
        raise ProtocolError(Stage.SESSION, "describe is not a JSON object")
    functions = variables = None
    if "f" in body or "v" in body:
        raw_f, raw_v = body.get("f", []), body.get("v", {})
        if not isinstance(raw_f, list) or not isinstance(raw_v, dict):
            raise ProtocolError(Stage.SESSION, "describe has a malformed f or v member")
        functions = tuple(str(f) for f in raw_f)
        variables = {str(k): int(v) for k, v in raw_v.items() if isinstance(v, int)}
    system = {k: v for k, v in body.items() if k not in ("f", "v")} or None
    return Description(functions, variables, system)
