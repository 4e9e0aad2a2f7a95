"""Helpers shared by the room/messaging/sync integration tests (thin wrappers over tests.support.client)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.client import Api, Response, User, q, register


def users(api: Api, n: int) -> list[User]:
    """``n`` freshly registered users."""
    return [register(api) for _ in range(n)]


def put_state(user: User, room_id: str, etype: str, content: Any, state_key: str = "") -> Response:
    return user.req("PUT", f"rooms/{q(room_id)}/state/{q(etype)}/{q(state_key)}", content)


def get_state(user: User, room_id: str, etype: str, state_key: str = "", **params: Any) -> Response:
    return user.req("GET", f"rooms/{q(room_id)}/state/{q(etype)}/{q(state_key)}", params=params or None)


def send_raw(user: User, room_id: str, content: Any, etype: str = "m.room.message",
             txn_id: str | None = None, **kw: Any) -> Response:
    return user.req("PUT", f"rooms/{q(room_id)}/send/{q(etype)}/{txn_id or uuid.uuid4().hex}", content, **kw)


def messages(user: User, room_id: str, **params: Any) -> Response:
    """``GET /rooms/{room_id}/messages`` with ``params``; ``dir`` (required by the spec) defaults to ``b``."""
    return user.req("GET", f"rooms/{q(room_id)}/messages", params={"dir": "b", **params})


def bodies(events: list[dict[str, Any]]) -> list[str]:
    """The ``body`` of each m.room.message in ``events``, in order."""
    return [e["content"]["body"] for e in events if e["type"] == "m.room.message" and "body" in e["content"]]


def timeline(sync_body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = sync_body["rooms"]["join"].get(room_id)
    return room["timeline"]["events"] if room else []


def membership(user: User, room_id: str, user_id: str) -> str | None:
    r = get_state(user, room_id, "m.room.member", user_id)
    return r.json.get("membership") if r.status == 200 else None


def all_messages(user: User, room_id: str) -> list[dict[str, Any]]:
    """Every event of the room visible to ``user``, oldest first, by paginating /messages backwards."""
    out: list[dict[str, Any]] = []
    token = None
    for _ in range(100):
        params: dict[str, Any] = {"dir": "b", "limit": 50}
        if token:
            params["from"] = token
        body = user.ok("GET", f"rooms/{q(room_id)}/messages", params=params)
        out.extend(body["chunk"])
        token = body.get("end")
        if not token or not body["chunk"]:
            break
    out.reverse()
    return out
