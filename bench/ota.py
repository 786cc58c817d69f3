"""Over-the-air update time, beside the bound that the bytes and round trips alone set.

What: a Cyan node (gateway + API + SQLite store) in a child process, one virtual Photon
in this process, and for each case a firmware binary flashed through the REST API
(PUT /v1/devices/{id}, multipart, as particle-cli sends it): a 128 KB user part and a
256 KB system part, in fast mode (chunks without answers) and slow mode (every chunk
answered), with no and with 5 % lost chunks. Timed on the device, from UpdateBegin
arriving to the device restarting into the new firmware.

Baseline, same run, same loopback, two processes: a trivial echo server. Its median
round trip (RTT) and its one-way throughput (bytes echoed back per second) give the
bound each case cannot beat: fast mode sends the wire bytes (chunks and framing,
resends included) at that throughput plus a round trip per exchange (UpdateBegin, each
UpdateDone and its ChunkMissed answer); slow mode adds one round trip per chunk sent.
The figure is the ratio of measured time to that bound.

Run: .venv/bin/python bench/ota.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.figures import HOST, clock, console, ms, print_table, ratio, run, summary
from bench.processes import Child, cyan_server_main, echo_server_main, register_devices
from cyan.datadir import load_or_create_server_key, prepare
from cyan.device import DeviceOptions, VirtualDevice
from cyan.device.updater import OtaFaults, UpdateOutcome
from cyan.firmware import ModuleDependency, ModuleFunction, build_module
from cyan.gateway.update import CHUNK_OVERHEAD_BYTES
from cyan.keydir import KeyStore
from cyan.protocol import ota
from cyan.protocol.events import Event, UpdateBeginRequested

CHUNK = ota.DEFAULT_CHUNK_BYTES
CASE_BOUND_S = 120.0  # a hang bound per case, not a speed figure
SYSTEM = ModuleFunction.SYSTEM_PART


def user_part(size: int) -> bytes:
    body = bytes(range(256)) * (size // 256)
    return build_module(
        platform_id=6,
        function=ModuleFunction.USER_PART,
        index=1,
        version=7,
        body=body[: size - 200],
        dependencies=[ModuleDependency(SYSTEM, 2, 2302)],
    )


def system_part(size: int) -> bytes:
    body = bytes(reversed(range(256))) * (size // 256)
    return build_module(
        platform_id=6,
        function=SYSTEM,
        index=1,
        version=2302,
        body=body[: size - 600],
        dependencies=[ModuleDependency(SYSTEM, 2, 207)],
    )


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    binary: bytes
    slow: bool
    drop: float


@dataclass
class Timed:
    started: float | None = None
    restarted: float | None = None


def timed_updater(device: VirtualDevice, timed: Timed) -> None:
    """Note when UpdateBegin arrives and when the device restarts into the new firmware."""
    updater = device.app.updater
    handle: Callable[..., UpdateOutcome | None] = updater.handle

    def timing(connection: Any, event: Event) -> UpdateOutcome | None:
        if isinstance(event, UpdateBeginRequested):
            timed.started = clock()
        outcome = handle(connection, event)
        if outcome is UpdateOutcome.RESTART:
            timed.restarted = clock()
        return outcome

    updater.handle = timing  # type: ignore[method-assign]


async def flash_case(
    case: Case, keystore: KeyStore, ports: dict[str, Any], token: str
) -> dict[str, Any]:
    options = DeviceOptions(
        server=f"{HOST}:{ports['device_port']}",
        heartbeat_s=3600,
        ota_faults=OtaFaults(drop_chunks=case.drop, slow_ota=case.slow),
    )
    device = VirtualDevice(keystore, options)
    timed = Timed()
    timed_updater(device, timed)
    task = asyncio.create_task(device.run())
    api = f"http://{HOST}:{ports['api_port']}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + CASE_BOUND_S
        while not device.status.connected:
            assert time.monotonic() < deadline, "the device did not connect"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # let the connect burst (describes, events) pass
        async with httpx.AsyncClient(base_url=api, headers=headers, trust_env=False) as http:
            files = {"file": ("bench.bin", case.binary, "application/octet-stream")}
            reply = await http.put(f"/v1/devices/{keystore.device_id}", files=files, timeout=30)
            assert reply.status_code == 200, reply.text
            while timed.restarted is None:
                assert time.monotonic() < deadline, f"{case.name} did not finish"
                await asyncio.sleep(0.01)
            ota_state: dict[str, Any] = {}
            while ota_state.get("state") != "succeeded":
                assert time.monotonic() < deadline, f"{case.name}: {ota_state}"
                detail = (await http.get(f"/v1/devices/{keystore.device_id}")).json()
                ota_state = detail.get("cyan_ota") or {}
                if ota_state.get("state") == "failed":
                    raise RuntimeError(f"{case.name} failed: {ota_state.get('failure')}")
                await asyncio.sleep(0.05)
    finally:
        await device.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert timed.started is not None
    assert timed.restarted is not None
    return {"seconds": timed.restarted - timed.started, "ota": ota_state}


async def echo_baseline(port: int, total_bytes: int) -> tuple[float, float]:
    """(median round trip in seconds, one-way bytes per second) over loopback."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        rtts = []
        for _ in range(300):
            start = clock()
            writer.write(b"x" * 32)
            await reader.readexactly(32)
            rtts.append(clock() - start)
        block = b"y" * 4096
        start = clock()
        sent = 0
        while sent < total_bytes:
            writer.write(block)
            sent += len(block)
            await writer.drain()
        await reader.readexactly(sent)
        throughput = sent / (clock() - start)
    finally:
        writer.close()
    return statistics.median(rtts), throughput


