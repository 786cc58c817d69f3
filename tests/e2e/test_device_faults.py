"""`cyan device run` breaking on purpose, as a user runs it: processes, not objects.

One `cyan serve`, several `cyan device run` processes each with one fault switch; each
device's log and `cyan device why` name the failure, then the printed fix (a `cyan` command)
is run and the device, still running, reaches breathing cyan by itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.served import LOOPBACK, Served, wait_for_line
from tests.e2e.test_cli_processes import BOUND_S, cyan, processes
from tests.served import served_data_dir

__all__ = ["processes"]  # the fixture, imported for its name


def why(device_id: str, data: Path) -> dict[str, str | None]:
    run = cyan("device", "why", device_id, "--json", data_dir=data, check=False)
    assert run.returncode in (0, 1), run.stderr
    verdict: dict[str, str | None] = json.loads(run.stdout)["verdict"]
    return verdict


def test_each_fault_switch_fails_at_its_stage_and_the_printed_fix_repairs_it(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    served = Served(tmp_path, processes)
    data, port = served.data, served.device_port

    def device(name: str, *run_args: str, host: str = LOOPBACK) -> tuple[str, Path, Path]:
        running = served.device(name, *run_args, host=host, connected=False)
        return running.device_id, running.keys_dir, running.log

    # --dns none: the seed thread's Photon. The device names it; the server saw nothing (and
    # says so, before other broken devices on this address make that a guess).
    no_dns = device("no-dns", "--dns", "none", host="localhost")
    content = wait_for_line(no_dns[2], "failed at stage dns")
    assert "DHCP handed out DNS 0.0.0.0" in content
    assert why(no_dns[0], data)["state"] == "silent"

    # The rest at once: each run costs a process start, not a test of its own.
    fallback = device(
        "fallback", "--dns", "none", "--dns-fallback", "--server", f"x.invalid:{port}"
    )
    wrong_server = device("wrong-server", "--fault", "wrong-server-key")
    other_key = device("other-key", "--fault", "different-key")
    closed = device("closed", "--fault", "closed-port")
    stalled = device("stalled", "--stall-handshakes", "2")

    # --dns-fallback: as Device OS 0.5.5, it uses the IP pinned in its key image.
    content = wait_for_line(fallback[2], "cloud: connected")
    assert "falling back to 127.0.0.1 (the address pinned in the server key image)" in content

    # Each fault the server can name, named by `cyan device why` where the server runs.
    wait_for_line(other_key[2], "failed at stage refused")
    assert why(other_key[0], data)["stage"] == "key-mismatch"
    wait_for_line(wrong_server[2], "failed at stage refused")
    verdict = why(wrong_server[0], data)
    assert (verdict["state"], verdict["stage"]) == ("unnamed-failures", "handshake-decrypt")
    content = wait_for_line(closed[2], "failed at stage tcp")
    assert "Fix:" in content

    # The fixes, as printed: pin this server by IP; make and register a new key.
    for broken in (no_dns, wrong_server, closed):
        image = str(broken[1] / "server-key.der")
        cyan(
            "keys", "server", "--host", LOOPBACK, "--port", str(port), "--out", image, data_dir=data
        )
    cyan("keys", "doctor", other_key[0], "--keys", str(other_key[1]), data_dir=data)

    for repaired in (no_dns, wrong_server, other_key, closed, stalled):
        wait_for_line(repaired[2], "cloud: connected")
        assert why(repaired[0], data)["state"] == "online"
    assert "failed at stage timeout" in stalled[2].read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dns", "dns.example"], "--dns takes system, none, or a DNS server's IP"),
        (["--fault", "no-such-fault"], "no-such-fault"),
    ],
)
def test_bad_fault_switches_are_refused_plainly(
    tmp_path: Path, args: list[str], message: str
) -> None:
    data = served_data_dir(tmp_path / "data")
    cyan("keys", "new", "--out", str(tmp_path / "k"), data_dir=data)
    run = cyan("device", "run", "--keys", str(tmp_path / "k"), *args, data_dir=data, check=False)
    assert run.returncode != 0
    assert message in run.stderr


def test_a_stopped_device_says_goodbye_and_leaves_no_failure(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    served = Served(tmp_path, processes)
    data = served.data
    running = served.device("lab")
    device_id, device = running.device_id, running.process

    device.send_signal(signal.SIGTERM)  # as `kill`, or a service manager stopping it
    assert device.wait(BOUND_S) == 0
    wait_for_line(served.log, f"device {device_id} said goodbye")
    # The gateway writes presence in its sweep: ask until the goodbye is on record.
    deadline = time.monotonic() + BOUND_S
    verdict = why(device_id, data)
    while verdict["state"] != "silent" and time.monotonic() < deadline:
        verdict = why(device_id, data)
    assert verdict["state"] == "silent"
    assert "it last connected at" in str(verdict["summary"])
