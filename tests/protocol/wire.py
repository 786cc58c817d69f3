"""Reading a recorded connection from outside, with no help from cyan's crypto code.

RSA goes through ``cryptography`` directly and AES-CBC through its raw ``Cipher``
with padding and IV chaining written out here from protocol.md §3, so a test can
check what really crossed the wire rather than what one end believes it sent.

Also here: helpers to pick messages out of a recorded session, CoAP vectors written by
hand from protocol.md, and the hypothesis strategy for arbitrary CoAP messages.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import strategies as st

from cyan.protocol.coap import CoapMessage, CoapType
from cyan.protocol.errors import ProtocolError
from tests.protocol.pair import Pair, device_key

P = ParamSpec("P")
T = TypeVar("T")

BLOCK = 16
NONCE_BYTES = 40
DEVICE_BLOCK_BYTES = 256
SERVER_REPLY_BYTES = 384
SESSION_CIPHERTEXT_BYTES = 128


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(plaintext) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def pkcs7(data: bytes) -> bytes:
    """PKCS#7 to 16 bytes: 1..16 bytes of value p, a whole block when already aligned."""
    p = BLOCK - len(data) % BLOCK
    return data + bytes([p]) * p


def unpad(plaintext: bytes) -> bytes:
    p = plaintext[-1]
    if not 1 <= p <= BLOCK or plaintext[-p:] != bytes([p]) * p:
        raise AssertionError(f"bad PKCS#7 padding in {plaintext.hex()}")
    return plaintext[:-p]


def seal_frames(plaintexts: list[bytes], key: bytes, iv: bytes) -> tuple[bytes, bytes]:
    """Frames for ``plaintexts`` in one direction; returns the bytes and the next IV."""
    out = bytearray()
    for plaintext in plaintexts:
        ciphertext = aes_cbc_encrypt(key, iv, pkcs7(plaintext))
        iv = ciphertext[:BLOCK]  # the FIRST block, protocol.md §3.3
        out += len(ciphertext).to_bytes(2, "big") + ciphertext
    return bytes(out), iv


def open_frames(stream: bytes, key: bytes, iv: bytes) -> tuple[list[bytes], bytes]:
    """The plaintexts of a whole number of frames; returns them and the next IV."""
    plaintexts: list[bytes] = []
    position = 0
    while position < len(stream):
        length = int.from_bytes(stream[position : position + 2], "big")
        ciphertext = stream[position + 2 : position + 2 + length]
        if len(ciphertext) != length or length % BLOCK:
            raise AssertionError(f"stream ends inside a frame at {position}")
        plaintexts.append(unpad(aes_cbc_decrypt(key, iv, ciphertext)))
        iv = ciphertext[:BLOCK]
        position += 2 + length
    return plaintexts, iv


def hmac_sha1(key: bytes, message: bytes) -> bytes:
    """RFC 2104 spelled out with hashlib (keys up to 64 bytes, as the handshake's 40)."""
    block = key.ljust(64, b"\x00")
    inner = hashlib.sha1(bytes(b ^ 0x36 for b in block) + message).digest()
    return hashlib.sha1(bytes(b ^ 0x5C for b in block) + inner).digest()


