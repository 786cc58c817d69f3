"""Function-call latency through the REST API at a fixed rate, beside a bare HTTP endpoint.

What: a Cyan node (gateway + API + SQLite store) in one process, a few devices (--devices,
4) in a second process answering Tinker's digitalwrite, and the load in this process:
POST /v1/devices/{id}/digitalwrite (arg=D7,HIGH, bearer token) round-robin over the
devices, at a fixed rate (1000/s; 200/s with --quick) for a bounded time (10 s; 5 s),
after a warm-up second. Open loop: request i is due at t0 + i / rate and is sent then
whether or not earlier ones have been answered; its latency counts from that due time,
so a stalled server shows up in the figures instead of slowing the sender. Reported:
p50, p99, max, achieved rate (answers / time from the first due send to the last
answer), errors, requests unanswered at the hard deadline (duration + 5 s), and how late
the sender itself was (send lag). Also, for reference, latency from the moment the
request was written to a pooled connection: without the wait for a free connection.

Baseline, same run, same client, same rate: a minimal Starlette app on uvicorn (run the
way the node runs its API: same event loop, uvicorn's default HTTP parser) in its own
process, answering the same POST with a fixed JSON body of the same shape. Ratios of the
p50s and p99s show what Cyan adds to an HTTP round trip: auth, the device lookup, the
device's own round trip over the gateway. Target: p99 < 3 ms at 1000 calls/s.

Client: --client raw (default) is asyncio HTTP/1.1 keep-alive connections in a pool
(--connections, 64); --client httpx is httpx.AsyncClient with the same pool size.
httpx cannot sustain the rate on one core: it costs about 1.2 ms of client CPU per
request (measured at 200/s: ~25 % of a core, bare-endpoint p50 1.6 ms against 0.5 ms
raw), and at 1000/s the load process sits at 100 % CPU and gets under 100 answers/s
even from the bare endpoint. So raw is the default; both targets always get the same
client.

The devices are Cyan's own virtual device (``cyan.device.VirtualDevice``, wrapped by
``bench.fleet.Member``), registered through ``store.devices.add`` on the node's database
before the server starts.

Back to back (--back-to-back N, 300; 100 with --quick; 0 skips it): one keep-alive
connection, one call at a time, each sent when the last one's answer arrived, to a device
that writes its empty ACK and its answer as two TCP segments with Nagle on, as every
Device OS release does (protocol.md §7.1), and to one that writes both at once. Beside
them, on the same kind of connection, GET /v1/user (the API with no device) and the bare
endpoint. Before the fix, two-segment calls took 44–52 ms and GET /v1/user 44 ms: Linux's
delayed ACK holding back Nagle's second segment, on the device side and on the API's.
Target: p99 < 5 ms for both devices.

Run: .venv/bin/python bench/calls.py [--quick] [--rate R] [--duration S] [--client raw|httpx]
     [--back-to-back N] [--only-back-to-back] [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import (
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
    use_loop,
)
from bench.fleet import ONE_SEGMENT, TWO_SEGMENT, device_fleet_main
from bench.load import (
    BODY,
    LoadRun,
    RawPool,
    bare_http_main,
    http_request,
    make_client,
    open_loop,
)
from bench.processes import (
    Child,
    cyan_server_main,
    device_id_for,
    make_key_pool,
    register_devices,
)
from cyan.protocol import crypto

TARGET_P99_S = 0.003
TARGET_BACK_TO_BACK_P99_S = 0.005


async def drive(
    args: argparse.Namespace,
    port: int,
    token: str,
    device_ids: list[str],
    pids: dict[str, int],
) -> LoadRun:
    async with make_client(args.client, port, token, device_ids, args.connections) as (call, check):
        body = await check()
        if b'"return_value":1' not in body.replace(b" ", b""):
            console.print(f"[red]unexpected answer to a call: {body[:200]!r}[/]")
        await open_loop(call, args.rate, args.warmup)  # warm-up: pool, caches
        meters = {name: CpuMeter(pid) for name, pid in pids.items()}
        others = OtherLoad(list(pids.values()))
        for meter in meters.values():
            meter.start()
        others.start()
        result = await open_loop(call, args.rate, args.duration)
        others.stop()
        for meter in meters.values():
            meter.stop()
    result.server_cpu = meters["server"].share
    result.load_cpu = meters["load"].share
    if "devices" in meters:
        result.devices_cpu = meters["devices"].share
    result.others = others
    return result


# -- the two runs -----------------------------------------------------------------------------


def run_baseline(args: argparse.Namespace, device_ids: list[str]) -> LoadRun:
    with Child("bare-http", bare_http_main) as bare:
        bare.start(timeout_s=60)
        pids = {"server": bare.pid, "load": os.getpid()}
        return run(drive(args, int(bare.info["api_port"]), "x", device_ids, pids))


def run_cyan(args: argparse.Namespace, data_dir: Path, ids: list[tuple[str, Any]]) -> LoadRun:
    registered = run(register_devices(data_dir, ids))
    server_public = crypto.public_key_der(registered.server_public_key)
    devices = [(device_id, crypto.private_key_der(key)) for device_id, key in ids]
    with Child("cyan-server", cyan_server_main, str(data_dir), {}) as server:
        server.start(timeout_s=60)
        port = int(server.info["device_port"])
        with Child("devices", device_fleet_main, port, server_public, devices) as fleet:
            fleet.start(timeout_s=60)
            console.print(f"server pid {server.pid}, devices pid {fleet.pid}")
            pids = {"server": server.pid, "load": os.getpid(), "devices": fleet.pid}
            result = run(
                drive(
                    args,
                    int(server.info["api_port"]),
                    registered.token,
                    [device_id for device_id, _ in ids],
                    pids,
                )
            )
            calls = fleet.request("stats")["calls"]
            console.print(f"devices answered {calls} calls; server: {server.request('stats')}")
    return result


def report(args: argparse.Namespace, cyan: LoadRun, bare: LoadRun) -> None:
    def errors(r: LoadRun) -> str:
        return ", ".join(f"{k} {v}" for k, v in r.errors.items()) or "0"

    def pct(values: list[float], q: float) -> float:
        return percentile(values, q)

    rows = [
        ["target rate", f"{args.rate:g}/s", f"{args.rate:g}/s", ""],
        ["scheduled / sent", f"{cyan.scheduled} / {cyan.sent}", f"{bare.scheduled} / {bare.sent}"],
        ["achieved rate (OK answers)", f"{cyan.achieved:.0f}/s", f"{bare.achieved:.0f}/s"],
        ["errors", errors(cyan), errors(bare)],
        ["unanswered at the deadline", str(cyan.unfinished), str(bare.unfinished)],
    ]
    for label, q in (("p50", 50), ("p99", 99)):
        a, b = pct(cyan.latency, q), pct(bare.latency, q)
        rows.append([f"latency {label} (from due time)", ms(a), ms(b), ratio(a, b)])
    a, b = max(cyan.latency, default=math.nan), max(bare.latency, default=math.nan)
    rows.append(["latency max (from due time)", ms(a), ms(b), ratio(a, b)])
    for label, q in (("p50", 50), ("p99", 99)):
        a, b = pct(cyan.latency_sent, q), pct(bare.latency_sent, q)
        rows.append([f"latency {label} (from socket write)", ms(a), ms(b), ratio(a, b)])
    rows += [
        [
            "send lag p50 / p99 (client)",
            f"{ms(pct(cyan.lag, 50))} / {ms(pct(cyan.lag, 99))}",
            f"{ms(pct(bare.lag, 50))} / {ms(pct(bare.lag, 99))}",
        ],
        ["server CPU", cyan.server_cpu, bare.server_cpu],
        ["devices process CPU", cyan.devices_cpu, "–"],
        ["load process CPU", cyan.load_cpu, bare.load_cpu],
        [
            "other processes' CPU",
            cyan.others.text if cyan.others else "–",
            bare.others.text if bare.others else "–",
        ],
    ]
    rows = [row + [""] * (4 - len(row)) for row in rows]
    print_table(
        f"Function calls at {args.rate:g}/s for {args.duration:g} s "
        f"(client {args.client}, {args.connections} connections, {loop_name()})",
        ["", "Cyan", "bare HTTP", "ratio"],
        rows,
    )
    for r in (cyan, bare):
        if r.others is not None:
            r.others.warn()
        if r.hit_deadline:
            console.print("[yellow]hard deadline reached: partial figures[/]")
    p50, p99 = pct(cyan.latency, 50), pct(cyan.latency, 99)
    verdict = "meets" if p99 < TARGET_P99_S else "misses"
    summary(
        f"function calls at {args.rate:g}/s: p50 {ms(p50)}, p99 {ms(p99)}, max "
        f"{ms(max(cyan.latency, default=math.nan))}, {cyan.achieved:.0f}/s achieved, "
        f"{sum(cyan.errors.values())} errors; bare HTTP p50 {ms(pct(bare.latency, 50))}, "
        f"p99 {ms(pct(bare.latency, 99))} → ratio p50 {ratio(p50, pct(bare.latency, 50))}, "
        f"p99 {ratio(p99, pct(bare.latency, 99))} ({verdict} target p99 < 3 ms)"
    )


# -- back to back: one connection, one call at a time -------------------------------------------


async def sequential(port: int, request: bytes, count: int) -> list[float]:
    """``count`` requests one after another on one keep-alive connection; their latencies."""
    pool = RawPool(port, 1)
    latencies: list[float] = []
    try:
        for _ in range(count + 10):  # the first ten warm the connection and caches up
            status, body, written = await pool.request(request)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            latencies.append(clock() - written)
    finally:
        pool.close()
    return latencies[10:]


def back_to_back(args: argparse.Namespace, data_dir: Path) -> list[tuple[str, list[float]]]:
    pool = make_key_pool(2)
    ids = [(device_id_for(100 + i), key) for i, key in enumerate(pool)]
    registered = run(register_devices(data_dir, ids))
    server_public = crypto.public_key_der(registered.server_public_key)
    (two, two_key), (one, one_key) = ids
    results: list[tuple[str, list[float]]] = []
    with Child("bare-http", bare_http_main) as bare:
        bare.start(timeout_s=60)
        port = int(bare.info["api_port"])
        request = http_request("POST", f"/v1/devices/{two}/digitalwrite", port, "x", BODY)
        results.append(("bare HTTP endpoint (baseline)", run(sequential(port, request, args.n))))
    with Child("cyan-server", cyan_server_main, str(data_dir), {}) as server:
        server.start(timeout_s=60)
        device_port, port = int(server.info["device_port"]), int(server.info["api_port"])
        token = registered.token
        user = http_request("GET", "/v1/user", port, token)
        results.append(("GET /v1/user (API, no device)", run(sequential(port, user, args.n))))
        for label, device_id, key, writes in (
            ("call, device writes ACK and answer apart", two, two_key, TWO_SEGMENT),
            ("call, device writes ACK and answer at once", one, one_key, ONE_SEGMENT),
        ):
            devices = [(device_id, crypto.private_key_der(key))]
            path = f"/v1/devices/{device_id}/digitalwrite"
            with Child(
                "devices", device_fleet_main, device_port, server_public, devices, writes
            ) as fleet:
                fleet.start(timeout_s=60)
                call = http_request("POST", path, port, token, BODY)
                results.append((label, run(sequential(port, call, args.n))))
    return results


def report_back_to_back(args: argparse.Namespace, results: list[tuple[str, list[float]]]) -> None:
    baseline = results[0][1]
    rows = []
    for label, latencies in results:
        rows.append(
            [
                label,
                ms(percentile(latencies, 50)),
                ms(percentile(latencies, 99)),
                ms(max(latencies, default=math.nan)),
                ratio(percentile(latencies, 99), percentile(baseline, 99)),
            ]
        )
    print_table(
        f"Back to back: {args.n} requests on one keep-alive connection ({loop_name()})",
        ["", "p50", "p99", "max", "p99 ÷ bare"],
        rows,
    )
    calls = [(label, lat) for label, lat in results if label.startswith("call")]
    worst = max(percentile(lat, 99) for _, lat in calls)
    verdict = "meets" if worst < TARGET_BACK_TO_BACK_P99_S else "misses"
    summary(
        "back-to-back calls: "
        + ", ".join(f"{label} p99 {ms(percentile(lat, 99))}" for label, lat in calls)
        + f"; bare HTTP p99 {ms(percentile(baseline, 99))} ({verdict} target p99 < 5 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, under 30 s")
    parser.add_argument("--rate", type=float, help="calls per second (1000; 200 quick)")
    parser.add_argument("--duration", type=float, help="measured seconds (10; 5 quick)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--devices", type=int, default=4, help="devices taking the calls")
    parser.add_argument("--connections", type=int, default=64, help="client connection pool")
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    parser.add_argument("--back-to-back", type=int, dest="n", help="calls in a row (300; 100)")
    parser.add_argument("--only-back-to-back", action="store_true", help="skip the fixed-rate runs")
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="event loop of every process (asyncio: as cyan serve runs without the fast extra)",
    )
    args = parser.parse_args()
    use_loop(args.loop)
    if args.n is None:
        args.n = 100 if args.quick else 300
    args.rate = args.rate or (200.0 if args.quick else 1000.0)
    args.duration = args.duration or (5.0 if args.quick else 10.0)
    raise_fd_limit()

    if args.n:
        with tempfile.TemporaryDirectory(prefix="cyan-bench-") as tmp:
            console.print(f"{args.n} calls back to back…")
            report_back_to_back(args, back_to_back(args, Path(tmp) / "data"))
    if args.only_back_to_back:
        return
    with tempfile.TemporaryDirectory(prefix="cyan-bench-") as tmp:
        pool = make_key_pool(args.devices)
        ids = [(device_id_for(i), key) for i, key in enumerate(pool)]
        console.print(f"bare HTTP baseline at {args.rate:g}/s…")
        bare = run_baseline(args, [device_id for device_id, _ in ids])
        console.print(f"Cyan at {args.rate:g}/s…")
        cyan = run_cyan(args, Path(tmp) / "data", ids)
    report(args, cyan, bare)


if __name__ == "__main__":
    main()
