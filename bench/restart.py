"""Time until every device is back online after the server is killed with SIGKILL.

Runs the installed ``cyan`` as a user would: ``cyan serve --demo N`` plus one separate
``cyan device run``, waits until all are connected, kills the server with SIGKILL and
starts it again. Measured from the restart command: when a fresh connection to the
device port gets the server's nonce (the gateway serving devices; it starts before the
API), when the API answers (the baseline: what the server's own start costs) and when
every device is connected again (the figure).
The difference is what the devices' reconnect back-off adds. Target (issue 3): all
devices online within 5 s of the restart.

Loopback only; every wait is bounded (--timeout).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.figures import print_table, summary

NONCE_BYTES = 40
CYAN = shutil.which("cyan") or str(Path(sys.executable).parent / "cyan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def connected(api: str, token: str) -> int | None:
    try:
        devices = httpx.get(
            f"{api}/v1/devices", headers={"Authorization": f"Bearer {token}"}, timeout=1
        ).json()
    except (httpx.HTTPError, ValueError):
        return None
    return sum(bool(d["connected"]) for d in devices)


def nonce_seen(port: int, deadline: float) -> float:
    """When a fresh connection to the device port first got the server's nonce (its first
    40 bytes): the gateway serving devices, not just the kernel accepting for it."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                probe.settimeout(max(0.1, deadline - time.monotonic()))
                got = b""
                while len(got) < NONCE_BYTES and (chunk := probe.recv(NONCE_BYTES - len(got))):
                    got += chunk
                if len(got) == NONCE_BYTES:
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit("the device port never sent a nonce within the timeout")


def wait_for(api: str, token: str, want: int, deadline: float) -> tuple[float | None, float]:
    """(when the API first answered, when ``want`` devices were connected)."""
    answered = None
    while time.monotonic() < deadline:
        count = connected(api, token)
        if count is not None and answered is None:
            answered = time.monotonic()
        if count is not None and count >= want:
            return answered, time.monotonic()
        time.sleep(0.02)
    raise SystemExit(f"not all {want} devices came back within the timeout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=int, default=2, help="demo devices in the server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="cyan-restart-") as scratch:
        data = Path(scratch) / "data"
        env = {**os.environ, "CYAN_DATA_DIR": str(data), "NO_COLOR": "1"}
        device_port, api_port = free_port(), free_port()
        api = f"http://127.0.0.1:{api_port}"
        serve = [
            CYAN,
            "serve",
            "--host",
            "127.0.0.1",
            "--device-port",
            str(device_port),
            "--api-port",
            str(api_port),
            "--demo",
            str(args.demo),
        ]
        log = (Path(scratch) / "log").open("ab")
        server = subprocess.Popen(serve, env=env, stdout=log, stderr=log)
        keys = Path(scratch) / "keys"

        def run(*command: str) -> str:
            return subprocess.run(
                [CYAN, *command], env=env, check=True, capture_output=True, text=True, timeout=60
            ).stdout

        device_id = run("keys", "new", "--out", str(keys), "--server-port", str(device_port))
        run("device", "add", device_id.strip(), "--public-key", str(keys / "device-key.pub.pem"))
        device = subprocess.Popen(
            [CYAN, "device", "run", "--keys", str(keys)], env=env, stdout=log, stderr=log
        )
        token = run("token", "create").strip()
        want = args.demo + 1
        rows, totals = [], []
        try:
            wait_for(api, token, want, time.monotonic() + args.timeout)
            for round_ in range(1, rounds + 1):
                server.send_signal(signal.SIGKILL)
                server.wait()
                started = time.monotonic()
                server = subprocess.Popen(serve, env=env, stdout=log, stderr=log)
                serving = nonce_seen(device_port, started + args.timeout) - started
                answered, online = wait_for(api, token, want, started + args.timeout)
                assert answered is not None
                api_s, online_s = answered - started, online - started
                totals.append(online_s)
                rows.append(
                    [
                        str(round_),
                        f"{serving:.2f} s",
                        f"{api_s:.2f} s",
                        f"{online_s:.2f} s",
                        f"{online_s - api_s:.2f} s",
                    ]
                )
        finally:
            for process in (device, server):
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
            log.close()
    print_table(
        f"kill -9 and restart: {args.demo} demo devices + 1 separate device",
        [
            "round",
            "device port sends a nonce",
            "API answers (baseline)",
            "all devices online",
            "reconnect adds",
        ],
        rows,
    )
    summary(
        f"all {want} devices online {max(totals):.2f} s after the restart at worst (target 5 s)"
    )


if __name__ == "__main__":
    main()