def raw_type1_signature(key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    """PKCS#1 v1.5 type 1 over the bare digest, no DigestInfo (protocol.md §1.4), by hand."""
    numbers = key.private_numbers()
    size = key.key_size // 8
    encoded = b"\x00\x01" + b"\xff" * (size - 3 - len(digest)) + b"\x00" + digest
    value = pow(int.from_bytes(encoded, "big"), numbers.d, numbers.public_numbers.n)
    return value.to_bytes(size, "big")


def open_signature(public_key: rsa.RSAPublicKey, signature: bytes) -> bytes:
    """The padded block inside a signature: signature^e mod n."""
    numbers = public_key.public_numbers()
    size = public_key.key_size // 8
    return pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(size, "big")


def raw_type2_encrypt(public_key: rsa.RSAPublicKey, message: bytes, filler: int) -> bytes:
    """PKCS#1 v1.5 type-2 encryption with fixed (non-zero) padding bytes, by hand."""
    numbers = public_key.public_numbers()
    size = public_key.key_size // 8
    padding_bytes = bytes((filler + i) % 255 + 1 for i in range(size - 3 - len(message)))
    encoded = b"\x00\x02" + padding_bytes + b"\x00" + message
    return pow(int.from_bytes(encoded, "big"), numbers.e, numbers.n).to_bytes(size, "big")


def session_material(to_device: bytes, device_private_key: rsa.RSAPrivateKey) -> bytes:
    """The 40 session bytes, from the server's 384-byte reply (after the 40-byte nonce)."""
    ciphertext = to_device[NONCE_BYTES : NONCE_BYTES + SESSION_CIPHERTEXT_BYTES]
    return device_private_key.decrypt(ciphertext, padding.PKCS1v15())


@dataclass(frozen=True)
class Wire:
    """Everything a recorded session carried, decrypted independently."""

    nonce: bytes
    material: bytes
    server_sent: list[CoapMessage]  # server -> device, in order
    device_sent: list[CoapMessage]  # device -> server, in order
    server_plaintexts: list[bytes]
    device_plaintexts: list[bytes]

    @property
    def aes_key(self) -> bytes:
        return self.material[:16]

    @property
    def iv(self) -> bytes:
        return self.material[16:32]


def read_wire(pair: Pair, device_private_key: rsa.RSAPrivateKey | None = None) -> Wire:
    """Decrypt both directions of ``pair`` as an eavesdropper holding the device key."""
    key = device_private_key or device_key(0)
    to_device, to_server = bytes(pair.to_device), bytes(pair.to_server)
    material = session_material(to_device, key)
    aes_key, iv = material[:16], material[16:32]
    server_plain, _ = open_frames(to_device[NONCE_BYTES + SERVER_REPLY_BYTES :], aes_key, iv)
    device_plain, _ = open_frames(to_server[DEVICE_BLOCK_BYTES:], aes_key, iv)
    return Wire(
        nonce=to_device[:NONCE_BYTES],
        material=material,
        server_sent=[CoapMessage.decode(p) for p in server_plain],
        device_sent=[CoapMessage.decode(p) for p in device_plain],
        server_plaintexts=server_plain,
        device_plaintexts=device_plain,
    )


# -- picking messages out of a recorded session ------------------------------------------------

ACK, CON, NON = CoapType.ACK, CoapType.CON, CoapType.NON


def sent_after(wire_messages: list[CoapMessage], count: int) -> list[CoapMessage]:
    return wire_messages[count:]


def request_on_wire(wire: Wire, token: int) -> CoapMessage:
    (request,) = [m for m in wire.server_sent if m.token == bytes([token]) and m.type is CON]
    return request


def acks_of(sent: list[CoapMessage], message_id: int) -> list[CoapMessage]:
    return [m for m in sent if m.type is ACK and m.message_id == message_id]


# -- CoAP vectors written by hand from protocol.md ---------------------------------------------

MID = 0x1A2B
MID_BYTES = b"\x1a\x2b"
TOKEN = b"\x07"


def h(text: str) -> bytes:
    """Hex with spaces allowed, for vectors copied from protocol.md."""
    return bytes.fromhex(text)


def check_both_ways(message: CoapMessage, wire: bytes) -> None:
    assert message.encode() == wire
    assert CoapMessage.decode(wire) == message


# -- hypothesis --------------------------------------------------------------------------------


def outcome(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | ProtocolError:
    """What ``function`` returns, or the ProtocolError it raises; anything else propagates."""
    try:
        return function(*args, **kwargs)
    except ProtocolError as exc:
        return exc


_option_number = st.one_of(
    st.sampled_from([1, 3, 4, 11, 12, 14, 15, 17, 35, 39, 60, 258, 2049]),
    st.integers(0, 65804),
)


@st.composite
def coap_messages(draw: st.DrawFn) -> CoapMessage:
    options = draw(st.lists(st.tuples(_option_number, st.binary(max_size=300)), max_size=6))
    # The encoder sorts by number (stably); a decoded message lists options in wire order.
    options.sort(key=lambda option: option[0])
    return CoapMessage(
        draw(st.sampled_from(CoapType)),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 0xFFFF)),
        draw(st.binary(max_size=8)),
        tuple(options),
        draw(st.binary(max_size=300)),
    )
