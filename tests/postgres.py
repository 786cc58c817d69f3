"""A throwaway PostgreSQL server for the tests.

A real server from the machine's PostgreSQL binaries, in a private temporary
directory, listening on 127.0.0.1 (on a free port) and on a Unix socket inside
that directory; it is stopped and deleted afterwards. Nothing here is mocked.

PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user that Debian's package creates (or ``nobody`` if there is none).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from tests.ports import free_port

SUPERUSER = "cyan"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, postgres) were not found on PATH or in "
    "/usr/lib/postgresql/*/bin. The store tests need a real server: "
    "apt-get install -y postgresql"
)


class PostgresUnavailable(RuntimeError):
    """No usable PostgreSQL installation, or the server would not start."""


def find_bin_dir() -> Path:
    """The directory holding both ``initdb`` and ``postgres``: PATH first, then Debian's."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        # Debian links only some tools onto PATH; the real directory has them all.
        candidates += [Path(on_path).parent, Path(on_path).resolve().parent]

    def version(bin_dir: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bin_dir in candidates:
        if all(os.access(bin_dir / tool, os.X_OK) for tool in ("initdb", "postgres")):
            return bin_dir
    raise PostgresUnavailable(_INSTALL_HINT)


def _server_account() -> pwd.struct_passwd | None:
    """Who the server runs as: None means the current user (when not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root and found neither a 'postgres' nor a 'nobody' user")


@dataclass
class PostgresServer:
    bin_dir: Path
    base: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, *, timeout_s: float = 60.0) -> PostgresServer:
        bin_dir = find_bin_dir()
        account = _server_account()
        # /tmp rather than $TMPDIR: the server account must be able to reach it.
        base = Path(tempfile.mkdtemp(prefix="cyan-pg-", dir="/tmp" if account else None))
        server: PostgresServer | None = None
        try:
            password = secrets.token_hex(16)
            _initdb(bin_dir, base, password, account)
            # A port seen free can be taken before the server binds it: try a few.
            for attempt in range(3):
                port = free_port()
                server = cls(bin_dir, base, port, password, _spawn(bin_dir, base, port, account))
                if server._wait_ready(timeout_s):
                    # Backstop for a run that never reaches fixture teardown.
                    atexit.register(server.stop)
                    return server
                log = (base / "server.log").read_text(errors="replace")
                if "could not bind" not in log or attempt == 2:
                    raise PostgresUnavailable(f"PostgreSQL did not start:\n{log[-4000:]}")
        except BaseException:
            if server is not None:
                server.stop()
            shutil.rmtree(base, ignore_errors=True)
            raise
        raise AssertionError("unreachable")

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        sql = f'CREATE DATABASE "{_checked(name)}"'
        if self.version_num >= 150000:
            # Copying template files is ~5x faster than 15's default WAL-logged
            # copy, and with fsync off its checkpoint costs little.
            sql += " STRATEGY = FILE_COPY"
        self._admin(sql)

    @functools.cached_property
    def version_num(self) -> int:
        """The server's version as one number, e.g. 150012 for 15.12."""
        return int(self._admin("SHOW server_version_num"))

    def drop_database(self, name: str) -> None:
        # FORCE: a test that failed midway may have left connections open.
        self._admin(f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)')

    def stop(self, *, remove: bool = True) -> None:
        if self.process.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: end sessions, checkpoint, exit.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)

    def _wait_ready(self, timeout_s: float) -> bool:
        """True once the server accepts connections; False if it exited first."""
        deadline = time.monotonic() + timeout_s
        pid_file = self.base / "data" / "postmaster.pid"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            # Line 8 of postmaster.pid is the status pg_ctl itself waits on.
            with contextlib.suppress(OSError):
                lines = pid_file.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return True
            time.sleep(0.05)
        raise PostgresUnavailable(f"PostgreSQL did not become ready within {timeout_s:.0f} s")

    def _admin(self, sql: str) -> Any:
        """Run one statement as the superuser; returns the first value it yields, if any."""

        async def run() -> Any:
            connection: Any = await asyncpg.connect(
                host="127.0.0.1",
                port=self.port,
                user=SUPERUSER,
                password=self.password,
                database="postgres",
                timeout=30,
            )
            try:
                return await connection.fetchval(sql)
            finally:
                await connection.close()

        # Its own thread and loop: callers may be sync fixtures or inside a running loop.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, run()).result()


def _checked(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"unsafe database name {name!r}")
    return name


def _run_as(account: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments that drop root privileges to ``account``."""
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _environment(base: Path) -> dict[str, str]:
    # A clean environment: no PG* variables from the developer's shell leak in.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(base)}


def _initdb(bin_dir: Path, base: Path, password: str, account: pwd.struct_passwd | None) -> None:
    password_file = base / "password"
    password_file.write_text(password + "\n")
    if account is not None:
        os.chown(base, account.pw_uid, account.pw_gid)
        os.chown(password_file, account.pw_uid, account.pw_gid)
    command = [
        str(bin_dir / "initdb"),
        "--pgdata",
        str(base / "data"),
        "--username",
        SUPERUSER,
        "--pwfile",
        str(password_file),
        # TCP needs the password; the socket sits in a private 0700 directory.
        "--auth-host=scram-sha-256",
        "--auth-local=trust",
        "--encoding=UTF8",
        "--no-locale",
        # Throwaway data: skip the fsync of the freshly created cluster.
        "--no-sync",
    ]
    result = subprocess.run(
        command,
        cwd=base,
        env=_environment(base),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **_run_as(account),
    )
    password_file.unlink()
    if result.returncode != 0:
        raise PostgresUnavailable(
            f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


def _spawn(
    bin_dir: Path, base: Path, port: int, account: pwd.struct_passwd | None
) -> subprocess.Popen[bytes]:
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": str(base),
        # Durability is pointless for a server deleted after the run; speed is not.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    command = [str(bin_dir / "postgres"), "-D", str(base / "data")]
    for key, value in settings.items():
        command += ["-c", f"{key}={value}"]
    with (base / "server.log").open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=base,
            env=_environment(base),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C in the terminal reaches pytest, whose
            # teardown then stops the server in order.
            start_new_session=True,
            **_run_as(account),
        )
