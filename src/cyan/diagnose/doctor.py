"""`cyan doctor`: check each link a Photon needs, in the order it needs them.

Run from the device's network, it walks DNS → TCP → nonce (protocol.md §2 steps 1-2), then,
given the device's key directory, compares the key image with the server (§1.3) and does a
real handshake as the device up to the server's Hello (§2 step 5), and says goodbye (§4.15)
so the server records no dropped connection. The first failing network step stops the
walk; later rows say "skipped" and what is known anyway. Causes and fixes of protocol
stages come from the one table in stages.py; only a finding that is no protocol stage (a
key image whose address points elsewhere) has its own sentence here. What only the server
can tell (why it hung up) comes through its API: server_view.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from cyan.diagnose.checks import Check, Status, Step
from cyan.diagnose.probe import ConnectionWatch, NonceProbe
from cyan.diagnose.server_view import (
    CyanApi,
    Probe,
    ServerInfo,
    refused_handshake,
    server_record,
)
from cyan.diagnose.stages import SEND_SERVER_KEY, diagnose_device_side, explain_stage
from cyan.driver import Driver
from cyan.firmware.platforms import PHOTON
from cyan.keydir import KeyStore
from cyan.net.resolver import DnsServer, is_ip, lookup_system, lookup_with
from cyan.protocol import DeviceConnection, ProtocolError, Stage, crypto, messages

# The server stamps failures in milliseconds, by its own clock: allow it a second.
CLOCK_SLACK = timedelta(seconds=1)
ADDRESS_CAUSE = "the device's server key image sends it somewhere other than this cloud"
# A Photon on Device OS 2.x, which may say goodbye.
DOCTOR_HELLO = messages.HelloInfo(PHOTON, 1, messages.HelloFlags.GOODBYE, PHOTON)


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    host: str
    port: int
    dns_servers: tuple[DnsServer, ...] = ()
    # This computer's own resolver (getaddrinfo), besides the DNS servers asked one by one.
    system_resolver: bool = True
    keystore: KeyStore | None = None
    api_url: str | None = None
    token: str | None = None
    timeout_s: float = 5.0


async def run_doctor(options: DoctorOptions) -> list[Check]:
    started_at = datetime.now(UTC) - CLOCK_SLACK
    async with httpx.AsyncClient(timeout=options.timeout_s, trust_env=False) as http:
        api = CyanApi(http, options.api_url.rstrip("/"), options.token) if options.api_url else None
        device_id = options.keystore.device_id if options.keystore else None
        record = await server_record(api, device_id)
        checks, address = await check_dns(options)
        if address is None:
            return [*checks, *_skipped_after(Step.DNS, options), record]
        # Fetched while TCP connects, as the gateway's handshake timer starts with the nonce.
        server_info = None
        if options.keystore is not None and api is not None:
            server_info = asyncio.create_task(api.server_info())
        try:
            walked = await _walk(options, address, api, server_info, started_at)
        finally:
            if server_info is not None:
                server_info.cancel()
        return [*checks, *walked, record]


async def _walk(
    options: DoctorOptions,
    address: str,
    api: CyanApi | None,
    server_info: asyncio.Task[ServerInfo | str] | None,
    started_at: datetime,
) -> list[Check]:
    target, timeout_s = f"{address}:{options.port}", options.timeout_s
    probe = ConnectionWatch()
    keystore = options.keystore
    core = _device_core(keystore) if keystore is not None else NonceProbe()
    driver = Driver(core, probe)
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.get_running_loop().create_connection(
                lambda: driver, address, options.port
            )
    except (OSError, TimeoutError) as exc:
        if isinstance(exc, TimeoutError):
            why = f"no answer within {timeout_s:g} s: filtered by a firewall, or no route to it"
        elif isinstance(exc, ConnectionRefusedError):
            why = f"refused: nothing listens on port {options.port}: is cyan serve running?"
        else:
            why = exc.strerror or str(exc)
        failed = Check.failed(Step.TCP, explain_stage(Stage.TCP, f"{target}: {why}"))
        return [failed, *_skipped_after(Step.TCP, options)]
    checks = [Check(Step.TCP, Status.PASS, f"connected to {target}")]
    try:
        try:
            error = await probe.first(probe.nonce, timeout_s)
        except TimeoutError:
            error = ProtocolError(
                Stage.NONCE,
                f"the server accepted the connection but sent no 40-byte nonce in {timeout_s:g} s",
            )
        if error is not None:
            checks.append(Check.failed(Step.NONCE, diagnose_device_side(error)))
            return checks + _skipped_after(Step.NONCE, options)
        checks.append(Check(Step.NONCE, Status.PASS, "the server sent its 40-byte nonce first"))
        if keystore is None:
            return checks + _skipped_after(Step.NONCE, options)
        info = await server_info if server_info is not None else "no --api URL was given"
        checks.append(await _check_server_key(options, keystore, address, info))
        # A key-image problem does not stop the handshake: the server's view of it helps.
        view = await _check_handshake(options, keystore, probe, driver)
        if isinstance(view, ProtocolError):
            view = await refused_handshake(
                api, Probe(keystore.device_id, probe.local_ip, started_at), view
            )
        return [*checks, view]
    finally:
        driver.close()


def _skipped_after(step: Step, options: DoctorOptions) -> list[Check]:
    steps: list[Step] = [s for s in Step if s is not Step.SERVER_RECORD]
    rows = []
    for later in steps[steps.index(step) + 1 :]:
        detail = f"not checked: {step} failed"
        if later in (Step.SERVER_KEY, Step.HANDSHAKE) and options.keystore is None:
            detail = (
                "needs the device's keys: --keys DIR, or --device-key, --server-key and --device-id"
            )
        elif later is Step.SERVER_KEY and options.keystore is not None:
            image = options.keystore.server
            detail += (
                f"; the key image names {image.address} and holds server key "
                f"{crypto.fingerprint(image.public_key)[:16]}…"
            )
        rows.append(Check(later, Status.SKIPPED, detail))
    return rows


# -- dns ------------------------------------------------------------------------------------


async def check_dns(options: DoctorOptions) -> tuple[list[Check], str | None]:
    """One row per resolver, and the address to connect to (None when any resolver failed)."""
    host = options.host
    if is_ip(host):
        return [Check(Step.DNS, Status.PASS, f"{host} is an IP address: no DNS needed")], host
    lookups = []
    if options.system_resolver:
        lookups.append(
            ("this computer's resolver", lookup_system(host, options.port, options.timeout_s))
        )
    for server in options.dns_servers:
        lookups.append((f"DNS server {server}", lookup_with(server, host, options.timeout_s)))
    if not lookups:
        detail = "no DNS server to ask: pass --dns-server IP"
        return [Check.failed(Step.DNS, explain_stage(Stage.DNS, detail))], None
    checks, first = [], []
    for who, lookup in lookups:
        try:
            found = await lookup
        except ProtocolError as error:
            checks.append(Check.failed(Step.DNS, explain_stage(Stage.DNS, error.reason)))
            continue
        checks.append(Check(Step.DNS, Status.PASS, f"{who}: {host} → {', '.join(found)}"))
        first.append(found[0])
    return checks, first[0] if len(first) == len(lookups) else None


# -- server-key -------------------------------------------------------------------------------


async def _check_server_key(
    options: DoctorOptions, keystore: KeyStore, connected_ip: str, info: ServerInfo | str
) -> Check:
    image, step = keystore.server, Step.SERVER_KEY
    fingerprint = crypto.fingerprint(image.public_key)
    problems = await _address_problems(options, image.address.host, connected_ip)
    ports = {options.port: "the cloud was reached on"}
    if not isinstance(info, str):
        ports.setdefault(info.device_port, "the server's device port is")
    for port, where in ports.items():
        if port != image.address.effective_port:
            problems.append(
                f"the key image names port {image.address.effective_port}; {where} {port}"
            )
    if isinstance(info, str):
        note = f"cannot compare keys: {info}; pass --api URL (cyan serve's HTTP API, port 8080)"
        if not problems:
            return Check(step, Status.SKIPPED, f"the key image names {image.address}; {note}")
        return Check(
            step, Status.FAIL, "; ".join([*problems, note]), ADDRESS_CAUSE, SEND_SERVER_KEY
        )
    if info.fingerprint != fingerprint:
        mismatch = (
            f"the key image holds server key {fingerprint[:16]}…; this server's is "
            f"{info.fingerprint[:16]}…"
        )
        return Check.failed(step, explain_stage(Stage.SERVER_KEY, "; ".join([mismatch, *problems])))
    if problems:
        return Check(step, Status.FAIL, "; ".join(problems), ADDRESS_CAUSE, SEND_SERVER_KEY)
    found = f"the key image holds this server's key ({fingerprint[:16]}…) and names {image.address}"
    return Check(step, Status.PASS, found)


async def _address_problems(
    options: DoctorOptions, image_host: str | None, connected_ip: str
) -> list[str]:
    if image_host is None:
        return ["the key image names no server host: the device would go to Particle's cloud"]
    if image_host in (options.host, connected_ip):
        return []
    found = image_host
    if not is_ip(image_host):
        # Resolved as the dns step did: the system resolver, else the first DNS server.
        try:
            if options.system_resolver or not options.dns_servers:
                addresses = await lookup_system(image_host, options.port, options.timeout_s)
            else:
                addresses = await lookup_with(options.dns_servers[0], image_host, options.timeout_s)
        except ProtocolError as error:
            return [
                f"the key image names {image_host}, which does not resolve here ({error.reason})"
            ]
        found = addresses[0]
    if found == connected_ip:
        return []
    return [
        f"the key image names {image_host} ({found}); the cloud was reached at "
        f"{options.host} ({connected_ip})"
    ]


# -- handshake --------------------------------------------------------------------------------


def _device_core(keystore: KeyStore) -> DeviceConnection:
    return DeviceConnection(
        keystore.device_id,
        keystore.device_key,
        keystore.server.public_key,
        DOCTOR_HELLO,
        random_bytes=os.urandom,
        clock=time.time,
    )


async def _check_handshake(
    options: DoctorOptions, keystore: KeyStore, probe: ConnectionWatch, driver: Driver
) -> Check | ProtocolError:
    """A pass, a failure the device side explains, or the server's hang-up to ask about."""
    try:
        error = await probe.first(probe.hello, options.timeout_s)
    except TimeoutError:
        core = driver.core
        assert isinstance(core, DeviceConnection)
        state = core.handshake_state.value
        error = ProtocolError(
            Stage.TIMEOUT,
            f"the server did not finish the handshake in {options.timeout_s:g} s "
            f"(we were at {state})",
        )
    if error is not None:
        # Both mean the server hung up on purpose: its own record says why.
        if error.stage in (Stage.REFUSED, Stage.HELLO):
            return error
        return Check.failed(Step.HANDSHAKE, diagnose_device_side(error))
    # Leave on purpose: the server records a goodbye, not a device that dropped off. The
    # transport writes what it holds before it closes.
    device = driver.core
    assert isinstance(device, DeviceConnection)
    driver.drive(device.goodbye)
    return Check(
        Step.HANDSHAKE,
        Status.PASS,
        f"handshake as {keystore.device_id} done, the server answered our Hello: the device "
        "would breathe cyan",
    )
