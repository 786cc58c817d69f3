"""Two ends of a connection joined in memory, no sockets (h11's ConnectionPair idea)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar

from cyan.protocol import DeviceConnection, ServerConnection, crypto, keys, messages
from cyan.protocol.events import DeviceIdentified, Event, HelloReceived, ServerHelloReceived
from tests import vectors

PHOTON_HELLO = messages.HelloInfo(
    product_id=6, product_firmware_version=3, flags=0x36, platform_id=6
)
FIXED_CLOCK = 1_700_000_000.0
# Each conversation runs with every write delivered whole, byte by byte, and in 7-byte pieces.
CHUNKS = [None, 1, 7]
# An application describe as device-os builds it, without spaces (protocol.md §4.5).
BODY = b'{"f":["brew","led"],"v":{"temp":9,"count":2,"on":1,"name":4}}'

E = TypeVar("E", bound=Event)


def server_key() -> crypto.RsaPrivateKey:
    """The fixed RSA-2048 server key of tests/vectors."""
    return vectors.server_key()


@lru_cache(maxsize=4)
def _generated_device_key(index: int) -> crypto.RsaPrivateKey:
    return keys.generate_device_key()


def device_key(index: int = 0) -> crypto.RsaPrivateKey:
    """A fixed RSA-1024 device key (0 and 1 come from tests/vectors; more are generated)."""
    if index < vectors.DEVICE_KEY_COUNT:
        return vectors.device_key(index)
    return _generated_device_key(index)


def seeded_random(seed: int) -> Callable[[int], bytes]:
    rng = random.Random(seed)
    return lambda n: bytes(rng.getrandbits(8) for _ in range(n))


def scripted(*chunks: bytes) -> Callable[[int], bytes]:
    """A random source that hands out ``chunks`` in order, each of the size asked for."""
    queue = list(chunks)

    def random_bytes(count: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == count, f"asked for {count} random bytes, script has {len(chunk)}"
        return chunk

    return random_bytes


def _default_registered_key() -> crypto.RsaPublicKey | None:
    return device_key(0).public_key()


@dataclass
class Pair:
    server: ServerConnection
    device: DeviceConnection
    server_events: list[Event] = field(default_factory=list)
    device_events: list[Event] = field(default_factory=list)
    # What the server answers DeviceIdentified with (None: an unknown device).
    registered_key: crypto.RsaPublicKey | None = field(default_factory=_default_registered_key)
    # Every byte each end wrote, in order, for checks from outside (tests/protocol/wire.py).
    to_device: bytearray = field(default_factory=bytearray)
    to_server: bytearray = field(default_factory=bytearray)

    def pump(self, chunk: int | None = None) -> None:
        """Move bytes both ways until both ends are quiet; ``chunk`` splits every write."""
        for _ in itertools.count():
            to_device, to_server = self.server.data_to_send(), self.device.data_to_send()
            if not to_device and not to_server:
                # Events of calls that wrote nothing (a timed-out update, closed()).
                self.server_events += self.server.events_received()
                self.device_events += self.device.events_received()
                return
            self.to_device += to_device
            self.to_server += to_server
            for data, end in ((to_device, self.device), (to_server, self.server)):
                step = chunk or max(len(data), 1)
                for i in range(0, len(data), step):
                    end.receive_data(data[i : i + step])
                    while end.backlog:  # as the driver does: the rest before more bytes
                        end.receive_data(b"")
            self.server_events += self.server.events_received()
            self.device_events += self.device.events_received()
            if (
                any(isinstance(e, DeviceIdentified) for e in self.server_events)
                and not self.server.established
            ):
                self.server.accept_device(self.registered_key)

    def take_server_events(self) -> list[Event]:
        """The server events collected so far, clearing the list."""
        events, self.server_events = self.server_events, []
        return events

    def take_device_events(self) -> list[Event]:
        """The device events collected so far, clearing the list."""
        events, self.device_events = self.device_events, []
        return events


def of_type(events: list[Event], kind: type[E]) -> list[E]:
    """The events of one class, in order."""
    return [e for e in events if isinstance(e, kind)]


DEVICE_ID = "0123456789abcdef01234567"


def make_pair(
    *,
    separate_responses: bool = True,
    seed: int = 1,
    device_index: int = 0,
    registered_index: int | None = 0,
    send_public_key: bool = True,
    server_random: Callable[[int], bytes] | None = None,
    clock: Callable[[], float] | None = None,
    server_public_key: crypto.RsaPublicKey | None = None,
    server_holds_key: bool = True,
) -> Pair:
    """A started server and a device; ``pump()`` runs the handshake.

    ``registered_index`` picks the device key the server has on file (None: none);
    ``server_public_key`` is the key the device trusts (default: the server's own);
    ``server_holds_key=False`` leaves the server key's operations to the test.
    """
    now = clock or (lambda: FIXED_CLOCK)
    server = ServerConnection(
        server_key() if server_holds_key else None,
        random_bytes=server_random or seeded_random(seed),
        clock=now,
    )
    device = DeviceConnection(
        DEVICE_ID,
        device_key(device_index),
        server_public_key or server_key().public_key(),
        PHOTON_HELLO,
        random_bytes=seeded_random(seed + 1),
        clock=now,
        separate_responses=separate_responses,
        send_public_key=send_public_key,
    )
    server.start()
    registered = None if registered_index is None else device_key(registered_index).public_key()
    return Pair(server, device, registered_key=registered)


def connected(
    chunk: int | None = None, *, separate_responses: bool = True, clock_s: float | None = None
) -> Pair:
    """A pair past both Hellos, with the events of the handshake cleared."""
    pair = make_pair(
        separate_responses=separate_responses,
        clock=None if clock_s is None else (lambda: clock_s),
    )
    pair.pump(chunk)
    assert [type(e) for e in pair.server_events] == [DeviceIdentified, HelloReceived]
    assert pair.take_server_events()[1] == HelloReceived(DEVICE_ID, PHOTON_HELLO)
    assert ServerHelloReceived() in pair.take_device_events()
    return pair
