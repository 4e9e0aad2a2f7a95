"""A loopback stand-in for Alertmanager's API v2 silences endpoint, for the ``!silence`` end-to-end test.

Only ``POST /api/v2/silences`` exists. Like Alertmanager it answers ``200 {"silenceID": "<uuid>"}`` for a
body with a non-empty ``matchers`` list (each with ``name``, ``value``, ``isRegex``), ``startsAt``, ``endsAt``
after it, ``createdBy`` and ``comment``; anything else gets a 400 with the reason as text. Every accepted
silence is kept in :attr:`FakeAlertmanager.silences` (the decoded body plus ``id``).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime
from http.server import ThreadingHTTPServer
from typing import Any

from tests.support.fake_http import QuietHandler


def _problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "body must be an object"
    matchers = body.get("matchers")
    if not isinstance(matchers, list) or not matchers:
        return "matchers must be a non-empty list"
    for m in matchers:
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not isinstance(m.get("value"), str):
            return "each matcher needs string name and value"
        if not isinstance(m.get("isRegex"), bool):
            return "each matcher needs a boolean isRegex"
    for key in ("createdBy", "comment", "startsAt", "endsAt"):
        if not isinstance(body.get(key), str) or not body[key]:
            return f"{key} must be a non-empty string"
    try:
        starts = datetime.fromisoformat(body["startsAt"].replace("Z", "+00:00"))
        ends = datetime.fromisoformat(body["endsAt"].replace("Z", "+00:00"))
    except ValueError:
        return "startsAt/endsAt must be RFC 3339 times"
    if ends <= starts:
        return "endsAt must be after startsAt"
    return None


class FakeAlertmanager:
    """An HTTP server on a free loopback port; ``url`` is its base URL. Use :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.silences: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/api/v2/silences":
                    self.answer(404, b"not found", "text/plain")
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self.answer(400, b"invalid JSON", "text/plain")
                    return
                problem = _problem(body)
                if problem is not None:
                    self.answer(400, problem.encode(), "text/plain")
                    return
                silence_id = str(uuid.uuid4())
                with fake.lock:
                    fake.silences.append(dict(body, id=silence_id))
                self.answer(200, json.dumps({"silenceID": silence_id}).encode(), "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-alertmanager", daemon=True)

    def start(self) -> "FakeAlertmanager":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def silences_created_by(self, actor: str) -> list[dict[str, Any]]:
        """The accepted silences whose ``createdBy`` is ``actor``."""
        with self.lock:
            return [s for s in self.silences if s["createdBy"] == actor]
