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
    "write this server's key and address to the device (in DFU mode): "
    "particle keys server server-key.pub.der --host THIS-SERVER-IP"
)
REGISTER_KEY = (
    "register the device's current public key: cyan device add ID --public-key KEY.pem, "
    "or particle keys send ID KEY.pem (particle keys doctor ID makes and sends a new one)"
)

_TABLE: dict[Stage, tuple[str, str]] = {
    Stage.DNS: (
        "the server's host name did not resolve (a DHCP server that hands out DNS 0.0.0.0 "
        "does this)",
        "fix the DNS server the network hands out, or pin the server by IP address in the "
        "device's server key (particle keys server … --host IP)",
    ),
    Stage.TCP: (
        "no TCP connection to the server's device port",
        "check that cyan serve is running, that port 5683 is open on its firewall, and that "
        "the address in the device's server key is this server",
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
    cause, fix = _TABLE[error.stage]
    return Diagnosis(error.stage, cause, fix, error.reason)
