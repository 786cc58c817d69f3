"""The RSA handshake (protocol.md §2), server side and device side, as state tables.

Both run before any framing: fixed-size raw blocks on the TCP stream. The state a
failure happens in names its stage, so the table is also the diagnosis.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from cyan.protocol import crypto, keys
from cyan.protocol.errors import ProtocolError, Stage

NONCE_BYTES = 40
DEVICE_BLOCK_BYTES = 256  # RSA-2048 ciphertext of nonce ‖ id ‖ [device key]
SERVER_REPLY_BYTES = 384  # RSA-1024 ciphertext (128) ‖ signature (256)
SESSION_CIPHERTEXT_BYTES = 128
MIN_DEVICE_PLAINTEXT = NONCE_BYTES + keys.DEVICE_ID_BYTES  # the Core's 52 bytes
MAX_DEVICE_PLAINTEXT = 245  # PKCS#1 v1.5 limit for a 2048-bit key

RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class SessionMaterial:
    """The 40 bytes the server picks: AES key, the IV both directions start from, salt."""

    raw: bytes

    @property
    def aes_key(self) -> bytes:
        return self.raw[:16]

    @property
    def iv(self) -> bytes:
        return self.raw[16:32]

    @property
    def first_message_id(self) -> int:
        """Photons seed their CoAP message ids from the salt, little-endian (protocol.md §7)."""
        return int.from_bytes(self.raw[32:34], "little")


class ServerState(Enum):
    START = "start"
    NONCE_SENT = "nonce-sent"
    IDENTIFIED = "identified"
    KEYS_SENT = "keys-sent"


class ServerInput(Enum):
    SEND_NONCE = "send-nonce"
    RECV_DEVICE_BLOCK = "recv-device-block"
    SEND_SESSION_KEY = "send-session-key"


_SERVER_TABLE: dict[tuple[ServerState, ServerInput], ServerState] = {
    (ServerState.START, ServerInput.SEND_NONCE): ServerState.NONCE_SENT,
    (ServerState.NONCE_SENT, ServerInput.RECV_DEVICE_BLOCK): ServerState.IDENTIFIED,
    (ServerState.IDENTIFIED, ServerInput.SEND_SESSION_KEY): ServerState.KEYS_SENT,
}

# Where each server state's failures belong, for errors raised outside a transition.
SERVER_STAGE = {
    ServerState.START: Stage.TCP,
    ServerState.NONCE_SENT: Stage.NONCE,
    ServerState.IDENTIFIED: Stage.UNKNOWN_DEVICE,
    ServerState.KEYS_SENT: Stage.HELLO,
}


class ServerHandshake:
    __slots__ = ("_nonce", "_random", "_server_key", "device_id", "offered_key_der", "state")

    def __init__(self, server_key: crypto.RsaPrivateKey, random_bytes: RandomBytes) -> None:
        self.state = ServerState.START
        self._server_key = server_key
        self._random = random_bytes
        self._nonce = b""
        self.device_id: str | None = None
        self.offered_key_der: bytes | None = None

    def _move(self, event: ServerInput) -> None:
        next_state = _SERVER_TABLE.get((self.state, event))
        if next_state is None:
            raise ProtocolError(
                SERVER_STAGE[self.state],
                f"handshake step {event.value} is out of order in state {self.state.value}",
            )
        self.state = next_state

    def nonce(self) -> bytes:
        self._move(ServerInput.SEND_NONCE)
        self._nonce = self._random(NONCE_BYTES)
        return self._nonce

    def read_device_block(self, block: bytes) -> str:
        """Decrypt the 256-byte block; returns the device id."""
        self._move(ServerInput.RECV_DEVICE_BLOCK)
        plaintext = crypto.rsa_decrypt(self._server_key, block)
        # With implicit rejection a wrong server key yields junk of random length, so length
        # and nonce checks are what detect it (protocol.md §1.4).
        if plaintext is None or not MIN_DEVICE_PLAINTEXT <= len(plaintext) <= MAX_DEVICE_PLAINTEXT:
            raise ProtocolError(
                Stage.HANDSHAKE_DECRYPT,
                "the device's handshake block does not decrypt with this server's key",
            )
        if not hmac.compare_digest(plaintext[:NONCE_BYTES], self._nonce):
            raise ProtocolError(
                Stage.HANDSHAKE_DECRYPT,
                "the device's handshake block does not carry our nonce "
                "(it was encrypted for another server's key)",
            )
        self.device_id = plaintext[NONCE_BYTES:MIN_DEVICE_PLAINTEXT].hex()
        self.offered_key_der = plaintext[MIN_DEVICE_PLAINTEXT:] or None
        return self.device_id

    def session_key_reply(
        self, registered_key: crypto.RsaPublicKey | None
    ) -> tuple[bytes, SessionMaterial]:
        """Check the device's key against the registered one; build the 384-byte reply."""
        device_id = self.device_id
        if registered_key is None:
            raise ProtocolError(
                Stage.UNKNOWN_DEVICE,
                f"device {device_id} has no public key registered here",
                device_id=device_id,
            )
        if self.offered_key_der is not None:
            try:
                offered = crypto.load_public_key(self.offered_key_der)
            except ValueError as exc:
                raise ProtocolError(
                    Stage.KEY_MISMATCH,
                    f"device {device_id} sent a public key that does not parse",
                    device_id=device_id,
                ) from exc
            if not crypto.same_public_key(offered, registered_key):
                raise ProtocolError(
                    Stage.KEY_MISMATCH,
                    f"device {device_id} holds a key ({crypto.fingerprint(offered)[:16]}) that "
                    f"differs from the registered one ({crypto.fingerprint(registered_key)[:16]})",
                    device_id=device_id,
                )
        self._move(ServerInput.SEND_SESSION_KEY)
        material = SessionMaterial(self._random(crypto.SESSION_MATERIAL_BYTES))
        ciphertext = crypto.rsa_encrypt(registered_key, material.raw)
        # Done with what the device sent; a gateway keeps this object per connection.
        self._nonce = b""
        self.offered_key_der = None
        signature = crypto.sign_hmac(
            self._server_key, crypto.handshake_hmac(material.raw, ciphertext)
        )
        return ciphertext + signature, material


