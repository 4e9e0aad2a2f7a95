"""The HTTP front: request class with a body-size cap, the JSON router, CORS, access log and request metrics.

Servlets (in ``homeserver.rest``) register ``async def handler(request, **path_params) -> (status, body)`` for a
method and a path regex; everything else (errors as Matrix JSON, 404/405 ``M_UNRECOGNIZED``, CORS, metrics, the
access log, cancelling work when the client goes away) happens here once.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import urllib.parse
from typing import Any, Awaitable, Callable, Iterable

import orjson
from prometheus_client import Counter, Histogram
from twisted.internet import defer
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from twisted.web.http_headers import Headers

from homeserver.events.canonical import check_no_lone_surrogates
from homeserver.http.errors import (
    BadJsonError,
    Codes,
    InvalidParamError,
    MatrixError,
    MissingParamError,
    NotJsonError,
    TooLargeError,
    UnrecognizedRequestError,
)

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("homeserver.access")

JsonDict = dict[str, Any]
Handler = Callable[..., Awaitable[tuple[int, Any]]]

requests_total = Counter(
    "tocsin_http_requests_total", "HTTP requests answered", ["method", "servlet", "code"]
)
request_seconds = Histogram(
    "tocsin_http_request_duration_seconds", "Time to answer an HTTP request (seconds)", ["servlet"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

CORS_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"Access-Control-Allow-Origin", b"*"),
    (b"Access-Control-Allow-Methods", b"GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    (b"Access-Control-Allow-Headers", b"X-Requested-With, Content-Type, Authorization, Date"),
    (b"Access-Control-Expose-Headers", b"Synapse-Trace-Id, Server"),
)

# After answering 413, up to this many more bytes are read and dropped so that clients which send the whole body
# before reading the reply still see the error; a longer body gets its connection closed.
DISCARD_AFTER_REJECT = 64 * 1024 * 1024
# Requests cancelled when their client disconnects: reads only (see JsonRouter.render).
_CANCELLABLE_METHODS = frozenset({b"GET", b"HEAD"})
# The start of an HTTP request line ("GET /..."), to tell an over-long URL from an over-long header line.
_REQUEST_LINE_START = re.compile(rb"^[A-Z]{3,16} \S")

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON for a reply.

    orjson encodes the common case about ten times faster than the standard library (every /sync answer passes
    here). What orjson refuses (integers beyond 64 bits, e.g. in stored account data, or non-string keys) goes
    through the standard encoder, which also keeps refusing what JSON cannot hold (NaN: ValueError; lone
    surrogates: UnicodeEncodeError) instead of orjson writing ``null``.
    """
    try:
        return _fast_dumps(body)
    except (TypeError, ValueError):
        return _encoder.encode(body).encode("utf-8")


def _fast_dumps(body: Any) -> bytes:
    data = orjson.dumps(body)
    if b"null" in data and _has_nan(body):
        raise ValueError("NaN is not JSON")
    return data


