"""A DNS server of the tests' own, on loopback: answers from a table, NXDOMAIN otherwise.

So that name-resolution faults can be reproduced without sending a packet anywhere but
127.0.0.1 (a system resolver would ask the network's DNS server).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


@dataclass
class FakeDns(asyncio.DatagramProtocol):
    answers: dict[str, str] = field(default_factory=dict)  # name -> IPv4 address
    queries: list[str] = field(default_factory=list)
    # Hear the question and answer nothing, as a DNS server that is down or filtered.
    silent: bool = False
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio's classes, so no isinstance check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        reply = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append(name)
        if self.silent:
            return
        address = self.answers.get(name)
        if address is None:
            reply.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.A:
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", address))
        reply.flags |= dns.flags.RA
        assert self.transport is not None
        self.transport.sendto(reply.to_wire(), addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def fake_dns(answers: dict[str, str] | None = None) -> AsyncIterator[FakeDns]:
    loop = asyncio.get_running_loop()
    server = FakeDns(dict(answers or {}))
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    try:
        yield server
    finally:
        transport.close()
