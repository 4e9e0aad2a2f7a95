"""The homeserver -> appservice side of the Application Service API.

:class:`AppserviceResource` answers, under ``/_matrix/app/v1/``:

- ``PUT transactions/{txnId}``: a batch of events (spec: "Pushing events"); the handler runs and only then
  is ``{}`` returned, so the homeserver retries if the handler fails.
- ``POST ping`` (spec: "Pinging"), ``GET users/{userId}`` and ``GET rooms/{roomAlias}`` (spec: "Querying"),
  which answer "not found" because the bridges create their users and rooms themselves.

The homeserver authenticates with the registration's ``hs_token`` as ``Authorization: Bearer`` (or the
legacy ``access_token`` query parameter, which older homeservers send).
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Callable
from urllib.parse import unquote

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

logger = logging.getLogger(__name__)

TransactionHandler = Callable[[str, list[dict[str, Any]]], "Deferred[None] | None"]


def write_json(request: server.Request, code: int, body: Any) -> None:
    """Finish ``request`` with status ``code`` and ``body`` encoded as UTF-8 JSON."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.write(json.dumps(body, ensure_ascii=False).encode("utf-8"))
    request.finish()


def matrix_error(request: server.Request, code: int, errcode: str, msg: str) -> bytes:
    """Set status and headers on ``request`` and return a Matrix error body (for synchronous render_*)."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps({"errcode": errcode, "error": msg}).encode("utf-8")


def header_text(request: server.Request, name: str) -> str | None:
    """Header ``name`` as text, or ``None``. Decoded as Latin-1, which never fails: a value that is not UTF-8
    (``Bearer \xff\xfe``) is then simply a token or signature that does not match, never an error."""
    raw = request.getHeader(name.encode("ascii"))
    return raw.decode("latin-1") if raw is not None else None


def bearer_token(request: server.Request) -> str | None:
    """The token from ``Authorization: Bearer <token>``, or ``None``."""
    header = header_text(request, "authorization")
    if header and header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


class AppserviceResource(Resource):
    """twisted.web resource mounted at the site root that handles ``/_matrix/app/v1/*``.

    Args:
        hs_token: the registration's ``hs_token``.
        on_transaction: called with ``(txn_id, events)``; may return a Deferred. A failure makes the reply a
            500 so the homeserver retries the transaction.
    """

    isLeaf = True

    def __init__(self, hs_token: str, on_transaction: TransactionHandler) -> None:
        super().__init__()
        self.hs_token = hs_token
        self.on_transaction = on_transaction

    def _authorised(self, request: server.Request) -> bool:
        token = bearer_token(request)
        if token is None:
            args = request.args.get(b"access_token") or []
            token = args[0].decode("utf-8", "replace") if args else None
        return token is not None and hmac.compare_digest(token.encode(), self.hs_token.encode())

    def render(self, request: server.Request) -> bytes | int:
        """Serve the Application Service API (spec: "Application Service API"): ``PUT /transactions/{txnId}``,
        ``POST /ping`` (``{}``), and 404 ``M_NOT_FOUND`` for user/room queries. Without an ``hs_token`` answers 401
        ``M_UNAUTHORIZED``, with a wrong one 403 ``M_FORBIDDEN``; other paths 404 ``M_UNRECOGNIZED``.
        """
        if not self._authorised(request):
            has_token = request.getHeader(b"authorization") or request.args.get(b"access_token")
            if has_token:
                return matrix_error(request, 403, "M_FORBIDDEN", "Invalid hs_token")
            return matrix_error(request, 401, "M_UNAUTHORIZED", "Missing hs_token")
        # postpath is relative to where we are mounted: ["_matrix", "app", "v1", ...] at the root.
        parts = [unquote(p.decode("utf-8")) for p in request.postpath]
        if parts[:3] == ["_matrix", "app", "v1"]:
            parts = parts[3:]
        method = request.method.decode()
        if method == "PUT" and len(parts) == 2 and parts[0] == "transactions":
            return self._transaction(request, parts[1])
        if method == "POST" and parts == ["ping"]:
            request.setHeader(b"Content-Type", b"application/json")
            return b"{}"
        if method == "GET" and len(parts) == 2 and parts[0] in ("users", "rooms"):
            return matrix_error(request, 404, "M_NOT_FOUND", "Not provided by this appservice")
        return matrix_error(request, 404, "M_UNRECOGNIZED", "Unrecognized request")

    def _transaction(self, request: server.Request, txn_id: str) -> bytes | int:
        try:
            body = json.loads(request.content.read())
            events = body["events"]
            if not isinstance(events, list):
                raise ValueError("events must be a list")
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            return matrix_error(request, 400, "M_BAD_JSON", f"Bad transaction body: {type(e).__name__}: {e}")
        # An item that is not an event object is skipped (and logged), not a reason to fail the transaction:
        # the homeserver would retry the same transaction forever.
        good = [e for e in events if isinstance(e, dict)]
        if len(good) != len(events):
            logger.warning("transaction %s: skipped %d items that are not event objects", txn_id,
                           len(events) - len(good))
            events = good

        def done(_: Any) -> None:
            if not request.finished:
                write_json(request, 200, {})

        def failed(f: Failure) -> None:
            logger.error("transaction %s failed: %s", txn_id, f.getTraceback())
            if not request.finished:
                write_json(request, 500, {"errcode": "M_UNKNOWN", "error": "Transaction handling failed"})

        maybeDeferred(self.on_transaction, txn_id, events).addCallbacks(done, failed)
        return server.NOT_DONE_YET
