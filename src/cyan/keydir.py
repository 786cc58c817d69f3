"""A key directory: a device's keys as files, laid out like a Photon's DCT key slots.

device-id        24 hex characters (a real Photon reads it from its MCU)
device-key.der   RSA-1024 private key, PKCS#1 DER (DCT offset 34)
server-key.der   the 512-byte server key image with host and port (DCT offset 2082)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cyan.errors import CyanError
from cyan.files import write_atomically
from cyan.protocol import crypto, keys

DEVICE_ID_FILE = "device-id"
DEVICE_KEY_FILE = "device-key.der"
SERVER_KEY_FILE = "server-key.der"


class KeyStoreError(CyanError):
    pass


@dataclass(frozen=True, slots=True)
class KeyStore:
    directory: Path
    device_id: str
    device_key: crypto.RsaPrivateKey
    server: keys.ServerKeyImage

    @property
    def public_key_pem(self) -> bytes:
        return crypto.public_key_pem(self.device_key.public_key())

    @classmethod
    def load(cls, directory: Path) -> KeyStore:
        def read(name: str) -> bytes:
            path = directory / name
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise KeyStoreError(
                    f"{path} is missing",
                    fix="Create a key directory with `cyan keys new --out DIR`.",
                ) from None

        try:
            device_id = keys.normalize_device_id(read(DEVICE_ID_FILE).decode("ascii", "replace"))
            device_key = crypto.load_private_key(read(DEVICE_KEY_FILE))
            server = keys.parse_server_key_image(read(SERVER_KEY_FILE))
        except ValueError as exc:
            raise KeyStoreError(f"key directory {directory}: {exc}") from exc
        return cls(directory, device_id, device_key, server)

    @classmethod
    def from_files(
        cls,
        device_id: str,
        device_key: Path,
        server_key: Path,
    ) -> KeyStore:
        """Keys as read off a Photon (`particle keys save`, dfu-util): a private key file
        (DER or PEM, padding after the DER allowed) and a server key image or public key.

        Nothing is written; ``directory`` is the device key's folder, for messages only.
        """
        try:
            normalized = keys.normalize_device_id(device_id)
        except ValueError as exc:
            raise KeyStoreError(str(exc)) from exc
        try:
            private = crypto.load_private_key(_read(device_key, "the device key"))
        except ValueError as exc:
            raise KeyStoreError(f"{device_key}: {exc}") from exc
        try:
            image = keys.parse_server_key_image(_read(server_key, "the server key"))
        except ValueError as exc:
            raise KeyStoreError(f"{server_key}: {exc}") from exc
        return cls(device_key.parent, normalized, private, image)

    @classmethod
    def create(
        cls,
        directory: Path,
        server_public_key: crypto.RsaPublicKey,
        *,
        host: str | None,
        port: int | None,
        device_id: str | None = None,
    ) -> KeyStore:
        directory.mkdir(parents=True, exist_ok=True)
        device_key = keys.generate_device_key()
        store = cls(
            directory,
            keys.normalize_device_id(device_id) if device_id else keys.new_device_id(),
            device_key,
            keys.ServerKeyImage(server_public_key, keys.ServerAddress(host, port)),
        )
        store.save()
        return store

    def save(self) -> None:
        # Each file whole: a running device re-reads the directory after every failure.
        key = crypto.private_key_der(self.device_key)
        write_atomically(self.directory / DEVICE_KEY_FILE, key, 0o600)
        write_atomically(self.directory / DEVICE_ID_FILE, f"{self.device_id}\n".encode())
        image = keys.build_server_key_image(
            self.server.public_key, self.server.address.host, self.server.address.port
        )
        write_atomically(self.directory / SERVER_KEY_FILE, image)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
