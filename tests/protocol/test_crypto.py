"""cyan.protocol.crypto against independent computations (protocol.md §1.4, §2, §3).

AES is checked against ``cryptography``'s raw CBC with padding and IV chaining written
out by hand; RSA signatures and padding against Python integer arithmetic; the
handshake HMAC against RFC 2104 spelled out with hashlib.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import crypto
from cyan.protocol.errors import ProtocolError, Stage
from tests import vectors
from tests.protocol.wire import (
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    hmac_sha1,
    open_signature,
    pkcs7,
    raw_type1_signature,
)

KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
IV = bytes.fromhex("f0e1d2c3b4a5968778695a4b3c2d1e0f")
# 40 session bytes as in protocol.md §2 step 4: AES key, IV, salt.
SESSION = KEY + IV + bytes.fromhex("3412a5a5a5a5a5a5")
HMAC20 = bytes.fromhex("00112233445566778899aabbccddeeff01234567")


def reference_seal(key: bytes, iv: bytes, messages: list[bytes]) -> list[bytes]:
    """protocol.md §3.3 'send' by hand: fresh CBC per message, next IV = first block."""
    out = []
    for message in messages:
        ciphertext = aes_cbc_encrypt(key, iv, pkcs7(message))
        out.append(ciphertext)
        iv = ciphertext[:16]
    return out


# -- SessionCipher: padding ------------------------------------------------------------------


@pytest.mark.parametrize("length", range(34))
def test_seal_pads_with_pkcs7_one_to_sixteen_bytes(length: int) -> None:
    plaintext = bytes(range(length))
    ciphertext = crypto.SessionCipher(KEY, IV).seal(plaintext)

    pad = 16 - length % 16  # 16, a whole block, when the message is aligned
    assert len(ciphertext) == length + pad
    decrypted = aes_cbc_decrypt(KEY, IV, ciphertext)
    assert decrypted == plaintext + bytes([pad]) * pad


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 32, 100])
def test_open_strips_padding_of_an_independent_encryption(length: int) -> None:
    plaintext = b"\xa5" * length
    ciphertext = aes_cbc_encrypt(KEY, IV, pkcs7(plaintext))

    assert crypto.SessionCipher(KEY, IV).open(ciphertext) == plaintext


def test_aligned_message_gets_a_whole_block_of_sixteens() -> None:
    ciphertext = crypto.SessionCipher(KEY, IV).seal(b"A" * 16)

    assert len(ciphertext) == 32
    assert aes_cbc_decrypt(KEY, IV, ciphertext)[16:] == b"\x10" * 16


# -- SessionCipher: IV evolution -------------------------------------------------------------

MESSAGES = [b"first message, longer than one block", b"2", b"", b"x" * 16, b"y" * 40]


def test_seal_chains_the_iv_through_the_first_ciphertext_block() -> None:
    cipher = crypto.SessionCipher(KEY, IV)

    sealed = [cipher.seal(m) for m in MESSAGES]

    assert sealed == reference_seal(KEY, IV, MESSAGES)


def test_iv_is_not_the_last_block_as_continuous_cbc_would_use() -> None:
    cipher = crypto.SessionCipher(KEY, IV)
    first = cipher.seal(MESSAGES[0])  # 3 blocks: first and last differ
    second = cipher.seal(b"next")

    assert first[:16] != first[-16:]
    assert second == aes_cbc_encrypt(KEY, first[:16], pkcs7(b"next"))
    assert second != aes_cbc_encrypt(KEY, first[-16:], pkcs7(b"next"))


def test_open_follows_an_independent_sender_message_after_message() -> None:
    cipher = crypto.SessionCipher(KEY, IV)

    opened = [cipher.open(c) for c in reference_seal(KEY, IV, MESSAGES)]

    assert opened == MESSAGES


def test_each_direction_keeps_its_own_iv() -> None:
    # Both directions start from the same IV (protocol.md §3.3) and then evolve apart.
    server_send, device_receive = crypto.SessionCipher(KEY, IV), crypto.SessionCipher(KEY, IV)
    device_send, server_receive = crypto.SessionCipher(KEY, IV), crypto.SessionCipher(KEY, IV)
    down = [b"describe?", b"call f", b"ping"]
    up = [b"hello from the device", b"ack", b"event", b"more"]

    down_sealed, up_sealed = [], []
    for i in range(max(len(down), len(up))):  # interleaved, as on a real connection
        if i < len(down):
            down_sealed.append(server_send.seal(down[i]))
            assert device_receive.open(down_sealed[-1]) == down[i]
        if i < len(up):
            up_sealed.append(device_send.seal(up[i]))
            assert server_receive.open(up_sealed[-1]) == up[i]

    assert down_sealed == reference_seal(KEY, IV, down)
    assert up_sealed == reference_seal(KEY, IV, up)


@settings(max_examples=50)
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=8))
def test_seal_then_open_round_trips_any_messages(messages: list[bytes]) -> None:
    sender, receiver = crypto.SessionCipher(KEY, IV), crypto.SessionCipher(KEY, IV)

    sealed = [sender.seal(m) for m in messages]

    assert sealed == reference_seal(KEY, IV, messages)
    assert [receiver.open(c) for c in sealed] == messages


# -- SessionCipher: errors -------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 15, 17, 31, 33])
def test_open_rejects_ciphertext_that_is_not_whole_blocks(length: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        crypto.SessionCipher(KEY, IV).open(b"\x00" * length)

    assert caught.value.stage is Stage.SESSION


@pytest.mark.parametrize(
    "padded",
    [
        b"hello" + b"\x00" * 11,  # pad byte 0
        b"hello" + b"\x11" * 11,  # pad byte 17 > 16
        b"hello" + b"\xff" * 11,  # pad byte 255
        b"hello world!\x02\x02\x01\x04",  # claims 4 bytes of 4, finds 02 02 01 04
        b"0123456789abcdef" + b"\x10" * 15 + b"\x11",  # a block of pad, wrong last byte
        b"0123456789abcdef" + b"\x0f" * 15 + b"\x10",  # 16 claimed, only 15 of them
    ],
)
def test_open_rejects_bad_padding(padded: bytes) -> None:
    assert len(padded) % 16 == 0
    ciphertext = aes_cbc_encrypt(KEY, IV, padded)

    with pytest.raises(ProtocolError) as caught:
        crypto.SessionCipher(KEY, IV).open(ciphertext)

    assert caught.value.stage is Stage.SESSION


def test_open_with_the_wrong_iv_fails_as_a_session_error() -> None:
    # A lost frame puts the IVs out of step; the next frame must not decode silently.
    ciphertext = aes_cbc_encrypt(KEY, IV, pkcs7(b"x" * 15))  # one block, pad = 01
    wrong_iv = bytes(a ^ b for a, b in zip(IV, b"\x00" * 15 + b"\x02", strict=True))

    with pytest.raises(ProtocolError) as caught:  # last byte decrypts to 03: bad pad
        crypto.SessionCipher(KEY, wrong_iv).open(ciphertext)

    assert caught.value.stage is Stage.SESSION


@pytest.mark.parametrize(("key", "iv"), [(KEY[:15], IV), (KEY, IV[:8]), (KEY + KEY, IV)])
def test_session_cipher_needs_sixteen_byte_key_and_iv(key: bytes, iv: bytes) -> None:
    with pytest.raises(ValueError, match="16-byte"):
        crypto.SessionCipher(key, iv)


# -- RSA: signature over the raw HMAC --------------------------------------------------------


def test_sign_hmac_is_the_raw_type1_signature_without_digest_info() -> None:
    key = vectors.server_key()

    signature = crypto.sign_hmac(key, HMAC20)

    assert len(signature) == 256
    assert signature == raw_type1_signature(key, HMAC20)


def test_sign_hmac_opens_to_ff_padding_then_the_bare_hmac() -> None:
    key = vectors.server_key()

    opened = open_signature(key.public_key(), crypto.sign_hmac(key, HMAC20))

    assert opened == b"\x00\x01" + b"\xff" * 233 + b"\x00" + HMAC20


def test_signature_matches_accepts_a_hand_made_signature() -> None:
    key = vectors.server_key()

    assert crypto.signature_matches(key.public_key(), raw_type1_signature(key, HMAC20), HMAC20)


def test_signature_matches_rejects_other_digest_key_or_bytes() -> None:
    key, other = vectors.server_key(), vectors.other_server_key()
    good = raw_type1_signature(key, HMAC20)
    flipped = bytes([good[0] ^ 0x01]) + good[1:]

    assert not crypto.signature_matches(key.public_key(), good, HMAC20[:-1] + b"\x00")
    assert not crypto.signature_matches(key.public_key(), flipped, HMAC20)
    assert not crypto.signature_matches(
        key.public_key(), raw_type1_signature(other, HMAC20), HMAC20
    )
    assert not crypto.signature_matches(other.public_key(), good, HMAC20)
    assert not crypto.signature_matches(key.public_key(), good[:128], HMAC20)
    assert not crypto.signature_matches(key.public_key(), b"", HMAC20)
    assert not crypto.signature_matches(key.public_key(), b"\xff" * 256, HMAC20)


def test_signature_matches_rejects_a_digest_info_signature() -> None:
    # What Prehashed/SHA-1 signing would produce: DigestInfo ‖ hash, the wrong form here.
    key = vectors.server_key()
    data = b"session ciphertext"
    with_digest_info = key.sign(data, padding.PKCS1v15(), hashes.SHA1())

    assert not crypto.signature_matches(
        key.public_key(), with_digest_info, hashlib.sha1(data).digest()
    )


# -- RSA: encryption -------------------------------------------------------------------------


def test_rsa_encrypt_is_pkcs1_type2_readable_by_hand() -> None:
    key = vectors.device_key(0)
    numbers = key.private_numbers()

    ciphertext = crypto.rsa_encrypt(key.public_key(), SESSION)

    assert len(ciphertext) == 128
    encoded = pow(int.from_bytes(ciphertext, "big"), numbers.d, numbers.public_numbers.n)
    block = encoded.to_bytes(128, "big")
    separator = block.index(b"\x00", 2)
    assert block[:2] == b"\x00\x02"
    assert separator >= 10  # at least 8 bytes of non-zero random padding
    assert block[separator + 1 :] == SESSION


def test_rsa_decrypt_reads_an_independent_encryption() -> None:
    key = vectors.server_key()
    plaintext = b"n" * 40 + b"i" * 12 + b"k" * 162
    ciphertext = key.public_key().encrypt(plaintext, padding.PKCS1v15())

    assert crypto.rsa_decrypt(key, ciphertext) == plaintext


def test_rsa_decrypt_with_the_wrong_key_never_raises_and_never_finds_the_plaintext() -> None:
    right, wrong = vectors.device_key(1), vectors.device_key(0)
    for i in range(20):
        plaintext = bytes([i]) * 40
        ciphertext = right.public_key().encrypt(plaintext, padding.PKCS1v15())

        result = crypto.rsa_decrypt(wrong, ciphertext)

        assert result is None or result != plaintext


@pytest.mark.parametrize("ciphertext", [b"", b"\x01" * 127, b"\x01" * 129, b"\xff" * 128])
def test_rsa_decrypt_of_malformed_ciphertext_returns_none_or_junk(ciphertext: bytes) -> None:
    result = crypto.rsa_decrypt(vectors.device_key(0), ciphertext)

    assert result is None or isinstance(result, bytes)


# -- HMAC ------------------------------------------------------------------------------------


def test_handshake_hmac_is_hmac_sha1_keyed_with_all_forty_bytes() -> None:
    ciphertext = bytes(range(128))

    digest = crypto.handshake_hmac(SESSION, ciphertext)

    assert len(digest) == 20
    assert digest == hmac_sha1(SESSION, ciphertext)
    assert digest != hmac_sha1(SESSION[:32], ciphertext)  # the salt is part of the key
    assert digest == hmac.new(SESSION, ciphertext, "sha1").digest()


# -- key loading -----------------------------------------------------------------------------


def _pkcs8_der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pkcs8_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_private_key_der_is_pkcs1_with_the_modulus_at_offset_11() -> None:
    # The firmware walks the DER at fixed offsets: modulus from byte 11 (protocol.md §1.2).
    key = vectors.device_key(0)
    der = crypto.private_key_der(key)

    assert der[:2] == b"\x30\x82"
    assert der[4:11] == bytes.fromhex("02010002818100")
    assert der[11:139] == key.public_key().public_numbers().n.to_bytes(128, "big")
    assert len(der) <= 612


def test_private_key_pem_is_the_rsa_private_key_armor() -> None:
    pem = crypto.private_key_pem(vectors.device_key(0))

    assert pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert pem == vectors.read("device_key_0.pem")


@pytest.mark.parametrize(
    "form",
    ["pkcs1-pem", "pkcs8-pem", "pkcs1-der", "pkcs8-der", "pem-with-whitespace", "der-612"],
)
def test_load_private_key_accepts_every_form(form: str) -> None:
    key = vectors.device_key(0)
    pkcs1_der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    data = {
        "pkcs1-pem": vectors.read("device_key_0.pem"),
        "pkcs8-pem": _pkcs8_pem(key),
        "pkcs1-der": pkcs1_der,
        "pkcs8-der": _pkcs8_der(key),
        "pem-with-whitespace": b"\n  " + vectors.read("device_key_0.pem"),
        # A device key slot is 612 bytes; what is read back carries 0xFF after the DER.
        "der-612": pkcs1_der.ljust(612, b"\xff"),
    }[form]

    loaded = crypto.load_private_key(data)

    assert loaded.private_numbers() == key.private_numbers()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30",
        b"not a key at all",
        b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        b"\x30\x82\x02\x5c" + b"\x00" * 20,
        b"\xff" * 612,
    ],
)
def test_load_private_key_rejects_junk_with_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not an RSA private key"):
        crypto.load_private_key(data)


def test_load_private_key_rejects_a_public_or_non_rsa_key() -> None:
    public_pem = crypto.public_key_pem(vectors.device_key(0).public_key())
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )

    with pytest.raises(ValueError, match="not an RSA private key"):
        crypto.load_private_key(public_pem)
    with pytest.raises(ValueError, match="not an RSA private key"):
        crypto.load_private_key(ec_pem)


@pytest.mark.parametrize(
    "form",
    [
        "spki-pem",
        "spki-der",
        "pkcs1-pem",
        "pkcs1-der",
        "private-pem",
        "private-pkcs8-pem",
        "private-der",
        "spki-der-ff-padded",
    ],
)
def test_load_public_key_accepts_every_form(form: str) -> None:
    key = vectors.server_key()
    public = key.public_key()
    spki_der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    data = {
        "spki-pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "spki-der": spki_der,
        "pkcs1-pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "pkcs1-der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        ),
        "private-pem": vectors.read("server_key.pem"),
        "private-pkcs8-pem": _pkcs8_pem(key),
        "private-der": crypto.private_key_der(key),
        # The first 384 bytes of a key image: DER then 0xFF fill (rest-api.md §8.2).
        "spki-der-ff-padded": spki_der.ljust(384, b"\xff"),
    }[form]

    loaded = crypto.load_public_key(data)

    assert loaded.public_numbers() == public.public_numbers()


@pytest.mark.parametrize("data", [b"", b"junk", b"\xff" * 384, b"-----BEGIN PUBLIC KEY-----\n"])
def test_load_public_key_rejects_junk_with_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="not an RSA"):
        crypto.load_public_key(data)


def test_public_key_der_sizes_and_fingerprint() -> None:
    device, server = vectors.device_key(0).public_key(), vectors.server_key().public_key()

    assert len(crypto.public_key_der(device)) == 162
    assert len(crypto.public_key_der(server)) == 294
    assert crypto.fingerprint(server) == hashlib.sha256(crypto.public_key_der(server)).hexdigest()
    assert crypto.key_bits(device) == 1024
    assert crypto.key_bits(vectors.server_key()) == 2048


def test_same_public_key_compares_numbers_not_objects() -> None:
    a = vectors.device_key(0).public_key()
    reloaded = crypto.load_public_key(crypto.public_key_pem(a))

    assert crypto.same_public_key(a, reloaded)
    assert not crypto.same_public_key(a, vectors.device_key(1).public_key())


def test_generated_rsa_key_uses_exponent_65537() -> None:
    key = crypto.generate_rsa_key(1024)

    assert key.key_size == 1024
    assert key.public_key().public_numbers().e == 65537
