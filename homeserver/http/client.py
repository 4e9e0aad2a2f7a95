"""Outbound HTTP for the homeserver: appservice transactions and queries, push gateway notifications.

The server never serves TLS (a reverse proxy does), so the only TLS it needs is for outbound ``https://`` URLs.
Twisted loads pyOpenSSL and ``cryptography`` (about 13 MiB of resident memory) when its TCP transport, endpoints
and HTTP client are imported, if it can. ``homeserver run`` imports them with those modules hidden
(``homeserver.http.tls_gate``), so they load without TLS support, and :class:`OutboundEndpointFactory` imports
Twisted's TLS layer on the first ``https://`` request instead. A server whose appservices and pushers all use
``http://`` never loads it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

# Seconds to wait for a TCP connection (and, for https, the TLS handshake is bounded by the caller's deadline).
CONNECT_TIMEOUT_S = 10.0


@implementer(IStreamClientEndpoint)
class _TLSEndpoint:
    """``wrapped`` with TLS on top: each connection's protocol is wrapped in Twisted's memory-BIO TLS protocol."""

    def __init__(self, wrapped: Any, creator: Any, tls_factory: Any) -> None:
        self._wrapped = wrapped
        self._creator = creator
        self._tls_factory = tls_factory

    def connect(self, protocol_factory: Any) -> defer.Deferred:
        """Connect and start the handshake; fires with the inner protocol (as Twisted's own TLS endpoint does)."""
        factory = self._tls_factory(self._creator, True, protocol_factory)
        return self._wrapped.connect(factory).addCallback(lambda tls_protocol: tls_protocol.wrappedProtocol)


@implementer(IAgentEndpointFactory)
class OutboundEndpointFactory:
    """Endpoints for ``http://`` and ``https://`` URIs, for ``Agent.usingEndpointFactory``.

    ``https`` connections verify the server's certificate against the platform's trust store and its host name,
    as Twisted's ``BrowserLikePolicyForHTTPS`` does; ``trust_root`` (an ``IOpenSSLTrustRoot``) replaces the
    platform's store (tests use a private CA). Raises ``SchemeNotSupported`` for other schemes.
    """

    def __init__(self, reactor: Any, connect_timeout_s: float = CONNECT_TIMEOUT_S, trust_root: Any = None) -> None:
        self.reactor = reactor
        self.connect_timeout_s = connect_timeout_s
        self.trust_root = trust_root

    def endpointForURI(self, uri: Any) -> Any:  # noqa: N802 - Twisted's interface
        """The endpoint for a ``twisted.web.client.URI`` (``scheme``, ``host`` and ``port`` as bytes/int)."""
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"Unsupported scheme: {uri.scheme!r}")
        host = uri.host.decode("ascii")
        endpoint = HostnameEndpoint(self.reactor, host, uri.port, timeout=self.connect_timeout_s)
        if uri.scheme == b"http":
            return endpoint
        # Loaded on first use (see the module docstring); imports pyOpenSSL.
        from twisted.internet.ssl import optionsForClientTLS
        from twisted.protocols.tls import TLSMemoryBIOFactory

        creator = optionsForClientTLS(host, trustRoot=self.trust_root)
        return _TLSEndpoint(endpoint, creator, TLSMemoryBIOFactory)


def make_agent(reactor: Any, pool: HTTPConnectionPool | None = None, trust_root: Any = None) -> Agent:
    """A ``twisted.web.client.Agent`` for ``http://`` and ``https://`` URLs that loads TLS only when needed
    (:class:`OutboundEndpointFactory`). ``pool`` defaults to a non-persistent pool."""
    return Agent.usingEndpointFactory(reactor, OutboundEndpointFactory(reactor, trust_root=trust_root), pool=pool)
