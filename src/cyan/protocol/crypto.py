"""Every cryptographic operation of the Spark protocol, with all parameters fixed.

This is the only module that imports ``cryptography.hazmat`` (style.md §5), so
callers cannot pick a wrong padding or mode. Facts from protocol.md §1.4, §2, §3.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import NoDigestInfo
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.padding import PKCS7

from cyan.protocol.errors import ProtocolError, Stage

AES_BLOCK = 16
SESSION_MATERIAL_BYTES = 40  # AES key 16 + IV 16 + salt 8 (protocol.md §2 step 4)
HMAC_BYTES = 20

RsaPrivateKey = rsa.RSAPrivateKey
RsaPublicKey = rsa.RSAPublicKey


def generate_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    # Firmware hard-codes e = 65537 (protocol.md §1.2, §1.3).
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def rsa_encrypt(public_key: rsa.RSAPublicKey, plaintext: bytes) -> bytes:
    """PKCS#1 v1.5 type-2 encryption, used in both handshake directions."""
    return public_key.encrypt(plaintext, padding.PKCS1v15())


def rsa_decrypt(private_key: rsa.RSAPrivateKey, ciphertext: bytes) -> bytes | None:
    """PKCS#1 v1.5 decryption.

    Returns None when the padding check fails outright. Current OpenSSL mostly
    answers a wrong key with random-looking bytes instead (implicit rejection,
    pyca/cryptography #12642), so callers must also check what comes back.
    """
    try:
        return private_key.decrypt(ciphertext, padding.PKCS1v15())
    except ValueError:
        return None


def sign_hmac(private_key: rsa.RSAPrivateKey, digest: bytes) -> bytes:
    """PKCS#1 v1.5 type-1 signature over the raw 20-byte HMAC, with no DigestInfo."""
    return private_key.sign(digest, padding.PKCS1v15(), NoDigestInfo())


def recover_signed_digest(public_key: rsa.RSAPublicKey, signature: bytes) -> bytes | None:
    """What a raw type-1 signature carries, or None when it is not one under this key."""
    try:
        return public_key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return None


def signature_matches(public_key: rsa.RSAPublicKey, signature: bytes, digest: bytes) -> bool:
    recovered = recover_signed_digest(public_key, signature)
    return recovered is not None and _hmac.compare_digest(recovered, digest)


def handshake_hmac(session_material: bytes, ciphertext: bytes) -> bytes:
    """HMAC-SHA1 keyed with all 40 session bytes over the 128-byte ciphertext (§2 step 4)."""
    return _hmac.new(session_material, ciphertext, hashlib.sha1).digest()


def public_key_der(public_key: rsa.RSAPublicKey) -> bytes:
    """SubjectPublicKeyInfo DER: 162 bytes for RSA-1024, 294 for RSA-2048."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def same_public_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    return a.public_numbers() == b.public_numbers()


class SessionCipher:
    """AES-128-CBC for one direction of a session.

    Every message is a fresh CBC operation, and the IV for the next one is the
    FIRST ciphertext block of the message just sent or received (protocol.md §3.3),
    not the last block as continuous CBC would use.
    """

    __slots__ = ("_algorithm", "_iv")

    def __init__(self, key: bytes, iv: bytes) -> None:
        if len(key) != 16 or len(iv) != AES_BLOCK:
            raise ValueError("AES-128 session needs a 16-byte key and a 16-byte IV")
        self._algorithm = algorithms.AES(key)
        self._iv = iv

    def seal(self, plaintext: bytes) -> bytes:
        padder = PKCS7(AES_BLOCK * 8).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = Cipher(self._algorithm, modes.CBC(self._iv)).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        self._iv = ciphertext[:AES_BLOCK]
        return ciphertext

    def open(self, ciphertext: bytes) -> bytes:
        if not ciphertext or len(ciphertext) % AES_BLOCK:
            raise ProtocolError(
                Stage.SESSION, f"encrypted frame of {len(ciphertext)} bytes is not whole AES blocks"
            )
        decryptor = Cipher(self._algorithm, modes.CBC(self._iv)).decryptor()
        plaintext = decryptor.update(ciphertext) + decryptor.finalize()
        self._iv = ciphertext[:AES_BLOCK]
        # A Photon only reads the last byte; we check all of them (as Node's OpenSSL does),
        # because a bad pad almost always means the IVs fell out of step.
        unpadder = PKCS7(AES_BLOCK * 8).unpadder()
        try:
            return unpadder.update(plaintext) + unpadder.finalize()
        except ValueError:
            raise ProtocolError(
                Stage.SESSION, "frame failed to decrypt (bad AES padding)"
            ) from None


# -- key serialisation ----------------------------------------------------------------------


def _der_length(data: bytes) -> int | None:
    """Length of the DER SEQUENCE at the start of ``data``, header included.

    Key slots on a device are fixed-size (612 bytes for the device key), so a key
    read back from one carries padding after the DER; this finds where it ends.
    """
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 3 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


PRIVATE_KEY_FORMS = "expected PEM, or DER as PKCS#1 or PKCS#8 such as a Photon's key image"
PUBLIC_KEY_FORMS = "expected PEM or DER, a public key or a private key"


def load_private_key(data: bytes) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM, or DER (PKCS#1 or PKCS#8), padding after DER allowed."""
    try:
        if data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            end = _der_length(data)
            key = serialization.load_der_private_key(data[:end] if end else data, password=None)
    except (ValueError, TypeError) as exc:
        # The library's own words name ASN.1 tags, which tell a user nothing: say what fits.
        raise ValueError(f"not an RSA private key ({PRIVATE_KEY_FORMS})") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"not an RSA private key ({PRIVATE_KEY_FORMS})")
    return key


def load_public_key(data: bytes) -> rsa.RSAPublicKey:
    """An RSA public key from PEM or DER (SubjectPublicKeyInfo or PKCS#1), or from a private key."""
    stripped = data.lstrip()
    try:
        if stripped.startswith(b"-----"):
            if b"PRIVATE KEY" in stripped[:40]:
                return load_private_key(data).public_key()
            key = serialization.load_pem_public_key(data)
        else:
            end = _der_length(data)
            der = data[:end] if end else data
            try:
                key = serialization.load_der_public_key(der)
            except ValueError:
                return load_private_key(der).public_key()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an RSA public key ({PUBLIC_KEY_FORMS})") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"not an RSA public key ({PUBLIC_KEY_FORMS})")
    return key


def private_key_der(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#1 RSAPrivateKey DER, the form a device keeps in its key slot (protocol.md §1.2)."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def public_key_pem(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_bits(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> int:
    return key.key_size


def fingerprint(public_key: rsa.RSAPublicKey) -> str:
    """SHA-256 of the SubjectPublicKeyInfo DER, hex; names a key in logs and `cyan keys`."""
    return hashlib.sha256(public_key_der(public_key)).hexdigest()
