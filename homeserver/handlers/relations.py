"""Relationships between events: ``/relations``, ``/threads``, bundled aggregations, annotation de-duplication.

Spec: Client-Server API "Forming relationships between events" (``GET /rooms/{roomId}/relations/{eventId}...``,
"Server-side aggregation of child events"), "Threading" (``GET /rooms/{roomId}/threads``, the ``m.thread``
summary), "Event replacements" (``m.replace``: only the original sender's edits count; state events cannot be
edited; the bundle is the whole latest edit since v1.7), "Reference relations" (``m.reference``).

Pagination tokens are the same ``s<events>_...`` stream tokens as ``/messages`` and ``/sync`` (a token at P sits
between the events at P and P+1), so a ``/sync`` ``prev_batch`` can start a ``/relations`` walk too.
"""

from __future__ import annotations

from typing import Any

from homeserver.events import Event
from homeserver.http.auth import Requester
from homeserver.http.errors import Codes, ForbiddenError, MatrixError, NotFoundError
from homeserver.storage.events import relation_of
from homeserver.storage.relations import RelationsStore
from homeserver.streams import StreamToken

RECURSION_DEPTH = 3
_MAX_CHILDREN_PER_LEVEL = 1000
# Thread replies looked at when a thread's latest reply is hidden from the user (to find the latest they may see).
_MAX_THREAD_SCAN = 1000


