"""A tiny synchronous Matrix client for integration tests: raw HTTP, JSON in and out, no magic.

``Api(base_url).request(method, path, body=None, token=None, params=None, raw_body=None)`` returns
``Response(status, json, headers)``. ``register(api, localpart=None)`` creates a user through ``/register`` with
``m.login.dummy`` like a client does and returns a :class:`User` with convenience calls.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

CS = "/_matrix/client/v3"


@dataclass
class Response:
    status: int
    json: Any
    headers: dict[str, str]
    body: bytes

    def errcode(self) -> str | None:
        return self.json.get("errcode") if isinstance(self.json, dict) else None


class Api:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                params: dict[str, Any] | None = None, raw_body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60.0) -> Response:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(
                {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in params.items()})
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                status, hdrs = r.status, dict(r.headers)
        except urllib.error.HTTPError as e:
            raw = e.read()
            status, hdrs = e.code, dict(e.headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return Response(status, parsed, hdrs, raw)


def q(s: str) -> str:
    """Percent-encode a path segment (room IDs, event IDs, aliases, user IDs)."""
    return urllib.parse.quote(s, safe="")


@dataclass
class User:
    api: Api
    user_id: str
    access_token: str
    device_id: str
    password: str

    def req(self, method: str, path: str, body: Any = None, **kw: Any) -> Response:
        return self.api.request(method, path if path.startswith("/") else CS + "/" + path, body,
                                token=self.access_token, **kw)

    def ok(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        r = self.req(method, path, body, **kw)
        assert r.status == 200, f"{method} {path}: {r.status} {r.json}"
        return r.json

    def create_room(self, **body: Any) -> str:
        return self.ok("POST", "createRoom", body)["room_id"]

    def send(self, room_id: str, body: str = "hello", msgtype: str = "m.text", **extra: Any) -> str:
        content = {"msgtype": msgtype, "body": body, **extra}
        return self.ok("PUT", f"rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}", content)["event_id"]

    def join(self, room_id_or_alias: str) -> str:
        return self.ok("POST", f"join/{q(room_id_or_alias)}", {})["room_id"]

    def invite(self, room_id: str, user_id: str) -> None:
        self.ok("POST", f"rooms/{q(room_id)}/invite", {"user_id": user_id})

    def sync(self, since: str | None = None, timeout: int = 0, filter: Any = None, **params: Any) -> Any:
        p: dict[str, Any] = {"timeout": timeout, **params}
        if since:
            p["since"] = since
        if filter is not None:
            p["filter"] = filter if isinstance(filter, str) else json.dumps(filter)
        return self.ok("GET", "sync", params=p, timeout=timeout / 1000 + 30)


def register(api: Api, localpart: str | None = None, password: str = "correct horse battery",
             device_id: str | None = None) -> User:
    localpart = localpart or "u" + uuid.uuid4().hex[:10]
    body: dict[str, Any] = {"username": localpart, "password": password, "auth": {"type": "m.login.dummy"}}
    if device_id:
        body["device_id"] = device_id
    r = api.request("POST", CS + "/register", body)
    assert r.status == 200, f"register {localpart}: {r.status} {r.json}"
    return User(api, r.json["user_id"], r.json["access_token"], r.json["device_id"], password)
