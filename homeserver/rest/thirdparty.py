"""Third-party networks (spec: Client-Server API "Third-party Networks").

The protocols are those the registered application services declare in their ``protocols`` list; this server
does not forward third-party lookups to them, so each protocol is described with empty field and instance lists,
and lookups of users and locations answer with empty lists, as for a protocol with no matches.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import NotFoundError
from homeserver.http.server import CLIENT_PREFIX


def _protocols(hs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    appservices = getattr(hs, "appservices", None)
    for service in getattr(appservices, "services", []) or []:
        for protocol in getattr(service, "protocols", None) or []:
            out[protocol] = {"user_fields": [], "location_fields": [], "icon": "", "field_types": {},
                             "instances": []}
    return out


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /thirdparty/protocols``, ``/thirdparty/protocol/{protocol}`` and
    ``/thirdparty/{user|location}[/{protocol}]`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Third-party Networks".
    """
    async def protocols(request: Any) -> tuple[int, Any]:
        await hs.auth.get_user_by_req(request)
        return 200, _protocols(hs)

    async def protocol(request: Any, protocol: str) -> tuple[int, Any]:
        await hs.auth.get_user_by_req(request)
        found = _protocols(hs).get(protocol)
        if found is None:
            raise NotFoundError(f"Unknown protocol {protocol}")
        return 200, found

    async def lookup(request: Any, kind: str, protocol: str | None = None) -> tuple[int, Any]:
        await hs.auth.get_user_by_req(request)
        if protocol is not None and protocol not in _protocols(hs):
            raise NotFoundError(f"Unknown protocol {protocol}")
        return 200, []

    base = CLIENT_PREFIX + r"/thirdparty"
    router.register("GET", base + r"/protocols", protocols, "thirdparty_protocols")
    router.register("GET", base + r"/protocol/(?P<protocol>[^/]+)", protocol, "thirdparty_protocol")
    router.register("GET", base + r"/(?P<kind>user|location)(?:/(?P<protocol>[^/]+))?", lookup,
                    "thirdparty_lookup")
