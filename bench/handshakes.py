"""Handshakes per second against the gateway, beside what the RSA work alone allows.

What: a Cyan node (gateway + API + SQLite store) runs in its own process; a load process
opens N device connections at once (2000; 200 with --quick) and each runs the whole
Spark handshake (nonce, RSA block, session key, Hello) and answers the server's describe.

Figures (all timed in the load process with ``perf_counter``):
- handshakes/s: completed handshakes (server Hello received) / (last Hello − first
  connect), and the server's CPU time (all its threads, until its background store
  writes for these devices have finished) per completed handshake.
- handshake latency p50/p99: connect() call → server Hello. All N start at once, so it
  is mostly time spent queued behind the others.
- describe done after Hello: server Hello → the gateway's ACK of our describe response.
  Our device answers the describe request with a separate CON 2.05 (as Device OS 2.x
  does); the gateway writes its ACK in the same callback, with no await in between, in
  which it stores the functions on the live device (gateway/session.py ``event_received``), so the
  ACK marks the moment the API lists the functions. Cross-checked at the end: the
  server's router must count N described devices, and GET /v1/devices/{id} of a few
  devices must list functions.

Two runs, each with a fresh server on its own devices:
- one core: the server (and its one RSA worker, gateway.rsa_processes=1) pinned to CPU 0,
  the load on the other CPUs;
- all cores: the server unpinned with one RSA worker per core (the default), the load
  beside it on the same cores (on a small machine it takes a real share: shown).

Baseline, same run, before each load: the server-side RSA work of one handshake through
``cyan.protocol.crypto`` (RSA-2048 PKCS#1 v1.5 decrypt of a real 256-byte device block,
RSA-1024 public encrypt of the 40 session bytes, RSA-2048 raw signature of the HMAC) in a
loop, in one process pinned to each CPU the server may use, all at once; the sum of
their rates is the handshakes/s the RSA alone allows on those CPUs. The figure is
measured / bound. Target: ≥ 80 %. Second baseline, same run: a bare server making the
same socket reads and writes with no crypto or protocol (bench/io_floor.py), on the
server's CPUs and loop, for the same count and concurrency; RSA + that floor is the least
any server can spend per handshake here, so RSA / (RSA + floor) caps the ratio.

Shortcuts: RSA-1024 device keys cost ~10–30 ms each, so a pool (--keys, 200) is made and
shared round-robin by the device ids; every id is registered with its key through
``store.devices.add`` on the node's database before the server starts. The server's
handshake timeout is raised to the run's deadline so that a slow server shows up as a low
rate, not as failures. The server logs at ERROR (``cyan serve`` logs each connect at INFO).
A few warm-up devices connect and leave before the measurement. The load stops at a hard
deadline (--deadline: 120 s; 20 s quick) and reports what was done by then.

Run: .venv/bin/python bench/handshakes.py [--quick] [--devices N] [--concurrency C]
     [--only one|all]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import (
    HOST,
    CpuMeter,
    OtherLoad,
    clock,
    console,
    loop_name,
    ms,
    percentile,
    print_table,
    raise_fd_limit,
    ratio,
    run,
    summary,
)
from bench.fleet import ConnectReport, Fleet, Member
from bench.io_floor import floor_cpu_per_exchange
from bench.processes import (
    Child,
    cyan_server_main,
    device_id_for,
    drain,
    make_key_pool,
    register_devices,
)
from cyan.datadir import load_or_create_server_key
from cyan.protocol import crypto, keys

WARMUP_DEVICES = 5
TARGET_SHARE = 0.80


@dataclass(frozen=True, slots=True)
class RsaBound:
    iterations: int
    mean_s: float

    @property
    def per_second(self) -> float:
        return 1 / self.mean_s


def rsa_bound(
    server_key: crypto.RsaPrivateKey,
    device_key: crypto.RsaPrivateKey,
    max_iterations: int,
    max_seconds: float,
) -> RsaBound:
    """The server's RSA work for one handshake, in a loop on this (idle) core."""
    device_public = device_key.public_key()
    block = crypto.rsa_encrypt(
        server_key.public_key(),
        os.urandom(40) + bytes(12) + keys.device_public_key_der(device_public),
    )

    def once() -> None:
        plaintext = crypto.rsa_decrypt(server_key, block)
        assert plaintext is not None
        material = os.urandom(crypto.SESSION_MATERIAL_BYTES)
        ciphertext = crypto.rsa_encrypt(device_public, material)
        crypto.sign_hmac(server_key, crypto.handshake_hmac(material, ciphertext))

    for _ in range(10):
        once()
    done = 0
    start = clock()
    deadline = start + max_seconds
    while done < max_iterations and clock() < deadline:
        once()
        done += 1
    return RsaBound(done, (clock() - start) / done)


