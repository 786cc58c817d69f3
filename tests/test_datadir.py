"""The server key: created once, 0600, and one key even when two processes start together."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from cyan.datadir import DataDirError, load_or_create_server_key
from cyan.protocol import crypto


def _key_pem(directory: str) -> bytes:
    return crypto.public_key_pem(load_or_create_server_key(Path(directory)).public_key())


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    with ProcessPoolExecutor(4) as pool:
        keys = set(pool.map(_key_pem, [str(tmp_path)] * 8))
    assert len(keys) == 1
    assert keys == {(tmp_path / "server-key.pub.pem").read_bytes()}
    assert (tmp_path / "server-key.pem").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "server-key.pem",
        "server-key.pub.der",
        "server-key.pub.pem",
    ]


def test_a_damaged_key_is_reported_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "server-key.pem").write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(DataDirError) as caught:
        load_or_create_server_key(tmp_path)
    assert "not a usable RSA key" in caught.value.message
    assert caught.value.fix is not None
    assert b"garbage" in (tmp_path / "server-key.pem").read_bytes()
