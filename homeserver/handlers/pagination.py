"""``/messages`` and ``/context``: walking a room's timeline with stream tokens.

Spec: Client-Server API "Getting events for a room" (``GET /rooms/{roomId}/messages``, ``/context/{eventId}``).
A token's ``events`` position P sits between the event at P and the one after it: paginating backwards from P
returns events at or before P, newest first; forwards returns events after P, oldest first. Tokens are the same
format as ``/sync``'s ``next_batch``/``prev_batch``, so a ``prev_batch`` continues exactly where the timeline of
that sync began.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.auth import Requester
from homeserver.http.errors import NotFoundError
from homeserver.streams import StreamToken

MAX_LIMIT = 1000


class PaginationHandler:
    """``/messages`` and ``/context``: pages of a room's timeline between stream tokens, filtered by history
    visibility and serialized for the requester. Spec: Client-Server API "Getting events for a room".
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.event_store = hs.event_store
        self.room_store = hs.room_store
        self.visibility = hs.visibility_handler
        self.serializer = hs.event_serializer

    async def get_messages(self, requester: Requester, room_id: str, from_token: StreamToken | None,
                           to_token: StreamToken | None, direction: str, limit: int,
                           event_filter: Any = None) -> dict[str, Any]:
        """The ``/messages`` response body: ``chunk``, ``start``, optional ``end`` and ``state`` (lazy members).

        Raises 403 if the user may not read the room.
        """
        user_id = requester.user_id
        await self.visibility.check_user_can_see_room(user_id, room_id)
        now = self.hs.stream_positions.current_token()
        if from_token is None:
            from_token = now if direction == "b" else now.copy_and_replace("events", 0)
        bound = await self.visibility.visible_up_to(user_id, room_id)
        limit = max(0, min(limit, MAX_LIMIT))
        start_pos = from_token.events
        if direction == "b":
            upper = start_pos if bound is None else min(start_pos, bound)
            lower = to_token.events if to_token is not None else 0
            fetch_limit = limit * 2 + 10 if event_filter is not None else limit
            events = await self.event_store.get_room_events(room_id, lower, upper, fetch_limit, "b")
        else:
            lower = start_pos
            upper = to_token.events if to_token is not None else now.events
            if bound is not None:
                upper = min(upper, bound)
            fetch_limit = limit * 2 + 10 if event_filter is not None else limit
            events = await self.event_store.get_room_events(room_id, lower, upper, fetch_limit, "f")
        exhausted = len(events) < fetch_limit
        if event_filter is not None:
            filtered = event_filter.filter_room_timeline(events)
            if len(filtered) > limit:
                last_kept = filtered[limit - 1]
                events_scanned = events[: events.index(last_kept) + 1]
                exhausted = False
                filtered = filtered[:limit]
            else:
                events_scanned = events
        else:
            filtered = events
            events_scanned = events
        visible = await self.visibility.filter_events_for_user(user_id, filtered)
        visible = self.visibility.drop_ignored(visible, await self.visibility.get_ignored_users(user_id))
        body: dict[str, Any] = {
            "chunk": await self.serializer.serialize(
                visible, requester,
                event_format=getattr(event_filter, "event_format", "client") or "client",
                event_fields=getattr(event_filter, "event_fields", None)),
            "start": from_token.to_string(),
        }
        if events_scanned and not exhausted:
            last = events_scanned[-1].internal_metadata["stream_ordering"]
            end_pos = last - 1 if direction == "b" else last
            body["end"] = from_token.copy_and_replace("events", end_pos).to_string()
        if getattr(event_filter, "lazy_load_members", False) and visible:
            # The senders' membership as of the chunk, not as of now: a member who since left or changed name
            # must appear as the chunk showed them. Taken at the chunk's newest event (the last one paginating
            # forwards, the first backwards) because every sender of the chunk has a membership by then.
            senders = {e.sender for e in visible}
            newest = max(e.internal_metadata["stream_ordering"] for e in visible)
            state = await self.room_store.get_state_at(room_id, newest)
            members = [e for (t, k), e in sorted(state.items()) if t == "m.room.member" and k in senders]
            body["state"] = await self.serializer.serialize(members, requester)
        return body

    async def get_context(self, requester: Requester, room_id: str, event_id: str, limit: int,
                          event_filter: Any = None) -> dict[str, Any]:
        """The ``/context/{eventId}`` body. Raises 404 if the event is unknown or invisible to the user."""
        user_id = requester.user_id
        await self.visibility.check_user_can_see_room(user_id, room_id)
        event = await self.event_store.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise NotFoundError("Event not found")
        if not await self.visibility.filter_events_for_user(user_id, [event]):
            raise NotFoundError("Event not found")
        limit = max(0, min(limit, MAX_LIMIT))
        pos = event.internal_metadata["stream_ordering"]
        before_n = limit // 2
        after_n = limit - before_n
        now = self.hs.stream_positions.current_token()
        bound = await self.visibility.visible_up_to(user_id, room_id)
        upper = now.events if bound is None else min(now.events, bound)
        before = await self.event_store.get_room_events(room_id, 0, pos - 1, before_n, "b")
        after = await self.event_store.get_room_events(room_id, pos, upper, after_n, "f")
        if event_filter is not None:
            before = event_filter.filter_room_timeline(before)
            after = event_filter.filter_room_timeline(after)
        ignored = await self.visibility.get_ignored_users(user_id)
        before = self.visibility.drop_ignored(await self.visibility.filter_events_for_user(user_id, before), ignored)
        after = self.visibility.drop_ignored(await self.visibility.filter_events_for_user(user_id, after), ignored)
        start_pos = (before[-1].internal_metadata["stream_ordering"] - 1) if before else pos - 1
        end_pos = after[-1].internal_metadata["stream_ordering"] if after else pos
        state_pos = end_pos
        state = await self.room_store.get_state_at(room_id, state_pos)
        state_events = list(state.values())
        if getattr(event_filter, "lazy_load_members", False):
            senders = {e.sender for e in [event, *before, *after]}
            state_events = [e for e in state_events if e.type != "m.room.member" or e.state_key in senders]
        ser = self.serializer.serialize
        return {
            "event": (await ser([event], requester))[0],
            "events_before": await ser(before, requester),
            "events_after": await ser(after, requester),
            "start": now.copy_and_replace("events", start_pos).to_string(),
            "end": now.copy_and_replace("events", end_pos).to_string(),
            "state": await ser(state_events, requester),
        }