def _rsa_bound_child(
    cpu: int, server_der: bytes, device_der: bytes, start_at: float, iterations: int, seconds: float
) -> RsaBound:
    os.sched_setaffinity(0, {cpu})
    server_key, device_key = (
        crypto.load_private_key(server_der),
        crypto.load_private_key(device_der),
    )
    time.sleep(max(0.0, start_at - time.time()))  # all loops run at once
    return rsa_bound(server_key, device_key, iterations, seconds)


def rsa_bound_on(
    cpus: list[int],
    server_key: crypto.RsaPrivateKey,
    device_key: crypto.RsaPrivateKey,
    iterations: int,
    seconds: float,
) -> RsaBound:
    """The RSA loop in one process per CPU of ``cpus``, each pinned to its CPU, at once."""
    server_der, device_der = crypto.private_key_der(server_key), crypto.private_key_der(device_key)
    start_at = time.time() + 3.0  # after the children's imports
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(cpus), mp_context=context) as pool:
        futures = [
            pool.submit(
                _rsa_bound_child, cpu, server_der, device_der, start_at, iterations, seconds
            )
            for cpu in cpus
        ]
        bounds = [future.result() for future in futures]
    return RsaBound(sum(b.iterations for b in bounds), 1 / sum(b.per_second for b in bounds))


@dataclass(frozen=True, slots=True)
class Mode:
    name: str
    server_cpus: list[int] | None  # None: unpinned
    load_cpus: list[int]
    rsa_processes: int | None

    @property
    def bound_cpus(self) -> list[int]:
        return self.server_cpus if self.server_cpus is not None else self.load_cpus


def modes(only: str | None) -> list[Mode]:
    cpus = sorted(os.sched_getaffinity(0))
    found = []
    if len(cpus) > 1 and only in (None, "one"):
        found.append(Mode("one core", cpus[:1], cpus[1:], 1))
    if only in (None, "all") or len(cpus) == 1:
        found.append(Mode(f"all {len(cpus)} cores", None, cpus, None))
    return found


@dataclass
class LoadResult:
    report: ConnectReport
    devices: list[Member]
    all_described: bool
    server_cpu: CpuMeter
    load_cpu: CpuMeter
    others: OtherLoad
    stats: dict[str, Any]
    api_functions: list[int]
    drain_s: float  # background store writes still running after the last describe


