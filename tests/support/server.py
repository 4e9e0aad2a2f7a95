"""Start a real homeserver process on a free loopback port, on SQLite or on a fresh PostgreSQL database.

PostgreSQL is 127.0.0.1:5432, user ``postgres``, trust auth (override with ``TOCSIN_TEST_PG_DSN`` as
``host=... port=... user=...``). Each server gets its own database, dropped when the server is cleaned up. If
PostgreSQL is wanted but unreachable, :func:`create_pg_database` raises: a PostgreSQL run never silently skips.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PG_DSN = os.environ.get("TOCSIN_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres")


#: Test servers listen below the kernel's ephemeral port range, each xdist worker in a block of its own.
_LOWEST_PORT = 20000
_port_cursor: list[int] = []
_port_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now and that nothing else in the test run will take before the
    server it is meant for binds it.

    A port from ``bind(0)`` comes from the ephemeral range, so the kernel may hand it out again at once as the
    source port of any client connection (or to the other xdist worker) before the server process has started.
    These come from below that range, from a block per xdist worker, in turn; ports in use are passed over.
    """
    low = _ephemeral_low()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    workers = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1), index + 1)
    block = (low - _LOWEST_PORT) // workers
    if block < 100:  # an unusual ephemeral range: fall back to the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    first = _LOWEST_PORT + index * block
    with _port_lock:
        if not _port_cursor:
            _port_cursor.append(os.getpid() % block)  # runs one after another do not start on the same ports
        for _ in range(block):
            port = first + _port_cursor[0] % block
            _port_cursor[0] += 1
            if _port_is_free(port):
                return port
    raise RuntimeError(f"no free port in {first}-{first + block - 1}")


def _pg_admin_conn() -> Any:
    import psycopg2

    conn = psycopg2.connect(PG_DSN + " dbname=postgres", connect_timeout=10)
    conn.autocommit = True
    return conn


def create_pg_database(prefix: str = "tocsin_test") -> dict[str, Any]:
    """Create an empty database; returns psycopg2 connect args for it. Raises if PostgreSQL is unreachable."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = _pg_admin_conn()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" ENCODING \'UTF8\' LC_COLLATE \'C\' LC_CTYPE \'C\' '
                        "TEMPLATE template0")
    finally:
        conn.close()
    args: dict[str, Any] = {"dbname": name}
    for part in PG_DSN.split():
        k, _, v = part.partition("=")
        args[k] = int(v) if k == "port" else v
    return args


def drop_pg_database(name: str) -> None:
    conn = _pg_admin_conn()
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        conn.close()


@dataclass
class HomeserverProcess:
    """A running homeserver. ``base_url`` like ``http://127.0.0.1:PORT``; ``server_name`` is the Matrix name."""

    data_dir: str
    database: str  # "sqlite" or "postgres"
    server_name: str = "test.local"
    port: int = 0
    config_path: str = ""
    proc: subprocess.Popen | None = None
    pg_args: dict[str, Any] | None = None
    extra_config: dict[str, Any] = field(default_factory=dict)
    log_path: str = ""
    env: dict[str, str] = field(default_factory=dict)  # added to the process's environment

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        if not self.port:
            self.port = free_port()
        if self.database == "postgres":
            if self.pg_args is None:
                self.pg_args = create_pg_database()
            database = {"name": "psycopg2", "args": dict(self.pg_args, cp_max=5)}
        else:
            database = {"name": "sqlite3", "args": {"database": "homeserver.db", "synchronous": "NORMAL"}}
        cfg: dict[str, Any] = {
            "server_name": self.server_name,
            "listeners": [{"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http",
                           "resources": [{"names": ["client", "metrics"]}]}],
            "database": database,
            "signing_key_path": "signing.key",
            "media_store_path": "media_store",
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "registration_shared_secret": "test-shared-secret",
            "rc_message": {"per_second": 1000, "burst_count": 10000},
            "rc_registration": {"per_second": 1000, "burst_count": 10000},
            "rc_login": {"address": {"per_second": 1000, "burst_count": 10000},
                         "account": {"per_second": 1000, "burst_count": 10000},
                         "failed_attempts": {"per_second": 1000, "burst_count": 10000}},
            "rc_joins": {"local": {"per_second": 1000, "burst_count": 10000}},
            "log_level": "INFO",
            "bcrypt_rounds": 4,
        }
        cfg.update(self.extra_config)
        self.config_path = os.path.join(self.data_dir, "homeserver.yaml")
        with open(self.config_path, "w") as f:
            yaml.safe_dump(cfg, f)

    def start(self, timeout: float = 30.0) -> "HomeserverProcess":
        if not self.config_path:
            self.write_config()
        self.log_path = os.path.join(self.data_dir, "homeserver.log")
        log = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **self.env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "homeserver", "run", "-c", self.config_path],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        import urllib.request

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"homeserver exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/_matrix/client/versions", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"homeserver did not answer within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the process (SIGTERM, or SIGKILL for a crash); returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> "HomeserverProcess":
        self.stop()
        return self.start()

    def cleanup(self) -> None:
        self.stop()
        if self.pg_args is not None:
            drop_pg_database(self.pg_args["dbname"])
            self.pg_args = None
