"""Start-up without TLS: Twisted's optional TLS imports are hidden while the server's modules load.

See ``homeserver.http.client`` for why, and for how outbound ``https://`` still works. This module imports
nothing from Twisted, so that ``homeserver run`` can enter the gate before the first Twisted import.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from typing import Any, Iterator

# What tls_modules_hidden() hides: pyOpenSSL and what only it needs (cryptography, service_identity), and h2,
# which Twisted's HTTP server only speaks over TLS (ALPN). The standard library's ssl stays: prometheus_client
# imports it unconditionally, and it is small (libssl; libcrypto is loaded for hashlib anyway).
HIDDEN_TLS_MODULES = frozenset({"OpenSSL", "cryptography", "service_identity", "h2"})


class _HideModules(importlib.abc.MetaPathFinder):
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"{fullname} is not loaded at start-up (homeserver.http.tls_gate)",
                                      name=fullname)
        return None


@contextlib.contextmanager
def tls_modules_hidden(names: frozenset[str] = HIDDEN_TLS_MODULES) -> Iterator[None]:
    """While the block runs, importing any of ``names`` (top-level packages) raises ``ModuleNotFoundError``, which
    Twisted's optional TLS imports catch. Modules already loaded are not affected; afterwards the names import
    normally again. Used by ``homeserver run`` around the reactor's and the server's imports."""
    finder = _HideModules(frozenset(n for n in names if n not in sys.modules))
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
