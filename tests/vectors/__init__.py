"""Fixed RSA keys for the protocol tests, so no test pays for key generation.

The PEM files were generated once with cyan's own ``keys.generate_server_key()`` and
``keys.generate_device_key()`` and written with ``crypto.private_key_pem`` (PKCS#1,
"RSA PRIVATE KEY"). They are loaded here with ``cryptography`` directly, not with
``crypto.load_private_key``, because that loader is itself under test.

* ``server_key.pem``: the RSA-2048 server key every test cloud uses.
* ``server_key_other.pem``: a second RSA-2048 key, for "device holds another server's key".
* ``device_key_0.pem``, ``device_key_1.pem``: two RSA-1024 device keys.

To replace them (never needed in a normal run)::

    from cyan.protocol import crypto, keys
    open("server_key.pem", "wb").write(crypto.private_key_pem(keys.generate_server_key()))
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

VECTORS = Path(__file__).parent
DEVICE_KEY_COUNT = 2


def read(name: str) -> bytes:
    """The bytes of one vector file, by file name."""
    return (VECTORS / name).read_bytes()


@cache
def _load(name: str) -> rsa.RSAPrivateKey:
    key = load_pem_private_key(read(name), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"{name} is not an RSA private key")
    return key


def server_key() -> rsa.RSAPrivateKey:
    """The RSA-2048 server key."""
    return _load("server_key.pem")


def other_server_key() -> rsa.RSAPrivateKey:
    """A second RSA-2048 server key: what a device flashed for another cloud holds."""
    return _load("server_key_other.pem")


def device_key(index: int = 0) -> rsa.RSAPrivateKey:
    """RSA-1024 device key number ``index`` (0 or 1)."""
    if not 0 <= index < DEVICE_KEY_COUNT:
        raise IndexError(f"there are {DEVICE_KEY_COUNT} device key vectors, not {index + 1}")
    return _load(f"device_key_{index}.pem")
