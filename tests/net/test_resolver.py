"""How a virtual device resolves its server: system, none, a given DNS server; fallback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from cyan.keydir import KeyStore
from cyan.net.resolver import (
    DnsServer,
    lookup_system,
    lookup_with,
    parse_dns_choice,
    resolve,
    system_dns_servers,
)
from cyan.protocol import ProtocolError, Stage
from tests.dns import fake_dns
from tests.system import LOOPBACK, eventually, running_cloud


def test_dns_choices_parse(tmp_path: Path) -> None:
    assert parse_dns_choice("system") is None
    assert parse_dns_choice("NONE") == DnsServer("0.0.0.0")
    assert parse_dns_choice("0.0.0.0") == DnsServer("0.0.0.0")  # what the seed's DHCP handed out
    assert parse_dns_choice("127.0.0.1:5353") == DnsServer(LOOPBACK, 5353)
    assert DnsServer.parse("10.0.0.1") == DnsServer("10.0.0.1", 53)
    assert DnsServer.parse("[::1]:5353") == DnsServer("::1", 5353)
    assert DnsServer.parse("::1") == DnsServer("::1", 53)
    assert str(DnsServer("::1", 5353)) == "::1 port 5353"
    with pytest.raises(ValueError, match="--dns takes"):
        parse_dns_choice("dns.example")
    with pytest.raises(ValueError, match="is not IP or IP:PORT"):
        DnsServer.parse("10.0.0.1:70000")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# comment\nnameserver 0.0.0.0\nnameserver fe80::1%eth0\nnameserver 10.0.0.1:x\n"
        "nameserver 2001:db8::53\nsearch lan\n"
    )
    assert system_dns_servers(resolv) == [DnsServer("0.0.0.0"), DnsServer("2001:db8::53")]
    assert system_dns_servers(tmp_path / "missing") == []


async def test_no_dns_server_fails_at_the_dns_stage_without_asking_anyone() -> None:
    # On Linux a datagram to 0.0.0.0 reaches a socket bound to 127.0.0.1: our DNS server on
    # the same port would see any query sent.
    async with fake_dns({"cloud.lan": LOOPBACK}) as server:
        with pytest.raises(ProtocolError) as caught:
            await resolve("cloud.lan", 5683, DnsServer("0.0.0.0", server.port), 1.0)
        await asyncio.sleep(0.2)
    assert server.queries == []
    assert caught.value.stage is Stage.DNS
    assert "DHCP handed out DNS 0.0.0.0" in caught.value.reason
    assert "nothing was sent" in caught.value.reason
    # An IP needs no DNS at all: pinning the server by IP is the seed thread's fix.
    assert await resolve(LOOPBACK, 5683, parse_dns_choice("none"), 1.0) == LOOPBACK


async def test_a_given_dns_server_is_asked_and_its_no_is_reported() -> None:
    async with fake_dns({"cloud.lan": LOOPBACK, "zero.lan": "0.0.0.0"}) as server:
        choice = parse_dns_choice(server.address)
        assert await resolve("cloud.lan", 5683, choice, 1.0) == LOOPBACK
        with pytest.raises(
            ProtocolError, match=r"nowhere\.lan does not exist \(NXDOMAIN\)"
        ) as caught:
            await resolve("nowhere.lan", 5683, choice, 1.0)
        assert caught.value.stage is Stage.DNS
        with pytest.raises(ProtocolError, match=r"resolves to 0\.0\.0\.0, which is no address"):
            await resolve("zero.lan", 5683, choice, 1.0)
    assert server.queries == ["cloud.lan", "nowhere.lan", "zero.lan"]


async def test_a_dns_server_that_does_not_answer_times_out() -> None:
    async with fake_dns() as server:
        server.silent = True
        with pytest.raises(ProtocolError, match=r"no answer within 0\.3 s") as caught:
            await lookup_with(DnsServer(LOOPBACK, server.port), "cloud.lan", 0.3)
    assert caught.value.stage is Stage.DNS


async def test_the_system_resolver_reads_hosts_entries() -> None:
    # localhost must come from /etc/hosts, or this lookup would leave the machine.
    hosts = (await asyncio.to_thread(Path("/etc/hosts").read_text)).split("\n")
    assert any(
        line.split()[:1] == [LOOPBACK] and "localhost" in line.split()[1:] for line in hosts
    ), "/etc/hosts must map localhost to 127.0.0.1 for this test to stay on loopback"
    assert await lookup_system("localhost", 1, 2.0) == [LOOPBACK]


async def test_dns_fallback_uses_the_ip_pinned_in_the_key_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cyan.device")
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(
            keystore=KeyStore.create(
                tmp_path / "keys",
                cloud.node.gateway.server_key.public_key(),
                host=LOOPBACK,
                port=cloud.device_port,
            ),
            server=f"cloud.lan:{cloud.device_port}",  # a name, as Particle's own device.spark.io
            dns_server=parse_dns_choice("none"),
            dns_fallback=True,
        )
        await cloud.online(device)
        logged = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
        assert logged
        assert "127.0.0.1 (the address pinned in the server key image)" in logged[0]


async def test_dns_fallback_then_uses_the_last_address_that_worked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cyan.device")
    async with running_cloud(tmp_path) as cloud, fake_dns({"cloud.lan": LOOPBACK}) as dns_server:
        keystore = KeyStore.create(
            tmp_path / "keys",
            cloud.node.gateway.server_key.public_key(),
            host="cloud.lan",  # a name in the image: nothing pinned to fall back to
            port=cloud.device_port,
        )
        device = await cloud.add_device(
            keystore=keystore,
            server=None,
            dns_server=parse_dns_choice(dns_server.address),
            dns_fallback=True,
        )
        await cloud.online(device)
        dns_server.answers.clear()  # the name stops resolving: DNS broke after it worked
        for session in list(cloud.node.gateway.sessions):
            if session.device_id == device.device_id:
                session.close("test: drop the device")
        await eventually(lambda: device.status.connects >= 2, 10, "a reconnect")
        logged = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
        assert any("(the last address that worked)" in line for line in logged), logged


async def test_without_fallback_a_dns_failure_is_logged_with_its_cause_and_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "cyan.device")
    async with running_cloud(tmp_path) as cloud:
        device = await cloud.add_device(
            server=f"cloud.lan:{cloud.device_port}", dns_server=parse_dns_choice("none")
        )
        await eventually(lambda: device.status.last_error is not None, 5, "a failure")
        assert device.status.last_error is not None
        assert device.status.last_error.stage is Stage.DNS
        lines = [r.getMessage() for r in caplog.records if "failed at stage dns" in r.getMessage()]
        assert lines
        assert "Fix: " in lines[0]
        assert "cyan keys server --host THIS-SERVER-IP" in lines[0]
