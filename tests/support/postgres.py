"""A throwaway PostgreSQL cluster for tests: the real server, not a fake.

``PostgresCluster.start()`` runs ``initdb`` into a fresh temporary folder and starts
``postgres`` on 127.0.0.1 with a free port and its Unix socket inside that folder;
``stop()`` shuts it down by its PID (SIGINT: fast shutdown) and removes the folder.
Running as root, both run as the ``postgres`` OS user (initdb refuses root).

Nothing here skips: missing binaries or a server that does not come up raise
:class:`PostgresUnavailable` with the reason and the server log.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_CANDIDATES = (
    os.environ.get("CALLCONTROL_PG_BIN", ""),
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
)
SUPERUSER = "postgres"
START_TIMEOUT_S = 30.0

# Durability is worthless for a cluster that lives for one test run.
_SERVER_OPTIONS = (
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=200",
    "shared_buffers=64MB",
)


class PostgresUnavailable(RuntimeError):
    """The test PostgreSQL could not be provided (the message says why)."""


def find_pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if candidate and (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (looked in "
        f"{', '.join(c for c in PG_BIN_CANDIDATES if c)}); install postgresql-15 "
        "or point CALLCONTROL_PG_BIN at the folder holding initdb and postgres"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    bin_dir: Path
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0
    _run_as: str | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- life cycle -------------------------------------------------------------

    @classmethod
    def start(cls) -> PostgresCluster:
        bin_dir = find_pg_bin()
        run_as = SUPERUSER if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="callcontrol-pg-"))
        cluster = cls(bin_dir=bin_dir, root=root, port=free_port(), _run_as=run_as)
        began = time.monotonic()
        try:
            cluster._prepare_dirs()
            cluster._initdb()
            cluster._launch()
            cluster._wait_ready()
        except BaseException:
            cluster.stop()
            raise
        cluster.startup_seconds = time.monotonic() - began
        # Belt and braces: a test run that dies without finalising still stops it.
        atexit.register(cluster.stop)
        return cluster

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: abort sessions, clean exit
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGQUIT)  # immediate shutdown
                process.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.stop)

    def stop_server(self, timeout_s: float = 15.0) -> None:
        """Stop the server (fast shutdown) but keep its data, for an outage test."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGQUIT)
                process.wait(timeout=10)

    def start_server(self) -> None:
        """Start a server stopped by ``stop_server`` again, on the same port."""
        if self.process is not None and self.process.poll() is None:
            return
        self._launch()
        self._wait_ready()

    # -- SQL through psql (sync, so session fixtures need no event loop) ---------

    def psql(self, sql: str, database: str = "postgres") -> str:
        cmd = [
            str(self.bin_dir / "psql"),
            "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port),
            "-U", SUPERUSER, "-d", database, "-c", sql,
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise PostgresUnavailable(f"psql failed ({sql!r}): {done.stderr.strip()}")
        return done.stdout.strip()

    def create_database(self, name: str, template: str | None = None) -> None:
        tmpl = f' TEMPLATE "{template}"' if template else ""
        self.psql(f'CREATE DATABASE "{name}"{tmpl}')

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- internals ----------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir()
        self.data_dir.mkdir(mode=0o700)
        if self._run_as is not None:
            entry = pwd.getpwnam(self._run_as)
            for path in (self.root, self.socket_dir, self.data_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=self.root,
            user=self._run_as,
            group=self._run_as,
            extra_groups=[] if self._run_as else None,
        )
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{Path(args[0]).name} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()}"
            )

    def _initdb(self) -> None:
        self._run([
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        ])  # fmt: skip

    def _launch(self) -> None:
        args = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir), "-p", str(self.port),
            "-h", "127.0.0.1", "-k", str(self.socket_dir),
        ]  # fmt: skip
        for option in _SERVER_OPTIONS:
            args += ["-c", option]
        log = self.log_file.open("ab")
        try:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                user=self._run_as,
                group=self._run_as,
                extra_groups=[] if self._run_as else None,
            )
        finally:
            log.close()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise PostgresUnavailable(
                    f"postgres exited with {self.process.returncode}:\n{self._log_tail()}"
                )
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        raise PostgresUnavailable(
            f"postgres not ready after {START_TIMEOUT_S:.0f}s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no server log)"


@contextmanager
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A running throwaway cluster for the duration of the ``with`` block."""
    cluster = PostgresCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
