"""HTTP side of the bridge: alert ingest, the incidents API, ``/metrics`` and the appservice API.

Routes (one listener):
- ``POST /api/v1/alerts/{alertmanager,grafana,zabbix}`` and ``POST /api/v1/alerts/generic/{name}``
- ``GET /api/v1/incidents?state=&since=&until=&route=`` and ``GET /api/v1/incidents/{id}`` (bearer ``api_token``)
- ``GET /metrics`` (Prometheus text format)
- ``/_matrix/app/v1/...`` (the homeserver's calls; see :mod:`appservices.common.transactions`)

Ingest answers: 200 ``{"status": "stored", "incident_id": ...}`` only after the alert is committed;
400 bad JSON or missing field, 401/403 auth, 404 unknown source, 413 too large, 422 wrong payload version,
500 storage failure (Alertmanager then retries). Every refusal is counted in
``tocsin_alert_requests_rejected_total{source, reason}`` and leaves nothing stored or posted.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import Resource

from appservices.common.bodylimit import BodyLimitedSite
from appservices.common.transactions import AppserviceResource, bearer_token, header_text, write_json

from . import store
from .auth import AuthFailed, check_auth
from .config import AlertsConfig
from .incidents import IncidentManager
from .ingest import BadPayload, parse_alertmanager, parse_generic, parse_grafana, parse_zabbix
from .metrics import AlertMetrics

logger = logging.getLogger(__name__)

#: Cap on appservice transactions from the homeserver: up to 100 events of 64 KiB plus EDUs, with room to spare.
MAX_TRANSACTION_BYTES = 32 * 1024 * 1024
#: Cap on any other request (the incidents API and /metrics take no body).
MAX_OTHER_BODY_BYTES = 64 * 1024

KNOWN_SOURCES = ("alertmanager", "grafana", "zabbix")


def source_for_path(path: str) -> str | None:
    """``/api/v1/alerts/<source>[/<name>]`` -> the source's config key (``generic:<name>`` for generic); else ``None``."""
    parts = [p for p in path.split("/") if p]
    if parts[:3] != ["api", "v1", "alerts"] or len(parts) not in (4, 5):
        return None
    return parts[3] if len(parts) == 4 else f"generic:{parts[4]}"


def make_site(config: AlertsConfig, manager: IncidentManager, metrics: AlertMetrics) -> BodyLimitedSite:
    """The bridge's twisted.web Site: :class:`BridgeResource` with request bodies capped as they arrive.

    Ingest bodies are capped at ``max_body_bytes`` (a larger ``Content-Length`` is refused with 413 before any
    of the body is read, a chunked body is cut off at the cap), appservice transactions at
    :data:`MAX_TRANSACTION_BYTES`, everything else at :data:`MAX_OTHER_BODY_BYTES`. Ingest refusals count in
    ``tocsin_alert_requests_rejected_total{source, reason="too_large"}``.
    """

    def max_body_for(path: bytes) -> int:
        text = path.decode("utf-8", "replace")
        if source_for_path(text) is not None:
            return config.max_body_bytes
        if text.startswith("/_matrix/"):
            return MAX_TRANSACTION_BYTES
        return MAX_OTHER_BODY_BYTES

    def on_too_large(path: bytes, declared: int | None, limit: int) -> dict[str, Any]:
        source = source_for_path(path.decode("utf-8", "replace"))
        if source is not None:
            label = source if source in config.sources or source in KNOWN_SOURCES else "unknown"
            metrics.requests_rejected.labels(label, "too_large").inc()
        size = f"body of {declared} bytes" if declared is not None else "body"
        return {"error": f"{size} exceeds {limit} bytes", "reason": "too_large"}

    return BodyLimitedSite(BridgeResource(config, manager, metrics), max_body_for, on_too_large)


def parse_time_param(value: str) -> int:
    """``since``/``until`` query value -> ms since the epoch. Accepts integer ms or ISO 8601 (``Z`` allowed; no offset means UTC).

    Raises:
        ValueError: neither form.
    """
    if value.isascii() and value.isdigit():
        if len(value) > 15:  # past the year 33658: beyond what the store holds (64-bit) and any real alert
            raise ValueError(f"{value[:20]}... is out of range")
        return int(value)
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


# A JSON escape of NUL or of a UTF-16 surrogate (paired or not): only an escape can put either into a string.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89abcdefABCDEF])")
_UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")


def replace_unstorable_characters(value: Any) -> Any:
    """``value`` (parsed JSON) with every NUL and unpaired UTF-16 surrogate in its strings and keys replaced by
    U+FFFD. Neither can be stored (SQLite ends text at NUL; UTF-8 has no surrogates) or sent to the homeserver;
    paired surrogate escapes were already joined into one character by the JSON parser."""
    def clean(s: str) -> str:
        return _UNSTORABLE_CHAR.sub("\ufffd", s) if _UNSTORABLE_CHAR.search(s) else s

    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = clean(item)
        elif isinstance(item, dict):
            cleaned = {clean(k): v for k, v in item.items()}
            container[key] = cleaned
            stack.extend((cleaned, k) for k in cleaned)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
    return root[0]


