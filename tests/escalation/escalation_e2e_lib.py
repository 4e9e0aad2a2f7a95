"""Real processes and servers for the escalation end-to-end tests.

- :class:`EphemeralRegistration`: the bridge's appservice registration with ``receive_ephemeral: true`` (so the
  homeserver pushes read receipts in transactions).
- :class:`FakeTwilio`: a loopback HTTP server speaking Twilio's ``Messages.json`` / ``Calls.json`` API.
- :class:`SmtpSink`: a real SMTP server (aiosmtpd) that keeps every message.
- :class:`EscalatingBridge`: ``python -m appservices.alerts`` with an ``escalation:`` section, startable,
  killable with SIGKILL and restartable on the same databases.
"""

from __future__ import annotations

import email
import email.policy
import json
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import yaml
from aiosmtpd.controller import Controller

from tests.alerts.harness import BridgeRegistration, BridgeSubprocess, HomeserverUnderTest, free_port, http
from tests.support.fake_http import QuietHandler

class EphemeralRegistration(BridgeRegistration):
    """Registration of an escalating bridge: bot ``@{localpart}``, aliases ``#{localpart}-*``; with ``ephemeral``
    the homeserver pushes ephemeral data (receipts) in transactions, without it the bridge falls back to /sync."""

    def __init__(self, directory: Path, localpart: str = "esc", ephemeral: bool = True,
                 server_name_regex: str = "localhost") -> None:
        # Application Service API "Pushing ephemeral data" (MSC2409): receipts arrive in transactions.
        super().__init__(directory, server_name_regex, localpart, extra={"receive_ephemeral": ephemeral})


@dataclass
class SmsRecord:
    """One request received by :class:`FakeTwilio`: monotonic time, resource (``Messages.json``...), form."""

    at: float
    resource: str
    form: dict[str, str]
    sid: str


