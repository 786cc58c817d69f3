"""One device publishing to N event streams and N subscribed devices: delivered events/s.

What: a Cyan node (gateway + API + SQLite store) in one process, its device event rate
limit lifted (gateway.events_per_s=0: the figure is delivery, not admission); in a second
process the subscribers: --streams SSE streams (GET /v1/devices/events/fanout, 100) and
--devices devices (real handshake, then a subscription to "fanout/" for the owner's
devices, 100), each counting what reaches it. This process is the publisher: one device
publishing private events named fanout/N at --rate a second (2,000) for --duration
(3 s; 1 s with --quick), each carrying its publish time, open loop.

Figures:
- delivered events/s: deliveries counted by the subscribers / (first publish → last
  delivery), overall, to streams and to devices; and per core of the server: / the
  server's CPU share over the same span (all its threads and processes);
- delivery latency p50/p99: publish (this process's clock) → arrival (the subscribers';
  same machine, same clock) on a sample of events;
- missed: deliveries due (events × subscribers) that never arrived by the end, and
  streams the server dropped as too slow (its bounded per-stream buffer).

Baseline, same run: the floor of the transport, this process writing each event's SSE
frame to N loopback sockets that the subscriber process reads and counts the same way
(asyncio, no Cyan), at the same rate; delivered/s per core of the writer. The figure is
Cyan / floor. Target (issue 12): ≥ 50k delivered events/s per node.

Run: .venv/bin/python bench/fanout.py [--quick] [--streams N] [--devices N] [--rate R]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import (
    HOST,
    CpuMeter,
    console,
    loop_name,
    ms,
    paced,
    percentile,
    print_table,
    raise_fd_limit,
    ratio,
    run,
    summary,
)
from bench.probes import AttackDevice
from bench.processes import (
    Child,
    child_main,
    cyan_server_main,
    device_id_for,
    make_key_pool,
    register_devices,
    serve_control,
)
from cyan.protocol import crypto, messages
from cyan.protocol.events import Event, EventDelivered

PREFIX = "fanout/"
# Every SAMPLE-th event's latency is kept (all of them would cost the counting process).
SAMPLE = 10
_SENT_AT = re.compile(rb"t=([0-9.]+);n=([0-9]+)")
_DEVICE_SENT_AT = re.compile(r"t=([0-9.]+);n=([0-9]+)")


def event_data(index: int) -> bytes:
    return f"t={time.time():.6f};n={index}".encode()


class Tally:
    """What one process's subscribers received."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.latency: list[float] = []
        self.last_at = 0.0

    def sse_chunk(self, kind: str, chunk: bytes) -> None:
        now = time.time()
        for match in _SENT_AT.finditer(chunk):
            self.counts[kind] += 1
            if int(match.group(2)) % SAMPLE == 0:
                self.latency.append(now - float(match.group(1)))
            self.last_at = now

    def device_event(self, data: str) -> None:
        match = _DEVICE_SENT_AT.search(data)
        if match is None:
            return
        now = time.time()
        self.counts["devices"] += 1
        if int(match.group(2)) % SAMPLE == 0:
            self.latency.append(now - float(match.group(1)))
        self.last_at = now

    def stats(self) -> dict[str, Any]:
        # Percentiles, not the samples: the control pipe carries small answers.
        return {
            "counts": dict(self.counts),
            "p50": percentile(self.latency, 50),
            "p99": percentile(self.latency, 99),
            "last_at": self.last_at,
        }

    def reset(self) -> None:
        self.counts.clear()
        self.latency.clear()
        self.last_at = 0.0


# -- the subscribers' process ------------------------------------------------------------------


def subscribers_main(conn: Connection, args: dict[str, Any]) -> None:
    child_main(conn, lambda: _subscribers(conn, args))


