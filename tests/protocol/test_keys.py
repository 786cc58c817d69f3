"""cyan.protocol.keys: key layouts of protocol.md §1 and the key image of rest-api.md §8.2."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from cyan.protocol import crypto, keys
from tests import vectors

# protocol.md §1.2: the fixed 29-byte header of the 162-byte device SubjectPublicKeyInfo.
DEVICE_SPKI_HEADER = bytes.fromhex(
    "30819f"  # SEQUENCE, 159
    "300d06092a864886f70d0101010500"  # AlgorithmIdentifier rsaEncryption, NULL
    "03818d00"  # BIT STRING, 141, no unused bits
    "308189"  # SEQUENCE, 137 (RSAPublicKey)
    "02818100"  # INTEGER, 129, leading 00
)
# protocol.md §1.3: the 33 bytes before the server modulus.
SERVER_SPKI_PREFIX = bytes.fromhex(
    "30820122300d06092a864886f70d01010105000382010f003082010a0282010100"
)
EXPONENT_65537 = bytes.fromhex("0203010001")


def spki_der(key: crypto.RsaPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def server_public() -> crypto.RsaPublicKey:
    return vectors.server_key().public_key()


def ff(count: int) -> bytes:
    return b"\xff" * count


# -- key layouts -----------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1])
def test_device_public_key_der_is_the_162_byte_firmware_layout(index: int) -> None:
    public = vectors.device_key(index).public_key()

    der = keys.device_public_key_der(public)

    assert len(DEVICE_SPKI_HEADER) == 29
    assert len(der) == 162
    assert der[:29] == DEVICE_SPKI_HEADER
    assert der[29:157] == public.public_numbers().n.to_bytes(128, "big")
    assert der[157:] == EXPONENT_65537


def test_device_public_key_der_refuses_a_key_that_is_not_rsa_1024() -> None:
    with pytest.raises(ValueError, match="RSA-1024"):
        keys.device_public_key_der(server_public())


@pytest.mark.parametrize("name", ["server_key.pem", "server_key_other.pem"])
def test_server_public_key_der_has_the_33_byte_prefix(name: str) -> None:
    public = crypto.load_public_key(vectors.read(name))

    der = crypto.public_key_der(public)

    assert len(SERVER_SPKI_PREFIX) == 33
    assert len(der) == 294
    assert der[:33] == SERVER_SPKI_PREFIX
    assert der[33:289] == public.public_numbers().n.to_bytes(256, "big")
    assert der[289:] == EXPONENT_65537


def test_generated_keys_have_the_firmware_layout() -> None:
    # The only test that generates keys: the generators are part of what ships.
    device, server = keys.generate_device_key(), keys.generate_server_key()

    assert spki_der(device.public_key())[:29] == DEVICE_SPKI_HEADER
    assert spki_der(server.public_key())[:33] == SERVER_SPKI_PREFIX
    assert device.public_key().public_numbers().e == 65537
    assert server.public_key().public_numbers().e == 65537


# -- the 512-byte key image ------------------------------------------------------------------


def test_key_image_for_an_ip_host_and_port_byte_for_byte() -> None:
    # rest-api.md §8.2: --host 192.168.1.10 --port 5683.
    der = spki_der(server_public())
    expected = (
        der  # 0..293
        + ff(384 - 294)
        + bytes.fromhex("0004c0a8010a")  # 384: IPv4, 4 bytes, 192.168.1.10
        + ff(450 - 390)
        + bytes.fromhex("1633")  # 450: port 5683 big-endian
        + ff(512 - 452)
    )

    image = keys.build_server_key_image(server_public(), "192.168.1.10", 5683)

    assert len(expected) == 512
    assert image == expected


def test_key_image_for_a_domain_host_byte_for_byte() -> None:
    # rest-api.md §8.2: --host cloud.example.lan (17 characters), no NUL, no --port.
    der = spki_der(server_public())
    expected = der + ff(90) + b"\x01\x11" + b"cloud.example.lan" + ff(512 - 386 - 17)

    image = keys.build_server_key_image(server_public(), "cloud.example.lan")

    assert image == expected
    assert image[450:452] == b"\xff\xff"  # port not given: 0xFFFF, the default to a device


def test_key_image_without_host_keeps_the_address_block_all_ff() -> None:
    image = keys.build_server_key_image(server_public())

    assert image == spki_der(server_public()) + ff(512 - 294)
    assert image[384:512] == ff(128)


def test_key_image_writes_a_port_even_without_a_host() -> None:
    image = keys.build_server_key_image(server_public(), port=7000)

    assert image[384:450] == ff(66)
    assert image[450:452] == (7000).to_bytes(2, "big")


def test_key_image_accepts_the_longest_domain_that_fits() -> None:
    name = "a" * 59 + ".lan"  # 63 characters

    image = keys.build_server_key_image(server_public(), name, 5683)

    assert image[384:386] == bytes([1, 63])
    assert image[386:449] == name.encode()
    assert image[449] == 0xFF
    assert image[450:452] == b"\x16\x33"


@pytest.mark.parametrize(
    "host",
    [
        "",
        "a" * 70,  # past the 64-byte field: would overwrite the port at 450
        "clöud.example",  # not ASCII
        "bad\x00host",
        "tab\there",
        "line\nbreak",
    ],
)
def test_key_image_rejects_an_invalid_host(host: str) -> None:
    with pytest.raises(ValueError, match="server host"):
        keys.build_server_key_image(server_public(), host, 5683)


@pytest.mark.parametrize("host", ["0.0.0.0", "255.255.255.255"])
def test_key_image_rejects_an_ip_the_device_treats_as_unset(host: str) -> None:
    with pytest.raises(ValueError, match="server host"):
        keys.build_server_key_image(server_public(), host, 5683)


def test_key_image_domain_with_a_space_is_refused_or_reads_back() -> None:
    try:
        image = keys.build_server_key_image(server_public(), "my cloud", 5683)
    except ValueError:
        return
    assert keys.parse_server_key_image(image).address.host == "my cloud"


@pytest.mark.parametrize("port", [0, -1, 0xFFFF, 70000])
def test_key_image_rejects_a_port_out_of_range(port: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        keys.build_server_key_image(server_public(), "192.168.1.10", port)


def test_key_image_refuses_a_key_too_big_for_the_address_offset() -> None:
    # An RSA-3072 DER (422 bytes) would run into the address block at 384.
    big = rsa.RSAPublicNumbers(65537, (1 << 3071) | 0x10001).public_key()

    with pytest.raises(ValueError, match="must fit in 384"):
        keys.build_server_key_image(big, "192.168.1.10")


# -- reading an image back -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "port"),
    [
        ("192.168.1.10", 5683),
        ("10.0.0.1", None),
        ("cloud.example.lan", 5683),
        ("cloud.example.lan", None),
        ("a" * 63, 1),
        (None, None),
        (None, 9999),
        ("device.spark.io", 65534),
    ],
)
def test_parse_server_key_image_round_trips(host: str | None, port: int | None) -> None:
    image = keys.build_server_key_image(server_public(), host, port)

    parsed = keys.parse_server_key_image(image)

    assert parsed.public_key.public_numbers() == server_public().public_numbers()
    assert parsed.address == keys.ServerAddress(host, port)


_DOMAIN = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=63
).filter(lambda s: not re.fullmatch(r"[0-9.]+", s))  # dotted digits may read as an IPv4


@settings(max_examples=60)
@given(
    host=st.one_of(st.none(), _DOMAIN, st.ip_addresses(v=4).map(str)),
    port=st.one_of(st.none(), st.integers(1, 0xFFFE)),
)
def test_any_valid_address_round_trips(host: str | None, port: int | None) -> None:
    if host in ("0.0.0.0", "255.255.255.255"):
        host = "192.168.0.1"  # the two IPs the device refuses are tested above

    parsed = keys.parse_server_key_image(keys.build_server_key_image(server_public(), host, port))

    assert parsed.address == keys.ServerAddress(host, port)


@pytest.mark.parametrize("form", ["der", "pem", "private-pem"])
def test_parse_server_key_image_takes_a_bare_key_without_address(form: str) -> None:
    data = {
        "der": spki_der(server_public()),
        "pem": crypto.public_key_pem(server_public()),
        "private-pem": vectors.read("server_key.pem"),
    }[form]

    parsed = keys.parse_server_key_image(data)

    assert parsed.public_key.public_numbers() == server_public().public_numbers()
    assert parsed.address == keys.ServerAddress(None, None)


def test_parse_reads_particles_own_nul_terminated_domain() -> None:
    # rest-api.md §8.2: Particle's shipped key has device.spark.io followed by 0x00.
    image = bytearray(keys.build_server_key_image(server_public()))
    name = b"device.spark.io\x00"
    image[384:386] = bytes([1, len(name)])
    image[386 : 386 + len(name)] = name

    assert keys.parse_server_key_image(bytes(image)).address == keys.ServerAddress(
        "device.spark.io", None
    )


# -- the address block -----------------------------------------------------------------------


def block(head: bytes, port: bytes = b"\xff\xff") -> bytes:
    """A 128-byte address block: ``head`` from offset 0, 0xFF fill, the port at 66."""
    return head + ff(66 - len(head)) + port + ff(60)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (block(bytes.fromhex("0004c0a8010a"), b"\x16\x33"), ("192.168.1.10", 5683)),
        (block(bytes.fromhex("000400000000"), b"\x16\x33"), (None, 5683)),  # 0.0.0.0
        (block(bytes.fromhex("0004ffffffff")), (None, None)),  # 255.255.255.255
        (block(bytes.fromhex("0004c0a8010a"), b"\x00\x00"), ("192.168.1.10", None)),
        (block(bytes.fromhex("0004c0a8010a"), b"\xff\xff"), ("192.168.1.10", None)),
        (block(bytes.fromhex("0004c0a8010a"), b"\x00\x01"), ("192.168.1.10", 1)),
        (block(b"\x01\x03abc"), ("abc", None)),
        (block(b"\x01\x00"), (None, None)),  # empty domain
        (block(b"\x01\x04a b!"), (None, None)),  # a space is not a host name character
        (block(b"\x01\x03a\x01c"), (None, None)),  # control character
        (block(b"\xff\xff"), (None, None)),  # unset
        (block(b"\x02\x04\x01\x02\x03\x04"), (None, None)),  # unknown type
        (block(b"\x00\x06\x01\x02\x03\x04\x05\x06"), (None, None)),  # IPv4 of length 6
    ],
)
def test_parse_server_address(data: bytes, expected: tuple[str | None, int | None]) -> None:
    assert len(data) == 128

    address = keys.parse_server_address(data)

    assert (address.host, address.port) == expected


def test_parse_server_address_accepts_a_64_byte_domain() -> None:
    name = b"b" * 64  # fills the whole domain field up to the port

    assert keys.parse_server_address(block(b"\x01\x40" + name)).host == name.decode()


def test_server_address_properties() -> None:
    ip, name, unset = (
        keys.ServerAddress("10.1.2.3", None),
        keys.ServerAddress("cloud.lan", 7000),
        keys.ServerAddress(None, None),
    )

    assert (ip.is_ip, name.is_ip, unset.is_ip) == (True, False, False)
    assert (ip.effective_port, name.effective_port) == (5683, 7000)
    assert str(name) == "cloud.lan:7000"
    assert str(unset).endswith(":5683")


# -- device ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0123456789abcdef01234567", "0123456789abcdef01234567"),
        ("0123456789ABCDEF01234567", "0123456789abcdef01234567"),
        ("  0123456789abcdef01234567\n", "0123456789abcdef01234567"),
    ],
)
def test_normalize_device_id(text: str, expected: str) -> None:
    assert keys.normalize_device_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0123456789abcdef0123456",  # 23
        "0123456789abcdef012345678",  # 25
        "0123456789abcdef0123456g",
        "0123456789abcdef 1234567",
        "0x23456789abcdef01234567",
        "０123456789abcdef01234567",  # a full-width digit
    ],
)
def test_normalize_device_id_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a device id"):
        keys.normalize_device_id(text)


def test_new_device_id_is_24_lower_hex_and_fresh() -> None:
    ids = {keys.new_device_id() for _ in range(20)}

    assert len(ids) == 20
    assert all(keys.normalize_device_id(i) == i for i in ids)
