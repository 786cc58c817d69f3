"""One table from failure stage to cause and fix, as the server sees a device's connection.

Every surface that reports a failed connection (the gateway's log line today; the API,
`cyan device why` and `cyan doctor` as they arrive) reads this table, so a failure is
classified once (design.md, "Rules that keep it easy to change"). The LED a Photon shows
for each is in protocol.md §5.2.
"""

from __future__ import annotations

from dataclasses import dataclass

from cyan.protocol.errors import ProtocolError, Stage

SEND_SERVER_KEY = (
    "write this server's key and address to the device: cyan keys server --host "
    "THIS-SERVER-IP --out server-key.der, then put it on the device (a virtual device: its key "
    "directory; a Photon in DFU mode: dfu-util -d 2b04:d006 -a 1 -s 2082 -D server-key.der, "
    "or particle keys server server-key.pub.der --host THIS-SERVER-IP)"
)
REGISTER_KEY = (
    "register the device's current public key: cyan device add ID --public-key KEY.pem or "
    "particle keys send ID KEY.pem; or make and register a new one: cyan keys doctor ID"
)
ASK_THE_SERVER = (
    "ask the server which: cyan device why ID on the server, or cyan doctor --keys DIR "
    "--token TOKEN from the device's network"
)

_TABLE: dict[Stage, tuple[str, str]] = {
    Stage.DNS: (
        "the server's host name did not resolve (a DHCP server that hands out DNS 0.0.0.0 "
        "does this)",
        "fix the DNS server the network hands out (the router's DHCP settings), or pin the "
        "server by IP address in the device's server key: cyan keys server --host "
        "THIS-SERVER-IP writes it and says how to put it on the device",
    ),
    Stage.TCP: (
        "no TCP connection to the server's device port",
        "check that cyan serve is running and its device port (5683) is open on the firewall, "
        "and that the device's server key names this server's address and port: cyan keys "
        "server --host THIS-SERVER-IP --port PORT, written to the device",
    ),
    Stage.NONCE: (
        "the connection ended before the device answered the server's nonce",
        "check that the device talks to this server and that its network is stable",
    ),
    Stage.HANDSHAKE_DECRYPT: (
        "the device's handshake does not decrypt with this server's key: the device holds "
        "another server's public key",
        SEND_SERVER_KEY,
    ),
    Stage.SERVER_KEY: (
        "the device does not trust this server's signature: it holds another server's public key",
        SEND_SERVER_KEY,
    ),
    Stage.REFUSED: (
        "the server hung up after the device's handshake: the device holds another server's "
        "public key, or is not registered there, or its key differs from the registered one",
        ASK_THE_SERVER,
    ),
    Stage.UNKNOWN_DEVICE: ("the device has no public key registered on this server", REGISTER_KEY),
    Stage.KEY_MISMATCH: (
        "the device's public key differs from the one registered on this server",
        REGISTER_KEY,
    ),
    Stage.HELLO: (
        "the device dropped the connection after the key exchange: it could not decrypt the "
        "session key (another key is registered here for it) or holds another server's key",
        REGISTER_KEY + "; if that does not help, " + SEND_SERVER_KEY,
    ),
    Stage.SESSION: (
        "the encrypted session broke: a bad frame, or the connection closed",
        "nothing, if it happens rarely: the device reconnects by itself; if it repeats, look "
        "at the network between the device and this server",
    ),
    Stage.TIMEOUT: (
        "the handshake stalled partway",
        "check the network between the device and this server; the device retries by itself",
    ),
    Stage.KEEPALIVE_TIMEOUT: (
        "the device went silent and did not answer a ping",
        "check the device's power and Wi-Fi signal; it reconnects by itself when it can",
    ),
    Stage.BUSY: (
        "too many connections from the device's address were in the handshake at once, so "
        "the server turned this one away",
        "nothing, if it passes: the device retries by itself; if many devices share one "
        "address (a NAT), raise gateway.max_handshakes_per_address",
    ),
}


# Where the device's view of a failure differs from the server's. A device-side
# handshake-decrypt is the opposite of the server's: the server could read the device's
# block, but encrypted the session key to another device key.
_DEVICE_VIEW: dict[Stage, tuple[str, str]] = {
    Stage.NONCE: (
        "the server accepted the TCP connection but sent no 40-byte nonce: something other "
        "than a device cloud listens there, or it dropped the connection",
        "check that the address and port in the device's server key are cyan serve's device "
        "port (5683 by default)",
    ),
    Stage.HANDSHAKE_DECRYPT: (
        "the server's session key does not decrypt with the device's key: the server has "
        "another public key registered for this device",
        REGISTER_KEY,
    ),
    Stage.HELLO: (
        "the server closed the connection before answering the device's Hello",
        "look at what the server logged for this device: cyan device why ID",
    ),
    Stage.SESSION: (
        "the server closed the session or sent a frame the device could not read",
        "nothing, if it happens rarely: the device reconnects by itself; if it repeats, look "
        "at what the server logged for this device: cyan device why ID",
    ),
    Stage.TIMEOUT: (
        "the server did not finish the handshake in time (it stalled)",
        "check the network between the device and the server, and that the server is not "
        "overloaded; the device retries by itself",
    ),
    Stage.KEEPALIVE_TIMEOUT: (
        "the server did not answer the device's ping",
        "check the network between the device and the server; the device reconnects by itself",
    ),
}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    stage: Stage
    cause: str
    fix: str
    detail: str

    def sentence(self) -> str:
        return f"{self.cause} ({self.detail}). Fix: {self.fix}."


def diagnose(error: ProtocolError) -> Diagnosis:
    """The server's view of a failed connection."""
    return explain_stage(error.stage, error.reason)


def diagnose_device_side(error: ProtocolError) -> Diagnosis:
    """The device's view: what a device (or `cyan doctor` acting as one) can tell."""
    return explain_stage(error.stage, error.reason, device_side=True)


def explain_stage(stage: Stage, detail: str, *, device_side: bool = False) -> Diagnosis:
    cause, fix = (device_side and _DEVICE_VIEW.get(stage)) or _TABLE[stage]
    return Diagnosis(stage, cause, fix, detail)