class RelationsHandler:
    """Rules for relations. Attributes of ``hs`` used: event_store, relations_store, visibility_handler,
    event_serializer, stream_positions."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.event_store = hs.event_store
        self.store: RelationsStore = hs.relations_store
        self.visibility = hs.visibility_handler

    async def _get_visible_event(self, user_id: str, room_id: str, event_id: str) -> Event:
        """The event if ``user_id`` may see it in ``room_id``; 404 otherwise (also for rooms they never saw, so
        the reply does not reveal whether the event exists)."""
        try:
            await self.visibility.check_user_can_see_room(user_id, room_id)
        except ForbiddenError as e:
            raise NotFoundError("Event not found") from e
        event = await self.event_store.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise NotFoundError("Event not found")
        if not await self.visibility.filter_events_for_user(user_id, [event]):
            raise NotFoundError("Event not found")
        return event

    async def get_relations(self, requester: Requester, room_id: str, event_id: str, rel_type: str | None,
                            event_type: str | None, from_token: StreamToken | None, to_token: StreamToken | None,
                            direction: str, limit: int, recurse: bool | None) -> dict[str, Any]:
        """The ``/relations`` response: ``chunk`` (ClientEvents), ``next_batch``, ``prev_batch`` (the ``from``
        token when given) and ``recursion_depth`` (only when ``recurse`` was given).

        ``direction`` "b" (newest first, default) or "f"; ``recurse`` also follows relations of relations up to
        :data:`RECURSION_DEPTH` levels. Raises NotFoundError (404) if the parent is unknown or invisible.
        """
        user_id = requester.user_id
        await self._get_visible_event(user_id, room_id, event_id)
        parents = [event_id]
        depth = 1
        if recurse:
            level = [event_id]
            seen = {event_id}
            for _ in range(RECURSION_DEPTH - 1):
                children = [c for c in await self.store.get_child_ids(room_id, level, _MAX_CHILDREN_PER_LEVEL)
                            if c not in seen]
                if not children:
                    break
                seen.update(children)
                parents.extend(children)
                level = children
            depth = RECURSION_DEPTH
        from_pos = from_token.events if from_token is not None else None
        to_pos = to_token.events if to_token is not None else None
        rows = await self.store.get_relations_page(room_id, parents, rel_type, event_type, from_pos, to_pos,
                                                   direction, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        events = await self.event_store.get_events_as_list([r[0] for r in rows])
        events = await self.visibility.filter_events_for_user(user_id, events)
        body: dict[str, Any] = {"chunk": await self.hs.event_serializer.serialize(events, requester)}
        if more and rows:
            last = rows[-1][1]
            now = self.hs.stream_positions.current_token()
            body["next_batch"] = now.copy_and_replace("events", last - 1 if direction == "b" else last).to_string()
        if from_token is not None:
            body["prev_batch"] = from_token.to_string()
        if recurse is not None:
            body["recursion_depth"] = depth if recurse else 1
        return body

    async def get_threads(self, requester: Requester, room_id: str, include: str, from_token: StreamToken | None,
                          limit: int) -> dict[str, Any]:
        """The ``/threads`` response: thread roots, most recently active first, each with its ``m.thread``
        summary bundled; ``next_batch`` when more remain. ``include`` is "all" or "participated".

        Raises ForbiddenError (403) if the user may not read the room.
        """
        user_id = requester.user_id
        await self.visibility.check_user_can_see_room(user_id, room_id)
        before = from_token.events if from_token is not None else None
        rows = await self.store.get_thread_roots(room_id, user_id, include == "participated", before, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        roots = await self.event_store.get_events_as_list([r[0] for r in rows])
        roots = await self.visibility.filter_events_for_user(user_id, roots)
        body: dict[str, Any] = {"chunk": await self.hs.event_serializer.serialize(roots, requester)}
        if more and rows:
            body["next_batch"] = self.hs.stream_positions.current_token().copy_and_replace(
                "events", rows[-1][1]).to_string()
        return body

    async def get_bundled_aggregations(self, events: list[Event], user_id: str) -> dict[str, dict[str, Any]]:
        """``{event_id: {"m.replace": ClientEvent, "m.thread": {"latest_event", "count",
        "current_user_participated"}, "m.reference": {"chunk": [{"event_id"}]}}}`` for the events of ``events``
        that have any; one database transaction for the whole batch. Redacted events get none. Only children
        the user may see are bundled (history visibility).
        """
        known_free = self.event_store.known_relation_free
        parents = [e for e in events if "redacted_because" not in e.internal_metadata
                   and not known_free(e.event_id)]
        if not parents:
            return {}
        raw = await self.store.get_aggregations([e.event_id for e in parents], user_id)
        if not (raw.edits or raw.threads or raw.references):
            return {}
        all_edits = [edit_id for edits in raw.edits.values() for edit_id, _ in edits]
        all_refs = [ref_id for refs in raw.references.values() for ref_id in refs]
        wanted = all_edits + [t[1] for t in raw.threads.values()] + all_refs
        loaded = await self.event_store.get_events(wanted) if wanted else {}
        # Bundled children obey history visibility like any other event: someone who left must not learn of
        # edits, replies or references made after they left through the bundle of an event they may see.
        visible = {e.event_id for e in await self.visibility.filter_events_for_user(user_id, list(loaded.values()))}
        latest_edit: dict[str, str] = {}
        for parent_id, edits in raw.edits.items():
            # A replacement without an m.new_content object replaces nothing (spec: "Event replacements").
            valid = [e for e in edits if e[0] in visible
                     and isinstance(loaded[e[0]].content.get("m.new_content"), dict)]
            if valid:
                # Spec: the most recent by origin_server_ts, ties broken by the lexicographically largest event ID.
                latest_edit[parent_id] = max(valid, key=lambda e: (e[1], e[0]))[0]
        threads: dict[str, tuple[int, str]] = {}
        for parent_id, (count, latest_id) in raw.threads.items():
            if latest_id in visible:
                threads[parent_id] = (count, latest_id)
            else:
                summary = await self._visible_thread_summary(parent_id, user_id)
                latest = await self.event_store.get_event(summary[1]) if summary is not None else None
                if summary is not None and latest is not None:
                    threads[parent_id] = summary
                    loaded[latest.event_id] = latest
        wanted = list(latest_edit.values()) + [t[1] for t in threads.values()]
        to_serialize = [loaded[i] for i in dict.fromkeys(wanted) if i in loaded]
        # bundle_relations=False: a bundled event must not carry bundles itself (no unbounded recursion).
        serialized = dict(zip(
            [e.event_id for e in to_serialize],
            await self.hs.event_serializer.serialize(to_serialize, None, bundle_relations=False),
        ))
        out: dict[str, dict[str, Any]] = {}
        for event in parents:
            eid = event.event_id
            bundle: dict[str, Any] = {}
            edit_id = latest_edit.get(eid)
            if edit_id in serialized and not event.is_state():
                bundle["m.replace"] = serialized[edit_id]
            thread = threads.get(eid)
            if thread is not None and thread[1] in serialized:
                bundle["m.thread"] = {
                    "latest_event": serialized[thread[1]],
                    "count": thread[0],
                    "current_user_participated": event.sender == user_id or eid in raw.participated,
                }
            refs = [r for r in raw.references.get(eid, ()) if r in visible]
            if refs:
                bundle["m.reference"] = {"chunk": [{"event_id": r} for r in refs]}
            if bundle:
                out[eid] = bundle
        return out

    async def _visible_thread_summary(self, root_id: str, user_id: str) -> tuple[int, str] | None:
        """``(count, latest event_id)`` of the replies to thread ``root_id`` that ``user_id`` may see, newest
        first among at most :data:`_MAX_THREAD_SCAN` replies; None if they see none. The slow path of
        :meth:`get_bundled_aggregations`, taken only when the thread's latest reply is hidden from the user."""
        root = await self.event_store.get_event(root_id)
        if root is None:
            return None
        rows = await self.store.get_relations_page(root.room_id, [root_id], "m.thread", None, None, None, "b",
                                                   _MAX_THREAD_SCAN)
        replies = await self.event_store.get_events_as_list([r[0] for r in rows])
        seen = await self.visibility.filter_events_for_user(user_id, replies)
        if not seen:
            return None
        return len(seen), seen[0].event_id


