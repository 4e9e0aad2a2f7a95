"""Processes for the alert bridge's end-to-end tests: the homeservers under test (Synapse and Tocsin), the
bridge (on SQLite or on a fresh PostgreSQL database) and a fake Alertmanager API.

A homeserver variant implements :class:`HomeserverUnderTest`: ``start(registration_files)`` starts it with the
given appservice registration files known, then ``base_url`` / ``server_name`` describe it. Add another
homeserver by writing a subclass and listing it in ``HOMESERVERS`` (see conftest.py).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.server import HomeserverProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("TOCSIN_ALERT_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures"))


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers any HTTP status; raise RuntimeError after ``timeout_s`` or if ``proc`` dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} while waiting for {url}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request; returns ``(status, decoded JSON or text)`` for any status."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            code, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        code, raw = e.code, e.read()
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, raw.decode("utf-8", "replace")


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """SIGTERM ``proc`` if it runs, SIGKILL it if it has not exited after ``grace_s`` seconds, and reap it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def tail_of(path: Path, lines: int) -> str:
    """The last ``lines`` lines of the log file at ``path`` ("" when it does not exist yet)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class HomeserverUnderTest:
    """A homeserver the bridge is tested against. ``base_url``, ``server_name`` are set after :meth:`start`."""

    name = "abstract"
    base_url: str
    server_name: str

    def start(self, registration_files: list[Path]) -> None:
        """Start the server with these appservice registration files loaded. Blocks until it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of its log (for failure reports)."""
        return ""


def synapse_python() -> Path:
    """The python of a venv with matrix-synapse: ``$SYNAPSE_VENV``, else ``.venv-synapse`` created in the repo."""
    venv = os.environ.get("SYNAPSE_VENV")
    if venv:
        return Path(venv) / "bin" / "python"
    venv_path = REPO_ROOT / ".venv-synapse"
    python = venv_path / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import synapse"]).returncode != 0:
        subprocess.run([sys.executable, "-m", "venv", str(venv_path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "matrix-synapse"], check=True, timeout=1200)
    return python


class SynapseHomeserver(HomeserverUnderTest):
    """Synapse on SQLite in a temp dir, open registration, rate limits off, on a free loopback port."""

    name = "synapse"

    def __init__(self, data_dir: Path, server_name: str = "localhost") -> None:
        self.data_dir = data_dir
        self.server_name = server_name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "synapse.stdout"

    def start(self, registration_files: list[Path]) -> None:
        python = synapse_python()
        cfg_path = self.data_dir / "homeserver.yaml"
        subprocess.run(
            [str(python), "-m", "synapse.app.homeserver", "--server-name", self.server_name, "--config-path",
             str(cfg_path), "--data-directory", str(self.data_dir), "--generate-config", "--report-stats=no"],
            check=True, cwd=self.data_dir, capture_output=True, timeout=120,
        )
        cfg = yaml.safe_load(cfg_path.read_text())
        unlimited = {"per_second": 10000, "burst_count": 10000}
        cfg.update(
            {
                "listeners": [
                    {"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                     "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}
                ],
                "database": {"name": "sqlite3", "args": {"database": str(self.data_dir / "homeserver.db")}},
                "enable_registration": True,
                "enable_registration_without_verification": True,
                "app_service_config_files": [str(p) for p in registration_files],
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "report_stats": False,
                "log_config": None,
                "rc_message": unlimited,
                "rc_registration": unlimited,
                "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
                "rc_joins": {"local": unlimited, "remote": unlimited},
                "rc_joins_per_room": unlimited,
                "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
                "rc_admin_redaction": unlimited,
                "rc_3pid_validation": unlimited,
                "rc_presence": {"per_user": unlimited},
            }
        )
        cfg.pop("log_config")
        cfg_path.write_text(yaml.safe_dump(cfg))
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(python), "-m", "synapse.app.homeserver", "--config-path", str(cfg_path)],
            cwd=self.data_dir, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_http(self.base_url + "/_matrix/client/versions", 120, self.proc)

    def stop(self) -> None:
        stop_process(self.proc, grace_s=20)

    def log_tail(self, lines: int = 80) -> str:
        return tail_of(self.log_path, lines)


class TocsinHomeserver(HomeserverUnderTest):
    """Our own homeserver (``python -m homeserver run``) on SQLite, started by tests/support/server.py."""

    name = "tocsin"

    def __init__(self, data_dir: Path, server_name: str = "localhost") -> None:
        self.server_name = server_name
        self.process = HomeserverProcess(str(data_dir), "sqlite", server_name=server_name)

    def start(self, registration_files: list[Path]) -> None:
        self.process.extra_config = {"app_service_config_files": [str(p) for p in registration_files]}
        self.process.start(timeout=60)
        self.base_url = self.process.base_url

    def stop(self) -> None:
        self.process.cleanup()

    def log_tail(self, lines: int = 80) -> str:
        return self.process.log_tail(lines)


class BridgeRegistration:
    """A bridge's appservice registration for a test session (tokens random, port chosen up front).

    ``localpart`` is the bot's localpart and the prefix of the bridge's room aliases (``#<localpart>-...``),
    so several bridges can share a homeserver without seeing each other's rooms. ``extra`` adds top-level keys
    to the registration (e.g. ``receive_ephemeral``).
    """

    def __init__(self, directory: Path, server_name_regex: str = r"localhost", localpart: str = "alerts",
                 extra: dict[str, Any] | None = None) -> None:
        self.port = free_port()
        self.localpart = localpart
        self.as_token = secrets.token_urlsafe(24)
        self.hs_token = secrets.token_urlsafe(24)
        self.path = directory / f"{localpart}-registration.yaml"
        self.path.write_text(
            yaml.safe_dump(
                {
                    "id": f"tocsin-{localpart}-test",
                    "url": f"http://127.0.0.1:{self.port}",
                    "as_token": self.as_token,
                    "hs_token": self.hs_token,
                    "sender_localpart": localpart,
                    "rate_limited": False,
                    "namespaces": {
                        "users": [{"regex": f"@{localpart}:{server_name_regex}", "exclusive": True}],
                        "aliases": [{"regex": f"#{localpart}-.*:{server_name_regex}", "exclusive": False}],
                        "rooms": [],
                    },
                    **(extra or {}),
                }
            )
        )


#: Template of the generic source ``uptime`` in the test bridge (same shape as config/alerts.yaml's example).
UPTIME_TEMPLATE: dict[str, Any] = {
    "dedup_key": "monitor.id",
    "status": "state",
    "resolved_values": ["up", "ok"],
    "title": "message",
    "url": "monitor.url",
    "labels": {"alertname": "monitor.name", "severity": "severity", "instance": "monitor.url"},
    "annotations": {"summary": "message", "description": "details"},
}


class BridgeSubprocess:
    """``python -m appservices.alerts -c <config_path>`` as a subprocess answering on ``base_url``, logging to
    ``log_path``. Subclasses set those three attributes and ``proc = None`` in ``__init__``."""

    base_url: str
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None

    def start(self) -> None:
        """Start and wait (up to 30 s) until it answers on its port; RuntimeError if it does not."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appservices.alerts", "-c", str(self.config_path)],
            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_http(self.base_url + "/metrics", 30, self.proc)

    def kill(self) -> None:
        """SIGKILL the process (a crash: no shutdown code runs) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        stop_process(self.proc, grace_s=10)

    def log_tail(self, lines: int = 80) -> str:
        """The last ``lines`` lines of the process's log ("" when there is none yet)."""
        return tail_of(self.log_path, lines)


