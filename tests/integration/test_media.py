"""Media repository over HTTP on SQLite and PostgreSQL: uploads, authenticated streamed downloads, safe headers,
thumbnails, asynchronous uploads, the frozen legacy endpoints and the upload size limit."""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import urllib.parse

from PIL import Image

from tests.support.client import Api, User, register

MEDIA = "/_matrix/media/v3"
V1 = "/_matrix/client/v1/media"


def upload(user: User, data: bytes, content_type: str = "application/octet-stream",
           filename: str | None = None) -> tuple[str, str]:
    params = {"filename": filename} if filename is not None else None
    r = user.req("POST", MEDIA + "/upload", raw_body=data, params=params, headers={"Content-Type": content_type})
    assert r.status == 200, (r.status, r.json)
    m = re.fullmatch(r"mxc://([^/]+)/([A-Za-z0-9_-]+)", r.json["content_uri"])
    assert m, r.json
    return m.group(1), m.group(2)


def download(user: User, server: str, media_id: str, suffix: str = "", **params: object):
    return user.req("GET", f"{V1}/download/{server}/{media_id}{suffix}", params=params or None)


def image_bytes(fmt: str, size: tuple[int, int], frames: int = 1) -> bytes:
    out = io.BytesIO()
    images = [Image.new("RGB", size, (i * 40 % 256, 100, 200)) for i in range(frames)]
    if frames > 1:
        images[0].save(out, format=fmt, save_all=True, append_images=images[1:], duration=50, loop=0)
    else:
        images[0].save(out, format=fmt)
    return out.getvalue()


def test_upload_and_download_byte_for_byte_with_safe_headers(api: Api, homeserver) -> None:
    a, b = register(api), register(api)
    data = secrets.token_bytes(150_000) + b"\x00\r\n"
    server, media_id = upload(a, data, "application/octet-stream", "dump.bin")
    assert server == homeserver.server_name
    for who in (a, b):
        r = download(who, server, media_id)
        assert r.status == 200
        assert r.body == data
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers["Content-Disposition"] == 'attachment; filename="dump.bin"'
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    r = download(a, server, media_id, "/renamed.bin")
    assert (r.status, r.body) == (200, data)
    assert r.headers["Content-Disposition"] == 'attachment; filename="renamed.bin"'


def test_inline_only_for_safe_types_and_utf8_filenames(api: Api) -> None:
    a = register(api)
    server, media_id = upload(a, image_bytes("PNG", (4, 4)), "image/png", "Störung 🔥.png")
    r = download(a, server, media_id)
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Content-Disposition"] == (
        "inline; filename*=utf-8''" + urllib.parse.quote("Störung 🔥.png", safe=""))
    html = b"<html><script>alert(1)</script></html>"
    server, media_id = upload(a, html, "text/html", "page.html")
    r = download(a, server, media_id)
    assert r.body == html
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert "script-src 'none'" in r.headers["Content-Security-Policy"]
    server, media_id = upload(a, b"notes", "text/plain", 'a"b;c.txt')
    r = download(a, server, media_id)
    assert r.headers["Content-Disposition"] == "inline; filename*=utf-8''a%22b%3Bc.txt"
    # A malformed Content-Type is not echoed back into a response header.
    server, media_id = upload(a, b"x", "not a type", None)
    r = download(a, server, media_id)
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"] == "attachment"


