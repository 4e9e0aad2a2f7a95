"""Sync and /messages filters: validation of uploaded filters and applying them to events.

Spec: Client-Server API, "Filtering" (``Filter``, ``RoomFilter``, ``RoomEventFilter``, ``EventFilter``, the ``*``
wildcard in ``types``/``not_types``, ``not_*`` lists winning over the allow lists, ``contains_url``,
``lazy_load_members``, ``include_leave``, ``event_fields``, ``event_format``).

Room events are :class:`homeserver.events.Event` objects; presence, account data and ephemeral events are dicts
``{"type": ..., "content": ..., "sender"?: ...}``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, Iterable, Sequence, TypeVar

from homeserver.http.errors import BadJsonError, InvalidParamError, NotFoundError

T = TypeVar("T")
JsonDict = dict[str, Any]

DEFAULT_TIMELINE_LIMIT = 10
MAX_FILTER_LIMIT = 2**53 - 1

_STRING_LISTS_EVENT = ("types", "not_types", "senders", "not_senders")
_STRING_LISTS_ROOM_EVENT = _STRING_LISTS_EVENT + ("rooms", "not_rooms")
_BOOLS_ROOM_EVENT = ("contains_url", "lazy_load_members", "include_redundant_members",
                     "unread_thread_notifications")


# -- validation -----------------------------------------------------------------------------------------------


def _check_string_list(value: Any, path: str) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadJsonError(f"{path} must be a list of strings")


def validate_room_event_filter(value: Any, path: str = "filter") -> None:
    """Check a ``RoomEventFilter`` (``/messages``, ``/context``, search); BadJsonError names ``path``."""
    _check_event_filter(value, path, room_event=True)


def _check_event_filter(value: Any, path: str, room_event: bool) -> None:
    if not isinstance(value, dict):
        raise BadJsonError(f"{path} must be an object")
    for key in _STRING_LISTS_ROOM_EVENT if room_event else _STRING_LISTS_EVENT:
        if key in value:
            _check_string_list(value[key], f"{path}.{key}")
    if "limit" in value:
        limit = value["limit"]
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise BadJsonError(f"{path}.limit must be an integer")
        if not 0 <= limit <= MAX_FILTER_LIMIT:
            raise BadJsonError(f"{path}.limit must be between 0 and {MAX_FILTER_LIMIT}")
    if room_event:
        for key in _BOOLS_ROOM_EVENT:
            if key in value and not isinstance(value[key], bool):
                raise BadJsonError(f"{path}.{key} must be true or false")


def validate_filter(filter_json: Any) -> None:
    """Check the shape of a ``Filter`` object; raises BadJsonError (400 ``M_BAD_JSON``) naming the bad key.

    Unknown keys are allowed (forward compatibility), known keys must have the spec's types.
    """
    if not isinstance(filter_json, dict):
        raise BadJsonError("The filter must be a JSON object")
    if "event_fields" in filter_json:
        _check_string_list(filter_json["event_fields"], "event_fields")
    if "event_format" in filter_json and filter_json["event_format"] not in ("client", "federation"):
        raise BadJsonError("event_format must be 'client' or 'federation'")
    for key in ("presence", "account_data"):
        if key in filter_json:
            _check_event_filter(filter_json[key], key, room_event=False)
    if "room" in filter_json:
        room = filter_json["room"]
        if not isinstance(room, dict):
            raise BadJsonError("room must be an object")
        for key in ("rooms", "not_rooms"):
            if key in room:
                _check_string_list(room[key], f"room.{key}")
        if "include_leave" in room and not isinstance(room["include_leave"], bool):
            raise BadJsonError("room.include_leave must be true or false")
        for key in ("ephemeral", "state", "timeline", "account_data"):
            if key in room:
                _check_event_filter(room[key], f"room.{key}", room_event=True)


# -- matching -------------------------------------------------------------------------------------------------


def _glob_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A predicate for "matches any of ``patterns``" where ``*`` matches any run of characters."""
    exact = {p for p in patterns if "*" not in p}
    globs = [p for p in patterns if "*" in p]
    if not globs:
        return exact.__contains__
    regex = re.compile("|".join("(?:" + ".*".join(re.escape(part) for part in g.split("*")) + ")" for g in globs),
                       re.DOTALL)
    return lambda s: s in exact or regex.fullmatch(s) is not None


def _field(item: Any, name: str) -> Any:
    if isinstance(item, dict):
        return item.get(name)
    return getattr(item, name, None)


