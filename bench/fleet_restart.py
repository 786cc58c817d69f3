"""kill -9 with a fleet connected: time until every device is back, beside its bound.

What: a Cyan node (gateway + API + SQLite store) in a child process, --devices virtual
devices (10,000; 1,000 with --quick) in this process, all connected. The node is killed
with SIGKILL and started again on the same data directory; every device then reconnects
at once (as a fleet does after an outage: each device retries within a few seconds), the
whole handshake each.

Figures: from the kill to the last device's Hello (the figure); the node's own start
(spawn to accepting, the first part of it); and the reconnect (accepting → last Hello).

Bound, same run: the node's start measured here plus devices ÷ the handshakes/s the same
node reached when the fleet first connected (before the kill, same devices, same CPUs).
The figure is bound / measured (100 % = the reconnect is as fast as a first connect).

bench/restart.py is the user's view of the same (installed `cyan serve --demo`, devices
with their real back-off); this one is the fleet at scale.

Run: .venv/bin/python bench/fleet_restart.py [--quick] [--devices N]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import (
    clock,
    console,
    loop_name,
    print_table,
    raise_fd_limit,
    ratio,
    run,
    summary,
)
from bench.fleet import ConnectReport, Fleet, Member
from bench.processes import (
    Child,
    cyan_server_main,
    device_id_for,
    make_key_pool,
    register_devices,
)


def connect_rate(report: ConnectReport) -> float:
    span = report.last_hello - report.first_start
    return report.completed / span if span > 0 else math.nan


async def connect_all(
    fleet: Fleet, members: list[Member], port: int, limit_s: float
) -> ConnectReport:
    return await fleet.connect(members, port, concurrency=len(members), deadline=clock() + limit_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 devices")
    parser.add_argument("--devices", type=int, help="devices (10,000; 1,000 quick)")
    parser.add_argument("--keys", type=int, default=200, help="RSA-1024 device keys to share")
    parser.add_argument("--deadline", type=float, default=120.0, help="per connect, s")
    args = parser.parse_args()
    devices = args.devices or (1_000 if args.quick else 10_000)
    limit = raise_fd_limit()
    if devices + 200 > limit:
        devices = limit - 200
        console.print(f"[yellow]fd limit {limit}: scaled down to {devices} devices[/]")

    with tempfile.TemporaryDirectory(prefix="cyan-fleet-restart-") as tmp:
        data_dir = Path(tmp) / "data"
        console.print(f"registering {devices} devices…")
        keys = make_key_pool(args.keys)
        ids = [(device_id_for(i), keys[i % len(keys)]) for i in range(devices)]
        registered = run(register_devices(data_dir, ids))
        # The handshake deadline is the run's, so a slow node shows as time, not failures.
        gateway = {"handshake_timeout_s": args.deadline}

        first_fleet = Fleet(registered.server_public_key)
        first_members = [first_fleet.add(device_id, key) for device_id, key in ids]
        # Made now, so that the time after the kill is the node's and the devices', not
        # this process building 10,000 devices.
        second_fleet = Fleet(registered.server_public_key)
        second_members = [second_fleet.add(device_id, key) for device_id, key in ids]
        server = Child("cyan-server", cyan_server_main, str(data_dir), gateway)
        server.start(timeout_s=60)
        console.print(f"server pid {server.pid}; {devices} devices connecting…")
        first = run(
            connect_all(first_fleet, first_members, int(server.info["device_port"]), args.deadline)
        )
        console.print(f"{first.completed} online; kill -9…")

        assert server.pid is not None
        killed_at = clock()
        os.kill(server.pid, signal.SIGKILL)
        server.process.join(10)
        first_fleet.close()
        with Child("cyan-server", cyan_server_main, str(data_dir), gateway) as again:
            again.start(timeout_s=60)
            accepting_at = clock()
            port = int(again.info["device_port"])
            back = run(connect_all(second_fleet, second_members, port, args.deadline))
            second_fleet.close()
        server.stop()

    start_s = accepting_at - killed_at
    first_rate = connect_rate(first)
    back_s = (back.last_hello - killed_at) if back.completed else math.nan
    reconnect_s = back.last_hello - back.first_start if back.completed else math.nan
    bound_s = start_s + devices / first_rate
    rows = [
        ["devices", str(devices), "", ""],
        ["online before the kill", str(first.completed), "", ""],
        [
            "back online",
            f"{back.completed} (failed {back.failed}, unfinished {back.unfinished})",
            "",
            "",
        ],
        ["node start (kill → accepting)", f"{start_s:.2f} s", f"{start_s:.2f} s", ""],
        [
            "reconnect (first connect → last Hello)",
            f"{reconnect_s:.2f} s",
            f"{devices / first_rate:.2f} s",
            ratio(devices / first_rate, reconnect_s, "%"),
        ],
        ["handshakes/s", f"{connect_rate(back):.0f}/s", f"{first_rate:.0f}/s (first connect)", ""],
        [
            "kill → every device back",
            f"{back_s:.2f} s",
            f"{bound_s:.2f} s",
            ratio(bound_s, back_s, "%"),
        ],
    ]
    print_table(
        f"kill -9 with {devices} devices connected (server and load on {loop_name()})",
        ["", "measured", "bound", "bound ÷ measured"],
        rows,
    )
    summary(
        f"fleet restart: {back.completed} of {devices} devices back {back_s:.2f} s after "
        f"kill -9 (node start {start_s:.2f} s + reconnect {reconnect_s:.2f} s); bound "
        f"{bound_s:.2f} s (start + devices ÷ {first_rate:.0f}/s) → {ratio(bound_s, back_s, '%')}"
    )


if __name__ == "__main__":
    main()
