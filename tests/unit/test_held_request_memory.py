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
