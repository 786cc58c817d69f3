"""How a device finds its server's address, including the broken ways.

A Photon resolves the server's name with the DNS server DHCP gave it, IPv4 only (the key
image holds an IPv4 address, protocol.md §1.3). The virtual device and `cyan doctor` both
resolve through here, so a device's failure and doctor's finding read the same:

- ``lookup_system``: this computer's resolver (getaddrinfo: /etc/hosts, then its DNS);
- ``lookup_with``: one given DNS server, asked directly with dnspython (so a test can point
  it at a DNS server of its own on loopback, and doctor can ask each server a device could
  be handed);
- DNS server 0.0.0.0: what a DHCP server with no DNS server to give hands out (the seed
  thread's cause). Nothing is sent to it.

Every failure is a ``ProtocolError`` at stage dns whose reason says who failed and how.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import dns.rdatatype

from cyan.protocol import ProtocolError, Stage

DNS_PORT = 53
# What DHCP hands out when it has no DNS server to give; also what a broken resolver answers.
NO_ADDRESS = "0.0.0.0"
SYSTEM = "system"
NONE = "none"
_RCODE_WORDS = {
    dns.rcode.NXDOMAIN: "{host} does not exist (NXDOMAIN)",
    dns.rcode.REFUSED: "refused to answer (REFUSED: it does not resolve for this network)",
    dns.rcode.SERVFAIL: "could not resolve {host} (SERVFAIL)",
}


@dataclass(frozen=True, slots=True)
class DnsServer:
    ip: str
    port: int = DNS_PORT

    @classmethod
    def parse(cls, text: str) -> DnsServer:
        """``IP``, ``IP:PORT`` or ``[IPv6]:PORT``; a port other than 53 is for test servers."""
        host, port = text.strip(), str(DNS_PORT)
        if host.startswith("[") and "]" in host:
            host, _, rest = host[1:].partition("]")
            port = rest.removeprefix(":") or port
        elif host.count(":") == 1:
            host, _, port = host.partition(":")
        try:
            address = ipaddress.ip_address(host)
            if not 0 < int(port) < 65536:
                raise ValueError(port)
        except ValueError:
            raise ValueError(f"DNS server {text!r} is not IP or IP:PORT") from None
        return cls(str(address), int(port))

    @property
    def is_none(self) -> bool:
        return ipaddress.ip_address(self.ip).is_unspecified

    def __str__(self) -> str:
        return self.ip if self.port == DNS_PORT else f"{self.ip} port {self.port}"


# The DNS server of a device whose DHCP handed out DNS 0.0.0.0.
NO_DNS_SERVER = DnsServer(NO_ADDRESS)


def parse_dns_choice(text: str) -> DnsServer | None:
    """``--dns`` of `cyan device run`: ``system`` (None), ``none`` (0.0.0.0) or a server."""
    value = text.strip().lower()
    if value == SYSTEM:
        return None
    if value == NONE:
        return NO_DNS_SERVER
    try:
        return DnsServer.parse(value)
    except ValueError:
        raise ValueError(
            f"--dns takes system, none, or a DNS server's IP address[:port], not {text!r}"
        ) from None


def system_dns_servers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[DnsServer]:
    """The nameservers this computer was given, as a device on the same network would be.

    Read here, not with dnspython's Resolver(filename=…): that refuses the whole file for
    one line it cannot parse ("nameserver 10.0.0.1:x"), and doctor needs the rest.
    """
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    servers = []
    for fields in (line.split() for line in lines):
        # A scoped IPv6 address (fe80::1%eth0) is this computer's link; a Photon, IPv4 only,
        # is never given it.
        if len(fields) >= 2 and fields[0] == "nameserver" and "%" not in fields[1]:
            try:
                servers.append(DnsServer.parse(fields[1]))
            except ValueError:
                continue
    return servers


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve(host: str, port: int, dns_server: DnsServer | None, timeout_s: float) -> str:
    """The address a device connects to: the system's resolver when ``dns_server`` is None."""
    if is_ip(host):
        return host
    if dns_server is None:
        found = await lookup_system(host, port, timeout_s)
    else:
        found = await lookup_with(dns_server, host, timeout_s)
    return found[0]


