"""What a waiting request (a held long-poll) keeps: MatrixRequest's instance dict holds only what Twisted's
``__init__`` sets (later attributes live in slots, so the dict stays a small key-sharing one), and no response
headers are set until the answer is written, when Date, Server and the CORS headers all are."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web import server
from twisted.web.test.requesthelper import DummyChannel

from homeserver.http.server import CORS_HEADERS, JsonRouter, MatrixRequest, MatrixSite

# What Twisted's own Request.__init__ sets, in its order.
TWISTED_INIT_KEYS = list(vars(server.Request(DummyChannel())))


def test_a_waiting_request_holds_no_late_attributes_in_its_dict_nor_response_headers() -> None:
    router = JsonRouter()
    seen: list[MatrixRequest] = []
    answer: defer.Deferred = defer.Deferred()

    async def wait(request: MatrixRequest, **_kw: Any) -> tuple[int, Any]:
        seen.append(request)
        return 200, await answer

    router.register("GET", "/_matrix/client/v3/wait/(?P<what>[^/]+)", wait)
    site = MatrixSite(router, 1024, 1024)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"GET /_matrix/client/v3/wait/x?since=s1 HTTP/1.1\r\nHost: localhost\r\n"
                         b"Authorization: Bearer t\r\n\r\n")
    assert len(seen) == 1
    request = seen[0]
    # Waiting: Twisted's later attributes and ours are set (in slots), the dict has only the __init__ ones.
    assert list(vars(request)) == TWISTED_INIT_KEYS
    assert (request.method, request.path, request.args, request.servlet_name) == \
        (b"GET", b"/_matrix/client/v3/wait/x", {b"since": [b"s1"]}, router._routes[0].name)
    assert request.site is site and request.prepath == [] and request.content.read() == b""
    assert list(request.responseHeaders.getAllRawHeaders()) == []
    assert transport.value() == b""

    answer.callback({"ok": True})
    head, _, body = transport.value().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK" and body == b'{"ok":true}'
    for name, value in [(b"Server", b"Tocsin"), *CORS_HEADERS]:
        assert name + b": " + value in lines
    assert any(line.startswith(b"Date: ") and line.endswith(b" GMT") for line in lines)


def test_an_unrouted_request_is_answered_with_the_same_headers() -> None:
    site = MatrixSite(JsonRouter(), 1024, 1024)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(b"HEAD /_matrix/nothing HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = transport.value().split(b"\r\n")
    assert head[0] == b"HTTP/1.1 404 Not Found"
    assert b"Server: Tocsin" in head and b"Access-Control-Allow-Origin: *" in head


def _held(router: JsonRouter, raw: bytes) -> tuple[Any, StringTransport]:
    site = MatrixSite(router, 1024, 1024)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    return channel, transport


def test_release_input_drops_query_headers_and_body_and_the_answer_still_goes_out() -> None:
    router = JsonRouter()
    answer: defer.Deferred = defer.Deferred()
    seen: dict[str, Any] = {}

    async def wait(request: MatrixRequest, **_kw: Any) -> tuple[int, Any]:
        seen["before"] = (request.args, request.getHeader(b"Authorization"))
        request.release_input()
        seen["request"] = request
        return 200, await answer

    router.register("GET", "/_matrix/client/v3/sync", wait)
    _channel, transport = _held(router, b"GET /_matrix/client/v3/sync?since=s1&timeout=30000 HTTP/1.1\r\n"
                                         b"Host: localhost\r\nAuthorization: Bearer t\r\n\r\n")
    request = seen["request"]
    assert seen["before"] == ({b"since": [b"s1"], b"timeout": [b"30000"]}, b"Bearer t")
    assert request.args == {} and request.getHeader(b"Authorization") is None and request.content is None
    assert list(request.requestHeaders.getAllRawHeaders()) == []
    # what the access log and metrics use stays
    assert (request.method, request.uri, request.get_client_ip()) == \
        (b"GET", b"/_matrix/client/v3/sync?since=s1&timeout=30000", transport.getPeer().host)
    answer.callback({"next_batch": "s2"})
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK" and body == b'{"next_batch":"s2"}'
    assert request.finished


def test_a_read_whose_client_goes_away_is_cancelled_and_a_write_is_not() -> None:
    from twisted.python.failure import Failure
    from twisted.internet.error import ConnectionDone

    router = JsonRouter()
    outcomes: dict[bytes, str] = {}
    waits: dict[bytes, defer.Deferred] = {b"GET": defer.Deferred(), b"PUT": defer.Deferred()}

    async def handler(request: MatrixRequest, **_kw: Any) -> tuple[int, Any]:
        try:
            result = await waits[request.method]
        except defer.CancelledError:
            outcomes[request.method] = "cancelled"
            raise
        outcomes[request.method] = "finished"
        return 200, result

    router.register(["GET", "PUT"], "/_matrix/client/v3/thing", handler)
    for method in (b"GET", b"PUT"):
        channel, _transport = _held(router, method + b" /_matrix/client/v3/thing HTTP/1.1\r\nHost: localhost\r\n"
                                    b"Content-Length: 2\r\n\r\n{}")
        request = channel.requests[0]
        assert (request.cancel_on_disconnect is not None) == (method == b"GET")
        channel.connectionLost(Failure(ConnectionDone()))
        assert request.cancel_on_disconnect is None
    assert outcomes == {b"GET": "cancelled"}
    waits[b"PUT"].callback({})  # the write runs to its end although nobody hears the answer
    assert outcomes == {b"GET": "cancelled", b"PUT": "finished"}
