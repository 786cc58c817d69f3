"""What a virtual device is told (DeviceOptions) and what it shows (DeviceStatus)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from cyan.device.profiles import DEFAULT_PROFILE, FirmwareProfile
from cyan.device.updater import OtaFaults
from cyan.net.resolver import DnsServer
from cyan.protocol import ProtocolError, Stage, messages


@dataclass(frozen=True, slots=True)
class DeviceOptions:
    server: str | None = None  # HOST[:PORT]; None means the address in the server key image
    profile: FirmwareProfile = DEFAULT_PROFILE
    product_firmware_version: int = 3
    # A "heartbeat" event this often; None: none at all (benchmark fleets).
    heartbeat_s: float | None = 30.0
    # Device OS timings (protocol.md §5.1).
    io_timeout_s: float = 20.0
    hello_timeout_s: float = 4.0
    idle_ping_s: float = 15.0
    ping_timeout_s: float = 10.0
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 2.0
    # What a setup app wrote to the device; sent after every handshake until claimed.
    claim_code: str | None = None
    # Faults on purpose (issue: diagnosis). Which DNS server the network gave the device.
    # None: the system's resolver; DnsServer 0.0.0.0: none at all.
    dns_server: DnsServer | None = None
    # Device OS 0.5.5: when the name does not resolve, use the key image's IP address,
    # then the last address that worked.
    dns_fallback: bool = False
    # Ignore the server's nonce on the first N connection attempts, as a stalled network.
    stall_handshakes: int = 0
    # Over-the-air updates broken on purpose (lost chunks, a dropped connection, no fast OTA).
    ota_faults: OtaFaults = field(default_factory=OtaFaults)
    # setup() runs once per boot, after the first connect (AUTOMATIC mode, no system
    # thread): as soon as the server's first describe is answered, or this long after the
    # connect if none comes. None: only when ``VirtualDevice.run_setup()`` is called.
    setup_after_s: float | None = 0.5
    # Device OS's TCP stack has Nagle on, and its empty ACK and answer go out as two
    # writes (protocol.md §7.1); ``coalesce_replies`` sends them in one write instead.
    nagle: bool = True
    coalesce_replies: bool = False


@dataclass
class DeviceStatus:
    led: str = "off"
    stage: str = "off"
    connected: bool = False
    signaling: bool = False
    server_time: int | None = None
    last_error: ProtocolError | None = None
    connects: int = 0
    # When each step of the latest attempt was reached (the driver's monotonic clock):
    # start, connected (TCP), session (keys exchanged), hello (breathing cyan),
    # described (the server acknowledged its describe), closed.
    times: dict[str, float] = field(default_factory=dict)
    # Function calls that reached the app (registered or not).
    calls: int = 0
    received_events: deque[messages.EventInfo] = field(default_factory=lambda: deque(maxlen=100))


# The LED a Photon shows for a failure it can see (protocol.md §5.2).
ERROR_LEDS = {
    Stage.DNS: "blinking cyan, 3 orange blinks (cloud unreachable)",
    Stage.TCP: "blinking cyan, 3 orange blinks (cloud unreachable)",
    Stage.HANDSHAKE_DECRYPT: "fast blinking cyan, 1 orange blink (decryption error)",
    Stage.SERVER_KEY: "fast blinking cyan, 1 magenta blink (authentication error)",
}