def fallback_address(
    host: str, pinned: str | None, last_good: str | None
) -> tuple[str, str] | None:
    """Where Device OS 0.5.5 went when ``host`` did not resolve, and why: the IP pinned in
    its server key image, else the last address that worked (None: nowhere to go)."""
    if pinned is not None and is_ip(pinned) and pinned != host:
        return pinned, "the address pinned in the server key image"
    if last_good is not None:
        return last_good, "the last address that worked"
    return None


def _usable(who: str, host: str, addresses: list[str]) -> list[str]:
    if not addresses:
        raise ProtocolError(
            Stage.DNS, f"{who}: {host} has no IPv4 address (A record), which a Photon needs"
        )
    if NO_ADDRESS in addresses:
        raise ProtocolError(
            Stage.DNS,
            f"{who}: {host} resolves to 0.0.0.0, which is no address: a Photon would log "
            f"{host}=0.0.0.0 and keep blinking cyan",
        )
    return addresses


async def lookup_system(host: str, port: int, timeout_s: float) -> list[str]:
    """IPv4 addresses of ``host`` from this computer's resolver, or a dns-stage error."""
    who = "this computer's resolver"
    lookup = asyncio.get_running_loop().getaddrinfo(
        host, port, family=socket.AF_INET, type=socket.SOCK_STREAM
    )
    try:
        infos = await asyncio.wait_for(lookup, timeout_s)
    except TimeoutError:
        raise ProtocolError(
            Stage.DNS, f"{who}: no answer for {host} within {timeout_s:g} s"
        ) from None
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            why = f"{host} does not exist (NXDOMAIN)"
        elif exc.errno == socket.EAI_AGAIN:
            why = f"no DNS server answered for {host} (temporary failure)"
        else:
            why = f"{host} did not resolve: {exc.strerror}"
        raise ProtocolError(Stage.DNS, f"{who}: {why}") from exc
    return _usable(who, host, list(dict.fromkeys(str(info[4][0]) for info in infos)))


async def lookup_with(server: DnsServer, host: str, timeout_s: float) -> list[str]:
    """IPv4 addresses of ``host`` from one DNS server, or a dns-stage error saying why not."""
    who = f"DNS server {server}"
    if server.is_none:
        # Nothing is sent: on Linux a packet to 0.0.0.0 would reach this computer instead.
        raise ProtocolError(
            Stage.DNS,
            f"{who} is no server: DHCP handed out DNS 0.0.0.0, so a device given it cannot "
            f"resolve {host} (nothing was sent)",
        )
    query = dns.message.make_query(host, dns.rdatatype.A)
    try:
        response, _ = await dns.asyncquery.udp_with_fallback(
            query, server.ip, timeout=timeout_s, port=server.port
        )
    except dns.exception.Timeout:
        why = f"no answer within {timeout_s:g} s (timeout)"
    except ConnectionRefusedError:
        why = f"refused (nothing answers DNS on port {server.port})"
    except OSError as exc:
        why = f"cannot be reached: {exc.strerror or exc}"
    except dns.exception.DNSException as exc:
        why = f"answered something unusable: {exc}"
    else:
        rcode = response.rcode()
        if rcode == dns.rcode.NOERROR:
            # A recursive server puts the CNAME chain and its A records in one answer section.
            return _usable(
                who,
                host,
                [
                    rd.to_text()
                    for rrs in response.answer
                    if rrs.rdtype == dns.rdatatype.A
                    for rd in rrs
                ],
            )
        why = _RCODE_WORDS.get(rcode, f"answered {dns.rcode.to_text(rcode)}").format(host=host)
    raise ProtocolError(Stage.DNS, f"{who}: {why}")
