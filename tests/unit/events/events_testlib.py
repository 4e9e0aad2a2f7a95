"""Shared helpers for the events unit tests: a signing key and an in-memory room whose state the auth rules see."""

from __future__ import annotations

from typing import Any

from signedjson.key import decode_signing_key_base64

from homeserver.events.auth import auth_types_for_event, check_auth_rules
from homeserver.events.builder import build_event
from homeserver.events.event import Event
from homeserver.events.room_versions import RoomVersion

SERVER = "test"
# A fixed seed keeps signatures (and so nothing else: event IDs do not cover signatures) reproducible.
SIGNING_KEY = decode_signing_key_base64("ed25519", "k1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")

ALICE = "@alice:test"
BOB = "@bob:test"
CAROL = "@carol:test"
DAVE = "@dave:test"


class Room:
    """A room built event by event; ``state`` is the ``(type, state_key) -> Event`` map the auth rules check against."""

    def __init__(self, room_version: RoomVersion, creator: str = ALICE, *, power_levels: dict[str, Any] | None = None,
                 join_rule: str | None = "invite", create_extra: dict[str, Any] | None = None,
                 room_id: str = "!room:test") -> None:
        self.room_version = room_version
        self.room_id = room_id
        self.state: dict[tuple[str, str], Event] = {}
        self.last: list[str] = []
        self.depth = 0
        self.ts = 1_700_000_000_000
        create_content: dict[str, Any] = {"room_version": room_version.identifier}
        if not room_version.implicit_room_creator:
            create_content["creator"] = creator
        create_content.update(create_extra or {})
        self.send("m.room.create", creator, create_content, "")
        self.send("m.room.member", creator, {"membership": "join"}, creator)
        if power_levels is not None:
            self.send("m.room.power_levels", creator, power_levels, "")
        if join_rule is not None:
            self.send("m.room.join_rules", creator, {"join_rule": join_rule}, "")

    def make(self, type: str, sender: str, content: dict[str, Any], state_key: str | None = None,
             redacts: str | None = None) -> Event:
        """Build (but do not apply) an event on top of the current state."""
        wanted = auth_types_for_event(self.room_version, type, sender, state_key, content)
        auth_ids = [self.state[key].event_id for key in wanted if key in self.state]
        self.depth += 1
        self.ts += 1
        return build_event(
            self.room_version, room_id=self.room_id, type=type, sender=sender, content=content,
            state_key=state_key, prev_event_ids=list(self.last), auth_event_ids=auth_ids, depth=self.depth,
            origin_server_ts=self.ts, server_name=SERVER, signing_key=SIGNING_KEY, redacts=redacts,
        )

    def check(self, event: Event) -> None:
        check_auth_rules(self.room_version, event, self.state)

    def apply(self, event: Event) -> Event:
        if event.is_state():
            self.state[(event.type, event.state_key or "")] = event
        self.last = [event.event_id]
        return event

    def send(self, type: str, sender: str, content: dict[str, Any], state_key: str | None = None) -> Event:
        """Build, auth-check and apply an event."""
        event = self.make(type, sender, content, state_key)
        self.check(event)
        return self.apply(event)

    def force(self, type: str, sender: str, content: dict[str, Any], state_key: str | None = None) -> Event:
        """Apply an event without checking it, to set up a state directly."""
        return self.apply(self.make(type, sender, content, state_key))

    def set_membership(self, user_id: str, membership: str) -> Event:
        return self.force("m.room.member", user_id, {"membership": membership}, user_id)