class FakeTwilio:
    """``POST /2010-04-01/Accounts/{sid}/{Messages,Calls}.json`` on loopback; answers 201 with a ``sid``."""

    def __init__(self, account_sid: str = "ACtest", auth_token: str = "twilio-secret") -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.received: list[SmsRecord] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                import base64

                expected = "Basic " + base64.b64encode(f"{outer.account_sid}:{outer.auth_token}".encode()).decode()
                prefix = f"/2010-04-01/Accounts/{outer.account_sid}/"
                if self.headers.get("Authorization") != expected or not self.path.startswith(prefix):
                    self.send_response(401)
                    self.end_headers()
                    return
                with outer.lock:
                    sid = f"SM{len(outer.received):032d}"
                    outer.received.append(SmsRecord(time.monotonic(), self.path[len(prefix):], form, sid))
                body = json.dumps({"sid": sid, "status": "queued", "to": form.get("To")}).encode()
                self.answer(201, body, "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def messages(self) -> list[SmsRecord]:
        with self.lock:
            return [r for r in self.received if r.resource == "Messages.json"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class MailRecord:
    at: float
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class SmtpSink:
    """aiosmtpd on a loopback port, keeping every message it accepts."""

    def __init__(self) -> None:
        self.received: list[MailRecord] = []
        self.lock = threading.Lock()
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
                msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
                with outer.lock:
                    outer.received.append(MailRecord(time.monotonic(), envelope.mail_from,
                                                     list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def messages(self) -> list[MailRecord]:
        with self.lock:
            return list(self.received)

    def stop(self) -> None:
        self.controller.stop()


def escalation_yaml(twilio: FakeTwilio, smtp: SmtpSink, server_name: str, read_timeout_s: int,
                    tier_timeout_s: int, handoff_at: str | None = None, reminder: str = "1h") -> dict[str, Any]:
    """escalation.yaml for a test: the on-call schedule ``primary`` (alice) gets chat, then SMS, then email,
    ``read_timeout_s`` apart; after ``tier_timeout_s`` bob is paged. ``handoff_at`` (local UTC date-time) puts
    bob on call in schedule ``backup`` from then on, so a handoff is announced. ``reminder``: how often a person
    who read but did not acknowledge is reminded in chat."""
    alice, bob = f"@alice:{server_name}", f"@bob:{server_name}"
    backup: dict[str, Any] = {"time_zone": "UTC", "layers": [
        {"name": "days", "members": [alice], "rotation": "daily", "start": "2024-01-01T00:00"}]}
    if handoff_at:
        backup["overrides"] = [{"user": bob, "start": handoff_at, "end": "2099-01-01T00:00"}]
    return {
        "default_policy": "oncall",
        "policies": {"oncall": {"tiers": [
            {"targets": [{"schedule": "primary"}], "channels": ["matrix", "sms", "email"],
             "read_timeout": f"{read_timeout_s}s", "reminder": reminder, "timeout": f"{tier_timeout_s}s"},
            {"targets": [{"user": bob}], "channels": ["matrix", "sms"], "read_timeout": "1h", "timeout": "1h"},
        ]}},
        "schedules": {
            "primary": {"time_zone": "UTC", "layers": [
                {"name": "everyone", "members": [alice], "rotation": "weekly", "start": "2024-01-01T09:00"}]},
            "backup": backup,
        },
        "people": {alice: {"email": "alice@example.org", "phone": "+15550001"},
                   bob: {"email": "bob@example.org", "phone": "+15550002"}},
        "channels": {
            "retry": {"max_attempts": 2, "backoff_seconds": 1},
            "email": {"host": "127.0.0.1", "port": smtp.port, "starttls": False, "tls_verify": False,
                      "from": "tocsin@example.org"},
            "sms": {"base_url": twilio.base_url, "account_sid": twilio.account_sid, "auth_token": twilio.auth_token,
                    "from": "+15005550006"},
        },
    }


class EscalatingBridge(BridgeSubprocess):
    """The alert bridge with escalation, as a subprocess on the registration's port, route ``esc`` -> ``room``."""

    def __init__(self, directory: Path, registration: EphemeralRegistration, hs: HomeserverUnderTest,
                 room_alias: str, escalation: dict[str, Any], handoff_room: str | None = None,
                 sync_account: dict[str, str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.base_url = f"http://127.0.0.1:{registration.port}"
        self.am_token = secrets.token_urlsafe(16)
        self.api_token = secrets.token_urlsafe(16)
        self.log_path = directory / "bridge.log"
        self.config_path = directory / "alerts.yaml"
        (directory / "escalation.yaml").write_text(yaml.safe_dump(escalation))
        alice = f"@alice:{hs.server_name}"
        section: dict[str, Any] = {"config": "escalation.yaml",
                                   "database": {"engine": "sqlite", "args": {"database": "escalation.db"}}}
        if handoff_room:
            section["handoff_rooms"] = {"backup": handoff_room}
        if sync_account:
            section["sync_account"] = sync_account
        self.config_path.write_text(yaml.safe_dump({
            "homeserver": {"url": hs.base_url, "server_name": hs.server_name},
            "registration": str(registration.path),
            "listen": {"host": "127.0.0.1", "port": registration.port},
            "database": {"engine": "sqlite", "args": {"database": str(directory / "alerts.db")}},
            "api_token": self.api_token,
            "retry_interval_s": 1,
            "sources": {"alertmanager": {"token": self.am_token}},
            "routes": [],
            "default_route": {"name": "esc", "room": room_alias, "escalation_policy": "oncall",
                              "invite": [alice], "mentions": [alice], "team_power_level": 50},
            "escalation": section,
        }))
        self.proc: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing; whatever is not committed is lost."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def post_alert(self, body: bytes) -> dict[str, Any]:
        code, resp = http("POST", f"{self.base_url}/api/v1/alerts/alertmanager", body,
                          {"Content-Type": "application/json", "Authorization": f"Bearer {self.am_token}"})
        assert code == 200, resp
        return resp

    def get(self, path: str, token: str | None = "api") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.api_token if token == 'api' else token}"} if token else {}
        return http("GET", self.base_url + path, None, headers)


def login(hs: HomeserverUnderTest, user: str, password: str) -> dict[str, str]:
    """``{user_id, access_token}`` of a password login (``POST /_matrix/client/v3/login``)."""
    body = json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                       "password": password}).encode()
    code, resp = http("POST", hs.base_url + "/_matrix/client/v3/login", body, {"Content-Type": "application/json"})
    assert code == 200, resp
    return {"user_id": resp["user_id"], "access_token": resp["access_token"]}
