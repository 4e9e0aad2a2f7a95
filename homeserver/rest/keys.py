"""End-to-end encryption key endpoints: ``/keys/upload``, ``/keys/query``, ``/keys/claim``, ``/keys/changes``,
``/keys/device_signing/upload`` and ``/keys/signatures/upload``.

Spec: Client-Server API, "End-to-End Encryption" -> "Key management API" and "Cross-signing". The rules live in
:mod:`homeserver.handlers.e2e_keys`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_PREFIX, parse_json_object, parse_string
from homeserver.streams import StreamToken


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /keys/upload``, ``/keys/query``, ``/keys/claim``, ``/keys/device_signing/upload``,
    ``/keys/signatures/upload`` and ``GET /keys/changes`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "End-to-End Encryption" (key management API, cross-signing).
    """
    handler = hs.e2e_keys_handler

    async def upload(request: Any) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request)
        return 200, await handler.upload_keys(requester.user_id, requester.device_id, body)

    async def query(request: Any) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.query_keys(requester.user_id, parse_json_object(request))

    async def claim(request: Any) -> tuple[int, dict[str, Any]]:
        await hs.auth.get_user_by_req(request)
        return 200, await handler.claim_keys(parse_json_object(request))

    async def changes(request: Any) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        from_token = StreamToken.parse(parse_string(request, "from", required=True), "from")
        to_param = parse_string(request, "to")
        to_token = StreamToken.parse(to_param, "to") if to_param else hs.stream_positions.current_token()
        # Never report past what is complete: "to" is only a hint (spec).
        to_token = StreamToken(**{n: min(getattr(to_token, n), getattr(hs.stream_positions.current_token(), n))
                                  for n in ("events", "device_lists")})
        return 200, await handler.get_device_list_changes(requester.user_id, from_token, to_token)

    async def device_signing_upload(request: Any) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.upload_cross_signing_keys(request, requester, parse_json_object(request))

    async def signatures_upload(request: Any) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.upload_signatures(requester.user_id, parse_json_object(request))

    router.register("POST", CLIENT_PREFIX + r"/keys/upload(?:/[^/]*)?", upload, "keys_upload")
    router.register("POST", CLIENT_PREFIX + r"/keys/query", query, "keys_query")
    router.register("POST", CLIENT_PREFIX + r"/keys/claim", claim, "keys_claim")
    router.register("GET", CLIENT_PREFIX + r"/keys/changes", changes, "keys_changes")
    router.register("POST", r"/_matrix/client/(?:r0|v3|unstable)/keys/device_signing/upload",
                    device_signing_upload, "keys_device_signing_upload")
    router.register("POST", r"/_matrix/client/(?:r0|v3|unstable)/keys/signatures/upload", signatures_upload,
                    "keys_signatures_upload")
