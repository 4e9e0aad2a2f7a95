"""A real application service for tests: a threaded ``http.server`` on a loopback port speaking the AS API.

It records every transaction attempt, processes each ``txnId`` once (as the spec asks of appservices), answers
user and alias queries (creating the user / alias through the client-server API with its ``as_token`` first),
answers pings, and can be told to fail (``status_override``) or stall (``delay_s``) to exercise the homeserver.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from tests.support.client import CS, Api, q


@dataclass
class Registration:
    """What the test writes into the registration file (and what the receiver checks)."""

    id: str
    as_token: str
    hs_token: str
    sender_localpart: str
    users: list[dict[str, Any]]
    aliases: list[dict[str, Any]] = field(default_factory=list)
    rooms: list[dict[str, Any]] = field(default_factory=list)
    rate_limited: bool = False
    receive_ephemeral: bool = False
    url: str | None = None

    def as_yaml_dict(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "as_token": self.as_token, "hs_token": self.hs_token,
                "sender_localpart": self.sender_localpart, "rate_limited": self.rate_limited,
                "receive_ephemeral": self.receive_ephemeral, "protocols": ["tocsin-test"],
                "namespaces": {"users": self.users, "aliases": self.aliases, "rooms": self.rooms}}


class AppServiceReceiver:
    """Start with :meth:`start`; ``url`` is its base URL. Thread-safe accessors for what it received."""

    def __init__(self, hs_token: str) -> None:
        self.hs_token = hs_token
        self.lock = threading.Lock()
        self.attempts: list[tuple[str, int]] = []          # (txnId, number of events) per PUT, in arrival order
        self.processed_txns: list[str] = []                 # each txnId once, in order of first processing
        self.events: list[dict[str, Any]] = []              # events of processed transactions, in order
        self.ephemeral: list[dict[str, Any]] = []
        self.pings: list[Any] = []
        self.user_queries: list[str] = []
        self.alias_queries: list[str] = []
        self.bad_auth = 0
        self.status_override: int | None = None            # answer transactions with this status instead
        self.delay_s = 0.0                                  # stall before answering a transaction
        self.ping_status = 200
        self.ping_delay_s = 0.0
        self.on_user_query: Callable[[str], bool] = lambda _u: False
        self.on_alias_query: Callable[[str], bool] = lambda _a: False
        self._server: ThreadingHTTPServer | None = None
        self._changed = threading.Condition(self.lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, port: int = 0) -> "AppServiceReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY each reply waits for the client's
            # delayed ACK (40 ms), which would pace every transaction.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode() if not isinstance(body, bytes) else body
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the homeserver gave up on us (killed, or timed out)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                return json.loads(raw) if raw else None

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {receiver.hs_token}":
                    with receiver.lock:
                        receiver.bad_auth += 1
                    self._reply(403, {"errcode": "M_FORBIDDEN", "error": "bad hs_token"})
                    return False
                return True

            def do_PUT(self) -> None:  # noqa: N802 - http.server API
                path = urllib.parse.urlparse(self.path).path
                prefix = "/_matrix/app/v1/transactions/"
                if not path.startswith(prefix):
                    self._reply(404, {"errcode": "M_UNRECOGNIZED"})
                    return
                body = self._body()
                if not self._authorised():
                    return
                txn_id = urllib.parse.unquote(path[len(prefix):])
                status = receiver.status_override
                receiver._on_transaction(txn_id, body, processed=status is None)
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if status is not None:
                    self._reply(status, {"errcode": "M_UNKNOWN", "error": "told to fail"})
                else:
                    self._reply(200, {})

            def do_GET(self) -> None:  # noqa: N802
                path = urllib.parse.urlparse(self.path).path
                if not self._authorised():
                    return
                if path.startswith("/_matrix/app/v1/users/"):
                    user_id = urllib.parse.unquote(path.rsplit("/", 1)[1])
                    with receiver.lock:
                        receiver.user_queries.append(user_id)
                    ok = receiver.on_user_query(user_id)
                    self._reply(200 if ok else 404, {} if ok else {"errcode": "M_NOT_FOUND"})
                elif path.startswith("/_matrix/app/v1/rooms/"):
                    alias = urllib.parse.unquote(path.rsplit("/", 1)[1])
                    with receiver.lock:
                        receiver.alias_queries.append(alias)
                    ok = receiver.on_alias_query(alias)
                    self._reply(200 if ok else 404, {} if ok else {"errcode": "M_NOT_FOUND"})
                else:
                    self._reply(404, {"errcode": "M_UNRECOGNIZED"})

            def do_POST(self) -> None:  # noqa: N802
                path = urllib.parse.urlparse(self.path).path
                body = self._body()
                if path != "/_matrix/app/v1/ping":
                    self._reply(404, {"errcode": "M_UNRECOGNIZED"})
                    return
                if not self._authorised():
                    return
                with receiver.lock:
                    receiver.pings.append(body)
                if receiver.ping_delay_s:
                    time.sleep(receiver.ping_delay_s)
                if receiver.ping_status == 200:
                    self._reply(200, {})
                else:
                    self._reply(receiver.ping_status, {"errcode": "M_UNKNOWN", "error": "ping says no"})

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="appservice-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _on_transaction(self, txn_id: str, body: dict[str, Any], processed: bool) -> None:
        with self._changed:
            self.attempts.append((txn_id, len(body.get("events", []))))
            if processed and txn_id not in self.processed_txns:  # the spec's idempotency by txnId
                self.processed_txns.append(txn_id)
                self.events.extend(body.get("events", []))
                self.ephemeral.extend(body.get("ephemeral", []))
            self._changed.notify_all()

    def event_ids(self) -> list[str]:
        with self.lock:
            return [e["event_id"] for e in self.events]

    def wait_for(self, predicate: Callable[["AppServiceReceiver"], bool], timeout: float = 30.0) -> bool:
        """Wait (bounded by ``timeout`` seconds) until ``predicate(self)`` holds; returns whether it did."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.2))
        return True

    def wait_for_events(self, event_ids: list[str], timeout: float = 30.0) -> bool:
        wanted = set(event_ids)
        return self.wait_for(lambda r: wanted <= {e["event_id"] for e in r.events}, timeout)


def as_request(api: Api, as_token: str, method: str, path: str, body: Any = None, user_id: str | None = None,
               **kw: Any) -> Any:
    """A client-server request authenticated with an ``as_token``, optionally asserting ``user_id``."""
    params = dict(kw.pop("params", None) or {})
    if user_id is not None:
        params["user_id"] = user_id
    return api.request(method, path if path.startswith("/") else CS + "/" + path, body, token=as_token,
                       params=params or None, **kw)


def register_virtual_user(api: Api, as_token: str, localpart: str, inhibit_login: bool = True) -> Any:
    return as_request(api, as_token, "POST", "register",
                      {"type": "m.login.application_service", "username": localpart,
                       "inhibit_login": inhibit_login})


__all__ = ["AppServiceReceiver", "Registration", "as_request", "register_virtual_user", "q"]
