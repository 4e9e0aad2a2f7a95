"""Push rule evaluation: which actions a user's rules give for one event.

Spec: Client-Server API, "Push Notifications" -> "Push Rules" (conditions, actions, predefined rules) and the
appendices "Glob-style matching" and "Dot-separated property paths".

This runs for every event times every joined member, so the work is split by what it depends on:
- per process: glob patterns, property paths and ``room_member_count`` operands are compiled once and cached;
- per event (:class:`PushRuleEvaluator`): property lookups and ``event_match`` results are memoised, so a rule
  shared by all members (every default rule) costs one regex run per event, not one per member;
- per member (:meth:`PushRuleEvaluator.run`): only the walk over that member's rules.

Word boundaries for ``content.body``: the spec defines word characters as ``[A-Za-z0-9_]``. We use Unicode word
characters (letters and digits of any script, and ``_``), identical for ASCII text, so that a keyword such as
``gr`` does not match inside ``grün``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

from homeserver.push.default_rules import LEGACY_MENTION_RULE_IDS

_MISSING = object()


class UserRef:
    """A condition value that stands for the member whose rules are evaluated: their user ID or its localpart.

    Only in the server-default rules that name their user, in the one shared copy the push fast path evaluates
    for every member who changed no rule (``homeserver.push.rules.user_relative_default_rule``): the evaluator
    reads the member's own value where a condition holds one of the two instances, :data:`USER_ID` and
    :data:`USER_LOCALPART`. Never in a rule a client sees or stores.
    """

    __slots__ = ("whole",)

    def __init__(self, whole: bool) -> None:
        self.whole = whole

    def resolve(self, user_id: str) -> str:
        """``user_id`` itself, or its localpart (``@alice:example.com`` -> ``alice``)."""
        if self.whole:
            return user_id
        body = user_id[1:] if user_id.startswith("@") else user_id
        return body.split(":", 1)[0]

    def __repr__(self) -> str:
        return "USER_ID" if self.whole else "USER_LOCALPART"


USER_ID = UserRef(True)
USER_LOCALPART = UserRef(False)

#: The property path whose ``event_match`` matches words of the value instead of the whole value.
BODY_KEY = "content.body"

#: The ``notifications`` power level the spec gives a key that power_levels does not set (m.room.power_levels).
DEFAULT_NOTIFICATION_LEVEL = 50

# A property path never contains NUL unescaped in practice, so this cannot collide with an event_match memo key.
_DISPLAY_NAME_MEMO = "\0contains_display_name"
_LEGACY_ACTIONS = frozenset({"dont_notify", "coalesce"})
_GLOB_FLAGS = re.IGNORECASE | re.DOTALL


# --- compiled, process-wide caches ----------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def split_property_path(key: str) -> tuple[str, ...]:
    """Split a dot-separated property path into its property names (spec appendix "Dot-separated property paths").

    ``.`` separates names; ``\\.`` is a literal dot and ``\\\\`` a literal backslash. A backslash before any other
    character is kept as a literal backslash. Example: ``"content.m\\\\.mentions.room"`` (the JSON text
    ``content.m\\.mentions.room``) -> ``("content", "m.mentions", "room")``.
    """
    if "\\" not in key:
        return tuple(key.split("."))
    parts: list[str] = []
    current: list[str] = []
    i, n = 0, len(key)
    while i < n:
        ch = key[i]
        if ch == "\\" and i + 1 < n and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


def _segment_regex(segment: str) -> str:
    return "".join("." if ch == "?" else re.escape(ch) for ch in segment)


@lru_cache(maxsize=8192)
def compile_glob(pattern: str, word_boundary: bool) -> Callable[[str], bool]:
    """Compile a glob (``*`` any run of characters, ``?`` exactly one) into a case-insensitive matcher.

    Args:
        pattern: the glob; every other character is literal.
        word_boundary: False -> the glob must match the whole value; True -> it must match a substring that
            starts and ends at a word boundary (the ``content.body`` rule).

    Returns:
        ``matcher(value: str) -> bool``.

    A glob with ``*`` is matched segment by segment (the text between stars, each of fixed length) taking the
    leftmost fit each time, which is exact for ``*``/``?`` globs and runs in O(len(value) * len(pattern)):
    a regex with ``.*`` in it backtracks quadratically on long message bodies, and patterns come from users.
    """
    segments = re.split(r"\*+", pattern)
    if len(segments) == 1:
        body = _segment_regex(pattern)
        if word_boundary:
            rx = re.compile(rf"(?<!\w){body}(?!\w)", _GLOB_FLAGS)
            return lambda value: rx.search(value) is not None
        rx = re.compile(body, _GLOB_FLAGS)
        return lambda value: rx.fullmatch(value) is not None

    first, *middle, last = segments
    middle_rx = [re.compile(_segment_regex(s), _GLOB_FLAGS) for s in middle]
    last_len = len(last)
    if word_boundary:
        # The start and end of the value are word boundaries, so an empty first/last segment always fits there.
        first_rx = re.compile(rf"(?<!\w){_segment_regex(first)}", _GLOB_FLAGS) if first else None
        last_rx = re.compile(rf"{_segment_regex(last)}(?!\w)", _GLOB_FLAGS) if last else None

        def match_words(value: str) -> bool:
            pos = 0
            if first_rx is not None:
                m = first_rx.search(value)
                if m is None:
                    return False
                pos = m.end()
            for rx in middle_rx:
                m = rx.search(value, pos)
                if m is None:
                    return False
                pos = m.end()
            return last_rx is None or last_rx.search(value, pos) is not None

        return match_words

    first_rx = re.compile(_segment_regex(first), _GLOB_FLAGS)
    last_rx = re.compile(_segment_regex(last), _GLOB_FLAGS)
    first_len = len(first)

    def match_whole(value: str) -> bool:
        if first_len and first_rx.match(value) is None:
            return False
        pos = first_len
        for rx in middle_rx:
            m = rx.search(value, pos)
            if m is None:
                return False
            pos = m.end()
        tail = len(value) - last_len
        return tail >= pos and last_rx.fullmatch(value, tail) is not None

    return match_whole


_MEMBER_COUNT_RE = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")


@lru_cache(maxsize=1024)
def parse_member_count(is_value: str) -> tuple[str, int] | None:
    """Parse a ``room_member_count`` ``is`` value: ``"2"`` -> ``("==", 2)``, ``">=10"`` -> ``(">=", 10)``.

    Returns None when the value is not a decimal integer with an optional ``==``, ``<``, ``>``, ``<=`` or ``>=``.
    """
    m = _MEMBER_COUNT_RE.fullmatch(is_value)
    if m is None:
        return None
    return (m.group(1) or "==", int(m.group(2)))


def _is_scalar(value: Any) -> bool:
    # Spec: event_property_is/contains only compare strings, integers, booleans and null (never floats).
    return value is None or isinstance(value, (str, int))


def _same_scalar(a: Any, b: Any) -> bool:
    # type() identity keeps true != 1 and "1" != 1, as the spec requires ("do not cast types").
    return type(a) is type(b) and a == b


# --- actions -----------------------------------------------------------------------------------------------------


def strip_legacy_actions(actions: Sequence[Any]) -> list[Any]:
    """``actions`` without the historical ``dont_notify`` and ``coalesce`` (spec: "Historical Actions")."""
    return [a for a in actions if not (isinstance(a, str) and a in _LEGACY_ACTIONS)]


def actions_to_counts(actions: Sequence[Any] | None) -> tuple[bool, bool]:
    """Whether ``actions`` count as a notification and as a highlight (for ``unread_notifications``).

    Args:
        actions: a push rule's actions, e.g. ``["notify", {"set_tweak": "highlight"}]``; None means no rule
            matched.

    Returns:
        ``(notify, highlight)``. ``notify`` is true only with a ``"notify"`` action (``dont_notify`` and
        ``coalesce`` are ignored as the spec requires). ``highlight`` is true only when notifying and the last
        ``highlight`` tweak has no ``value`` (the spec's default is true) or ``value: true``.
    """
    if not actions:
        return (False, False)
    notify = False
    highlight = False
    for action in actions:
        if action == "notify":
            notify = True
        elif isinstance(action, dict) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return (notify, notify and highlight)


def actions_to_tweaks(actions: Sequence[Any]) -> dict[str, Any]:
    """The ``tweaks`` a push gateway gets for ``actions``: ``{"sound": "default", "highlight": True, ...}``.

    A ``set_tweak`` without ``value`` sets ``True`` (the spec's rule for ``highlight``); later tweaks win.
    """
    tweaks: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            tweaks[action["set_tweak"]] = action.get("value", True)
    return tweaks


# --- the evaluator -----------------------------------------------------------------------------------------------


class PushRuleEvaluator:
    """Evaluates users' push rules against one event. Build one per event, call :meth:`run` once per member.

    Args:
        event: the event as a dict, client format or PDU (``type``, ``content``, ``sender``, ``room_id`` and,
            for state events, ``state_key``). Not mutated; must not change while this evaluator is used.
        room_member_count: joined members of the room (int) for ``room_member_count`` conditions.
        sender_power_level: the sender's power level in the room (int), for
            ``sender_notification_permission``.
        power_levels_content: content of the room's current ``m.room.power_levels`` (``{}`` if none); only
            ``notifications`` is read (a missing key defaults to 50).
        related_events: reserved for related-event conditions of future spec versions (MSC3664); the current
            spec defines none, so it is kept but not read.
    """

    __slots__ = (
        "_event",
        "_room_member_count",
        "_sender_power_level",
        "_notification_levels",
        "_related_events",
        "_has_mentions",
        "_values",
        "_glob_results",
    )

    def __init__(
        self,
        event: Mapping[str, Any],
        room_member_count: int,
        sender_power_level: int,
        power_levels_content: Mapping[str, Any] | None,
        related_events: Mapping[str, Any] | None = None,
    ) -> None:
        self._event = event
        self._room_member_count = room_member_count
        self._sender_power_level = sender_power_level
        levels = (power_levels_content or {}).get("notifications")
        self._notification_levels: Mapping[str, Any] = levels if isinstance(levels, dict) else {}
        self._related_events = related_events
        content = event.get("content")
        self._has_mentions = isinstance(content, dict) and "m.mentions" in content
        # Per-event memo tables: property path -> value, (path, pattern) -> event_match result.
        self._values: dict[str, Any] = {}
        self._glob_results: dict[tuple[str, str], bool] = {}

    # -- public API --

    def match(
        self, rules: Sequence[Mapping[str, Any]], user_id: str, display_name: str | None
    ) -> Mapping[str, Any] | None:
        """The first rule of ``rules`` (priority order) that matches the event for ``user_id``, or None.

        Args:
            rules: rule dicts as :meth:`homeserver.push.rules.PushRuleset.evaluation_rules` returns them:
                ``rule_id``, ``actions`` and ``conditions``. A content rule may instead carry ``pattern``, and a
                room/sender rule ``kind`` (its ``rule_id`` is the room ID / user ID). Rules with
                ``enabled: false`` are skipped. Legacy mention rules are skipped when the event content has
                ``m.mentions``.
            user_id: the member whose rules these are (``@alice:example.com``).
            display_name: the member's display name in this room, or None.
        """
        conditions_by_kind = _CONDITION_CHECKS
        for rule in rules:
            if rule.get("enabled", True) is False:
                continue
            if self._has_mentions and rule["rule_id"] in LEGACY_MENTION_RULE_IDS:
                continue
            conditions = rule.get("conditions")
            if conditions is None:
                conditions = _implicit_conditions(rule)
            for condition in conditions:
                check = conditions_by_kind.get(condition.get("kind"))  # type: ignore[arg-type]
                # Spec: unrecognised conditions never match, which disables the rule.
                if check is None or not check(self, condition, user_id, display_name):
                    break
            else:
                return rule
        return None

    def run(
        self, ruleset_rules: Sequence[Mapping[str, Any]], user_id: str, display_name: str | None
    ) -> list[Any] | None:
        """The actions for ``user_id``: those of the first matching rule, legacy actions stripped.

        Returns None when no rule matches or the matching rule's actions are empty after stripping
        ``dont_notify``/``coalesce`` (i.e. the rule suppresses the notification). Spec: the homeserver must not
        notify a user of their own events; that is the caller's check (this method does not look at
        ``sender``). Arguments as for :meth:`match`.
        """
        rule = self.match(ruleset_rules, user_id, display_name)
        if rule is None:
            return None
        actions = rule.get("actions") or []
        if any(isinstance(a, str) and a in _LEGACY_ACTIONS for a in actions):
            actions = strip_legacy_actions(actions)
        return list(actions) if actions else None

    def value_at(self, key: str) -> Any:
        """The event's value at the dot-separated property path ``key``, or :data:`MISSING` when absent.

        Resolved once per event and path, whichever member's rules ask for it.
        """
        try:
            return self._values[key]
        except KeyError:
            pass
        value: Any = self._event
        for name in split_property_path(key):
            if isinstance(value, dict) and name in value:
                value = value[name]
            else:
                value = _MISSING
                break
        self._values[key] = value
        return value

    # -- conditions --

    def _event_match(self, condition: Mapping[str, Any], user_id: str, display_name: str | None) -> bool:
        key = condition.get("key")
        pattern = condition.get("pattern")
        if type(pattern) is UserRef:
            pattern = pattern.resolve(user_id)
        if not isinstance(key, str) or not isinstance(pattern, str):
            return False
        memo_key = (key, pattern)
        result = self._glob_results.get(memo_key)
        if result is None:
            value = self.value_at(key)
            if isinstance(value, str):
                result = compile_glob(pattern, key == BODY_KEY)(value)
            else:
                result = False
            self._glob_results[memo_key] = result
        return result

    def _event_property_is(self, condition: Mapping[str, Any], user_id: str, display_name: str | None) -> bool:
        key = condition.get("key")
        if not isinstance(key, str) or "value" not in condition:
            return False
        expected = condition["value"]
        if type(expected) is UserRef:
            expected = expected.resolve(user_id)
        value = self.value_at(key)
        return _is_scalar(value) and _same_scalar(value, expected)

    def _event_property_contains(
        self, condition: Mapping[str, Any], user_id: str, display_name: str | None
    ) -> bool:
        key = condition.get("key")
        if not isinstance(key, str) or "value" not in condition:
            return False
        expected = condition["value"]
        if type(expected) is UserRef:
            expected = expected.resolve(user_id)
        if not _is_scalar(expected):
            return False
        value = self.value_at(key)
        if not isinstance(value, list):
            return False
        expected_type = type(expected)
        return any(type(item) is expected_type and item == expected for item in value)

    def _contains_display_name(
        self, condition: Mapping[str, Any], user_id: str, display_name: str | None
    ) -> bool:
        if not display_name or not display_name.strip():
            return False
        # Members often share a display name ("Ops", "Bot"); memoise per event like event_match.
        memo_key = (_DISPLAY_NAME_MEMO, display_name)
        result = self._glob_results.get(memo_key)
        if result is None:
            body = self.value_at(BODY_KEY)
            result = isinstance(body, str) and _display_name_matcher(display_name)(body)
            self._glob_results[memo_key] = result
        return result

    def _room_member_count_matches(
        self, condition: Mapping[str, Any], user_id: str, display_name: str | None
    ) -> bool:
        is_value = condition.get("is")
        if not isinstance(is_value, str):
            return False
        parsed = parse_member_count(is_value)
        if parsed is None:
            return False
        op, number = parsed
        count = self._room_member_count
        if op == "==":
            return count == number
        if op == "<":
            return count < number
        if op == ">":
            return count > number
        if op == "<=":
            return count <= number
        return count >= number

    def _sender_notification_permission(
        self, condition: Mapping[str, Any], user_id: str, display_name: str | None
    ) -> bool:
        key = condition.get("key")
        if not isinstance(key, str):
            return False
        return self._sender_power_level >= parse_power_level(self._notification_levels.get(key))


MISSING: Any = _MISSING
"""Sentinel :meth:`PushRuleEvaluator.value_at` returns for an absent property."""


@lru_cache(maxsize=4096)
def _display_name_matcher(display_name: str) -> Callable[[str], bool]:
    # The display name is literal text, never a glob: escape what compile_glob would treat as wildcards.
    rx = re.compile(rf"(?<!\w){re.escape(display_name)}(?!\w)", re.IGNORECASE)
    return lambda body: rx.search(body) is not None


def parse_power_level(value: Any, default: int = DEFAULT_NOTIFICATION_LEVEL) -> int:
    """A power level from ``m.room.power_levels`` content as int; ``default`` when absent or malformed.
    Room versions before 10 allow power levels as decimal strings, so those are read too."""
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def _implicit_conditions(rule: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conditions a content, room or sender rule implies (spec: "Push Rules", kinds of rule)."""
    if "pattern" in rule:
        return [{"kind": "event_match", "key": BODY_KEY, "pattern": rule["pattern"]}]
    kind = rule.get("kind")
    if kind == "room":
        return [{"kind": "event_property_is", "key": "room_id", "value": rule["rule_id"]}]
    if kind == "sender":
        return [{"kind": "event_property_is", "key": "sender", "value": rule["rule_id"]}]
    return []


#: Condition kind -> unbound check method. A table of the class's functions, not of an evaluator's bound methods:
#: those would form a reference cycle per evaluator (one per event), left for the cyclic garbage collector.
_CONDITION_CHECKS: dict[str, Callable[[PushRuleEvaluator, Mapping[str, Any], str, str | None], bool]] = {
    "event_match": PushRuleEvaluator._event_match,
    "event_property_is": PushRuleEvaluator._event_property_is,
    "event_property_contains": PushRuleEvaluator._event_property_contains,
    "contains_display_name": PushRuleEvaluator._contains_display_name,
    "room_member_count": PushRuleEvaluator._room_member_count_matches,
    "sender_notification_permission": PushRuleEvaluator._sender_notification_permission,
}
