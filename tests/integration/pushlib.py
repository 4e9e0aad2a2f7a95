"""Helpers for the receipts / push integration tests (issue 3)."""

from __future__ import annotations

import time
from typing import Any, Callable

from tests.support.client import Api, Response, User, q, register


def room_with(api: Api, n_others: int = 1, **create: Any) -> tuple[User, list[User], str]:
    """An owner, ``n_others`` joined members and the room's ID."""
    owner = register(api)
    others = [register(api) for _ in range(n_others)]
    room_id = owner.create_room(**create)
    for other in others:
        owner.invite(room_id, other.user_id)
        other.join(room_id)
    return owner, others, room_id


def receipt(user: User, room_id: str, event_id: str, receipt_type: str = "m.read",
            body: Any = None) -> Response:
    return user.req("POST", f"rooms/{q(room_id)}/receipt/{q(receipt_type)}/{q(event_id)}",
                    {} if body is None else body)


def counts(sync_body: dict[str, Any], room_id: str) -> dict[str, int] | None:
    room = sync_body["rooms"]["join"].get(room_id)
    return room.get("unread_notifications") if room else None


def receipts_in(sync_body: dict[str, Any], room_id: str) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(event_id, receipt_type, user_id, data)`` of every receipt in the room's ephemeral events."""
    room = sync_body["rooms"]["join"].get(room_id)
    out = []
    for ev in (room or {}).get("ephemeral", {}).get("events", []):
        if ev["type"] != "m.receipt":
            continue
        for event_id, by_type in ev["content"].items():
            for receipt_type, by_user in by_type.items():
                for user_id, data in by_user.items():
                    out.append((event_id, receipt_type, user_id, data))
    return out


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