class EventFilter:
    """One ``EventFilter``/``RoomEventFilter`` object. ``check(item)`` says whether an event passes;
    ``filter(items)`` keeps the passing ones (order kept) and, with ``apply_limit``, at most ``limit``."""

    def __init__(self, definition: JsonDict | None = None) -> None:
        d = definition or {}
        self.definition = d
        self.limit: int | None = d.get("limit")
        self.types: list[str] | None = d.get("types")
        self.not_types: list[str] = d.get("not_types", [])
        self.senders: list[str] | None = d.get("senders")
        self.not_senders: set[str] = set(d.get("not_senders", []))
        self.rooms: list[str] | None = d.get("rooms")
        self.not_rooms: set[str] = set(d.get("not_rooms", []))
        self.contains_url: bool | None = d.get("contains_url")
        self.lazy_load_members: bool = bool(d.get("lazy_load_members", False))
        self.include_redundant_members: bool = bool(d.get("include_redundant_members", False))
        self.unread_thread_notifications: bool = bool(d.get("unread_thread_notifications", False))
        self._type_ok = _glob_matcher(self.types) if self.types is not None else None
        self._type_excluded = _glob_matcher(self.not_types)
        self._senders = set(self.senders) if self.senders is not None else None
        self._rooms = set(self.rooms) if self.rooms is not None else None

    def allows_room(self, room_id: str | None) -> bool:
        """True unless ``room_id`` is in ``not_rooms`` or missing from a given ``rooms`` list."""
        if room_id is None:
            return True
        if room_id in self.not_rooms:
            return False
        return self._rooms is None or room_id in self._rooms

    def check(self, item: Any, room_id: str | None = None) -> bool:
        """Whether ``item`` (an Event or a ``{"type", "content", "sender"?, "room_id"?}`` dict) passes.
        ``room_id`` overrides the item's own (ephemeral events carry none)."""
        event_type = _field(item, "type")
        if not isinstance(event_type, str):
            return False
        if self._type_excluded(event_type):
            return False
        if self._type_ok is not None and not self._type_ok(event_type):
            return False
        sender = _field(item, "sender")
        if sender is not None:
            if sender in self.not_senders:
                return False
            if self._senders is not None and sender not in self._senders:
                return False
        elif self._senders is not None:
            return False
        if not self.allows_room(room_id if room_id is not None else _field(item, "room_id")):
            return False
        if self.contains_url is not None:
            content = _field(item, "content")
            has_url = isinstance(content, dict) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def filter(self, items: Iterable[T], room_id: str | None = None, apply_limit: bool = True) -> list[T]:
        """The items of ``items`` that pass :meth:`check` (``room_id`` as there), in order, cut to ``limit`` unless
        ``apply_limit`` is false.
        """
        out = [i for i in items if self.check(i, room_id)]
        if apply_limit and self.limit is not None:
            out = out[: self.limit]
        return out


