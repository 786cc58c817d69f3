"""Key material of the Spark protocol: device ids, device and server keys, key images.

Byte layouts from protocol.md §1 and rest-api.md §8.2.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from enum import IntEnum

from cyan.protocol import crypto

DEVICE_ID_BYTES = 12
DEVICE_KEY_BITS = 1024
SERVER_KEY_BITS = 2048
DEVICE_PUBLIC_KEY_DER_BYTES = 162  # device_keys.h MAX_DEVICE_PUBLIC_KEY_LENGTH
SERVER_PUBLIC_KEY_DER_BYTES = 294  # ota_flash_hal.h EXTERNAL_FLASH_SERVER_PUBLIC_KEY_LENGTH
DEVICE_KEY_SLOT_BYTES = 612  # the device private key slot a Photon reads

SERVER_KEY_IMAGE_BYTES = 512  # what particle-cli writes at DCT offset 2082
SERVER_ADDRESS_OFFSET = 384  # ota_flash_hal.cpp SERVER_ADDRESS_OFFSET (RSA/TCP)
SERVER_PORT_OFFSET = SERVER_ADDRESS_OFFSET + 66
MAX_DOMAIN_BYTES = 63
DEFAULT_SERVER_PORT = 5683


class AddressType(IntEnum):
    IP = 0
    DOMAIN = 1
    UNSET = 0xFF


def normalize_device_id(text: str) -> str:
    """24 lower-case hex characters, or ValueError."""
    value = text.strip().lower()
    if len(value) != 2 * DEVICE_ID_BYTES or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"{text!r} is not a device id (24 hex characters)")
    return value


def new_device_id() -> str:
    return secrets.token_hex(DEVICE_ID_BYTES)


def generate_device_key() -> crypto.RsaPrivateKey:
    key = crypto.generate_rsa_key(DEVICE_KEY_BITS)
    # Firmware walks the DER at fixed offsets and needs the modulus top bit set
    # (protocol.md §1.2); a 1024-bit key from OpenSSL always has it, this guards the layout.
    der = crypto.public_key_der(key.public_key())
    assert len(der) == DEVICE_PUBLIC_KEY_DER_BYTES, len(der)
    return key


def generate_server_key() -> crypto.RsaPrivateKey:
    key = crypto.generate_rsa_key(SERVER_KEY_BITS)
    # Firmware reads the modulus at offset 33 of a 294-byte DER (protocol.md §1.3).
    assert len(crypto.public_key_der(key.public_key())) == SERVER_PUBLIC_KEY_DER_BYTES
    return key


def device_public_key_der(key: crypto.RsaPublicKey) -> bytes:
    """The 162-byte SubjectPublicKeyInfo a Photon appends to its handshake (protocol.md §1.2)."""
    if crypto.key_bits(key) != DEVICE_KEY_BITS:
        raise ValueError(f"a device key is RSA-{DEVICE_KEY_BITS}, not RSA-{crypto.key_bits(key)}")
    return crypto.public_key_der(key)


@dataclass(frozen=True, slots=True)
class ServerAddress:
    """Where a device's key image tells it to connect; None host means the vendor default."""

    host: str | None
    port: int | None

    @property
    def is_ip(self) -> bool:
        if self.host is None:
            return False
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError:
            return False
        return True

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_SERVER_PORT

    def __str__(self) -> str:
        host = self.host or "(unset: the device's built-in cloud host)"
        return f"{host}:{self.effective_port}"


@dataclass(frozen=True, slots=True)
class ServerKeyImage:
    public_key: crypto.RsaPublicKey
    address: ServerAddress


def build_server_key_image(
    public_key: crypto.RsaPublicKey, host: str | None = None, port: int | None = None
) -> bytes:
    """The 512-byte server key image: DER key, 0xFF fill, address block at 384, port at 450.

    Layout as particle-cli 3.51 writes it (rest-api.md §8.2): an IPv4 host is type 0
    with 4 bytes, anything else is a domain (type 1) without a NUL, and the port is
    only written when given (0xFFFF means the default 5683 to the device).
    """
    der = crypto.public_key_der(public_key)
    if len(der) > SERVER_ADDRESS_OFFSET:
        raise ValueError(f"server key DER is {len(der)} bytes; it must fit in 384 (RSA-2048)")
    image = bytearray(b"\xff" * SERVER_KEY_IMAGE_BYTES)
    image[: len(der)] = der
    if host is not None:
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            # Printable without space, as the firmware's parser requires (parse_server_address.h).
            if not (0 < len(host) <= MAX_DOMAIN_BYTES and all(0x20 < ord(c) < 0x7F for c in host)):
                raise ValueError(
                    f"server host {host!r} must be an IPv4 address or a printable ASCII name "
                    f"of at most {MAX_DOMAIN_BYTES} characters"
                ) from None
            name = host.encode("ascii")
            image[SERVER_ADDRESS_OFFSET] = AddressType.DOMAIN
            image[SERVER_ADDRESS_OFFSET + 1] = len(name)
            image[SERVER_ADDRESS_OFFSET + 2 : SERVER_ADDRESS_OFFSET + 2 + len(name)] = name
        else:
            if ip.packed in (b"\x00" * 4, b"\xff" * 4):
                # The firmware reads these as "unset" and would fall back to Particle's cloud.
                raise ValueError(f"server host {host} is not a usable address")
            image[SERVER_ADDRESS_OFFSET] = AddressType.IP
            image[SERVER_ADDRESS_OFFSET + 1] = 4
            image[SERVER_ADDRESS_OFFSET + 2 : SERVER_ADDRESS_OFFSET + 6] = ip.packed
    if port is not None:
        if not 0 < port < 0xFFFF:
            raise ValueError(f"port {port} is out of range 1..65534")
        image[SERVER_PORT_OFFSET : SERVER_PORT_OFFSET + 2] = port.to_bytes(2, "big")
    return bytes(image)


def parse_server_address(block: bytes) -> ServerAddress:
    """Decode the address block as the firmware does (parse_server_address.h)."""
    kind, length = block[0], block[1]
    host: str | None = None
    if kind == AddressType.IP and length == 4:
        raw = block[2:6]
        if raw not in (b"\x00" * 4, b"\xff" * 4):  # all-zero or all-FF IP is invalid
            host = str(ipaddress.IPv4Address(raw))
    elif kind == AddressType.DOMAIN and 0 < length <= MAX_DOMAIN_BYTES + 1:
        name = block[2 : 2 + length].rstrip(b"\x00")
        if name and all(0x20 < b < 0x7F for b in name):
            host = name.decode("ascii")
    port = int.from_bytes(block[66:68], "big")
    return ServerAddress(host=host, port=None if port in (0, 0xFFFF) else port)


def parse_server_key_image(image: bytes) -> ServerKeyImage:
    """Read a key image (512 bytes), or a bare server public key (DER or PEM) with no address."""
    if len(image) >= SERVER_PORT_OFFSET + 2 and not image.lstrip().startswith(b"-----"):
        public_key = crypto.load_public_key(image[:SERVER_ADDRESS_OFFSET])
        block = image[SERVER_ADDRESS_OFFSET : SERVER_ADDRESS_OFFSET + 68]
        return ServerKeyImage(public_key, parse_server_address(block))
    return ServerKeyImage(crypto.load_public_key(image), ServerAddress(None, None))