def _has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(_has_nan(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_nan(v) for v in value)
    return False


_date_header: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    """The ``Date`` header value for now, formatted once per second rather than once per response."""
    global _date_header
    now = int(time.time())
    if _date_header[0] != now:
        _date_header = (now, http.datetimeToString(now))
    return _date_header[1]


class MatrixHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP/1.1 channel, remembering its two addresses: every request asks for them, and the local one
    costs a ``getsockname`` system call each time. (The site serves plain HTTP/1.1 only; TLS and HTTP/2 are for
    the reverse proxy in front.)"""

    _peer: Any = None
    _host: Any = None

    def getPeer(self) -> Any:  # noqa: N802 - Twisted API
        """The client's address (cached for the connection)."""
        if self._peer is None:
            self._peer = self.transport.getPeer()
        return self._peer

    def getHost(self) -> Any:  # noqa: N802 - Twisted API
        """The local address (cached for the connection)."""
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802 - Twisted API
        """A request line or header line over ``MAX_LENGTH`` (16 KiB): answer 414 (request line: the URL, e.g. a
        huge inline ``filter``) or 431 (a header) with ``M_TOO_LARGE``, then close the connection, where Twisted
        would close it without a word. The rest of the request cannot be parsed, so nothing else is read."""
        if _REQUEST_LINE_START.match(line):
            status, what = b"414 URI Too Long", "request line (URL)"
        else:
            status, what = b"431 Request Header Fields Too Large", "request header line"
        error = MatrixError(int(status[:3]), f"The {what} is longer than {self.MAX_LENGTH} bytes", Codes.TOO_LARGE)
        self.transport.write(_raw_error_response(status, error))
        self.loseConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802 - overrides Twisted's HTTPChannel
        """Twisted's answer to a request it cannot parse (headers over 16 KiB in all or over 500 of them, a bad
        ``Content-Length`` or chunk size, a malformed request line or header): still 400, but with a Matrix
        error body instead of an empty one. (Twisted's own method; tests/integration/test_bad_input.py checks
        that it is still the one called.)"""
        error = MatrixError(400, "Malformed HTTP request (framing, request line or headers)", Codes.UNKNOWN)
        self.transport.write(_raw_error_response(b"400 Bad Request", error))
        self.loseConnection()


def _raw_error_response(status: bytes, error: MatrixError) -> bytes:
    """A complete HTTP/1.1 response (``status`` like ``b"413 Request Entity Too Large"``, the error's JSON body,
    CORS headers, ``Connection: close``) for answers written straight to the transport, outside any Request: a
    refused body, a request that cannot be parsed."""
    body = encode_json(error.error_dict())
    head = [b"HTTP/1.1 " + status, b"Content-Type: application/json",
            b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
    head += [k + b": " + v for k, v in CORS_HEADERS]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class MatrixRequest(server.Request):
    """A request whose body is capped while it is received.

    ``site.max_body_for(path)`` gives the cap in bytes. A ``Content-Length`` over the cap is answered with
    413 ``M_TOO_LARGE`` before any of the body is read; a chunked body is cut off as soon as it passes the cap.

    Memory per waiting request (a held long-poll ``/sync``) is kept small: the attributes Twisted sets after
    ``__init__`` and ours live in slots, so the instance dict keeps only what Twisted's ``__init__`` sets and stays
    a key-sharing dict (Twisted sets those later attributes in an order that differs between requests, which
    turned every request's dict into a full one, ~1.3 KiB more); and the headers every client-API answer carries
    are added when the answer is written, not while it waits (see :meth:`write`).
    """

    # Set by Twisted after __init__ (class defaults on Twisted's Request, copied in __init__ since a slot hides
    # them), then ours.
    _TWISTED_LATE = ("content", "args", "method", "uri", "clientproto", "path", "site", "prepath", "postpath")
    __slots__ = _TWISTED_LATE + ("requester", "servlet_name", "start_time", "_body_received", "_body_limit",
                                 "_aborted", "api_headers", "cancel_on_disconnect")

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        for name in self._TWISTED_LATE:
            setattr(self, name, getattr(server.Request, name))
        super().__init__(channel, *args, **kwargs)
        self.requester: Any = None
        self.servlet_name = "unknown"
        self.start_time = time.monotonic()
        self._body_received = 0
        self._body_limit: int | None = None
        self._aborted = False
        self.api_headers = False  # add Date, Server and CORS headers at the first write (JsonRouter.render)
        # The handler's Deferred, cancelled if the client goes away before the answer (reads only, see
        # JsonRouter.render): a slot read by connectionLost rather than a notifyFinish() Deferred and its errback.
        self.cancel_on_disconnect: defer.Deferred | None = None

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802 - Twisted API
        """Twisted hook: the connection closed before the answer was finished. Cancels the handler's Deferred
        if the request is a read (a dropped long-poll ``/sync`` frees its waiter at once)."""
        super().connectionLost(reason)
        d, self.cancel_on_disconnect = self.cancel_on_disconnect, None
        if d is not None:
            d.cancel()

    def release_input(self) -> None:
        """Drop what the client sent once the handler has read all of it: the parsed query arguments, the request
        headers and the (empty) body buffer. For a handler about to wait long (a long-polling ``/sync`` holds
        about 1 KiB less while it waits). Afterwards the ``parse_*`` helpers find no arguments and ``getHeader``
        returns None; the method, path, URI and client address stay (the access log and metrics use them)."""
        self.args = {}
        self.requestHeaders = Headers()
        if self.content is not None:
            self.content.close()
            self.content = None

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted API
        """Twisted hook with the declared ``Content-Length`` (None when chunked): answer 413 ``M_TOO_LARGE`` if over the
        cap.
        """
        site = getattr(self.channel, "site", None)
        if site is not None and hasattr(site, "max_body_for"):
            path = self.channel._path if hasattr(self.channel, "_path") else b""
            self._body_limit = site.max_body_for(path)
        if length is not None and self._body_limit is not None and length > self._body_limit:
            self._reject_too_large(length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        """Twisted hook per body chunk: count bytes, answer 413 ``M_TOO_LARGE`` once over the cap, drop the
        connection after ``DISCARD_AFTER_REJECT`` more bytes of a refused body.
        """
        self._body_received += len(data)
        if self._aborted:
            # Already answered 413: drop the rest unread-into-memory so the client can read our answer, but do
            # not keep a connection that streams without end.
            if self._body_received > self._body_limit + DISCARD_AFTER_REJECT:
                self.channel.transport.loseConnection()
            return
        if self._body_limit is not None and self._body_received > self._body_limit:
            self._reject_too_large()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802 - Twisted API
        """Twisted hook once the body is complete: a refused request is already answered, so only close the connection.
        """
        if self._aborted:
            self.channel.transport.loseConnection()
            return
        super().requestReceived(command, path, version)

    def process(self) -> None:
        """Twisted hook once the request is complete: hand it to the site's resource.

        The client listener's root is a :class:`JsonRouter` leaf, which routes on ``request.path`` itself, so the
        resource-tree walk of ``Site.getResourceFor`` (and its per-segment unquoting) is skipped for it.
        """
        root = self.channel.site.resource
        if not isinstance(root, JsonRouter):
            super().process()
            return
        self.site = self.channel.site
        self.prepath = []
        self.postpath = []
        try:
            self.render(root)
        except BaseException:
            self.processingFailed(Failure())

    def _reject_too_large(self, declared_length: int | None = None) -> None:
        self._aborted = True
        error = TooLargeError(f"Request body is over the limit of {self._body_limit} bytes")
        transport = self.channel.transport
        transport.write(_raw_error_response(b"413 Request Entity Too Large", error))
        requests_total.labels("?", "body_too_large", "413").inc()
        limit = self._body_limit or 0
        if declared_length is not None and declared_length > limit + DISCARD_AFTER_REJECT:
            transport.loseConnection()

    def write(self, data: bytes) -> None:
        """Twisted's ``write``; the first one of a client-API answer (every answer goes through here: Twisted's
        ``finish`` writes ``b""`` when nothing was written) first sets the headers all of them carry: ``Date``,
        ``Server: Tocsin`` and the CORS headers of the spec's "Web browser clients" section. Set here rather than
        on arrival, a long-poll waiting for events holds no response headers."""
        if self.api_headers and not self.startedWriting:
            self.api_headers = False
            headers = self.responseHeaders
            headers.setRawHeaders(b"Date", [_http_date()])
            headers.setRawHeaders(b"Server", [b"Tocsin"])
            for k, v in CORS_HEADERS:
                headers.setRawHeaders(k, [v])
        super().write(data)

    def get_client_ip(self) -> str:
        """The peer's IP address as text, ``-`` when the transport has none (e.g. a UNIX socket)."""
        return self.getClientAddress().host if hasattr(self.getClientAddress(), "host") else "-"


class _Route:
    __slots__ = ("pattern", "methods", "name", "segment")

    def __init__(self, pattern: re.Pattern[str], name: str) -> None:
        self.pattern = pattern
        self.methods: dict[bytes, Handler] = {}
        self.name = name
        self.segment: str | None = None


_CLIENT_PATH = "/_matrix/client/"
# A client-API route pattern whose version is a literal or a group of literals (``v1``, ``(?:r0|v3)``) and whose
# next segment is a literal: group 1 is that segment (``sync`` in ``/_matrix/client/(?:r0|v3)/sync``). Such a route
# matches only paths whose fifth "/"-separated part is exactly that segment.
_CLIENT_ROUTE_SEGMENT = re.compile(r"/_matrix/client/(?:[A-Za-z0-9_]+|\(\?:[A-Za-z0-9_|]+\))/([A-Za-z0-9_\-]+)(?:/|$)")


class JsonRouter(resource.Resource):
    """Dispatches requests by path regex and method to async handlers that return ``(status, json_body)``.

    A handler may also return ``(status, None)`` after writing the response itself (media downloads).
    """

    isLeaf = True

    def __init__(self, hs: Any = None) -> None:
        super().__init__()
        self.hs = hs
        self._routes: list[_Route] = []
        self._by_pattern: dict[str, _Route] = {}
        # Candidate routes by a client-API path's first segment after the version (see _candidates); built at the
        # first request, dropped by register().
        self._by_segment: dict[str, list[_Route]] | None = None
        self._client_unkeyed: list[_Route] = []
        self._other: list[_Route] = []

    def register(self, methods: str | Iterable[str], pattern: str, handler: Handler, name: str | None = None) -> None:
        """Route ``methods`` on paths fully matching ``pattern`` (a regex on the percent-encoded path; named
        groups are percent-decoded and passed to the handler as keyword arguments)."""
        if isinstance(methods, str):
            methods = [methods]
        route = self._by_pattern.get(pattern)
        if route is None:
            route = _Route(re.compile("^" + pattern + "$"), name or handler.__qualname__)
            key = _CLIENT_ROUTE_SEGMENT.match(pattern)
            route.segment = key.group(1) if key else None
            self._by_pattern[pattern] = route
            self._routes.append(route)
            self._by_segment = None
        for method in methods:
            route.methods[method.upper().encode("ascii")] = handler
            if method.upper() == "GET":
                route.methods.setdefault(b"HEAD", handler)

    def render(self, request: MatrixRequest) -> int:  # type: ignore[override]
        """Twisted entry point: mark the answer for the ``Date``, ``Server`` and CORS headers (added at its first
        write, :meth:`MatrixRequest.write`), dispatch to the matching servlet asynchronously
        and return ``NOT_DONE_YET``. OPTIONS answers 200 ``{}``; unknown paths 404, a known path with another
        method 405, both ``M_UNRECOGNIZED``.

        A read (GET, HEAD) whose client goes away is cancelled: a dropped long-poll ``/sync`` frees its waiter at
        once. A write (PUT, POST, DELETE) runs to its end, as in Synapse, where only reads opt in to
        cancellation: the client may not hear the answer, but its retry (same ``txn_id``) finds the work done,
        never half done.
        """
        request.api_headers = True
        d = defer.ensureDeferred(self._dispatch(request))
        if request.method in _CANCELLABLE_METHODS and not d.called:
            request.cancel_on_disconnect = d
        return server.NOT_DONE_YET

    def _route_for(self, path: str) -> tuple[_Route, dict[str, str]]:
        """The route matching ``path`` (percent-encoded) and its percent-decoded named groups. A function of its
        own so the regex match object is not kept alive, for the whole wait, by a long-poll's dispatch frame.

        Raises UnrecognizedRequestError (404) for no match, InvalidParamError (400) for a NUL in a parameter.
        """
        for route in self._candidates(path):
            match = route.pattern.match(path)
            if match:
                kwargs = {k: _unquote_path_param(v) for k, v in match.groupdict().items() if v is not None}
                if any("\x00" in v for v in kwargs.values()):
                    # No identifier, event type, state key or txnId may hold NUL (PostgreSQL text cannot store it).
                    raise InvalidParamError("NUL characters are not allowed in the path")
                return route, kwargs
        raise UnrecognizedRequestError("Unrecognized request")

    def _candidates(self, path: str) -> list[_Route]:
        """The routes that can match ``path``, in registration order (the first match wins, as in a scan of all).

        A route whose pattern starts with ``/_matrix/client/`` only matches client-API paths, and one that also
        names the segment after the version literally (``/_matrix/client/(?:r0|v3)/sync``) only paths with that
        segment. So a request is tried against the routes that can match it, not all hundred-odd: a /sync two
        regexes instead of thirty.
        """
        index = self._by_segment
        if index is None:
            index = self._build_index()
        if path.startswith(_CLIENT_PATH):
            parts = path.split("/", 5)
            if len(parts) > 4:
                return index.get(parts[4], self._client_unkeyed)
            return self._client_unkeyed
        return self._other

    def _build_index(self) -> dict[str, list[_Route]]:
        client = [r for r in self._routes if r.pattern.pattern.startswith("^" + _CLIENT_PATH)]
        self._client_unkeyed = [r for r in client if r.segment is None]
        self._other = [r for r in self._routes if r not in client]
        self._by_segment = {segment: [r for r in client if r.segment in (None, segment)]
                            for segment in {r.segment for r in client if r.segment is not None}}
        return self._by_segment

    async def _dispatch(self, request: MatrixRequest) -> None:
        path = request.path.decode("ascii", "replace")
        method = request.method or b"GET"
        servlet = "unmatched"
        try:
            if method == b"OPTIONS":
                servlet = "OPTIONS"
                self._respond(request, 200, {})
                return
            route, kwargs = self._route_for(path)
            servlet = route.name
            request.servlet_name = servlet
            handler = route.methods.get(method)
            if handler is None:
                raise UnrecognizedRequestError("Unrecognized request", code=405)
            code, body = await handler(request, **kwargs)
            if body is not None or not request.finished:
                if body is None and not request.startedWriting:
                    body = {}
                if body is not None:
                    self._respond(request, code, body)
        except defer.CancelledError:
            servlet = servlet or "cancelled"
            return
        except MatrixError as e:
            self._respond(request, e.code, e.error_dict())
        except Exception:  # noqa: BLE001 - the client gets a 500 and the log gets the traceback
            logger.error("request %s %s failed\n%s", method.decode(), _redact(path),
                         Failure().getTraceback())
            self._respond(request, 500, {"errcode": "M_UNKNOWN", "error": "Internal server error"})
        finally:
            elapsed = time.monotonic() - request.start_time
            code = request.code
            _count_request(method, servlet, code, elapsed)
            if self.hs is None or self.hs.config.access_log:
                user = getattr(request.requester, "user_id", "-") if request.requester else "-"
                access_logger.info('%s %s "%s %s" %d %.1fms', request.get_client_ip(), user,
                                   method.decode("ascii", "replace"), _redact(request.uri.decode("ascii", "replace")),
                                   code, elapsed * 1000)

    @staticmethod
    def _respond(request: MatrixRequest, code: int, body: Any) -> None:
        """Write ``body`` as the JSON reply with status ``code`` and finish the request. Always finishes it: a body
        JSON cannot hold (an error message echoing a lone surrogate, a NaN) is sent ASCII-escaped, or as a 500
        when even that fails, rather than leaving the client waiting forever."""
        if request.finished or request._disconnected:
            return
        try:
            data = encode_json(body)
        except UnicodeEncodeError:
            # "\ud800" escapes are valid JSON text for what the client itself sent.
            data = json.dumps(body, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")
        except Exception:  # noqa: BLE001 - the reply must still be finished
            logger.error("reply body for %s is not JSON\n%s", request.servlet_name, Failure().getTraceback())
            code, data = 500, b'{"errcode":"M_UNKNOWN","error":"Internal server error"}'
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", str(len(data)).encode())
        request.setHeader(b"Cache-Control", b"no-cache, no-store, must-revalidate")
        if request.method != b"HEAD":
            request.write(data)
        request.finish()


# Labelled children of the request metrics by (method, servlet, code): looking them up through .labels() on every
# request costs more than counting. Bounded by the routes x methods x status codes the router can answer.
_request_metrics: dict[tuple[bytes, str, int], tuple[Any, Any]] = {}


def _count_request(method: bytes, servlet: str, code: int, elapsed_s: float) -> None:
    key = (method, servlet, code)
    children = _request_metrics.get(key)
    if children is None:
        children = (requests_total.labels(method.decode("ascii", "replace"), servlet, str(code)),
                    request_seconds.labels(servlet))
        if len(_request_metrics) < 10_000:
            _request_metrics[key] = children
    children[0].inc()
    children[1].observe(elapsed_s)


_TOKEN_RE = re.compile(r"(access_token=)[^&]*")


def _redact(uri: str) -> str:
    return _TOKEN_RE.sub(r"\1<redacted>", uri)


class MatrixSite(server.Site):
    """The Site for one listener: uses :class:`MatrixRequest` and knows the per-path body caps (bytes)."""

    def __init__(self, root: resource.Resource, max_request_body_size: int, max_upload_size: int) -> None:
        super().__init__(root, requestFactory=MatrixRequest)
        self.protocol = MatrixHTTPChannel
        self.max_request_body_size = max_request_body_size
        self.max_upload_size = max_upload_size
        self.noisy = False

    def max_body_for(self, path: bytes) -> int:
        """The body cap in bytes for ``path``: ``max_upload_size`` for media uploads, else ``max_request_body_size``."""
        if path.startswith(b"/_matrix/media/") and b"/upload" in path:
            return self.max_upload_size
        return self.max_request_body_size

    def log(self, request: Any) -> None:  # our router writes the access log
        """Twisted's access log, disabled: the router writes its own (with access tokens redacted)."""
        pass


# -- request parsing helpers --------------------------------------------------------------------------------------


def _reject_constant(value: str) -> Any:
    raise BadJsonError(f"Bad JSON value: {value}")


# A JSON escape of a UTF-16 surrogate (paired or not): U+D800..U+DFFF.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def _finite_float(text: str) -> float:
    # "1e400" parses to infinity, which no JSON encoder can write back: every later read of it would fail.
    value = float(text)
    if math.isinf(value):
        raise BadJsonError(f"Number {text[:40]} is out of range")
    return value


# One decoder for every request body (``json.loads`` with an option builds a new one per call).
_request_decoder = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def parse_json_value(request: MatrixRequest) -> Any:
    """The request body as JSON (any type). Raises NotJsonError (400 ``M_NOT_JSON``) for bodies that are not JSON,
    including ``NaN``/``Infinity`` and invalid UTF-8, and BadJsonError (400 ``M_BAD_JSON``) for a number beyond
    the range of a double (``1e400``), which no reply could hold, and for a string or key
    holding an unpaired UTF-16 surrogate (``"\\ud800"``), which no store or reply could hold."""
    request.content.seek(0)
    raw = request.content.read()
    try:
        value = _request_decoder.decode(raw.decode("utf-8"))
    except BadJsonError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise NotJsonError(f"Content not JSON: {e.__class__.__name__}") from e
    # Strict UTF-8 decoding already refused encoded surrogates; only a "\uD800"-style escape can make one, so
    # the walk runs only for bodies that hold such an escape.
    if _SURROGATE_ESCAPE.search(raw) is not None:
        check_no_lone_surrogates(value)
    return value


def parse_json_object(request: MatrixRequest, allow_empty_body: bool = False) -> JsonDict:
    """The request body as a JSON object. An empty body is ``{}`` when ``allow_empty_body``.
    Raises NotJsonError or BadJsonError (400 ``M_BAD_JSON`` "Content must be a JSON object")."""
    if allow_empty_body:
        request.content.seek(0)
        if not request.content.read(1).strip():
            request.content.seek(0)
            rest = request.content.read().strip()
            if not rest:
                return {}
    body = parse_json_value(request)
    if not isinstance(body, dict):
        raise BadJsonError("Content must be a JSON object.")
    return body


def query_args(request: MatrixRequest) -> dict[bytes, list[bytes]]:
    """The request's query arguments, ``{name: [value, ...]}`` as bytes (empty when none)."""
    return request.args or {}


def parse_string(request: MatrixRequest, name: str, default: str | None = None, required: bool = False,
                 allowed: Iterable[str] | None = None) -> str | None:
    """A query-string parameter as text. Raises MissingParamError / InvalidParamError."""
    values = (request.args or {}).get(name.encode("ascii"))
    if not values:
        if required:
            raise MissingParamError(f"Missing required query parameter: {name}")
        return default
    try:
        value = values[0].decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidParamError(f"Query parameter {name} is not valid UTF-8") from e
    if allowed is not None and value not in allowed:
        raise InvalidParamError(f"Query parameter {name} must be one of {', '.join(sorted(allowed))}")
    return value


_INTEGER_RE = re.compile(r"^-?[0-9]+$")


def _unquote_path_param(value: str) -> str:
    """Percent-decode one path segment as strict UTF-8 (400 ``M_INVALID_PARAM`` otherwise): invalid bytes must not
    turn into U+FFFD inside event types, state keys or transaction IDs."""
    try:
        return urllib.parse.unquote(value, errors="strict")
    except UnicodeDecodeError as e:
        raise InvalidParamError("Path parameters must be valid UTF-8") from e


def parse_integer(request: MatrixRequest, name: str, default: int | None = None, required: bool = False,
                  minimum: int | None = None, maximum: int | None = None) -> int | None:
    """A query-string parameter as int, range-checked. Raises MissingParamError / InvalidParamError."""
    value = parse_string(request, name, None, required)
    if value is None:
        return default
    if not _INTEGER_RE.match(value) or len(value) > 400:
        raise InvalidParamError(f"Query parameter {name} must be an integer")
    number = int(value)
    if minimum is not None and number < minimum:
        raise InvalidParamError(f"Query parameter {name} must be at least {minimum}")
    if maximum is not None and number > maximum:
        number = maximum
    elif abs(number) > 2**53 - 1:
        # Beyond every stored integer (timestamps, positions): refuse instead of overflowing the database.
        raise InvalidParamError(f"Query parameter {name} is out of range")
    return number


def parse_boolean(request: MatrixRequest, name: str, default: bool = False) -> bool:
    """Query parameter ``name`` as a bool (``true``/``1``, ``false``/``0``), ``default`` when absent. Raises
    ``InvalidParamError`` (400 ``M_INVALID_PARAM``) for any other value.
    """
    value = parse_string(request, name, None)
    if value is None:
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidParamError(f"Query parameter {name} must be true or false")


CLIENT_PREFIX = r"/_matrix/client/(?:r0|v3)"
CLIENT_V1_PREFIX = r"/_matrix/client/v1"
CLIENT_ANY_PREFIX = r"/_matrix/client/(?:r0|v3|v1)"
PARAM = r"[^/]+"