class RelationCheckHook:
    """Persist hook: the checks of a new event's relation (``m.relates_to`` with ``rel_type`` and ``event_id``),
    Synapse's, with its answers (spec: "Forming relationships between events", "Threading", "Annotations"):

    - the target is an event of another room: 400 ``M_UNKNOWN`` "Relations must be in the same room";
    - the target is unknown: 400 ``M_UNKNOWN`` "Can't send relation to unknown event", unless events of this room
      already relate to that ID (the sender has a reason to know it, as Synapse allows);
    - an ``m.thread`` relation to an event with a relation (a thread reply, an edit, a reaction...) would fork a
      thread off a thread: 400 ``M_UNKNOWN`` "Cannot start threads from an event with a relation";
    - a second identical ``m.annotation`` (same sender, parent, event type and key, in this room; not for state
      events): 400 ``M_DUPLICATE_ANNOTATION``, which clients rely on. ``prepare`` runs under the room's lock, so
      two concurrent identical reactions cannot both pass.

    Refusing at send keeps a relation from acting outside its room; the readers still count a relation only
    within its parent's room (ARCHITECTURE.md), for rows stored before these checks existed. The relation is
    stored with the event itself, so there is nothing to write or to do after commit.
    """

    def __init__(self, event_store: Any, relations_store: RelationsStore) -> None:
        self.event_store = event_store
        self.relations_store = relations_store

    async def prepare(self, event: Event, state_ids: dict[tuple[str, str], str]) -> None:
        """Raise MatrixError (400, see the class) for a relation that may not be sent; an event without a relation
        passes."""
        relation = relation_of(event)
        if relation is None:
            return None
        parent_id, rel_type, key = relation
        parent = await self.event_store.get_event(parent_id)
        if parent is None:
            if not await self.relations_store.get_child_ids(event.room_id, [parent_id], 1):
                raise MatrixError(400, "Can't send relation to unknown event", Codes.UNKNOWN)
        elif parent.room_id != event.room_id:
            raise MatrixError(400, "Relations must be in the same room", Codes.UNKNOWN)
        elif rel_type == "m.thread" and relation_of(parent) is not None:
            raise MatrixError(400, "Cannot start threads from an event with a relation", Codes.UNKNOWN)
        if rel_type == "m.annotation" and key is not None and not event.is_state() and \
                await self.relations_store.has_annotation(event.room_id, event.sender, parent_id, event.type, key):
            raise MatrixError(400, "Can't send same reaction twice", Codes.DUPLICATE_ANNOTATION)
        return None

    def persist_txn(self, txn: Any, event: Event, stream_ordering: int, prepared: Any) -> None:
        """Nothing to write."""
        return None

    def after_persist(self, event: Event, stream_ordering: int, prepared: Any) -> None:
        """Nothing to do after commit."""
        return None