def bound_s(case: Case, resent: int, rtt: float, throughput: float) -> float:
    chunks = -(-len(case.binary) // CHUNK)
    sent = chunks + resent
    wire = sent * (CHUNK + CHUNK_OVERHEAD_BYTES)
    # UpdateBegin, and one UpdateDone per round (a round of resends when chunks were lost).
    rounds = 2 + (1 if resent else 0)
    exchanges = rounds + (sent if case.slow else 0)
    return wire / throughput + exchanges * rtt


async def main(quick: bool) -> None:
    user, system = user_part(128 * 1024), system_part(256 * 1024)
    cases = [
        Case(f"{label} {mode} {int(drop * 100)} % lost", binary, slow, drop)
        for label, binary in (("user part 128 KB", user), ("system part 256 KB", system))
        for mode, slow in (("fast", False), ("slow", True))
        for drop in (0.0, 0.05)
    ]
    if quick:
        cases = [c for c in cases if c.binary is user]
    with tempfile.TemporaryDirectory(prefix="cyan-bench-ota-") as tmp:
        data_dir = Path(tmp) / "server"
        keys_dir = Path(tmp) / "device"
        prepare(data_dir)
        server_public = load_or_create_server_key(data_dir).public_key()
        keystore = KeyStore.create(keys_dir, server_public, host=HOST, port=None)
        registered = await register_devices(data_dir, [(keystore.device_id, keystore.device_key)])
        with Child("echo", echo_server_main) as echo:
            echo_info = echo.start(30)
            rtt, throughput = await echo_baseline(echo_info["port"], 4 * 1024 * 1024)
        rows = []
        with Child("cyan", cyan_server_main, str(data_dir), {}) as server:
            ports = server.start(60)
            for case in cases:
                result = await flash_case(case, keystore, ports, registered.token)
                resent = int(result["ota"].get("chunks_resent") or 0)
                bound = bound_s(case, resent, rtt, throughput)
                rows.append(
                    [
                        case.name,
                        ms(result["seconds"]),
                        ms(bound),
                        ratio(result["seconds"], bound),
                        str(resent),
                        f"{len(case.binary) / result['seconds'] / 1024:.0f} KiB/s",
                    ]
                )
    print_table(
        "Over-the-air update, UpdateBegin to restart, one device on loopback",
        ["case", "time", "bound (bytes + round trips)", "ratio", "chunks resent", "rate"],
        rows,
    )
    summary(
        f"baseline, same run: loopback round trip {ms(rtt)} (median of 300), "
        f"throughput {throughput / 1024 / 1024:.0f} MiB/s one way (4 MiB echoed)"
    )
    console.print("ratio = measured / bound; 1.00× would be the wire alone")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 128 KB user part only")
    run(main(parser.parse_args().quick))