class DeviceState(Enum):
    START = "start"
    ID_SENT = "id-sent"
    KEYED = "keyed"


class DeviceInput(Enum):
    RECV_NONCE = "recv-nonce"
    RECV_SESSION_KEY = "recv-session-key"


_DEVICE_TABLE: dict[tuple[DeviceState, DeviceInput], DeviceState] = {
    (DeviceState.START, DeviceInput.RECV_NONCE): DeviceState.ID_SENT,
    (DeviceState.ID_SENT, DeviceInput.RECV_SESSION_KEY): DeviceState.KEYED,
}

DEVICE_STAGE = {
    DeviceState.START: Stage.NONCE,
    DeviceState.ID_SENT: Stage.HANDSHAKE_DECRYPT,
    DeviceState.KEYED: Stage.HELLO,
}


class DeviceHandshake:
    __slots__ = ("_device_id", "_device_key", "_send_public_key", "_server_key", "state")

    def __init__(
        self,
        device_id: str,
        device_key: crypto.RsaPrivateKey,
        server_public_key: crypto.RsaPublicKey,
        *,
        send_public_key: bool = True,
    ) -> None:
        self.state = DeviceState.START
        self._device_id = bytes.fromhex(keys.normalize_device_id(device_id))
        self._device_key = device_key
        self._server_key = server_public_key
        # Photons append their public key; the Core does not (protocol.md §2 step 3).
        self._send_public_key = send_public_key

    def _move(self, event: DeviceInput) -> None:
        next_state = _DEVICE_TABLE.get((self.state, event))
        if next_state is None:
            raise ProtocolError(
                DEVICE_STAGE[self.state],
                f"handshake step {event.value} is out of order in state {self.state.value}",
            )
        self.state = next_state

    def identify(self, nonce: bytes) -> bytes:
        """Answer the nonce with the 256-byte block."""
        self._move(DeviceInput.RECV_NONCE)
        plaintext = nonce + self._device_id
        if self._send_public_key:
            plaintext += keys.device_public_key_der(self._device_key.public_key())
        return crypto.rsa_encrypt(self._server_key, plaintext)

    def read_session_key(self, reply: bytes) -> SessionMaterial:
        self._move(DeviceInput.RECV_SESSION_KEY)
        ciphertext = reply[:SESSION_CIPHERTEXT_BYTES]
        # The signature is checked first: decrypting with a wrong device key yields random
        # bytes (implicit rejection) that are 40 bytes long about once in a hundred tries, so
        # only a valid signature lets a bad session key be blamed on the device key.
        signed = crypto.recover_signed_digest(self._server_key, reply[SESSION_CIPHERTEXT_BYTES:])
        if signed is None:
            # A Photon blinks magenta here (AUTHENTICATION_ERROR, protocol.md §5.2).
            raise ProtocolError(
                Stage.SERVER_KEY,
                "the server's signature does not verify with the server key this device holds",
            )
        raw = crypto.rsa_decrypt(self._device_key, ciphertext)
        if (
            raw is None
            or len(raw) != crypto.SESSION_MATERIAL_BYTES
            or not hmac.compare_digest(crypto.handshake_hmac(raw, ciphertext), signed)
        ):
            # A Photon blinks orange here (DECRYPTION_ERROR).
            raise ProtocolError(
                Stage.HANDSHAKE_DECRYPT,
                "the server's session key does not decrypt with this device's key "
                "(the server has another public key registered for this device)",
            )
        return SessionMaterial(raw)
