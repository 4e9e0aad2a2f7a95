"""The server-default push rules of the Matrix spec.

Spec: Client-Server API, "Push Notifications" -> "Push Rules" -> "Predefined Rules" (v1.19). Every rule here is
exactly the spec's definition, in the spec's order within each kind. Three of them depend on the user:
``.m.rule.invite_for_me`` and ``.m.rule.is_user_mention`` (the full Matrix ID) and ``.m.rule.contains_user_name``
(the localpart).

The three legacy mention rules (``.m.rule.contains_display_name``, ``.m.rule.roomnotif``,
``.m.rule.contains_user_name``) are still listed by the spec but, since v1.7, only apply to events whose content
has no ``m.mentions`` property; the evaluator enforces that (see :data:`LEGACY_MENTION_RULE_IDS`).
"""

from __future__ import annotations

from typing import Any

#: The rule kinds in the order the spec checks them.
KINDS: tuple[str, ...] = ("override", "content", "room", "sender", "underride")

MASTER_RULE_ID = ".m.rule.master"

#: Rules the spec deprecated in v1.7: they only apply when the event content has no ``m.mentions`` property.
LEGACY_MENTION_RULE_IDS: frozenset[str] = frozenset(
    {".m.rule.contains_display_name", ".m.rule.roomnotif", ".m.rule.contains_user_name"}
)

_SOUND_DEFAULT: dict[str, Any] = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT: dict[str, Any] = {"set_tweak": "highlight"}


def _event_match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(rule_id: str, conditions: list[dict[str, Any]], actions: list[Any], enabled: bool = True) -> dict[str, Any]:
    return {"rule_id": rule_id, "default": True, "enabled": enabled, "conditions": conditions, "actions": actions}


def localpart(user_id: str) -> str:
    """The localpart of a Matrix user ID: ``"@alice:example.com"`` -> ``"alice"``.

    Tolerates a missing sigil or server name (returns what is there) rather than raising, because the caller
    has already authenticated the user ID.
    """
    body = user_id[1:] if user_id.startswith("@") else user_id
    return body.split(":", 1)[0]


def default_rules_for_user(user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The spec's server-default ``global`` ruleset for ``user_id``, as the client sees it.

    Returns:
        ``{"override": [...], "content": [...], "room": [], "sender": [], "underride": [...]}`` where each rule
        is a fresh dict (callers may mutate it) with ``rule_id``, ``default`` (always true), ``enabled``,
        ``actions`` and either ``conditions`` (override/underride) or ``pattern`` (content).
    """
    override = [
        _rule(MASTER_RULE_ID, [], [], enabled=False),
        _rule(".m.rule.suppress_notices", [_event_match("content.msgtype", "m.notice")], []),
        _rule(
            ".m.rule.invite_for_me",
            [
                _event_match("type", "m.room.member"),
                _event_match("content.membership", "invite"),
                _event_match("state_key", user_id),
            ],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.member_event", [_event_match("type", "m.room.member")], []),
        _rule(
            ".m.rule.is_user_mention",
            [{"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": user_id}],
            ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.contains_display_name",
            [{"kind": "contains_display_name"}],
            ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.is_room_mention",
            [
                {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.roomnotif",
            [
                _event_match("content.body", "@room"),
                {"kind": "sender_notification_permission", "key": "room"},
            ],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(
            ".m.rule.tombstone",
            [_event_match("type", "m.room.tombstone"), _event_match("state_key", "")],
            ["notify", dict(_HIGHLIGHT)],
        ),
        _rule(".m.rule.reaction", [_event_match("type", "m.reaction")], []),
        _rule(
            ".m.rule.room.server_acl",
            [_event_match("type", "m.room.server_acl"), _event_match("state_key", "")],
            [],
        ),
        _rule(
            ".m.rule.suppress_edits",
            [{"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}],
            [],
        ),
    ]
    content = [
        {
            "rule_id": ".m.rule.contains_user_name",
            "default": True,
            "enabled": True,
            "pattern": localpart(user_id),
            "actions": ["notify", dict(_SOUND_DEFAULT), dict(_HIGHLIGHT)],
        }
    ]
    underride = [
        _rule(
            ".m.rule.call",
            [_event_match("type", "m.call.invite")],
            ["notify", {"set_tweak": "sound", "value": "ring"}],
        ),
        _rule(
            ".m.rule.encrypted_room_one_to_one",
            [{"kind": "room_member_count", "is": "2"}, _event_match("type", "m.room.encrypted")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(
            ".m.rule.room_one_to_one",
            [{"kind": "room_member_count", "is": "2"}, _event_match("type", "m.room.message")],
            ["notify", dict(_SOUND_DEFAULT)],
        ),
        _rule(".m.rule.message", [_event_match("type", "m.room.message")], ["notify"]),
        _rule(".m.rule.encrypted", [_event_match("type", "m.room.encrypted")], ["notify"]),
    ]
    return {"override": override, "content": content, "room": [], "sender": [], "underride": underride}


def _default_rule_kinds() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for kind, rules in default_rules_for_user("@user:example.org").items():
        for rule in rules:
            kinds[rule["rule_id"]] = kind
    return kinds


#: ``rule_id -> kind`` of every server-default rule (rule ids are unique across kinds).
DEFAULT_RULE_KINDS: dict[str, str] = _default_rule_kinds()
