"""Server-side search: ``POST /search`` over the rooms a user is joined to.

Spec: Client-Server API "Server Side Search" (``room_events`` category). The index (:mod:`homeserver.storage.search`)
returns candidate events; this module applies what the index cannot: the request's RoomEventFilter, history
visibility (a user finds only events they could read in the timeline), redactions, ignored users, and then adds
context, profiles, state and groupings.

``next_batch`` tokens are ``r<stream_ordering>`` for ``order_by: recent`` (continue with older events) and
``k<offset>`` for ``order_by: rank`` (continue after that many index hits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.events import Event
from homeserver.handlers.filtering import EventFilter, validate_room_event_filter
from homeserver.http.auth import Requester
from homeserver.http.errors import BadJsonError, InvalidParamError
from homeserver.storage.search import SEARCH_KEYS, SearchHit, SearchStore, search_words

DEFAULT_LIMIT = 10
MAX_LIMIT = 50
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
_MAX_BATCHES = 5
#: ``count`` is the number of results the user may see among at most this many newest matches.
COUNT_CAP = 500


@dataclass
class RoomEventsCriteria:
    """A validated ``search_categories.room_events`` object."""

    search_term: str
    keys: list[str]
    filter: EventFilter
    limit: int
    order_by: str
    before_limit: int | None     # None: no event_context requested
    after_limit: int
    include_profile: bool
    include_state: bool
    group_by: list[str]


def _int_in(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadJsonError(f"'{name}' must be an integer")
    if not low <= value <= high:
        raise InvalidParamError(f"'{name}' must be between {low} and {high}")
    return value


def parse_room_events_criteria(criteria: Any) -> RoomEventsCriteria:
    """Validate a ``room_events`` criteria object (unknown keys are ignored, as everywhere in the spec).

    Raises:
        BadJsonError: 400 ``M_BAD_JSON`` for a wrong type or a missing ``search_term``.
        InvalidParamError: 400 ``M_INVALID_PARAM`` for an empty ``search_term`` or an out-of-range value.
    """
    if not isinstance(criteria, dict):
        raise BadJsonError("'room_events' must be an object")
    term = criteria.get("search_term")
    if not isinstance(term, str):
        raise BadJsonError("'search_term' is required and must be a string")
    if not term.strip():
        raise InvalidParamError("'search_term' must not be empty")
    keys = criteria.get("keys", list(SEARCH_KEYS))
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadJsonError("'keys' must be a list of strings")
    unknown = [k for k in keys if k not in SEARCH_KEYS]
    if unknown:
        raise InvalidParamError(f"Unsupported search keys: {', '.join(unknown)}")
    definition = criteria.get("filter") or {}
    validate_room_event_filter(definition, "search_categories.room_events.filter")
    flt = EventFilter(definition)
    limit = (DEFAULT_LIMIT if flt.limit is None
             else _int_in(flt.limit, "search_categories.room_events.filter.limit", 1, 2**31))
    order_by = criteria.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise InvalidParamError("'order_by' must be 'rank' or 'recent'")
    before_limit: int | None = None
    after_limit = 0
    include_profile = False
    context = criteria.get("event_context")
    if context is not None:
        if not isinstance(context, dict):
            raise BadJsonError("'event_context' must be an object")
        before_limit = _int_in(context.get("before_limit", DEFAULT_CONTEXT), "before_limit", 0, MAX_CONTEXT)
        after_limit = _int_in(context.get("after_limit", DEFAULT_CONTEXT), "after_limit", 0, MAX_CONTEXT)
        include_profile = context.get("include_profile", False)
        if not isinstance(include_profile, bool):
            raise BadJsonError("'include_profile' must be a boolean")
    include_state = criteria.get("include_state", False)
    if not isinstance(include_state, bool):
        raise BadJsonError("'include_state' must be a boolean")
    group_by: list[str] = []
    groupings = criteria.get("groupings")
    if groupings is not None:
        if not isinstance(groupings, dict) or not isinstance(groupings.get("group_by", []), list):
            raise BadJsonError("'groupings.group_by' must be a list")
        for group in groupings.get("group_by", []):
            key = group.get("key") if isinstance(group, dict) else None
            if key not in ("room_id", "sender"):
                raise InvalidParamError("group_by keys must be 'room_id' or 'sender'")
            if key not in group_by:
                group_by.append(key)
    return RoomEventsCriteria(term, keys, flt, min(limit, MAX_LIMIT), order_by, before_limit, after_limit,
                              include_profile, include_state, group_by)


def _parse_batch(token: str | None, order_by: str) -> tuple[int | None, int]:
    """``(before_pos, offset)`` from a ``next_batch`` token; InvalidParamError for a malformed or foreign one."""
    if token is None:
        return None, 0
    prefix = "r" if order_by == "recent" else "k"
    if not token.startswith(prefix) or not token[1:].isdigit() or len(token) > 20:
        raise InvalidParamError("Invalid next_batch token")
    value = int(token[1:])
    return (value, 0) if order_by == "recent" else (None, value)


class SearchHandler:
    """Attributes of ``hs`` used: search_store, event_store, room_store, visibility_handler, event_serializer,
    stream_positions, account_data_store (optional: ignored users)."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store: SearchStore = hs.search_store
        self.event_store = hs.event_store
        self.room_store = hs.room_store
        self.visibility = hs.visibility_handler
        self.serializer = hs.event_serializer

    async def search(self, requester: Requester, body: dict[str, Any], next_batch: str | None) -> dict[str, Any]:
        """The whole ``POST /search`` response for ``body``; see :func:`parse_room_events_criteria` for errors."""
        categories = body.get("search_categories")
        if not isinstance(categories, dict):
            raise BadJsonError("'search_categories' is required and must be an object")
        if "room_events" not in categories:
            return {"search_categories": {}}
        criteria = parse_room_events_criteria(categories["room_events"])
        return {"search_categories": {"room_events": await self.search_room_events(requester, criteria,
                                                                                  next_batch)}}

    async def search_room_events(self, requester: Requester, c: RoomEventsCriteria,
                                 next_batch: str | None) -> dict[str, Any]:
        """The ``room_events`` result object: ``count``, ``highlights``, ``results`` and, as asked, ``state``,
        ``groups`` and ``next_batch``."""
        user_id = requester.user_id
        before_pos, offset = _parse_batch(next_batch, c.order_by)
        rooms = sorted(r for r in await self.room_store.get_rooms_for_user(user_id) if c.filter.allows_room(r))
        words = search_words(c.search_term)
        ignored = await self.hs.visibility_handler.get_ignored_users(user_id)
        not_senders = sorted(set(c.filter.not_senders) | ignored)
        senders = c.filter.senders

        found: list[tuple[SearchHit, Event]] = []
        more = False
        batch = c.limit * 2
        for _ in range(_MAX_BATCHES):
            hits = await self.store.search(rooms, words, c.keys, c.order_by, batch, before_pos, offset,
                                           senders, not_senders)
            events = await self.event_store.get_events([h.event_id for h in hits])
            visible = {e.event_id for e in await self._results_user_sees(user_id, c, events.values())}
            stopped_early = False
            for i, hit in enumerate(hits):
                before_pos, offset = hit.stream_ordering, offset + 1
                if hit.event_id in visible:
                    found.append((hit, events[hit.event_id]))
                    if len(found) >= c.limit:
                        stopped_early = i < len(hits) - 1
                        break
            if len(found) >= c.limit:
                more = stopped_early or len(hits) == batch
                break
            if len(hits) < batch:
                break
            batch = min(batch * 2, 500)
        else:
            more = True

        if next_batch is None and not more:
            count = len(found)  # every match was looked at: exact
        else:
            count = await self._count_visible(user_id, c, rooms, words, senders, not_senders)
        result_events = [e for _, e in found]
        serialized = await self.serializer.serialize(result_events, requester)
        results: list[dict[str, Any]] = []
        for (hit, event), ev_json in zip(found, serialized):
            item: dict[str, Any] = {"rank": hit.rank, "result": ev_json}
            if c.before_limit is not None:
                item["context"] = await self._context(requester, event, c.before_limit, c.after_limit,
                                                      c.include_profile)
            results.append(item)
        out: dict[str, Any] = {"count": count, "highlights": words, "results": results}
        token = None
        if more:
            token = f"r{before_pos}" if c.order_by == "recent" else f"k{offset}"
            out["next_batch"] = token
        if c.include_state:
            out["state"] = {}
            for room_id in dict.fromkeys(e.room_id for e in result_events):
                state = await self.room_store.get_current_state(room_id)
                out["state"][room_id] = await self.serializer.serialize(list(state.values()), requester,
                                                                        bundle_relations=False)
        if c.group_by:
            out["groups"] = {}
            for key in c.group_by:
                groups: dict[str, dict[str, Any]] = {}
                for event in result_events:
                    value = event.room_id if key == "room_id" else event.sender
                    group = groups.setdefault(value, {"results": [], "order": len(groups) + 1})
                    group["results"].append(event.event_id)
                    if token is not None:
                        group["next_batch"] = token
                out["groups"][key] = groups
        return out

    async def _results_user_sees(self, user_id: str, c: RoomEventsCriteria, events: Any) -> list[Event]:
        """The events of ``events`` that may be results: not redacted, allowed by the request's filter and
        visible to ``user_id`` (history visibility)."""
        candidates = [e for e in events if "redacted_because" not in e.internal_metadata and c.filter.check(e)]
        return await self.visibility.filter_events_for_user(user_id, candidates)

    async def _count_visible(self, user_id: str, c: RoomEventsCriteria, rooms: list[str], words: list[str],
                             senders: list[str] | None, not_senders: list[str]) -> int:
        """The response's ``count``: matches the user could get as results among the newest :data:`COUNT_CAP`
        matches. Counting before visibility would tell how many matches exist in history the user cannot read."""
        ids = await self.store.matching_event_ids(rooms, words, c.keys, COUNT_CAP, senders, not_senders)
        events = await self.event_store.get_events(ids)
        return len(await self._results_user_sees(user_id, c, events.values()))

    async def _context(self, requester: Requester, event: Event, before_limit: int, after_limit: int,
                       include_profile: bool) -> dict[str, Any]:
        user_id = requester.user_id
        pos = event.internal_metadata["stream_ordering"]
        now = self.hs.stream_positions.current_token()
        bound = await self.visibility.visible_up_to(user_id, event.room_id)
        upper = now.events if bound is None else min(now.events, bound)
        before = await self.event_store.get_room_events(event.room_id, 0, pos - 1, before_limit, "b") \
            if before_limit else []
        after = await self.event_store.get_room_events(event.room_id, pos, upper, after_limit, "f") \
            if after_limit else []
        before = await self.visibility.filter_events_for_user(user_id, before)
        after = await self.visibility.filter_events_for_user(user_id, after)
        start = (before[-1].internal_metadata["stream_ordering"] - 1) if before else pos - 1
        end = after[-1].internal_metadata["stream_ordering"] if after else pos
        ctx: dict[str, Any] = {
            "events_before": await self.serializer.serialize(before, requester),
            "events_after": await self.serializer.serialize(after, requester),
            "start": now.copy_and_replace("events", start).to_string(),
            "end": now.copy_and_replace("events", end).to_string(),
        }
        if include_profile:
            senders = sorted({e.sender for e in [event, *before, *after]})
            members = await self.room_store.get_current_state(event.room_id,
                                                              [("m.room.member", s) for s in senders])
            profiles: dict[str, dict[str, Any]] = {}
            for member in members.values():
                profile = {k: member.content[k] for k in ("displayname", "avatar_url")
                           if isinstance(member.content.get(k), str)}
                profiles[member.state_key or ""] = profile
            ctx["profile_info"] = profiles
        return ctx


class SearchIndexHook:
    """Persist hook writing the search index row of each event in the event's own transaction (and dropping
    the row of a redacted event), so the index never disagrees with the events table."""

    def __init__(self, store: SearchStore) -> None:
        self.store = store

    async def prepare(self, event: Event, state_ids: dict[tuple[str, str], str]) -> None:
        """Nothing to prepare: indexing needs only the event."""
        return None

    def persist_txn(self, txn: Any, event: Event, stream_ordering: int, prepared: Any) -> None:
        """Write the event's search index row inside its transaction (a redaction drops the redacted event's row)."""
        self.store.index_event_txn(txn, event, stream_ordering)

    def after_persist(self, event: Event, stream_ordering: int, prepared: Any) -> None:
        """Nothing to do after commit."""
        return None

