"""Small pieces for loopback fake HTTP APIs (Alertmanager, Twilio) that tests run in a thread."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from typing import Any


class QuietHandler(BaseHTTPRequestHandler):
    """A ``BaseHTTPRequestHandler`` that logs nothing and answers a whole body in one call."""

    def answer(self, code: int, body: bytes, content_type: str) -> None:
        """Send status ``code`` with ``body`` (bytes) as ``content_type`` and a matching ``Content-Length``."""
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        """Silence ``http.server``'s per-request stderr log; tests assert on what the fake recorded instead."""