async def _subscribers(conn: Connection, args: dict[str, Any]) -> None:
    raise_fd_limit()
    tally = Tally()
    tasks: list[asyncio.Task[None]] = []
    writers: list[asyncio.StreamWriter] = []

    async def read_stream(reader: asyncio.StreamReader, kind: str) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                tally.sse_chunk(kind, data)
        if kind == "streams":
            tally.counts["streams ended"] += 1

    request = (
        f"GET /v1/devices/events/{PREFIX.rstrip('/')} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {args['token']}\r\n\r\n"
    ).encode()
    for _ in range(args["streams"]):
        reader, writer = await asyncio.open_connection(HOST, args["api_port"])
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"stream refused: {head[:80]!r}")
        writers.append(writer)
        tasks.append(asyncio.create_task(read_stream(reader, "streams")))

    def delivered(event: Event) -> None:
        if isinstance(event, EventDelivered) and event.event.data is not None:
            tally.device_event(event.event.data.decode())

    devices: list[AttackDevice] = []
    for device_id, key_der in args["devices"]:
        device = AttackDevice(device_id, key_der, args["server_der"], on_event=delivered)
        await device.open(args["device_port"])
        device.core.subscribe(PREFIX, my_devices=True)
        await device.send()
        devices.append(device)

    async def floor_listen() -> tuple[int, int]:
        """Sockets for the transport floor: the parent connects N and writes to them."""

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await read_stream(reader, "floor")

        server = await asyncio.start_server(accepted, HOST, 0)
        return server.sockets[0].getsockname()[1], 0

    floor_port, _ = await floor_listen()
    conn.send({"ok": True, "pid": os.getpid(), "floor_port": floor_port})

    def reset() -> dict[str, Any]:
        tally.reset()
        return {}

    try:
        await serve_control(conn, {"stats": tally.stats, "reset": reset})
    finally:
        for task in tasks:
            task.cancel()
        for writer in writers:
            writer.close()
        for device in devices:
            device.close()


# -- the publisher (this process) --------------------------------------------------------------


async def publish(device: AttackDevice, rate: float, count: int) -> tuple[float, float]:
    """``count`` events at ``rate`` a second, open loop; (first, last) publish times."""
    start = time.time()
    async for index in paced(rate, count):
        device.core.publish(messages.EventInfo(f"{PREFIX}{index}", event_data(index), 60, False))
        await device.send()
    return start, time.time()


async def floor(port: int, subscribers: int, rate: float, count: int) -> tuple[float, float]:
    """The same frames written to ``subscribers`` plain sockets, at the same rate."""
    writers = []
    for _ in range(subscribers):
        _, writer = await asyncio.open_connection(HOST, port)
        writers.append(writer)
    await asyncio.sleep(0.5)
    start = time.time()
    async for index in paced(rate, count):
        frame = b"event: " + f"{PREFIX}{index}".encode() + b"\ndata: " + event_data(index) + b"\n\n"
        for writer in writers:
            writer.write(frame)
        await asyncio.gather(*(writer.drain() for writer in writers))
    end = time.time()
    for writer in writers:
        writer.close()
    return start, end


async def until_delivered(subscribers: Child, kinds: list[str], due: int, limit_s: float) -> None:
    """Until the subscribers counted ``due`` deliveries (or ``limit_s``)."""
    end = time.time() + limit_s
    # Another process's counts: polled, there is no event to wait on from here.
    while time.time() < end:
        counts = subscribers.request("stats")["counts"]
        if sum(counts.get(kind, 0) for kind in kinds) >= due:
            return
        await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 s of events")
    parser.add_argument("--streams", type=int, default=100, help="SSE subscribers")
    parser.add_argument("--devices", type=int, default=100, help="subscribed devices")
    parser.add_argument("--rate", type=float, default=2000.0, help="events published a second")
    parser.add_argument("--duration", type=float, help="seconds of publishing (3; 1 quick)")
    args = parser.parse_args()
    args.duration = args.duration or (1.0 if args.quick else 3.0)
    count = int(args.rate * args.duration)
    subscribers_total = args.streams + args.devices
    raise_fd_limit()

    with tempfile.TemporaryDirectory(prefix="cyan-fanout-") as tmp:
        data_dir = Path(tmp) / "data"
        keys = make_key_pool(min(50, args.devices + 1))
        ids = [(device_id_for(i), keys[i % len(keys)]) for i in range(args.devices + 1)]
        registered = run(register_devices(data_dir, ids))
        server_der = crypto.public_key_der(registered.server_public_key)
        publisher_id, publisher_key = ids[0]
        gateway = {"events_per_s": 0}
        with Child("cyan-server", cyan_server_main, str(data_dir), gateway) as server:
            server.start(timeout_s=60)
            sub_args = {
                "token": registered.token,
                "api_port": int(server.info["api_port"]),
                "device_port": int(server.info["device_port"]),
                "server_der": server_der,
                "streams": args.streams,
                "devices": [(i, crypto.private_key_der(k)) for i, k in ids[1:]],
            }
            with Child("subscribers", subscribers_main, sub_args) as subscribers:
                subscribers.start(timeout_s=120)
                console.print(
                    f"server pid {server.pid}; {args.streams} streams and {args.devices} "
                    f"devices subscribed; publishing {count} events at {args.rate:g}/s…"
                )
                figures = run(
                    measure(
                        args, count, server, subscribers, publisher_id, publisher_key, server_der
                    )
                )
    report(args, count, subscribers_total, figures)


