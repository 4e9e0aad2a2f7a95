"""Media repository: uploads, downloads and thumbnails of local media.

Spec: Client-Server API, "Content repository" (authenticated media, v1.11) and "Serving inline content".
Files live under ``config.media_store_path``:

- ``local_content/ab/cd/<sha256>``: the bytes of an upload, named by their SHA-256, so identical uploads share one
  file and a file never changes once written;
- ``thumbnails/ab/<sha256>/<key>.<ext>``: generated thumbnails, also keyed by the source's hash;
- ``tmp/``: uploads being received and thumbnails being written. A file only moves into place (``os.replace``)
  once complete, so readers never see half a file and a refused upload leaves nothing behind.

All file I/O that can be slow (spooling an upload, hashing, Pillow) runs in a thread, never on the reactor.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import string
import urllib.parse
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet import defer, task, threads

from homeserver.http.auth import Requester
from homeserver.http.errors import (
    Codes,
    ForbiddenError,
    InvalidParamError,
    LimitExceededError,
    MatrixError,
    NotFoundError,
    TooLargeError,
)
from homeserver.storage.media import LocalMedia, MediaStore

logger = logging.getLogger(__name__)

# Spec "Serving inline content": only these may be shown inline by a browser; everything else is an attachment.
INLINE_CONTENT_TYPES: frozenset[str] = frozenset({
    "text/css", "text/plain", "text/csv", "application/json", "application/ld+json",
    "image/jpeg", "image/gif", "image/png", "image/apng", "image/webp", "image/avif",
    "video/mp4", "video/webm", "video/ogg", "video/quicktime",
    "audio/mp4", "audio/webm", "audio/aac", "audio/mpeg", "audio/ogg", "audio/wave", "audio/wav",
    "audio/x-wav", "audio/x-pn-wav", "audio/flac", "audio/x-flac",
})

# Thumbnails are only made from raster formats Pillow decodes safely; never SVG (scriptable) or anything else.
THUMBNAIL_SOURCE_FORMATS: dict[str, str] = {
    "image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP",
}

# Requested sizes are rounded up to one of these so one media has a bounded number of cached thumbnails.
THUMBNAIL_BUCKETS: tuple[int, ...] = (32, 96, 320, 640, 800, 1600)
MAX_THUMBNAIL_REQUEST = 10_000  # pixels per side; anything larger is a nonsensical request (400)
MAX_IMAGE_PIXELS = 32_000_000  # decoding more than this (all frames together) is refused with 413
MAX_ANIMATED_FRAMES = 100

# Downloads may be opened by a browser: forbid scripts, plugins and navigation, whatever the bytes are.
DOWNLOAD_CSP = (b"sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
                b"style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")

UNUSED_EXPIRES_MS = 24 * 60 * 60 * 1000  # an asynchronous upload's media ID is reserved for a day
MAX_PENDING_UPLOADS = 50  # reservations without content per user (spec: 429 beyond the server's limit)
DEFAULT_TIMEOUT_MS = 20_000
MAX_TIMEOUT_MS = 60_000

_MEDIA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_CONTENT_TYPE_RE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,127}/[A-Za-z0-9!#$&^_.+-]{1,127}(\s*;[ -~]{0,200})?$")
_ID_ALPHABET = string.ascii_letters + string.digits
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class MediaFile:
    """A file ready to be streamed: ``path`` on disk, its length in bytes, the ``Content-Type`` to send and the
    file name (None if unknown) for ``Content-Disposition``."""

    path: str
    length: int
    content_type: str
    filename: str | None


def sanitise_content_type(value: str | None) -> str:
    """The upload's ``Content-Type`` if it is a well-formed ``type/subtype[; params]``, else
    ``application/octet-stream`` (a malformed type could otherwise be echoed back into a response header)."""
    if not value:
        return "application/octet-stream"
    value = value.strip()
    return value if _CONTENT_TYPE_RE.match(value) else "application/octet-stream"


def base_content_type(content_type: str) -> str:
    """The media type of a ``Content-Type`` value without parameters, lower-cased (``text/plain; charset=x`` ->
    ``text/plain``).
    """
    return content_type.split(";", 1)[0].strip().lower()


def content_disposition(content_type: str, filename: str | None) -> bytes:
    """``Content-Disposition`` for a download: ``inline`` only for the spec's safe types, else ``attachment``.
    The name is a quoted ASCII string when that is safe, otherwise RFC 6266 ``filename*=utf-8''...``."""
    disposition = "inline" if base_content_type(content_type) in INLINE_CONTENT_TYPES else "attachment"
    if not filename:
        return disposition.encode("ascii")
    if all(0x20 < ord(c) < 0x7F and c not in '"\\;' for c in filename.replace(" ", "_")):
        return f'{disposition}; filename="{filename}"'.encode("ascii")
    encoded = urllib.parse.quote(filename, safe="!#$&+-.^_`|~")
    return f"{disposition}; filename*=utf-8''{encoded}".encode("ascii")


def _bucket(size: int) -> int:
    for b in THUMBNAIL_BUCKETS:
        if b >= size:
            return b
    return THUMBNAIL_BUCKETS[-1]


class MediaHandler:
    """Rules of the media repository. ``hs.media_handler``.

    Public API:
    - ``await upload(requester, body, content_type, filename) -> "mxc://server/id"``
    - ``await create_media(requester) -> {"content_uri": ..., "unused_expires_at": ms}``
    - ``await upload_to_reserved(requester, server_name, media_id, body, content_type, filename) -> None``
    - ``await get_download(server_name, media_id, filename, timeout_ms) -> MediaFile``
    - ``await get_thumbnail(server_name, media_id, width, height, method, animated, timeout_ms) -> MediaFile``
    - ``config() -> {"m.upload.size": bytes}``
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.clock = hs.clock
        self.store: MediaStore = hs.media_store
        self.server_name: str = hs.hostname
        self.max_upload_size: int = hs.config.max_upload_size
        self.base = os.path.abspath(hs.config.media_store_path)
        self.tmp_dir = os.path.join(self.base, "tmp")
        for sub in ("local_content", "thumbnails", "tmp"):
            os.makedirs(os.path.join(self.base, sub), exist_ok=True)
        # Leftovers of uploads that were in flight when the process stopped.
        for name in os.listdir(self.tmp_dir):
            try:
                os.unlink(os.path.join(self.tmp_dir, name))
            except OSError:
                pass
        # Thumbnailing is CPU and memory heavy: at most two at a time, whatever the request rate.
        self._thumbnail_limiter = defer.DeferredSemaphore(2)

    def now_ms(self) -> int:
        """The clock's current time in milliseconds since the epoch."""
        return int(self.clock.seconds() * 1000)

    def config(self) -> dict[str, Any]:
        """``GET /media/config``."""
        return {"m.upload.size": self.max_upload_size}

    def content_path(self, sha256: str) -> str:
        """Where the file with hex SHA-256 ``sha256`` is stored: ``<base>/local_content/ab/cd/<sha256>``."""
        return os.path.join(self.base, "local_content", sha256[0:2], sha256[2:4], sha256)

    # -- uploads ---------------------------------------------------------------------------------------------

    async def upload(self, requester: Requester, body: IO[bytes], content_type: str | None,
                     filename: str | None) -> str:
        """Store the request body ``body`` (a file object, read in chunks) as new media of ``requester``.

        Returns the ``mxc://`` URI. Raises TooLargeError (413 ``M_TOO_LARGE``) past ``max_upload_size`` bytes.
        """
        media_type = sanitise_content_type(content_type)
        sha256, length = await self._spool(body)
        media_id = self._new_media_id()
        await self.store.store_local_media(media_id, requester.user_id, media_type, filename, length, sha256,
                                           self.now_ms())
        return f"mxc://{self.server_name}/{media_id}"

    async def create_media(self, requester: Requester) -> dict[str, Any]:
        """``POST /_matrix/media/v1/create``: reserve a media ID for a later upload. Raises LimitExceededError
        (429) when the user already has :data:`MAX_PENDING_UPLOADS` open reservations."""
        now = self.now_ms()
        media_id = self._new_media_id()
        expires = now + UNUSED_EXPIRES_MS
        if not await self.store.create_pending_media(media_id, requester.user_id, now, expires,
                                                     MAX_PENDING_UPLOADS):
            raise LimitExceededError(60_000, "Too many pending media uploads")
        return {"content_uri": f"mxc://{self.server_name}/{media_id}", "unused_expires_at": expires}

    async def upload_to_reserved(self, requester: Requester, server_name: str, media_id: str, body: IO[bytes],
                                 content_type: str | None, filename: str | None) -> None:
        """``PUT /_matrix/media/v3/upload/{serverName}/{mediaId}``. Raises NotFoundError (unknown or expired
        reservation), ForbiddenError (another user's reservation) and 409 ``M_CANNOT_OVERWRITE_MEDIA``."""
        media = await self._get_local(server_name, media_id)
        if media.user_id != requester.user_id:
            raise ForbiddenError("This media ID was created by another user")
        if media.uploaded:
            raise MatrixError(409, "Media already uploaded", Codes.CANNOT_OVERWRITE_MEDIA)
        if media.unused_expires_ts is not None and media.unused_expires_ts < self.now_ms():
            raise NotFoundError("Media reservation expired")
        sha256, length = await self._spool(body)
        if not await self.store.complete_pending_media(media_id, sanitise_content_type(content_type), filename,
                                                       length, sha256):
            raise MatrixError(409, "Media already uploaded", Codes.CANNOT_OVERWRITE_MEDIA)

    def _new_media_id(self) -> str:
        return "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))

    async def _spool(self, body: IO[bytes]) -> tuple[str, int]:
        """Copy ``body`` into the content store; returns ``(sha256 hex, length)``."""
        return await threads.deferToThread(self._spool_sync, body)

    def _spool_sync(self, body: IO[bytes]) -> tuple[str, int]:
        body.seek(0)
        digest = hashlib.sha256()
        length = 0
        fd_path = os.path.join(self.tmp_dir, "upload-" + secrets.token_hex(12))
        try:
            with open(fd_path, "wb") as out:
                while True:
                    chunk = body.read(_CHUNK)
                    if not chunk:
                        break
                    length += len(chunk)
                    if length > self.max_upload_size:
                        raise TooLargeError(f"Upload is over the limit of {self.max_upload_size} bytes")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            final = self.content_path(sha256)
            if os.path.exists(final):
                os.unlink(fd_path)
            else:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(fd_path, final)
            return sha256, length
        except BaseException:
            try:
                os.unlink(fd_path)
            except OSError:
                pass
            raise

    # -- downloads -------------------------------------------------------------------------------------------

    async def _get_local(self, server_name: str, media_id: str) -> LocalMedia:
        if server_name != self.server_name or not _MEDIA_ID_RE.match(media_id):
            # No federation: remote media is as unknown to us as a bad ID.
            raise NotFoundError("Media not found")
        media = await self.store.get_local_media(media_id)
        if media is None:
            raise NotFoundError("Media not found")
        return media

    async def _get_uploaded(self, server_name: str, media_id: str, timeout_ms: int) -> LocalMedia:
        """The media, waiting up to ``timeout_ms`` for an asynchronous upload to arrive (then 504
        ``M_NOT_YET_UPLOADED``)."""
        media = await self._get_local(server_name, media_id)
        deadline = self.clock.seconds() + min(max(timeout_ms, 0), MAX_TIMEOUT_MS) / 1000.0
        for _ in range(MAX_TIMEOUT_MS // 500 + 1):
            if media.uploaded:
                return media
            if media.unused_expires_ts is not None and media.unused_expires_ts < self.now_ms():
                raise NotFoundError("Media not found")
            if self.clock.seconds() >= deadline:
                break
            await task.deferLater(self.clock, 0.5, lambda: None)
            media = await self._get_local(server_name, media_id)
        raise MatrixError(504, "Media has not been uploaded yet", Codes.NOT_YET_UPLOADED)

    async def get_download(self, server_name: str, media_id: str, filename: str | None,
                           timeout_ms: int = DEFAULT_TIMEOUT_MS) -> MediaFile:
        """The file to stream for a download; ``filename`` (from the URL) overrides the uploaded name.
        Raises NotFoundError (404) or 504 ``M_NOT_YET_UPLOADED``."""
        media = await self._get_uploaded(server_name, media_id, timeout_ms)
        assert media.sha256 is not None
        path = self.content_path(media.sha256)
        if not os.path.exists(path):
            logger.error("media %s: file %s is missing", media_id, path)
            raise NotFoundError("Media not found")
        return MediaFile(path, int(media.media_length or 0), media.media_type or "application/octet-stream",
                         filename or media.upload_name)

    # -- thumbnails ------------------------------------------------------------------------------------------

    async def get_thumbnail(self, server_name: str, media_id: str, width: int, height: int, method: str,
                            animated: bool, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> MediaFile:
        """A thumbnail at least ``width`` x ``height`` pixels where the source allows (never upscaled by
        ``scale``), from the cache or made now. ``method`` is "crop" or "scale".

        Raises InvalidParamError (400) for sizes outside 1..10000, 400 ``M_UNKNOWN`` for media that is not a
        PNG/JPEG/GIF/WebP image (or is not what its type says), 413 ``M_TOO_LARGE`` for images over
        :data:`MAX_IMAGE_PIXELS`, NotFoundError (404).
        """
        for name, value in (("width", width), ("height", height)):
            if not 1 <= value <= MAX_THUMBNAIL_REQUEST:
                raise InvalidParamError(f"{name} must be between 1 and {MAX_THUMBNAIL_REQUEST}")
        if method not in ("crop", "scale"):
            raise InvalidParamError("method must be crop or scale")
        media = await self._get_uploaded(server_name, media_id, timeout_ms)
        assert media.sha256 is not None
        source_format = THUMBNAIL_SOURCE_FORMATS.get(base_content_type(media.media_type or ""))
        if source_format is None:
            raise MatrixError(400, "Cannot generate thumbnails for this content type", Codes.UNKNOWN)
        if method == "scale":
            box = _bucket(max(width, height))
            key = f"scale-{box}x{box}"
            target = (box, box)
        else:
            target = (_bucket(width), _bucket(height))
            key = f"crop-{target[0]}x{target[1]}"
        want_animation = animated and source_format in ("GIF", "WEBP")
        if want_animation:
            key += "-animated"
        directory = os.path.join(self.base, "thumbnails", media.sha256[0:2], media.sha256)
        for ext, ctype in (("png", "image/png"), ("jpg", "image/jpeg"), ("gif", "image/gif")):
            cached = os.path.join(directory, f"{key}.{ext}")
            if os.path.exists(cached):
                return MediaFile(cached, os.path.getsize(cached), ctype, f"thumbnail.{ext}")
        source = self.content_path(media.sha256)
        path, ctype = await self._thumbnail_limiter.run(
            threads.deferToThread, make_thumbnail, source, source_format, target, method, want_animation,
            directory, key, self.tmp_dir)
        return MediaFile(path, os.path.getsize(path), ctype, os.path.basename(path).replace(key, "thumbnail"))


def make_thumbnail(source: str, source_format: str, target: tuple[int, int], method: str, animated: bool,
                   directory: str, key: str, tmp_dir: str) -> tuple[str, str]:
    """Decode ``source`` (only as ``source_format``), resize it and write ``directory/key.<ext>`` atomically.
    Returns ``(path, content_type)``. Runs in a thread. Raises MatrixError 400/413 for undecodable or huge
    images."""
    from PIL import Image, ImageOps

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with Image.open(source, formats=[source_format]) as img:
            frames = getattr(img, "n_frames", 1) if animated else 1
            if img.width * img.height * max(1, min(frames, MAX_ANIMATED_FRAMES)) > MAX_IMAGE_PIXELS:
                raise TooLargeError("Content is too large to thumbnail")
            size = _thumbnail_size(img.width, img.height, target, method)
            if animated and frames > 1:
                out_frames = []
                durations = []
                for index in range(min(frames, MAX_ANIMATED_FRAMES)):
                    img.seek(index)
                    frame = img.convert("RGBA")
                    out_frames.append(_resize(frame, size, method))
                    durations.append(int(img.info.get("duration", 100) or 100))
                ext, ctype = "gif", "image/gif"
                data_writer = (lambda f: out_frames[0].save(f, format="GIF", save_all=True,
                                                            append_images=out_frames[1:], duration=durations,
                                                            loop=0, disposal=2))
            else:
                img.seek(0)
                frame = ImageOps.exif_transpose(img) if source_format == "JPEG" else img
                if frame.mode not in ("RGB", "RGBA", "L", "LA", "P"):
                    frame = frame.convert("RGBA")
                if frame.mode == "P":
                    frame = frame.convert("RGBA")
                thumb = _resize(frame, size, method)
                if source_format == "JPEG":
                    ext, ctype = "jpg", "image/jpeg"
                    thumb = thumb.convert("RGB")
                    data_writer = (lambda f: thumb.save(f, format="JPEG", quality=80))
                else:
                    ext, ctype = "png", "image/png"
                    data_writer = (lambda f: thumb.save(f, format="PNG", optimize=False))
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(tmp_dir, "thumb-" + secrets.token_hex(12))
            try:
                with open(tmp, "wb") as f:
                    data_writer(f)
                final = os.path.join(directory, f"{key}.{ext}")
                os.replace(tmp, final)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
            return final, ctype
    except MatrixError:
        raise
    except Image.DecompressionBombError as e:
        raise TooLargeError("Content is too large to thumbnail") from e
    except (OSError, ValueError, SyntaxError, EOFError, Image.UnidentifiedImageError) as e:
        # Pillow reports truncated or mislabelled files through these; the client sent a bad image.
        logger.info("cannot thumbnail %s: %s", source, e)
        raise MatrixError(400, "Cannot generate thumbnails for the requested content", Codes.UNKNOWN) from e


def _thumbnail_size(width: int, height: int, target: tuple[int, int], method: str) -> tuple[int, int]:
    tw, th = target
    if method == "scale":
        factor = min(tw / width, th / height, 1.0)
        return max(1, round(width * factor)), max(1, round(height * factor))
    if tw > width or th > height:
        # Crop to the requested aspect ratio without enlarging a small image.
        factor = min(width / tw, height / th)
        tw, th = max(1, int(tw * factor)), max(1, int(th * factor))
    return tw, th


def _resize(frame: Any, size: tuple[int, int], method: str) -> Any:
    from PIL import Image, ImageOps

    if method == "scale":
        return frame.resize(size, Image.Resampling.LANCZOS)
    return ImageOps.fit(frame, size, Image.Resampling.LANCZOS)
