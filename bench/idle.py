"""Server memory per connected, idle device, beside what a bare TCP connection costs; and
what the idle devices themselves cost (Cyan's virtual devices, all in the load process).

What: for each size N (1000 and 10000; 200 and 1000 with --quick), a fresh Cyan node
(gateway + API + SQLite store) in its own process; the load process connects N devices
(whole handshake, describe answered), then leaves them idle: no heartbeats; they ping
and answer pings, as Device OS does. Server RSS (psutil) is sampled twice, one second
apart (--gap), after start with 0 devices, and again after the N devices are connected, the
server's background store writes have drained and the run settled (--settle s);
per device = (RSS after − RSS before) / N, using the second sample of each pair.
The server's memory cannot be garbage-collected from outside, so RSS is what it is.

Baseline, same run: a fresh process running a trivial asyncio echo server (same event
loop as Cyan's), and N bare TCP connections to it from the load process: RSS delta / N
is what a socket and a Protocol object alone cost; the ratio Cyan / echo shows Cyan's
own overhead per device. Also printed: the marginal cost between two sizes (growth from
the smaller to the larger run / the extra connections), in which one-off growth under
load (database pool connections, caches) cancels. Target: ≤ 10 KB per connected device.

Shortcuts: RSA-1024 device keys cost ~10–30 ms each, so a pool (--keys, 200) is made
and shared round-robin by the device ids; every id is registered with its key through
``store.devices.add`` on the node's database (one data directory for all sizes) before
each server starts. Devices connect with at most --concurrency handshakes in flight so
that none hits the server's handshake timeout. A few warm-up devices connect and leave
before the 0-device sample, so that first-use costs (imports, SQL compilation caches)
count in the baseline, not per device.

The devices' side, same run: over an idle window (--idle, 30 s) the load process's CPU time
per device per second and its timer wake-ups, beside the same process holding as many bare
sockets. Each virtual device pings after 15 s of silence, as Device OS does, and its timers
share one heap: the wake-ups are the keepalives, nothing per device besides.

Run: .venv/bin/python bench/idle.py [--quick] [--sizes 1000,10000] [--idle S]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import (
    clock,
    console,
    kib,
    loop_name,
    mib,
    print_table,
    raise_fd_limit,
    ratio,
    rss,
    run,
    summary,
)
from bench.fleet import Fleet
from bench.processes import (
    Child,
    close_bare,
    cyan_server_main,
    device_id_for,
    drain,
    echo_server_main,
    make_key_pool,
    open_bare,
    register_devices,
)
from cyan.protocol import crypto

WARMUP_DEVICES = 10
TARGET_BYTES = 10 * 1000


@dataclass
class Sample:
    connected: int
    before: tuple[int, int]
    after: tuple[int, int]
    note: str = ""
    # The device side (this process) over the idle window: CPU seconds, timer wake-ups.
    idle_s: float = math.nan
    load_cpu_s: float = math.nan
    wakeups: int = 0

    @property
    def cpu_per_device(self) -> float:
        """CPU seconds per device per second of idling, in this (the devices') process."""
        if not self.connected or not self.idle_s:
            return math.nan
        return self.load_cpu_s / self.connected / self.idle_s

    @property
    def per_connection(self) -> float:
        if not self.connected:
            return math.nan
        return (self.after[1] - self.before[1]) / self.connected


async def sample_twice(pid: int, gap_s: float) -> tuple[int, int]:
    first = rss(pid)
    await asyncio.sleep(gap_s)
    return first, rss(pid)


async def measure_echo(count: int, args: argparse.Namespace) -> Sample:
    with Child("echo-server", echo_server_main) as echo:
        echo.start(timeout_s=30)
        before = await sample_twice(echo.pid, args.gap)
        deadline = clock() + args.deadline
        clients, failed = await open_bare(
            count, int(echo.info["port"]), concurrency=args.concurrency, deadline=deadline
        )
        await asyncio.sleep(args.settle)
        after = await sample_twice(echo.pid, args.gap)
        cpu = time.process_time()
        await asyncio.sleep(args.idle)
        cpu = time.process_time() - cpu
        close_bare(clients)
        await asyncio.sleep(0.2)
    note = f"{failed} failed" if failed else ""
    return Sample(len(clients), before, after, note, args.idle, cpu, 0)


async def measure_cyan(
    count: int,
    args: argparse.Namespace,
    data_dir: Path,
    server_public: crypto.RsaPublicKey,
    ids: list[tuple[str, crypto.RsaPrivateKey]],
) -> Sample:
    fleet = Fleet(server_public)
    warmup = [fleet.add(device_id, key) for device_id, key in ids[:WARMUP_DEVICES]]
    devices = [
        fleet.add(device_id, key) for device_id, key in ids[WARMUP_DEVICES : WARMUP_DEVICES + count]
    ]
    with Child("cyan-server", cyan_server_main, str(data_dir), {}) as server:
        server.start(timeout_s=60)
        port = int(server.info["device_port"])
        await fleet.connect(warmup, port, concurrency=len(warmup), deadline=clock() + 30)
        await fleet.wait_described(warmup, clock() + 10)
        fleet.close(warmup)
        await drain(server, clock() + 10)
        before = await sample_twice(server.pid, args.gap)

        deadline = clock() + args.deadline
        started = clock()
        report = await fleet.connect(devices, port, concurrency=args.concurrency, deadline=deadline)
        await fleet.wait_described(devices, deadline)
        connect_s = clock() - started
        drained = await drain(server, deadline)
        await asyncio.sleep(args.settle)
        after = await sample_twice(server.pid, args.gap)
        # The fleet idles: only keepalives run (pings after 15 s of silence, as Device OS).
        cpu, wakeups = time.process_time(), fleet.timers.wakeups
        await asyncio.sleep(args.idle)
        cpu, wakeups = time.process_time() - cpu, fleet.timers.wakeups - wakeups
        stats = server.request("stats")
        fleet.close()
        await asyncio.sleep(0.2)
    notes = [f"connected in {connect_s:.1f} s"]
    if report.failed or report.unfinished:
        notes.append(f"{report.failed} failed, {report.unfinished} unfinished")
    if fleet.lost:
        notes.append(f"{fleet.lost} dropped while idle")
    if not drained:
        notes.append(f"{stats['pending_tasks']} store writes still pending")
    notes.append(f"server: {stats['online']} online")
    connected = report.completed - fleet.lost
    return Sample(connected, before, after, "; ".join(notes), args.idle, cpu, wakeups)


async def measure(
    args: argparse.Namespace,
    data_dir: Path,
    server_public: crypto.RsaPublicKey,
    ids: list[tuple[str, crypto.RsaPrivateKey]],
) -> list[tuple[int, Sample, Sample]]:
    results = []
    for size in args.sizes:
        console.print(f"{size} bare connections to an echo server…")
        echo = await measure_echo(size, args)
        console.print(f"{size} Cyan devices…")
        cyan = await measure_cyan(size, args, data_dir, server_public, ids)
        results.append((size, cyan, echo))
    return results


def marginal(a: Sample, b: Sample) -> float:
    """RSS growth per connection from the smaller run to the larger one."""
    if b.connected == a.connected:
        return math.nan
    return ((b.after[1] - b.before[1]) - (a.after[1] - a.before[1])) / (b.connected - a.connected)


def report(results: list[tuple[int, Sample, Sample]]) -> None:
    rows = []
    for size, cyan, echo in results:
        rows += [
            [f"N = {size}: connections held", str(cyan.connected), str(echo.connected), ""],
            [
                "  RSS with 0 (samples 1, 2)",
                f"{mib(cyan.before[0])}, {mib(cyan.before[1])}",
                f"{mib(echo.before[0])}, {mib(echo.before[1])}",
                "",
            ],
            [
                "  RSS with N (samples 1, 2)",
                f"{mib(cyan.after[0])}, {mib(cyan.after[1])}",
                f"{mib(echo.after[0])}, {mib(echo.after[1])}",
                "",
            ],
            [
                "  RSS per connection",
                kib(cyan.per_connection),
                kib(echo.per_connection),
                ratio(cyan.per_connection, echo.per_connection),
            ],
            [
                "  Cyan's own (Cyan − echo)",
                kib(cyan.per_connection - echo.per_connection),
                "",
                "",
            ],
            [
                f"  devices' CPU idling {cyan.idle_s:g} s, per device",
                f"{cyan.cpu_per_device * 1e6:.1f} µs/s",
                f"{echo.cpu_per_device * 1e6:.1f} µs/s",
                ratio(cyan.cpu_per_device, echo.cpu_per_device),
            ],
            [
                "  devices' timer wake-ups idling, per device per minute",
                f"{cyan.wakeups / max(cyan.connected, 1) * 60 / cyan.idle_s:.2f}",
                "",
                "",
            ],
            ["  notes", cyan.note, echo.note, ""],
        ]
    for (small, cyan_a, echo_a), (large, cyan_b, echo_b) in itertools.pairwise(results):
        # Between two sizes the one-off growth under load (pool connections, caches) cancels.
        rows.append(
            [
                f"marginal per connection, N = {small} → {large}",
                kib(marginal(cyan_a, cyan_b)),
                kib(marginal(echo_a, echo_b)),
                ratio(marginal(cyan_a, cyan_b), marginal(echo_a, echo_b)),
            ]
        )
    print_table(
        f"Idle devices: server RSS per connected device (server and load on {loop_name()})",
        ["", "Cyan", "bare TCP (echo)", "ratio"],
        rows,
    )
    for size, cyan, echo in results:
        per = cyan.per_connection
        verdict = "meets" if per <= TARGET_BYTES else "misses"
        summary(
            f"idle RSS per device at {size}: {per / 1000:.2f} KB Cyan vs "
            f"{echo.per_connection / 1000:.2f} KB bare TCP → "
            f"{ratio(per, echo.per_connection)} ({verdict} target ≤ {TARGET_BYTES / 1000:g} KB); "
            f"idle virtual devices: {cyan.cpu_per_device * 1e6:.1f} µs of CPU per device per "
            f"second ({echo.cpu_per_device * 1e6:.1f} µs holding bare sockets), "
            f"{cyan.wakeups / max(cyan.connected, 1) * 60 / cyan.idle_s:.2f} timer wake-ups "
            "per device per minute"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, under 30 s")
    parser.add_argument("--sizes", help="device counts, comma-separated (1000,10000; 200,1000)")
    parser.add_argument("--keys", type=int, help="RSA-1024 key pool size (200; 50 quick)")
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight")
    parser.add_argument("--settle", type=float, help="idle time before sampling, s (5; 1 quick)")
    parser.add_argument("--gap", type=float, help="between the two RSS samples, s (1; 0.5 quick)")
    parser.add_argument("--deadline", type=float, help="limit per size and side, s (150; 20)")
    parser.add_argument(
        "--idle", type=float, help="the idle window for the devices' CPU, s (30; 5 quick)"
    )
    args = parser.parse_args()
    quick = args.quick
    args.sizes = [
        int(s) for s in (args.sizes or ("200,1000" if quick else "1000,10000")).split(",")
    ]
    args.keys = args.keys or (50 if quick else 200)
    args.settle = args.settle if args.settle is not None else (1.0 if quick else 5.0)
    args.gap = args.gap if args.gap is not None else (0.5 if quick else 1.0)
    args.deadline = args.deadline or (20.0 if quick else 150.0)
    args.idle = args.idle or (5.0 if quick else 30.0)

    limit = raise_fd_limit()
    if max(args.sizes) + 200 > limit:
        args.sizes = [min(size, limit - 200) for size in args.sizes]
        console.print(f"[yellow]fd limit {limit}: sizes scaled down to {args.sizes}[/]")

    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cyan-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        total = max(args.sizes) + WARMUP_DEVICES
        console.print(f"making {args.keys} device keys, registering {total} devices…")
        pool = make_key_pool(args.keys)
        ids = [(device_id_for(i), pool[i % len(pool)]) for i in range(total)]
        registered = run(register_devices(data_dir, ids))
        results = run(measure(args, data_dir, registered.server_public_key, ids))
    report(results)
    console.print(f"(whole run {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