async def measure(
    args: argparse.Namespace,
    count: int,
    server: Child,
    subscribers: Child,
    publisher_id: str,
    publisher_key: crypto.RsaPrivateKey,
    server_der: bytes,
) -> dict[str, Any]:
    device = AttackDevice(publisher_id, crypto.private_key_der(publisher_key), server_der)
    await device.open(int(server.info["device_port"]))
    # Warm-up: one event to everyone, so that subscriptions are in place and paths are hot.
    device.core.publish(messages.EventInfo(f"{PREFIX}warm", event_data(1), 60, False))
    await device.send()
    await until_delivered(subscribers, ["streams", "devices"], args.streams + args.devices, 30)
    subscribers.request("reset")

    server_cpu = CpuMeter(server.pid, children=True)
    server_cpu.start()
    try:
        first, last_sent = await publish(device, args.rate, count)
    except ConnectionError:
        console.print(f"[red]the server closed the publisher: {server.request('stats')}[/]")
        raise
    due = count * (args.streams + args.devices)
    await until_delivered(subscribers, ["streams", "devices"], due, 30)
    server_cpu.stop()
    cyan = subscribers.request("stats")
    device.close()

    subscribers.request("reset")
    writer_cpu = CpuMeter(os.getpid())
    writer_cpu.start()
    floor_first, _ = await floor(
        int(subscribers.info["floor_port"]), args.streams + args.devices, args.rate, count
    )
    await until_delivered(subscribers, ["floor"], due, 30)
    writer_cpu.stop()
    floor_stats = subscribers.request("stats")
    return {
        "cyan": cyan,
        "first": first,
        "last_sent": last_sent,
        "server_cpu": server_cpu,
        "floor": floor_stats,
        "floor_first": floor_first,
        "writer_cpu": writer_cpu,
    }


def report(args: argparse.Namespace, count: int, total: int, figures: dict[str, Any]) -> None:
    cyan, floor_stats = figures["cyan"], figures["floor"]
    counts = cyan["counts"]
    delivered = counts.get("streams", 0) + counts.get("devices", 0)
    span = (cyan["last_at"] or math.nan) - figures["first"]
    rate = delivered / span if span > 0 else math.nan
    server_cpu: CpuMeter = figures["server_cpu"]
    cores = server_cpu.cpu_s / server_cpu.wall_s if server_cpu.wall_s else math.nan
    per_core = rate / cores if cores else math.nan
    floor_delivered = floor_stats["counts"].get("floor", 0)
    floor_span = (floor_stats["last_at"] or math.nan) - figures["floor_first"]
    floor_rate = floor_delivered / floor_span if floor_span > 0 else math.nan
    writer_cpu: CpuMeter = figures["writer_cpu"]
    writer_cores = writer_cpu.cpu_s / writer_cpu.wall_s if writer_cpu.wall_s else math.nan
    floor_per_core = floor_rate / writer_cores if writer_cores else math.nan
    due = count * total
    rows = [
        ["events published", f"{count} at {args.rate:g}/s", f"{count}", ""],
        ["subscribers", f"{args.streams} streams + {args.devices} devices", f"{total} sockets", ""],
        ["deliveries due / arrived", f"{due} / {delivered}", f"{due} / {floor_delivered}", ""],
        [
            "  to streams / to devices",
            f"{counts.get('streams', 0)} / {counts.get('devices', 0)}",
            "",
            "",
        ],
        ["streams dropped by the server", str(counts.get("streams ended", 0)), "", ""],
        [
            "delivered events/s",
            f"{rate:,.0f}/s",
            f"{floor_rate:,.0f}/s",
            ratio(rate, floor_rate, "%"),
        ],
        ["CPU of the sender (cores)", f"{cores:.2f}", f"{writer_cores:.2f}", ""],
        [
            "delivered events/s per core",
            f"{per_core:,.0f}/s",
            f"{floor_per_core:,.0f}/s",
            ratio(per_core, floor_per_core, "%"),
        ],
        [
            "server CPU per delivered event",
            ms(server_cpu.cpu_s / delivered if delivered else math.nan),
            "",
            "",
        ],
        [
            "latency p50 / p99 (publish → arrival)",
            f"{ms(cyan['p50'])} / {ms(cyan['p99'])}",
            f"{ms(floor_stats['p50'])} / {ms(floor_stats['p99'])}",
            "",
        ],
    ]
    print_table(
        f"Fan-out: one device to {args.streams} streams and {args.devices} devices "
        f"(on {loop_name()})",
        ["", "Cyan", "floor: plain sockets", "ratio"],
        rows,
    )
    summary(
        f"fanout: {rate:,.0f} delivered events/s ({per_core:,.0f}/s per server core; "
        f"target ≥ 50,000/s per node), {due - delivered} of {due} missed; transport floor "
        f"{floor_per_core:,.0f}/s per core → {ratio(per_core, floor_per_core, '%')}"
    )


if __name__ == "__main__":
    main()
