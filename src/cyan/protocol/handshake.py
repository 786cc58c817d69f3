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
    # The device's block is in; the server key's private operation on it is under way.
    OPENING = "opening"
    IDENTIFIED = "identified"
    # The session key is encrypted; its signature is under way.
    SIGNING = "signing"
    KEYS_SENT = "keys-sent"


class ServerInput(Enum):
    SEND_NONCE = "send-nonce"
    RECV_DEVICE_BLOCK = "recv-device-block"
    OPEN_DEVICE_BLOCK = "open-device-block"
    MAKE_SESSION_KEY = "make-session-key"
    SEND_SESSION_KEY = "send-session-key"


_SERVER_TABLE: dict[tuple[ServerState, ServerInput], ServerState] = {
    (ServerState.START, ServerInput.SEND_NONCE): ServerState.NONCE_SENT,
    (ServerState.NONCE_SENT, ServerInput.RECV_DEVICE_BLOCK): ServerState.OPENING,
    (ServerState.OPENING, ServerInput.OPEN_DEVICE_BLOCK): ServerState.IDENTIFIED,
    (ServerState.IDENTIFIED, ServerInput.MAKE_SESSION_KEY): ServerState.SIGNING,
    (ServerState.SIGNING, ServerInput.SEND_SESSION_KEY): ServerState.KEYS_SENT,
}

# Where each server state's failures belong, for errors raised outside a transition. A
# device that leaves while the server works on its RSA gave up waiting: the handshake
# stalled on the server's side.
SERVER_STAGE = {
    ServerState.START: Stage.TCP,
    ServerState.NONCE_SENT: Stage.NONCE,
    ServerState.OPENING: Stage.TIMEOUT,
    ServerState.IDENTIFIED: Stage.UNKNOWN_DEVICE,
    ServerState.SIGNING: Stage.TIMEOUT,
    ServerState.KEYS_SENT: Stage.HELLO,
}


@dataclass(frozen=True, slots=True)
class UnsignedReply:
    """The session key, encrypted to the device, before the server signs it."""

    ciphertext: bytes
    material: SessionMaterial
    digest: bytes  # what the server key signs: HMAC-SHA1 of the ciphertext


class ServerHandshake:
    """The server's side. Its two private-key operations (opening the device's block,
    signing the session key) are separate steps, so that a caller may run them elsewhere
    (worker processes) and hand the results back; the ``read_device_block`` and
    ``session_key_reply`` shortcuts run them here with ``server_key``."""

    __slots__ = (
        "_nonce",
        "_random",
        "_server_key",
        "_unsigned",
        "device_id",
        "offered_key_der",
        "state",
    )

    def __init__(self, server_key: crypto.RsaPrivateKey | None, random_bytes: RandomBytes) -> None:
        self.state = ServerState.START
        self._server_key = server_key
        self._random = random_bytes
        self._nonce = b""
        self._unsigned: UnsignedReply | None = None
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

    @property
    def holds_key(self) -> bool:
        """It does its RSA itself; without the key its caller hands the results in."""
        return self._server_key is not None

    def _private_key(self) -> crypto.RsaPrivateKey:
        if self._server_key is None:
            raise ValueError("this handshake holds no server key: hand in the RSA results")
        return self._server_key

    def decrypt_device_block(self, block: bytes) -> bytes | None:
        """The server key's decryption of the block, here (None: the padding check failed)."""
        return crypto.rsa_decrypt(self._private_key(), block)

    def nonce(self) -> bytes:
        self._move(ServerInput.SEND_NONCE)
        self._nonce = self._random(NONCE_BYTES)
        return self._nonce

    def receive_device_block(self) -> None:
        """The 256 bytes are in; what decrypting them gives goes to ``open_device_block``."""
        self._move(ServerInput.RECV_DEVICE_BLOCK)

    def read_device_block(self, block: bytes) -> str:
        """Decrypt the 256-byte block here; returns the device id."""
        self.receive_device_block()
        return self.open_device_block(self.decrypt_device_block(block))

    def open_device_block(self, plaintext: bytes | None) -> str:
        """Check the decrypted block (None: the padding check failed); returns the device id."""
        self._move(ServerInput.OPEN_DEVICE_BLOCK)
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
        """Check the device's key, build the 384-byte reply and sign it here."""
        unsigned = self.make_session_key(registered_key)
        digest = unsigned.digest
        return self.signed_reply(crypto.sign_hmac(self._private_key(), digest))

    def make_session_key(self, registered_key: crypto.RsaPublicKey | None) -> UnsignedReply:
        """Check the device's key against the registered one; pick and encrypt the session
        key. Its ``digest`` is to be signed with the server key for ``signed_reply``."""
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
        self._move(ServerInput.MAKE_SESSION_KEY)
        material = SessionMaterial(self._random(crypto.SESSION_MATERIAL_BYTES))
        ciphertext = crypto.rsa_encrypt(registered_key, material.raw)
        # Done with what the device sent; a gateway keeps this object per connection.
        self._nonce = b""
        self.offered_key_der = None
        self._unsigned = UnsignedReply(
            ciphertext, material, crypto.handshake_hmac(material.raw, ciphertext)
        )
        return self._unsigned

    def signed_reply(self, signature: bytes) -> tuple[bytes, SessionMaterial]:
        """The 384 bytes to send, with the signature of ``make_session_key``'s digest."""
        self._move(ServerInput.SEND_SESSION_KEY)
        unsigned, self._unsigned = self._unsigned, None
        assert unsigned is not None  # the state table allows this step only after it
        if len(signature) != SERVER_REPLY_BYTES - SESSION_CIPHERTEXT_BYTES:
            raise ValueError(f"a {len(signature)}-byte signature; the server key signs 256")
        return unsigned.ciphertext + signature, unsigned.material


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