class BridgeProcess(BridgeSubprocess):
    """``python -m appservices.alerts -c <config>`` as a subprocess, with tokens for every source."""

    def __init__(self, directory: Path, registration: BridgeRegistration, hs: HomeserverUnderTest,
                 routes: list[dict[str, Any]], default_route: dict[str, Any], max_body_bytes: int = 200_000,
                 database: dict[str, Any] | None = None, alertmanager_url: str | None = None) -> None:
        self.dir = directory
        self.registration = registration
        self.base_url = f"http://127.0.0.1:{registration.port}"
        #: every room of this bridge has a canonical alias starting with this (see tests.alerts.humans.Human)
        self.alias_prefix = f"#{registration.localpart}-"
        self.tokens = {s: secrets.token_urlsafe(16) for s in ("alertmanager", "grafana", "zabbix", "generic/uptime")}
        self.hmac_secret = secrets.token_urlsafe(16)
        self.api_token = secrets.token_urlsafe(16)
        self.db_path = directory / "alerts.db"
        self.config_path = directory / "alerts.yaml"
        self.log_path = directory / "bridge.log"
        self.config = {
            "homeserver": {"url": hs.base_url, "server_name": hs.server_name},
            "registration": str(registration.path),
            "listen": {"host": "127.0.0.1", "port": registration.port},
            "database": database or {"engine": "sqlite", "args": {"database": str(self.db_path)}},
            "max_body_bytes": max_body_bytes,
            "command_power_level": 50,
            "api_token": self.api_token,
            "retry_interval_s": 1,
            "sources": {
                "alertmanager": {"token": self.tokens["alertmanager"]},
                "grafana": {"token": self.tokens["grafana"], "hmac_secret": self.hmac_secret,
                            "hmac_header": "X-Grafana-Alerting-Signature"},
                "zabbix": {"token": self.tokens["zabbix"]},
                "generic": {"uptime": {"token": self.tokens["generic/uptime"], "template": UPTIME_TEMPLATE}},
            },
            "routes": routes,
            "default_route": default_route,
        }
        self.alertmanager_url = alertmanager_url
        if alertmanager_url:
            self.config["sources"]["alertmanager"]["url"] = alertmanager_url
        self.config_path.write_text(yaml.safe_dump(self.config, allow_unicode=True))
        self.proc: subprocess.Popen[bytes] | None = None

    def post(self, source: str, body: bytes, token: str | None = "default",
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST ``body`` to ``/api/v1/alerts/{source}`` with the source's bearer token (or ``token``)."""
        h = {"Content-Type": "application/json", **(headers or {})}
        tok = self.tokens.get(source) if token == "default" else token
        if tok is not None:
            h["Authorization"] = f"Bearer {tok}"
        return http("POST", f"{self.base_url}/api/v1/alerts/{source}", body, h)

    def post_fixture(self, source: str, name: str) -> tuple[int, Any]:
        """POST ``fixtures/{source}/{name}.json``."""
        return self.post(source, (FIXTURES / source / f"{name}.json").read_bytes())

    def incidents(self, **params: str) -> list[dict[str, Any]]:
        """``GET /api/v1/incidents`` with the API token."""
        qs = "&".join(f"{k}={v}" for k, v in params.items())
        code, body = http("GET", f"{self.base_url}/api/v1/incidents?{qs}", None,
                          {"Authorization": f"Bearer {self.api_token}"})
        assert code == 200, body
        return body["incidents"]

    def incident(self, incident_id: str) -> dict[str, Any]:
        """``GET /api/v1/incidents/{id}``."""
        code, body = http("GET", f"{self.base_url}/api/v1/incidents/{incident_id}", None,
                          {"Authorization": f"Bearer {self.api_token}"})
        assert code == 200, body
        return body

    def metrics(self) -> str:
        """The ``/metrics`` text."""
        code, body = http("GET", f"{self.base_url}/metrics")
        assert code == 200
        return body


def metric(text: str, name: str, **labels: str) -> float:
    """Value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(prefix + " "):
            return float(line.split()[-1])
    return 0.0
