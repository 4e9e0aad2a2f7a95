"""The spec's server-default rules: shape, order, and that each fires on its event and not on a near miss."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.push import DEFAULT_RULE_KINDS, actions_to_counts, default_rules_for_user
from push_testlib import ALICE, BOB, ROOM, matched_rule_id, message, run_actions, state

SPEC_ORDER = {
    "override": [
        ".m.rule.master",
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.contains_display_name",
        ".m.rule.is_room_mention",
        ".m.rule.roomnotif",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ],
    "content": [".m.rule.contains_user_name"],
    "room": [],
    "sender": [],
    "underride": [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ],
}


def test_rule_ids_and_order_follow_the_spec() -> None:
    rules = default_rules_for_user(ALICE)
    assert list(rules) == ["override", "content", "room", "sender", "underride"]
    assert {kind: [r["rule_id"] for r in rs] for kind, rs in rules.items()} == SPEC_ORDER
    assert DEFAULT_RULE_KINDS[".m.rule.contains_user_name"] == "content"
    assert DEFAULT_RULE_KINDS[".m.rule.call"] == "underride"


def test_every_rule_has_the_spec_shape() -> None:
    for kind, rules in default_rules_for_user(ALICE).items():
        for rule in rules:
            assert rule["default"] is True
            assert rule["enabled"] is (rule["rule_id"] != ".m.rule.master")
            assert isinstance(rule["actions"], list)
            if kind == "content":
                assert set(rule) == {"rule_id", "default", "enabled", "pattern", "actions"}
            else:
                assert set(rule) == {"rule_id", "default", "enabled", "conditions", "actions"}


def test_user_dependent_rules_use_the_user_id_and_localpart() -> None:
    rules = default_rules_for_user("@on-call.bot:ops.example.org")
    by_id = {r["rule_id"]: r for rs in rules.values() for r in rs}
    assert by_id[".m.rule.invite_for_me"]["conditions"][2] == {
        "kind": "event_match",
        "key": "state_key",
        "pattern": "@on-call.bot:ops.example.org",
    }
    assert by_id[".m.rule.is_user_mention"]["conditions"] == [
        {
            "kind": "event_property_contains",
            "key": "content.m\\.mentions.user_ids",
            "value": "@on-call.bot:ops.example.org",
        }
    ]
    assert by_id[".m.rule.contains_user_name"]["pattern"] == "on-call.bot"


def test_exact_definitions_of_a_few_rules() -> None:
    by_id = {r["rule_id"]: r for rs in default_rules_for_user(ALICE).values() for r in rs}
    assert by_id[".m.rule.call"]["actions"] == ["notify", {"set_tweak": "sound", "value": "ring"}]
    assert by_id[".m.rule.is_room_mention"]["conditions"] == [
        {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
        {"kind": "sender_notification_permission", "key": "room"},
    ]
    assert by_id[".m.rule.suppress_edits"]["conditions"] == [
        {"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "m.replace"}
    ]
    assert by_id[".m.rule.master"] == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": False,
        "conditions": [],
        "actions": [],
    }


def test_returns_fresh_dicts() -> None:
    first = default_rules_for_user(ALICE)
    first["override"][1]["actions"].append("notify")
    assert default_rules_for_user(ALICE)["override"][1]["actions"] == []


def _edit() -> dict[str, Any]:
    return message(
        "* fixed",
        **{"m.new_content": {"body": "fixed", "msgtype": "m.text"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}},
    )


def _reply() -> dict[str, Any]:
    return message("ack", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$o"}}})


# (rule_id, event that must fire it, matching kwargs, near miss, near-miss kwargs, rule the near miss hits)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any], str | None]] = [
    (".m.rule.suppress_notices", message("disk full", "m.notice"), {}, message("disk full", "m.text"), {}, ".m.rule.message"),
    (
        ".m.rule.invite_for_me",
        state("m.room.member", ALICE, {"membership": "invite"}),
        {},
        state("m.room.member", "@carol:example.com", {"membership": "invite"}),
        {},
        ".m.rule.member_event",
    ),
    (
        ".m.rule.member_event",
        state("m.room.member", BOB, {"membership": "join"}),
        {},
        state("m.room.name", "", {"name": "member"}),
        {},
        None,
    ),
    (
        ".m.rule.is_user_mention",
        message("ping", **{"m.mentions": {"user_ids": [ALICE]}}),
        {},
        message("ping", **{"m.mentions": {"user_ids": ["@alice:example.org"]}}),
        {},
        ".m.rule.message",
    ),
    (
        ".m.rule.contains_display_name",
        message("LIDDELL: the pager is yours"),
        {},
        message("Liddellson: the pager is yours"),
        {},
        ".m.rule.message",
    ),
    (
        ".m.rule.is_room_mention",
        message("all hands", **{"m.mentions": {"room": True}}),
        {"sender_level": 50},
        message("all hands", **{"m.mentions": {"room": True}}),
        {"sender_level": 49},
        ".m.rule.message",
    ),
    (".m.rule.roomnotif", message("@room db is down"), {"sender_level": 100}, message("@roomy db"), {"sender_level": 100}, ".m.rule.message"),
    (
        ".m.rule.tombstone",
        state("m.room.tombstone", "", {"body": "moved", "replacement_room": "!new:example.com"}),
        {},
        state("m.room.tombstone", "x", {"body": "moved", "replacement_room": "!new:example.com"}),
        {},
        None,
    ),
    (
        ".m.rule.reaction",
        {"type": "m.reaction", "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$o", "key": "👍"}}, "sender": BOB, "room_id": ROOM},
        {},
        {"type": "m.reactions", "content": {}, "sender": BOB, "room_id": ROOM},
        {},
        None,
    ),
    (
        ".m.rule.room.server_acl",
        state("m.room.server_acl", "", {"allow": ["*"], "deny": []}),
        {},
        state("m.room.server_acl", "x", {"allow": ["*"], "deny": []}),
        {},
        None,
    ),
    (".m.rule.suppress_edits", _edit(), {}, _reply(), {}, ".m.rule.message"),
    (".m.rule.contains_user_name", message("alice: ack?"), {}, message("malice: ack?"), {}, ".m.rule.message"),
    (
        ".m.rule.call",
        {"type": "m.call.invite", "content": {"call_id": "c1", "version": "1", "lifetime": 60000}, "sender": BOB, "room_id": ROOM},
        {},
        {"type": "m.call.hangup", "content": {"call_id": "c1", "version": "1"}, "sender": BOB, "room_id": ROOM},
        {},
        None,
    ),
    (
        ".m.rule.encrypted_room_one_to_one",
        {"type": "m.room.encrypted", "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}, "sender": BOB, "room_id": ROOM},
        {"member_count": 2},
        {"type": "m.room.encrypted", "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "x"}, "sender": BOB, "room_id": ROOM},
        {"member_count": 3},
        ".m.rule.encrypted",
    ),
    (".m.rule.room_one_to_one", message("hi"), {"member_count": 2}, message("hi"), {"member_count": 1}, ".m.rule.message"),
    (".m.rule.message", message("deploy done"), {}, state("m.room.topic", "", {"topic": "deploys"}), {}, None),
    (
        ".m.rule.encrypted",
        {"type": "m.room.encrypted", "content": {"ciphertext": "x"}, "sender": BOB, "room_id": ROOM},
        {},
        {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}, "sender": BOB, "room_id": ROOM, "state_key": ""},
        {},
        None,
    ),
]


@pytest.mark.parametrize("rule_id,event,kwargs,miss,miss_kwargs,miss_rule", CASES, ids=[c[0] for c in CASES])
def test_default_rule_fires_and_near_miss_does_not(
    rule_id: str,
    event: dict[str, Any],
    kwargs: dict[str, Any],
    miss: dict[str, Any],
    miss_kwargs: dict[str, Any],
    miss_rule: str | None,
) -> None:
    assert matched_rule_id(event, **kwargs) == rule_id
    assert matched_rule_id(miss, **miss_kwargs) == miss_rule


def test_every_default_rule_but_master_has_a_case() -> None:
    covered = {case[0] for case in CASES}
    assert covered == set(DEFAULT_RULE_KINDS) - {".m.rule.master"}


def test_master_rule_when_enabled_silences_everything() -> None:
    from homeserver.push import PushRuleset

    muted = PushRuleset(ALICE, default_overrides={".m.rule.master": {"enabled": True}})
    event = message("alice @room", **{"m.mentions": {"user_ids": [ALICE], "room": True}})
    assert matched_rule_id(event, ruleset=muted, sender_level=100) == ".m.rule.master"
    assert run_actions(event, muted, sender_level=100) is None
    assert run_actions(event, sender_level=100) == [
        "notify",
        {"set_tweak": "sound", "value": "default"},
        {"set_tweak": "highlight"},
    ]


def test_legacy_mention_rules_ignored_when_event_has_m_mentions() -> None:
    # Body names Alice three ways, but the sender's client says it mentions nobody: only .m.rule.message applies.
    event = message("Liddell alice @room", **{"m.mentions": {}})
    assert matched_rule_id(event, sender_level=100) == ".m.rule.message"
    assert actions_to_counts(run_actions(event, sender_level=100)) == (True, False)
    without = message("Liddell alice @room")
    assert matched_rule_id(without, sender_level=100) == ".m.rule.contains_display_name"


def test_roomnotif_respects_custom_notification_level() -> None:
    levels = {"notifications": {"room": 20}}
    assert matched_rule_id(message("@room"), sender_level=20, power_levels=levels) == ".m.rule.roomnotif"
    assert matched_rule_id(message("@room"), sender_level=19, power_levels=levels) == ".m.rule.message"
