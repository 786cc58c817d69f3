"""The installed `cyan` as an administrator runs it: users, passwords and tokens, then a
`particle login` against `cyan serve --allow-signup` over loopback HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cyan.settings import sqlite_url
from cyan.store import Store, UserRecord
from tests.ports import free_port
from tests.served import served_data_dir

CYAN = shutil.which("cyan") or str(Path(sys.executable).parent / "cyan")
BOUND_S = 20.0  # hang bound for the server to come up; not a speed check
PASSWORD = "correct horse battery"


def cyan(
    *args: str, data_dir: Path, stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CYAN_DATA_DIR": str(data_dir), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [CYAN, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        # No controlling terminal: a password prompt reads the piped stdin, not the tty of
        # whoever runs the tests.
        start_new_session=True,
    )


def check_password(data_dir: Path, username: str, password: str) -> UserRecord | None:
    async def check() -> UserRecord | None:
        store = await Store.open(sqlite_url(data_dir))
        try:
            return await store.users.check_password(username, password)
        finally:
            await store.close()

    return asyncio.run(check())


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def test_user_add_list_and_password(tmp_path: Path) -> None:
    data = served_data_dir(tmp_path / "data")
    added = cyan(
        "user", "add", "ada@example.com", "--password-stdin", data_dir=data, stdin=PASSWORD
    )
    assert "ada@example.com" in added.stderr
    assert added.stdout == ""
    assert check_password(data, "ada@example.com", PASSWORD) is not None

    # Without --password-stdin it prompts twice and keeps the password only if both match.
    typed = cyan("user", "add", "bob@example.com", data_dir=data, stdin=f"{PASSWORD}\n" * 2)
    assert "Repeat for confirmation" in typed.stderr
    assert check_password(data, "bob@example.com", PASSWORD) is not None
    mismatch = cyan(
        "user",
        "add",
        "eve@example.com",
        data_dir=data,
        stdin="first one\nsecond one\n",
        check=False,
    )
    assert mismatch.returncode != 0
    assert "do not match" in mismatch.stderr

    cyan("token", "create", data_dir=data)  # makes "admin", who has no password
    listing = cyan("user", "list", data_dir=data).stdout
    rows = {
        line.split()[1]: line for line in listing.splitlines() if "@" in line or "admin" in line
    }
    assert set(rows) == {"ada@example.com", "admin", "bob@example.com"}
    assert " set " in rows["ada@example.com"]
    assert " none " in rows["admin"]
    assert PASSWORD not in listing

    changed = cyan(
        "user",
        "password",
        "ada@example.com",
        "--password-stdin",
        data_dir=data,
        stdin="new pass 2\n",
    )
    assert changed.returncode == 0
    assert check_password(data, "ada@example.com", "new pass 2") is not None
    assert check_password(data, "ada@example.com", PASSWORD) is None
    # The admin account gets a password the same way, and can then `particle login`.
    cyan("user", "password", "admin", "--password-stdin", data_dir=data, stdin=PASSWORD)
    assert check_password(data, "admin", PASSWORD) is not None


def test_user_errors_say_what_and_how_to_fix(tmp_path: Path) -> None:
    data = served_data_dir(tmp_path / "data")
    cyan("user", "add", "ada@example.com", "--password-stdin", data_dir=data, stdin=PASSWORD)
    again = cyan(
        "user",
        "add",
        "ADA@example.com",
        "--password-stdin",
        data_dir=data,
        stdin=PASSWORD,
        check=False,
    )
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert "Fix: Set its password with: cyan user password ADA@example.com" in again.stderr

    short = cyan(
        "user",
        "add",
        "b@example.com",
        "--password-stdin",
        data_dir=data,
        stdin="short",
        check=False,
    )
    assert short.returncode == 1
    assert "at least 8 characters" in short.stderr
    bad_name = cyan("user", "add", "bob smith", "--password-stdin", data_dir=data, check=False)
    assert bad_name.returncode == 1
    assert "Fix:" in bad_name.stderr
    nobody = cyan("user", "password", "nobody", "--password-stdin", data_dir=data, check=False)
    assert nobody.returncode == 1
    assert "Fix: Create it with: cyan user add nobody" in nobody.stderr
    names = cyan("user", "list", data_dir=data).stdout
    assert "b@example.com" not in names.replace("ada@example.com", "")


def test_token_list_and_revoke(tmp_path: Path) -> None:
    data = served_data_dir(tmp_path / "data")
    cyan("user", "add", "ada@example.com", "--password-stdin", data_dir=data, stdin=PASSWORD)
    token = cyan("token", "create", "--user", "ada@example.com", data_dir=data).stdout.strip()
    dated = cyan("token", "create", "--expires-in", "3600", data_dir=data).stdout.strip()
    third = cyan("token", "create", data_dir=data).stdout.strip()

    listing = cyan("token", "list", data_dir=data).stdout
    assert {token_id(token), token_id(dated), token_id(third)} <= set(listing.split())
    for secret in (token, dated, third):
        assert secret not in listing  # only hashes are kept
    row = next(line for line in listing.splitlines() if token_id(token) in line)
    assert "ada@example.com" in row
    assert "cyan-cli" in row
    assert "never" in row
    mine = cyan("token", "list", "--user", "ADA@example.com", data_dir=data).stdout
    assert token_id(token) in mine
    assert token_id(dated) not in mine
    unknown = cyan("token", "list", "--user", "nobody", data_dir=data, check=False)
    assert unknown.returncode == 1
    assert "Fix:" in unknown.stderr

    # By the token itself, then by the id `token list` shows.
    assert cyan("token", "revoke", token, data_dir=data).returncode == 0
    assert cyan("token", "revoke", token_id(dated), data_dir=data).returncode == 0
    left = cyan("token", "list", data_dir=data).stdout
    assert token_id(token) not in left
    assert token_id(dated) not in left
    assert token_id(third) in left
    again = cyan("token", "revoke", token, data_dir=data, check=False)
    assert again.returncode == 1
    assert "no such token" in again.stderr
    assert "Fix:" in again.stderr


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`cyan serve --allow-signup` on loopback; yields its API URL and data directory."""
    data, api_port = tmp_path / "data", free_port()
    args = ["serve", "--allow-signup", "--host", "127.0.0.1"]
    args += ["--device-port", str(free_port()), "--api-port", str(api_port)]
    env = {**os.environ, "CYAN_DATA_DIR": str(data), "NO_COLOR": "1"}
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen([CYAN, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + BOUND_S
        while True:
            try:
                httpx.get(f"{api}/v1/user", timeout=1, trust_env=False)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "serve.log").read_text()) from None
                time.sleep(0.05)
        yield api, data
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_particle_login_against_cyan_serve(server: tuple[str, Path]) -> None:
    api, data = server
    with httpx.Client(base_url=api, trust_env=False, timeout=10) as http:
        # A user made with the CLI logs in as `particle login` does (rest-api.md §3.1) ...
        cyan("user", "add", "ada@example.com", "--password-stdin", data_dir=data, stdin=PASSWORD)
        login = {"grant_type": "password", "expires_in": "7776000"}
        login |= {"client_id": "particle-cli", "client_secret": "particle-cli"}
        reply = http.post(
            "/oauth/token", data={**login, "username": "ada@example.com", "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.text
        token = reply.json()["access_token"]
        me = http.get("/v1/user", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["username"] == "ada@example.com"
        assert token_id(token) in cyan("token", "list", data_dir=data).stdout

        # ... and --allow-signup lets a newcomer make an account over HTTP.
        signup = http.post("/v1/users", json={"username": "eve@example.com", "password": PASSWORD})
        assert (signup.status_code, signup.json()) == (200, {"ok": True})
        reply = http.post(
            "/oauth/token", data={**login, "username": "eve@example.com", "password": PASSWORD}
        )
        assert reply.status_code == 200
        assert "eve@example.com" in cyan("user", "list", data_dir=data).stdout

        logout = http.delete(
            "/v1/access_tokens/current", headers={"Authorization": f"Bearer {token}"}
        )
        assert logout.json() == {"ok": True}
        assert http.get("/v1/user", headers={"Authorization": f"Bearer {token}"}).status_code == 401
