"""homeserver.http.tls_gate and homeserver.http.client: the server loads without pyOpenSSL and loads it for the
first https:// request. Run in a subprocess each: the test process itself may already have pyOpenSSL loaded."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_twisted_loads_without_tls_inside_the_gate_and_https_loads_it_later() -> None:
    out = _run("""
        import sys
        from homeserver.http.tls_gate import tls_modules_hidden
        with tls_modules_hidden():
            import treq.client
            import twisted.web.client, twisted.web.server, twisted.internet.endpoints
            from twisted.internet import reactor
            from homeserver.http.client import OutboundEndpointFactory
            try:
                import OpenSSL
            except ImportError as e:
                print("hidden:", type(e).__name__)
        print("loaded in gate:", sorted(m for m in ("OpenSSL", "cryptography", "h2") if m in sys.modules))
        print("web.client SSL:", twisted.web.client.SSL)
        from twisted.web.client import URI
        factory = OutboundEndpointFactory(reactor)
        plain = factory.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8080/x"))
        print("http:", type(plain).__name__, "OpenSSL" in sys.modules)
        tls = factory.endpointForURI(URI.fromBytes(b"https://push.example.org/_matrix/push/v1/notify"))
        print("https:", type(tls).__name__, "OpenSSL" in sys.modules)
        try:
            factory.endpointForURI(URI.fromBytes(b"ftp://example.org/x"))
        except Exception as e:
            print("ftp:", type(e).__name__)
    """)
    assert out.splitlines() == [
        "hidden: ModuleNotFoundError",
        "loaded in gate: []",
        "web.client SSL: None",
        "http: HostnameEndpoint False",
        "https: _TLSEndpoint True",
        "ftp: SchemeNotSupported",
    ]


def test_the_gate_hides_nothing_already_loaded_and_nothing_afterwards() -> None:
    out = _run("""
        import sys
        import json
        from homeserver.http.tls_gate import tls_modules_hidden
        with tls_modules_hidden(frozenset({"json", "csv"})):
            import json as again  # already loaded: unaffected
            try:
                import csv
            except ModuleNotFoundError:
                print("csv hidden")
        import csv
        print("csv after:", csv.__name__, again is json)
    """)
    assert out.splitlines() == ["csv hidden", "csv after: csv True"]
