"""matrix-nio clients playing the on-call humans in end-to-end tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from nio import (
    AsyncClient, JoinResponse, LoginResponse, MessageDirection, RegisterResponse, RoomMessagesResponse,
    RoomSendResponse,
)

from .harness import HomeserverUnderTest

PASSWORD = "correct horse battery staple"


def ensure_users(hs: HomeserverUnderTest, names: list[str]) -> None:
    """Register ``names`` on ``hs`` with open registration (an existing user is fine)."""

    async def go() -> None:
        for name in names:
            client = AsyncClient(hs.base_url, name)
            try:
                resp = await client.register(name, PASSWORD)
                if not isinstance(resp, RegisterResponse) and "M_USER_IN_USE" not in str(resp):
                    raise RuntimeError(f"registering {name} failed: {resp}")
            finally:
                await client.close()

    asyncio.run(go())


class Human:
    """A logged-in nio client that auto-joins invites and records every timeline event it syncs (raw dicts).

    Like a person scrolling up, it follows a ``limited`` timeline (more events arrived between two syncs than
    the timeline limit holds) back through ``/messages`` until it meets an event it already has, so no event
    after the login is skipped however busy the room was.

    With ``alias_prefix`` (e.g. ``"#alerts-"``) only events of rooms whose canonical alias starts with it are
    recorded, so two bridges sharing a homeserver (and this user) never see each other's alerts.
    """

    def __init__(self, hs: HomeserverUnderTest, name: str, alias_prefix: str | None = None) -> None:
        self.user_id = f"@{name}:{hs.server_name}"
        self.client = AsyncClient(hs.base_url, self.user_id)
        self.name = name
        self.alias_prefix = alias_prefix
        self.events: list[dict[str, Any]] = []
        self.seen_event_ids: set[str] = set()
        self.joined: set[str] = set()
        self._initial_sync_done = False

    async def login(self) -> None:
        resp = await self.client.login(PASSWORD)
        assert isinstance(resp, LoginResponse), resp
        await self.sync()

    async def close(self) -> None:
        await self.client.close()

    async def sync(self, timeout_ms: int = 1000) -> None:
        """One /sync: accept invites, record timeline events (each with ``room_id`` added)."""
        resp = await self.client.sync(timeout=timeout_ms, full_state=False)
        for room_id in list(getattr(resp, "rooms").invite):
            joined = await self.client.join(room_id)
            assert isinstance(joined, JoinResponse), joined
        for room_id, info in resp.rooms.join.items():
            self.joined.add(room_id)
            if self.alias_prefix is not None:
                room = self.client.rooms.get(room_id)
                alias = room.canonical_alias if room is not None else None
                if not (alias or "").startswith(self.alias_prefix):
                    continue
            events = [dict(ev.source) for ev in info.timeline.events]
            # The login's initial sync shows only the latest events, as a client does; later gaps are filled.
            if info.timeline.limited and info.timeline.prev_batch and self._initial_sync_done:
                events = await self._scroll_back(room_id, info.timeline.prev_batch) + events
            for raw in events:
                if raw.get("event_id") in self.seen_event_ids:
                    continue
                raw["room_id"] = room_id
                self.seen_event_ids.add(raw.get("event_id", ""))
                self.events.append(raw)
        self._initial_sync_done = True

    async def _scroll_back(self, room_id: str, token: str, max_pages: int = 20) -> list[dict[str, Any]]:
        """Events before ``token`` back to the first one already recorded (or the room's start), oldest first."""
        older: list[dict[str, Any]] = []
        for _ in range(max_pages):
            resp = await self.client.room_messages(room_id, start=token, direction=MessageDirection.back, limit=50)
            assert isinstance(resp, RoomMessagesResponse), resp
            for ev in resp.chunk:
                raw = dict(ev.source)
                if raw.get("event_id") in self.seen_event_ids:
                    return list(reversed(older))
                older.append(raw)
            if not resp.chunk or not resp.end:
                break
            token = resp.end
        return list(reversed(older))

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 30) -> dict[str, Any]:
        """The first recorded event matching ``predicate``, syncing until it arrives (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if predicate(ev):
                    return ev
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: no matching event within {timeout_s}s")
            await self.sync()

    async def send(self, room_id: str, content: dict[str, Any], event_type: str = "m.room.message") -> str:
        resp = await self.client.room_send(room_id, event_type, content, ignore_unverified_devices=True)
        assert isinstance(resp, RoomSendResponse), resp
        return resp.event_id

    async def thread_command(self, room_id: str, root: str, text: str) -> str:
        """Send ``text`` into the thread of ``root``."""
        return await self.send(
            room_id,
            {"msgtype": "m.text", "body": text,
             "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                              "m.in_reply_to": {"event_id": root}}},
        )

    async def reply_command(self, room_id: str, root: str, text: str) -> str:
        """Send ``text`` as a plain reply to ``root``."""
        return await self.send(
            room_id, {"msgtype": "m.text", "body": text, "m.relates_to": {"m.in_reply_to": {"event_id": root}}}
        )

    async def react(self, room_id: str, target: str, key: str = "✅") -> str:
        return await self.send(
            room_id, {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}}, "m.reaction"
        )


def content_of(ev: dict[str, Any]) -> dict[str, Any]:
    return ev.get("content") or {}


def is_root_alert(ev: dict[str, Any], needle: str) -> bool:
    """An alert's first message (m.text, not an edit or thread reply) whose body contains ``needle``."""
    c = content_of(ev)
    return (
        ev.get("type") == "m.room.message" and c.get("msgtype") == "m.text" and "m.relates_to" not in c
        and needle in c.get("body", "")
    )


def is_edit_of(ev: dict[str, Any], root: str, needle: str = "") -> bool:
    c = content_of(ev)
    rel = c.get("m.relates_to") or {}
    return (
        rel.get("rel_type") == "m.replace" and rel.get("event_id") == root
        and needle in (c.get("m.new_content") or {}).get("body", "")
    )


def is_thread_reply(ev: dict[str, Any], root: str, needle: str = "") -> bool:
    c = content_of(ev)
    rel = c.get("m.relates_to") or {}
    return rel.get("rel_type") == "m.thread" and rel.get("event_id") == root and needle in c.get("body", "")