def test_auth_unknown_media_and_other_servers(api: Api, homeserver) -> None:
    a = register(api)
    server, media_id = upload(a, b"secret runbook", "text/plain", "runbook.txt")
    r = api.request("GET", f"{V1}/download/{server}/{media_id}")
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")
    r = api.request("GET", f"{V1}/thumbnail/{server}/{media_id}", params={"width": 32, "height": 32})
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")
    r = api.request("POST", MEDIA + "/upload", raw_body=b"x")
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")
    r = download(a, server, "NoSuchMedia" + secrets.token_hex(4))
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = download(a, "elsewhere.example", media_id)
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = download(a, server, "bad%2F..%2Fid")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def test_legacy_endpoints_are_frozen_and_config_and_preview(api: Api, homeserver) -> None:
    a = register(api)
    server, media_id = upload(a, b"legacy", "text/plain")
    for path in (f"{MEDIA}/download/{server}/{media_id}", f"{MEDIA}/download/{server}/{media_id}/x.txt",
                 f"{MEDIA}/thumbnail/{server}/{media_id}?width=32&height=32"):
        r = api.request("GET", path)
        assert (r.status, r.errcode()) == (404, "M_NOT_FOUND"), path
    for path in (V1 + "/config", MEDIA + "/config"):
        r = a.req("GET", path)
        assert r.status == 200
        assert r.json["m.upload.size"] == 50 * 1024 * 1024
        assert api.request("GET", path).status == 401
    r = a.req("GET", V1 + "/preview_url", params={"url": "http://127.0.0.1/"})
    assert (r.status, r.errcode()) == (404, "M_UNRECOGNIZED")


def test_identical_uploads_share_one_file(api: Api, homeserver) -> None:
    a = register(api)
    data = secrets.token_bytes(5000)
    first = upload(a, data)
    second = upload(a, data)
    assert first != second
    sha = hashlib.sha256(data).hexdigest()
    path = os.path.join(homeserver.data_dir, "media_store", "local_content", sha[:2], sha[2:4], sha)
    with open(path, "rb") as f:
        assert f.read() == data
    assert download(a, *second).body == data
    r = a.req("POST", MEDIA + "/upload", raw_body=b"", headers={"Content-Type": "text/plain"})
    assert r.status == 200
    empty = r.json["content_uri"][len("mxc://"):].split("/")
    assert download(a, *empty).body == b""


def thumbnail(user: User, server: str, media_id: str, **params: object):
    return user.req("GET", f"{V1}/thumbnail/{server}/{media_id}", params=params)


def test_thumbnails_crop_scale_and_cache(api: Api, homeserver) -> None:
    a = register(api)
    server, media_id = upload(a, image_bytes("PNG", (1000, 500)), "image/png", "graph.png")
    r = thumbnail(a, server, media_id, width=100, height=100, method="scale")
    assert r.status == 200
    assert r.headers["Content-Type"] == "image/png"
    assert r.headers["Content-Disposition"] == 'inline; filename="thumbnail.png"'
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    img = Image.open(io.BytesIO(r.body))
    assert (img.format, img.size) == ("PNG", (320, 160))  # fits a 320 box, aspect kept
    r = thumbnail(a, server, media_id, width=30, height=30, method="crop")
    assert Image.open(io.BytesIO(r.body)).size == (32, 32)
    r2 = thumbnail(a, server, media_id, width=32, height=32, method="crop")
    assert r2.body == r.body
    cached = [n for _root, _dirs, files in os.walk(os.path.join(homeserver.data_dir, "media_store", "thumbnails"))
              for n in files]
    assert "crop-32x32.png" in cached and "scale-320x320.png" in cached
    # A small image is never enlarged by scale; the default method is scale.
    server, small = upload(a, image_bytes("PNG", (64, 48)), "image/png")
    r = thumbnail(a, server, small, width=800, height=600)
    assert Image.open(io.BytesIO(r.body)).size == (64, 48)
    # JPEG stays JPEG.
    server, jpeg = upload(a, image_bytes("JPEG", (400, 300)), "image/jpeg")
    r = thumbnail(a, server, jpeg, width=96, height=96, method="crop")
    assert r.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.body)).size == (96, 96)


def test_animated_thumbnails(api: Api) -> None:
    a = register(api)
    server, gif = upload(a, image_bytes("GIF", (200, 200), frames=3), "image/gif")
    r = thumbnail(a, server, gif, width=32, height=32, method="crop", animated="true")
    assert r.headers["Content-Type"] == "image/gif"
    img = Image.open(io.BytesIO(r.body))
    assert img.n_frames == 3 and img.size == (32, 32)
    r = thumbnail(a, server, gif, width=32, height=32, method="crop", animated="false")
    assert r.headers["Content-Type"] == "image/png"
    assert getattr(Image.open(io.BytesIO(r.body)), "n_frames", 1) == 1