class Filter:
    """A whole ``Filter`` (as uploaded, or inline in ``/sync?filter=``), with the pieces sync and /messages use.

    Attributes:
        room_timeline_limit: events per room timeline (``room.timeline.limit``, default 10).
        lazy_load_members: ``room.state.lazy_load_members`` (or the timeline's, as clients set either).
        include_redundant_members: ``room.state.include_redundant_members``.
        include_leave: ``room.include_leave`` (left rooms in sync).
        event_fields: list of dotted field paths to keep, or None for whole events.
        event_format: "client" or "federation".
        rooms / not_rooms: the room-level lists (None = every room).
        unread_thread_notifications: ``room.timeline.unread_thread_notifications``.
    """

    def __init__(self, filter_json: JsonDict | None = None) -> None:
        f = filter_json or {}
        self.filter_json = f
        room = f.get("room", {})
        self.rooms: list[str] | None = room.get("rooms")
        self.not_rooms: list[str] = room.get("not_rooms", [])
        self.include_leave: bool = bool(room.get("include_leave", False))
        self.timeline = EventFilter(room.get("timeline"))
        self.state = EventFilter(room.get("state"))
        self.ephemeral = EventFilter(room.get("ephemeral"))
        self.room_account_data = EventFilter(room.get("account_data"))
        self.presence = EventFilter(f.get("presence"))
        self.account_data = EventFilter(f.get("account_data"))
        self.event_fields: list[str] | None = f.get("event_fields")
        self.event_format: str = f.get("event_format", "client")
        self._room_level = EventFilter({"rooms": self.rooms} if self.rooms is not None else {})
        self._room_level.not_rooms = set(self.not_rooms)

    @property
    def room_timeline_limit(self) -> int:
        return self.timeline.limit if self.timeline.limit is not None else DEFAULT_TIMELINE_LIMIT

    @property
    def lazy_load_members(self) -> bool:
        return self.state.lazy_load_members or self.timeline.lazy_load_members

    @property
    def include_redundant_members(self) -> bool:
        return self.state.include_redundant_members

    @property
    def unread_thread_notifications(self) -> bool:
        return self.timeline.unread_thread_notifications

    def is_room_included(self, room_id: str) -> bool:
        """Whether the room-level ``rooms``/``not_rooms`` let ``room_id`` into the sync response at all."""
        return self._room_level.allows_room(room_id)

    def filter_room_timeline(self, events: Iterable[T]) -> list[T]:
        """Timeline events passing the room-level and ``room.timeline`` filters. Not truncated: the caller
        takes the last :attr:`room_timeline_limit` of them and sets ``limited``."""
        return [e for e in events if self.is_room_included(_field(e, "room_id") or "")
                and self.timeline.check(e)]

    def filter_room_state(self, events: Iterable[T]) -> list[T]:
        """State events passing the room-level and ``room.state`` filters (no limit)."""
        return [e for e in events if self.is_room_included(_field(e, "room_id") or "")
                and self.state.check(e)]

    def filter_room_ephemeral(self, events: Iterable[T], room_id: str | None = None) -> list[T]:
        """Ephemeral events (dicts) of ``room_id`` passing ``room.ephemeral``, at most its ``limit``."""
        if room_id is not None and not self.is_room_included(room_id):
            return []
        return self.ephemeral.filter(events, room_id)

    def filter_room_account_data(self, events: Iterable[T], room_id: str | None = None) -> list[T]:
        """Room account data (dicts ``{"type", "content"}``) of ``room_id`` passing ``room.account_data``."""
        if room_id is not None and not self.is_room_included(room_id):
            return []
        return self.room_account_data.filter(events, room_id)

    def filter_presence(self, events: Iterable[T]) -> list[T]:
        """Presence events (dicts with ``sender``) passing ``presence``, at most its ``limit``."""
        return self.presence.filter(events)

    def filter_account_data(self, events: Iterable[T]) -> list[T]:
        """Global account data (dicts ``{"type", "content"}``) passing ``account_data``."""
        return self.account_data.filter(events)


#: The Filter of a request without one (shared: Filters are never modified).
NO_FILTER = Filter()


def parse_filter_param(value: str) -> JsonDict | None:
    """For ``/sync?filter=``: the inline filter when ``value`` is JSON (starts with ``{``), else None (then it
    is a filter ID). Raises 400 ``M_NOT_JSON``-like ``M_INVALID_PARAM`` for bad JSON, ``M_BAD_JSON`` for a bad
    shape."""
    if not value.lstrip().startswith("{"):
        return None
    try:
        filter_json = json.loads(value)
    except ValueError as e:
        raise InvalidParamError("filter is not valid JSON") from e
    validate_filter(filter_json)
    return filter_json


async def load_filter(hs: Any, user_id: str, value: str | None) -> Filter:
    """The :class:`Filter` for a ``filter`` query parameter: None -> no filter, inline JSON, or a filter ID
    stored by ``user_id`` (404 ``M_NOT_FOUND`` if unknown; 400 as :func:`parse_filter_param` for bad JSON).

    Filters are shared: a Filter is never modified after it is built, so every request whose filter has the
    same JSON text (the same inline text, or a stored filter with the same canonical text, whoever stored it)
    gets the same object, parsed once (``hs.filter_store.parsed``).
    """
    if value is None or value == "":
        return NO_FILTER
    store = hs.filter_store
    if value.lstrip().startswith("{"):
        text = value  # inline: parse_filter_param validates it when it is first seen
        build: Callable[[], Filter] = lambda: Filter(parse_filter_param(value))  # noqa: E731
    else:
        stored = await store.get_filter_text(user_id, value)
        if stored is None:
            raise NotFoundError("No such filter")
        text = stored  # validated when it was uploaded
        build = lambda: Filter(json.loads(stored))  # noqa: E731
    parsed = store.parsed.get(text)
    if parsed is None:
        parsed = build()
        store.remember_parsed(text, parsed)
    return parsed