async def load(
    args: argparse.Namespace,
    fleet: Fleet,
    warmup: list[Member],
    devices: list[Member],
    server: Child,
    token: str,
) -> LoadResult:
    port = int(server.info["device_port"])
    # Warm-up: first-use costs (SQL compilation, imports) stay out of the figure.
    await fleet.connect(warmup, port, concurrency=len(warmup), deadline=clock() + 30)
    await fleet.wait_described(warmup, clock() + 10)
    fleet.close(warmup)
    await asyncio.sleep(0.5)

    before = server.request("stats")["failure_stages"]
    server_cpu = CpuMeter(server.pid, children=True)  # with its RSA workers
    load_cpu = CpuMeter(os.getpid())
    others = OtherLoad([server.pid, os.getpid()])
    server_cpu.start()
    load_cpu.start()
    others.start()
    deadline = clock() + args.deadline
    report = await fleet.connect(
        devices, port, concurrency=args.concurrency or len(devices), deadline=deadline
    )
    all_described = await fleet.wait_described(devices, deadline)
    # The gateway's batched store writes (handshakes, describes) may land after the last
    # Hello: their CPU belongs to the handshakes too.
    drain_started = clock()
    drained = await drain(server, deadline)
    drain_s = clock() - drain_started
    others.stop()
    server_cpu.stop()
    load_cpu.stop()

    stats = server.request("stats")
    stats["failure_stages"] = {
        stage: count - before.get(stage, 0)
        for stage, count in stats["failure_stages"].items()
        if count > before.get(stage, 0)
    }
    functions: list[int] = []
    online = [d for d in devices if d.t_hello and not d.t_closed]
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{server.info['api_port']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ) as http:
        for device in online[:: max(1, len(online) // 3)][:3]:
            reply = await http.get(f"/v1/devices/{device.device_id}")
            functions.append(len(reply.json().get("functions", [])))
    fleet.close()
    await asyncio.sleep(0.2)
    return LoadResult(
        report,
        devices,
        all_described,
        server_cpu,
        load_cpu,
        others,
        stats,
        functions,
        drain_s if drained else math.nan,
    )


def report_figures(
    args: argparse.Namespace, mode: Mode, bound: RsaBound, floor_s: float, result: LoadResult
) -> str:
    report, devices = result.report, result.devices
    hellos = sorted(d.t_hello for d in devices if d.t_hello)
    elapsed = report.last_hello - report.first_start if hellos else math.nan
    rate = report.completed / elapsed if hellos else 0.0
    # All the server's CPU (loop, store threads, API) over the run, per completed handshake.
    cpu_each = result.server_cpu.cpu_s / report.completed if report.completed else math.nan
    rsa_cpu = bound.mean_s * len(mode.bound_cpus)
    latency = [d.t_hello - d.t_start for d in devices if d.t_hello]
    tcp = [d.t_connected - d.t_start for d in devices if d.t_connected]
    described = [d.t_described - d.t_hello for d in devices if d.t_described and d.t_hello]
    stats = result.stats
    rows = [
        ["devices connecting at once", str(report.attempted), "", ""],
        ["handshakes completed", str(report.completed), "", ""],
        ["failed / unfinished", f"{report.failed} / {report.unfinished}", "", ""],
        ["wall time (first connect → last Hello)", f"{elapsed:.2f} s", "", ""],
        [
            "handshakes/s (overall)",
            f"{rate:.0f}/s",
            f"{bound.per_second:.0f}/s",
            ratio(rate, bound.per_second, "%"),
        ],
        [
            "server CPU per handshake (all threads, writes drained)",
            ms(cpu_each),
            ms(bound.mean_s),
            ratio(cpu_each, bound.mean_s),
        ],
        ["socket traffic alone (bare server, same reads and writes)", "", ms(floor_s), ""],
        [
            "least a handshake costs: RSA + socket traffic",
            ms(cpu_each),
            ms(rsa_cpu + floor_s),
            ratio(cpu_each, rsa_cpu + floor_s),
        ],
        ["handshake latency p50", ms(percentile(latency, 50)), "", ""],
        ["handshake latency p99", ms(percentile(latency, 99)), "", ""],
        ["TCP connect p50 / p99", f"{ms(percentile(tcp, 50))} / {ms(percentile(tcp, 99))}", "", ""],
        ["describe done after Hello p50", ms(percentile(described, 50)), "", ""],
        ["describe done after Hello p99", ms(percentile(described, 99)), "", ""],
        ["describe done after Hello max", ms(max(described, default=math.nan)), "", ""],
        ["describes ACKed (device side)", f"{len(described)} of {report.completed}", "", ""],
        [
            "server: online / described",
            f"{stats.get('online')} / {stats.get('described')}",
            "",
            "",
        ],
        ["API: functions of sampled devices", str(result.api_functions), "", ""],
        ["store writes drained after the last describe in", ms(result.drain_s), "", ""],
        ["server CPU during load", result.server_cpu.share, "", ""],
        ["load process CPU during load", result.load_cpu.share, "", ""],
        ["other processes' CPU during load", result.others.text, "", ""],
    ]
    if report.failed or stats.get("failure_stages"):
        rows.append(["failures (device side)", str(dict(result.devices[0].fleet.failures)), "", ""])
        rows.append(["failures (server, last 200)", str(stats.get("failure_stages")), "", ""])
    print_table(
        f"Handshakes, {mode.name}: {report.attempted} devices at once (server and load on "
        f"{loop_name()}; server on CPUs {mode.server_cpus or 'any'}, load on {mode.load_cpus})",
        ["", "Cyan", f"RSA-only bound, {len(mode.bound_cpus)} CPU", "ratio"],
        rows,
    )
    result.others.warn()
    if not result.all_described:
        console.print("[yellow]some online devices never saw their describe ACKed[/]")
    if report.hit_deadline:
        console.print(f"[yellow]hard deadline of {args.deadline:g} s reached; partial figures[/]")
    share = rate / bound.per_second if hellos else 0.0
    verdict = "meets" if share >= TARGET_SHARE else "misses"
    return (
        f"handshakes/s, {mode.name}: {rate:.0f} measured vs {bound.per_second:.0f} RSA-only "
        f"bound → {100 * share:.1f} % ({verdict} target ≥ {100 * TARGET_SHARE:.0f} %); server "
        f"CPU {ms(cpu_each)} a handshake (RSA alone {ms(rsa_cpu)}, RSA + socket traffic "
        f"{ms(rsa_cpu + floor_s)}: no server on these sockets passes "
        f"{100 * rsa_cpu / (rsa_cpu + floor_s):.0f} %); "
        f"p50 {ms(percentile(latency, 50))}, p99 {ms(percentile(latency, 99))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, under 30 s")
    parser.add_argument("--devices", type=int, help="devices connecting (2000; 200 quick)")
    parser.add_argument("--keys", type=int, help="RSA-1024 key pool size (200; 50 quick)")
    parser.add_argument(
        "--concurrency", type=int, default=0, help="handshakes in flight at most (0: all at once)"
    )
    parser.add_argument("--deadline", type=float, help="hard limit of the load, s (120; 20 quick)")
    parser.add_argument("--rsa-iterations", type=int, default=2000, help="RSA loop count limit")
    parser.add_argument("--rsa-seconds", type=float, help="RSA loop time limit, s (3; 1 quick)")
    parser.add_argument("--only", choices=["one", "all"], help="only the one-core or all-core run")
    args = parser.parse_args()
    quick = args.quick
    args.devices = args.devices or (200 if quick else 2000)
    args.keys = args.keys or (50 if quick else 200)
    args.deadline = args.deadline or (20.0 if quick else 120.0)
    args.rsa_seconds = args.rsa_seconds or (1.0 if quick else 3.0)

    limit = raise_fd_limit()
    if args.devices + 100 > limit:
        args.devices = limit - 100
        console.print(f"[yellow]fd limit {limit}: scaled down to {args.devices} devices[/]")

    runs = modes(args.only)
    lines = []
    with tempfile.TemporaryDirectory(prefix="cyan-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        total = args.devices + WARMUP_DEVICES
        console.print(f"making {args.keys} device keys, registering {total * len(runs)} devices…")
        pool = make_key_pool(args.keys)
        ids = [(device_id_for(i), pool[i % len(pool)]) for i in range(total * len(runs))]
        registered = run(register_devices(data_dir, ids))
        server_key = load_or_create_server_key(data_dir)
        everywhere = sorted(os.sched_getaffinity(0))
        for index, mode in enumerate(runs):
            console.print(f"{mode.name}: RSA baseline on CPUs {mode.bound_cpus}…")
            bound = rsa_bound_on(
                mode.bound_cpus, server_key, pool[0], args.rsa_iterations, args.rsa_seconds
            )
            console.print(f"{mode.name}: socket traffic alone, bare server…")
            os.sched_setaffinity(0, mode.load_cpus)
            try:
                floor_s = floor_cpu_per_exchange(
                    args.devices, args.concurrency, mode.server_cpus, args.deadline
                )
            finally:
                os.sched_setaffinity(0, everywhere)
            fleet = Fleet(registered.server_public_key)
            mine = ids[index * total : (index + 1) * total]
            members = [fleet.add(device_id, key) for device_id, key in mine]
            warmup, devices = members[:WARMUP_DEVICES], members[WARMUP_DEVICES:]
            gateway = {
                "handshake_timeout_s": max(10.0, args.deadline),
                "rsa_processes": mode.rsa_processes,
            }
            os.sched_setaffinity(0, mode.load_cpus)
            try:
                with Child(
                    "cyan-server", cyan_server_main, str(data_dir), gateway, mode.server_cpus
                ) as server:
                    server.start(timeout_s=60)
                    console.print(f"server pid {server.pid}; {args.devices} devices connecting…")
                    result = run(load(args, fleet, warmup, devices, server, registered.token))
            finally:
                os.sched_setaffinity(0, everywhere)
            lines.append(report_figures(args, mode, bound, floor_s, result))
    for line in lines:
        summary(line)


if __name__ == "__main__":
    main()