class BridgeResource(Resource):
    """The root resource: dispatches on the request path (see the module docstring)."""

    isLeaf = True

    def __init__(self, config: AlertsConfig, manager: IncidentManager, metrics: AlertMetrics) -> None:
        super().__init__()
        self.config = config
        self.manager = manager
        self.metrics = metrics
        self.appservice = AppserviceResource(config.registration.hs_token, manager.on_transaction)

    def render(self, request: server.Request) -> bytes | int:
        """Dispatch one request by path: ``/_matrix/app/...`` to the appservice receiver, ``GET /metrics`` (Prometheus
        text), ``POST /api/v1/alerts/{source}[/{name}]`` to ingestion, ``GET /api/v1/incidents[/{id}]``; anything
        else is a 404 JSON ``{"error": ...}`` (405 for a non-POST to an alerts path). Returns the body or NOT_DONE_YET.
        """
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        method = request.method.decode()
        if parts[:1] == ["_matrix"]:
            return self.appservice.render(request)
        if parts == ["metrics"] and method == "GET":
            request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
            return generate_latest(self.metrics.registry)
        if parts[:3] == ["api", "v1", "alerts"] and len(parts) in (4, 5) and parts[-1]:
            if method != "POST":
                return self._json(request, 405, {"error": "use POST"})
            source = parts[3] if len(parts) == 4 else f"generic:{parts[4]}"
            return self._ingest(request, source)
        if parts[:3] == ["api", "v1", "incidents"] and method == "GET" and len(parts) in (3, 4):
            return self._incidents(request, parts[3] if len(parts) == 4 else None)
        return self._json(request, 404, {"error": "not found"})

    @staticmethod
    def _json(request: server.Request, code: int, body: Any) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _reject(self, request: server.Request, source: str, code: int, reason: str, msg: str) -> bytes:
        self.metrics.requests_rejected.labels(source, reason).inc()
        return self._json(request, code, {"error": msg, "reason": reason})

    def _ingest(self, request: server.Request, source: str) -> bytes | int:
        src = self.config.sources.get(source)
        if src is None:
            return self._reject(request, source if source in KNOWN_SOURCES else "unknown",
                                404, "unknown_source", f"source {source!r} is not configured")
        # The site refuses oversized bodies while they arrive (see make_site); this re-check only guards a
        # BridgeResource mounted on a plain Site.
        limit = self.config.max_body_bytes
        body = request.content.read(limit + 1)
        if len(body) > limit:
            return self._reject(request, source, 413, "too_large", f"body exceeds {limit} bytes")
        headers = {
            h.lower(): header_text(request, h)
            for h in (src.auth.hmac_header, src.auth.hmac_timestamp_header)
            if h
        }
        try:
            check_auth(src.auth, header_text(request, "authorization"), headers, body)
        except AuthFailed as e:
            return self._reject(request, source, e.code, "unauthorized" if e.code == 401 else "forbidden", str(e))
        try:
            decoded = json.loads(body)
        except (ValueError, UnicodeDecodeError) as e:
            return self._reject(request, source, 400, "invalid_json", f"invalid JSON: {e}")
        except RecursionError:
            return self._reject(request, source, 400, "invalid_json", "invalid JSON: nested too deeply")
        if _UNSTORABLE_ESCAPE.search(body) is not None:
            # An alert must get through: a lone surrogate or NUL (neither can be stored or sent on) becomes U+FFFD.
            decoded = replace_unstorable_characters(decoded)
        try:
            if source == "alertmanager":
                group = parse_alertmanager(decoded)
            elif source == "grafana":
                group = parse_grafana(decoded)
            elif source == "zabbix":
                group = parse_zabbix(decoded)
            else:
                group = parse_generic(decoded, source.split(":", 1)[1], src.template)
        except BadPayload as e:
            return self._reject(request, source, e.code, e.reason, str(e))

        def stored(incident_id: str | None) -> None:
            write_json(request, 200, {"status": "stored", "incident_id": incident_id})

        def failed(f: Failure) -> None:
            logger.error("storing alert from %s failed: %s", source, f.getTraceback())
            self.metrics.requests_rejected.labels(source, "storage_error").inc()
            write_json(request, 500, {"error": "could not store the alert; retry", "reason": "storage_error"})

        self.manager.ingest(group).addCallbacks(stored, failed)
        return server.NOT_DONE_YET

    def _incidents(self, request: server.Request, incident_id: str | None) -> bytes | int:
        token = bearer_token(request)
        if self.config.api_token is None:
            return self._json(request, 403, {"error": "the incidents API is disabled (no api_token configured)"})
        if token is None:
            return self._json(request, 401, {"error": "missing bearer token"})
        if not hmac.compare_digest(token.encode(), self.config.api_token.encode()):
            return self._json(request, 403, {"error": "invalid token"})

        def arg(name: str) -> str | None:
            values = request.args.get(name.encode())
            return values[0].decode("utf-8") if values else None

        try:
            since = parse_time_param(arg("since")) if arg("since") else None
            until = parse_time_param(arg("until")) if arg("until") else None
        except ValueError as e:
            return self._json(request, 400, {"error": f"bad since/until: {e}"})
        state = arg("state")
        if state and state not in ("firing", "acknowledged", "resolved"):
            return self._json(request, 400, {"error": "state must be firing, acknowledged or resolved"})

        def query(txn: store.Txn) -> Any:
            if incident_id is not None:
                inc = store.get_incident(txn, incident_id)
                incidents = [inc] if inc else []
            else:
                incidents = store.list_incidents(txn, state, since, until, arg("route"))
            out = []
            for inc in incidents:
                d = inc.to_json()
                d["actions"] = store.list_actions(txn, inc.incident_id)
                d["alerts"] = [a.to_json() for a in store.load_group(txn, inc).alerts]
                out.append(d)
            return out

        def done(rows: list[dict[str, Any]]) -> None:
            if incident_id is not None:
                if rows:
                    write_json(request, 200, rows[0])
                else:
                    write_json(request, 404, {"error": f"no incident {incident_id}"})
            else:
                write_json(request, 200, {"incidents": rows})

        def failed(f: Failure) -> None:
            logger.error("incidents query failed: %s", f.getTraceback())
            write_json(request, 500, {"error": "query failed"})

        self.manager.db.run(query).addCallbacks(done, failed)
        return server.NOT_DONE_YET