def test_thumbnail_bad_requests(api: Api) -> None:
    a = register(api)
    server, png = upload(a, image_bytes("PNG", (50, 50)), "image/png")
    for params in ({"width": 0, "height": 32}, {"width": 32, "height": -1}, {"width": "abc", "height": 32},
                   {"width": 32}, {"width": 32, "height": 32, "method": "zoom"},
                   {"width": 20000, "height": 32}):
        r = thumbnail(a, server, png, **params)
        assert r.status == 400, (params, r.status, r.json)
    server, text = upload(a, b"just text", "text/plain")
    server, svg = upload(a, b'<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>', "image/svg+xml")
    server, liar = upload(a, b"\x89PNG but not really" + secrets.token_bytes(100), "image/png")
    server, jpeg_as_png = upload(a, image_bytes("JPEG", (40, 40)), "image/png")
    for media_id in (text, svg, liar, jpeg_as_png):
        r = thumbnail(a, server, media_id, width=32, height=32)
        assert (r.status, r.errcode()) == (400, "M_UNKNOWN"), (media_id, r.status, r.json)
    r = thumbnail(a, server, "NoSuchMedia", width=32, height=32)
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def test_asynchronous_upload(api: Api) -> None:
    a, b = register(api), register(api)
    r = a.req("POST", "/_matrix/media/v1/create")
    assert r.status == 200
    assert isinstance(r.json["unused_expires_at"], int)
    server, media_id = r.json["content_uri"][len("mxc://"):].split("/")
    r = download(a, server, media_id, timeout_ms=0)
    assert (r.status, r.errcode()) == (504, "M_NOT_YET_UPLOADED")
    path = f"{MEDIA}/upload/{server}/{media_id}"
    r = b.req("PUT", path, raw_body=b"intruder", headers={"Content-Type": "text/plain"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = a.req("PUT", path, raw_body=b"late content", params={"filename": "late.txt"},
              headers={"Content-Type": "text/plain"})
    assert (r.status, r.json) == (200, {})
    r = a.req("PUT", path, raw_body=b"again", headers={"Content-Type": "text/plain"})
    assert (r.status, r.errcode()) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    r = download(b, server, media_id)
    assert (r.status, r.body) == (200, b"late content")
    assert r.headers["Content-Disposition"] == 'inline; filename="late.txt"'
    r = a.req("PUT", f"{MEDIA}/upload/{server}/NoSuchReservation", raw_body=b"x")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_large_file_streams_without_growing_memory(api: Api, homeserver) -> None:
    a = register(api)
    warm = upload(a, secrets.token_bytes(1024 * 1024))
    assert len(download(a, *warm).body) == 1024 * 1024
    before = _rss_kb(homeserver.proc.pid)
    data = secrets.token_bytes(10 * 1024 * 1024)
    server, media_id = upload(a, data, "application/zip", "logs.zip")
    r = download(a, server, media_id)
    after = _rss_kb(homeserver.proc.pid)
    assert r.status == 200 and r.body == data
    # Holding the file in memory once costs 10 MiB; streaming stays well below that.
    assert after - before < 8 * 1024, f"RSS grew by {after - before} kB"


def test_upload_over_the_limit_is_refused_and_nothing_kept(fresh_homeserver) -> None:
    hs = fresh_homeserver
    hs.extra_config = {"max_upload_size": "1M"}
    hs.start()
    api = Api(hs.base_url)
    a = register(api)
    r = a.req("POST", MEDIA + "/upload", raw_body=b"x" * (1024 * 1024 + 1))
    assert (r.status, r.errcode()) == (413, "M_TOO_LARGE")
    assert a.ok("GET", V1 + "/config")["m.upload.size"] == 1024 * 1024
    upload(a, b"y" * (1024 * 1024))
    store = os.path.join(hs.data_dir, "media_store")
    files = [n for _root, _dirs, fs in os.walk(os.path.join(store, "local_content")) for n in fs]
    assert files == [hashlib.sha256(b"y" * (1024 * 1024)).hexdigest()]
    assert os.listdir(os.path.join(store, "tmp")) == []
