"""Content repository endpoints (spec: Client-Server API, "Content repository").

- ``POST /_matrix/media/v3/upload``, ``POST /_matrix/media/v1/create``, ``PUT /_matrix/media/v3/upload/{s}/{id}``
- authenticated ``GET /_matrix/client/v1/media/{download,thumbnail,config,preview_url}``
- legacy ``GET /_matrix/media/v3/{download,thumbnail,config,preview_url}``: we advertise v1.11, so media is
  frozen there (spec "Content repository" -> "Migration"): every download and thumbnail answers 404.

Downloads are streamed from disk by a pull producer, never read into memory.
"""

from __future__ import annotations

from typing import Any

from twisted.web.static import NoRangeStaticProducer

from homeserver.handlers.media import DEFAULT_TIMEOUT_MS, DOWNLOAD_CSP, MediaFile, content_disposition
from homeserver.http.errors import NotFoundError, UnrecognizedRequestError
from homeserver.http.server import CLIENT_V1_PREFIX, PARAM, parse_boolean, parse_integer, parse_string

MEDIA_PREFIX = r"/_matrix/media/(?:r0|v3|v1)"


def _header(request: Any, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


async def _stream_file(request: Any, media: MediaFile, disposition: bytes) -> tuple[int, None]:
    """Write ``media`` as the response body with safe headers, then return ``(200, None)``."""
    f = open(media.path, "rb")  # noqa: SIM115 - the producer closes it when done or when the client goes away
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", media.content_type.encode("ascii", "replace"))
    request.setHeader(b"Content-Length", str(media.length).encode("ascii"))
    request.setHeader(b"Content-Disposition", disposition)
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    request.setHeader(b"Content-Security-Policy", DOWNLOAD_CSP)
    request.setHeader(b"Cross-Origin-Resource-Policy", b"cross-origin")
    # Media never changes once uploaded, but authenticated media must not sit in shared caches.
    request.setHeader(b"Cache-Control", b"private, max-age=86400, immutable")
    if request.method == b"HEAD":
        f.close()
        request.finish()
        return 200, None
    finished = request.notifyFinish()
    NoRangeStaticProducer(request, f).start()
    try:
        await finished
    except Exception:  # noqa: BLE001 - the client went away mid-download; the producer closed the file
        pass
    return 200, None


def register_servlets(hs: Any, router: Any) -> None:
    """Register the content repository on ``router``: upload, ``/_matrix/media/v1/create``, ``config``,
    ``download``, ``thumbnail`` and ``preview_url`` under both ``/_matrix/media/v3`` and the authenticated
    ``/_matrix/client/v1/media``, served by ``hs.media_handler``.

    JSON servlets return ``(status, body)``; downloads and thumbnails stream the file. Errors are raised as
    ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Content repository".
    """
    handler = hs.media_handler

    async def upload(request: Any) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        uri = await handler.upload(requester, request.content, _header(request, b"Content-Type"),
                                   parse_string(request, "filename"))
        return 200, {"content_uri": uri}

    async def create(request: Any) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.create_media(requester)

    async def upload_reserved(request: Any, server_name: str, media_id: str) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        await handler.upload_to_reserved(requester, server_name, media_id, request.content,
                                         _header(request, b"Content-Type"), parse_string(request, "filename"))
        return 200, {}

    async def config(request: Any) -> tuple[int, Any]:
        await hs.auth.get_user_by_req(request)
        return 200, handler.config()

    async def download(request: Any, server_name: str, media_id: str, file_name: str | None = None
                       ) -> tuple[int, Any]:
        await hs.auth.get_user_by_req(request)
        timeout_ms = parse_integer(request, "timeout_ms", default=DEFAULT_TIMEOUT_MS, minimum=0)
        media = await handler.get_download(server_name, media_id, file_name, timeout_ms)
        return await _stream_file(request, media, content_disposition(media.content_type, media.filename))

    async def thumbnail(request: Any, server_name: str, media_id: str) -> tuple[int, Any]:
        await hs.auth.get_user_by_req(request)
        width = parse_integer(request, "width", required=True)
        height = parse_integer(request, "height", required=True)
        method = parse_string(request, "method", default="scale", allowed=("crop", "scale"))
        animated = parse_boolean(request, "animated", default=False)
        timeout_ms = parse_integer(request, "timeout_ms", default=DEFAULT_TIMEOUT_MS, minimum=0)
        media = await handler.get_thumbnail(server_name, media_id, width, height, method, animated, timeout_ms)
        disposition = b'inline; filename="' + (media.filename or "thumbnail").encode("ascii") + b'"'
        return await _stream_file(request, media, disposition)

    async def preview_url(request: Any) -> tuple[int, Any]:
        await hs.auth.get_user_by_req(request)
        # Fetching arbitrary URLs from the server is an SSRF risk an on-call server does not need.
        raise UnrecognizedRequestError("URL previews are disabled on this server")

    async def legacy_frozen(request: Any, **_kw: str) -> tuple[int, Any]:
        # Every media ID here was uploaded after the freeze (we always advertised v1.11): spec-allowed 404.
        raise NotFoundError("Unauthenticated media is frozen; use /_matrix/client/v1/media")

    file_part = r"(?:/(?P<file_name>[^/]+))?"
    router.register("POST", MEDIA_PREFIX + r"/upload", upload, "media_upload")
    router.register("POST", r"/_matrix/media/v1/create", create, "media_create")
    router.register("PUT", MEDIA_PREFIX + rf"/upload/(?P<server_name>{PARAM})/(?P<media_id>{PARAM})",
                    upload_reserved, "media_upload_reserved")
    router.register("GET", CLIENT_V1_PREFIX + r"/media/config", config, "media_config")
    router.register("GET", MEDIA_PREFIX + r"/config", config, "media_config_legacy")
    router.register("GET", CLIENT_V1_PREFIX + rf"/media/download/(?P<server_name>{PARAM})/(?P<media_id>{PARAM})"
                    + file_part, download, "media_download")
    router.register("GET", CLIENT_V1_PREFIX + rf"/media/thumbnail/(?P<server_name>{PARAM})/(?P<media_id>{PARAM})",
                    thumbnail, "media_thumbnail")
    router.register("GET", CLIENT_V1_PREFIX + r"/media/preview_url", preview_url, "media_preview_url")
    router.register("GET", MEDIA_PREFIX + r"/preview_url", preview_url, "media_preview_url_legacy")
    router.register("GET", MEDIA_PREFIX + rf"/download/(?P<server_name>{PARAM})/(?P<media_id>{PARAM})"
                    + file_part, legacy_frozen, "media_download_legacy")
    router.register("GET", MEDIA_PREFIX + rf"/thumbnail/(?P<server_name>{PARAM})/(?P<media_id>{PARAM})",
                    legacy_frozen, "media_thumbnail_legacy")
