"""The data directory: the server key pair lives here, created on first start (design.md)."""

from __future__ import annotations

import os
from pathlib import Path

from cyan.errors import CyanError
from cyan.files import write_atomically
from cyan.protocol import crypto, keys

SERVER_KEY_FILE = "server-key.pem"
SERVER_PUBLIC_DER_FILE = "server-key.pub.der"
SERVER_PUBLIC_PEM_FILE = "server-key.pub.pem"


class DataDirError(CyanError):
    pass


NOT_SERVED_FIX = (
    "Give the data directory `cyan serve` printed when it started (--data-dir or "
    "CYAN_DATA_DIR), or start `cyan serve` once to create this one."
)


def prepare(data_dir: Path) -> Path:
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DataDirError(
            f"cannot create the data directory {data_dir}: {exc.strerror}",
            fix="Pick another one with --data-dir or CYAN_DATA_DIR.",
        ) from exc
    return data_dir


def require_served(data_dir: Path, database_url: str, looked_because: str) -> None:
    """Refuse a data directory `cyan serve` never made (a typo would start a second cloud
    whose tokens the running server refuses); nothing is created. ``looked_because`` says
    why this directory: "--data-dir", "CYAN_DATA_DIR" or the default."""
    missing = None
    if not (data_dir / SERVER_KEY_FILE).is_file():
        missing = data_dir / SERVER_KEY_FILE
    elif database_url.startswith("sqlite") and not sqlite_file(database_url).is_file():
        missing = sqlite_file(database_url)
    if missing is not None:
        raise DataDirError(
            f"no Cyan data in {data_dir} ({looked_because}): {missing} does not exist",
            fix=NOT_SERVED_FIX,
        )


def sqlite_file(database_url: str) -> Path:
    """The file of a sqlite:///PATH or sqlite+aiosqlite:///PATH URL."""
    return Path(database_url.split(":///", 1)[1].split("?", 1)[0])


def _create_private(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` only if it does not exist yet; False if someone else won.

    Written under a temporary name with mode 0600 from the start and then hard-linked
    into place, so a crash never leaves a half-written or world-readable key, and two
    processes starting at once (`cyan serve` and `cyan keys new`) agree on one key.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        temporary.unlink()
    return True


def load_server_key(data_dir: Path, looked_because: str) -> crypto.RsaPrivateKey:
    """The server's key, which `cyan serve` made; DataDirError if there is none."""
    if not (data_dir / SERVER_KEY_FILE).is_file():
        raise DataDirError(
            f"no server key in {data_dir} ({looked_because}): {data_dir / SERVER_KEY_FILE} "
            "does not exist",
            fix=NOT_SERVED_FIX,
        )
    return load_or_create_server_key(data_dir)


def load_or_create_server_key(data_dir: Path) -> crypto.RsaPrivateKey:
    """The server's RSA-2048 key; made (mode 0600) with its public halves on first start."""
    prepare(data_dir)
    path = data_dir / SERVER_KEY_FILE
    if not path.exists():
        key = keys.generate_server_key()
        if _create_private(path, crypto.private_key_pem(key)):
            return _write_public_halves(data_dir, key)
    # It existed, or another process created it while we generated ours: use that one.
    try:
        key = crypto.load_private_key(path.read_bytes())
    except ValueError as exc:
        raise DataDirError(
            f"{path} is not a usable RSA key: {exc}",
            fix="Restore it from a backup; devices trust only this key.",
        ) from exc
    if crypto.key_bits(key) != keys.SERVER_KEY_BITS:
        raise DataDirError(f"{path} is RSA-{crypto.key_bits(key)}; devices need RSA-2048")
    return _write_public_halves(data_dir, key)


def _write_public_halves(data_dir: Path, key: crypto.RsaPrivateKey) -> crypto.RsaPrivateKey:
    public = key.public_key()
    for name, data in (
        (SERVER_PUBLIC_DER_FILE, crypto.public_key_der(public)),
        (SERVER_PUBLIC_PEM_FILE, crypto.public_key_pem(public)),
    ):
        target = data_dir / name
        if not target.exists() or target.read_bytes() != data:
            write_atomically(target, data)
    return key
