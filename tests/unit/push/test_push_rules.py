"""PushRuleset merging, client JSON, and the validation helpers the /pushrules servlets use."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.http.errors import MatrixError
from homeserver.push import (
    PushRuleset,
    check_default_rule_exists,
    insert_position,
    validate_actions_body,
    validate_enabled_body,
    validate_rule,
)
from push_testlib import ALICE, BOB, ROOM, matched_rule_id, message, run_actions

KEYWORD = {"kind": "content", "rule_id": "kw-db", "pattern": "database", "actions": ["notify", {"set_tweak": "highlight"}]}
MUTE_ROOM = {"kind": "room", "rule_id": ROOM, "actions": []}
OVERRIDE = {
    "kind": "override",
    "rule_id": "sev1",
    "conditions": [{"kind": "event_match", "key": "content.severity", "pattern": "critical"}],
    "actions": ["notify", {"set_tweak": "sound", "value": "siren"}],
}


def ids(ruleset: PushRuleset, kind: str) -> list[str]:
    return [rule.rule_id for rule in ruleset.rules(kind)]


def test_priority_order_master_then_user_then_defaults() -> None:
    ruleset = PushRuleset(ALICE, [KEYWORD, MUTE_ROOM, OVERRIDE, {"kind": "underride", "rule_id": "u", "actions": ["notify"], "conditions": []}])
    assert ids(ruleset, "override")[:3] == [".m.rule.master", "sev1", ".m.rule.suppress_notices"]
    assert ids(ruleset, "content") == ["kw-db", ".m.rule.contains_user_name"]
    assert ids(ruleset, "room") == [ROOM]
    assert ids(ruleset, "sender") == []
    assert ids(ruleset, "underride")[:2] == ["u", ".m.rule.call"]
    order = [r["rule_id"] for r in ruleset.evaluation_rules()]
    assert order.index("sev1") < order.index("kw-db") < order.index(ROOM) < order.index("u") < order.index(".m.rule.call")
    assert ".m.rule.master" not in order  # disabled rules are left out


def test_priority_field_sorts_user_rules_descending() -> None:
    rows = [
        {"kind": "content", "rule_id": "low", "pattern": "a", "actions": [], "priority": 1},
        {"kind": "content", "rule_id": "high", "pattern": "b", "actions": [], "priority": 5},
        {"kind": "content", "rule_id": "mid", "pattern": "c", "actions": [], "priority": 3},
    ]
    assert ids(PushRuleset(ALICE, rows), "content")[:3] == ["high", "mid", "low"]


def test_bad_storage_rows_are_ignored() -> None:
    rows = [{"kind": "bogus", "rule_id": "x", "actions": []}, {"kind": "override", "rule_id": ".m.rule.fake", "actions": []}]
    ruleset = PushRuleset(ALICE, rows)
    assert "x" not in [r.rule_id for r in ruleset.all_rules()]
    assert ".m.rule.fake" not in [r.rule_id for r in ruleset.all_rules()]


def test_default_overrides_change_enabled_and_actions() -> None:
    ruleset = PushRuleset(
        ALICE,
        default_overrides={
            ".m.rule.suppress_notices": {"enabled": False},
            ".m.rule.message": {"actions": ["notify", {"set_tweak": "sound", "value": "default"}]},
            ".m.rule.gone_from_spec": {"enabled": False},
        },
    )
    assert ruleset.get_rule("override", ".m.rule.suppress_notices").enabled is False
    assert matched_rule_id(message("bot says hi", "m.notice"), ruleset=ruleset) == ".m.rule.message"
    assert run_actions(message("hi"), ruleset) == ["notify", {"set_tweak": "sound", "value": "default"}]
    assert ruleset.get_rule("override", ".m.rule.suppress_notices").default is True


def test_unchanged_default_rules_are_shared_between_users() -> None:
    """Memory: one copy of the user-independent defaults serves every ruleset; a user's change or a rule that
    names the user gets a rule object of its own, and the other user does not see it."""
    alice = PushRuleset(ALICE, default_overrides={".m.rule.message": {"enabled": False}})
    bob = PushRuleset(BOB)
    assert alice.get_rule("underride", ".m.rule.call") is bob.get_rule("underride", ".m.rule.call")
    assert alice.get_rule("override", ".m.rule.master") is bob.get_rule("override", ".m.rule.master")
    assert alice.get_rule("underride", ".m.rule.message").enabled is False
    assert bob.get_rule("underride", ".m.rule.message").enabled is True
    mention_a = alice.get_rule("override", ".m.rule.is_user_mention")
    mention_b = bob.get_rule("override", ".m.rule.is_user_mention")
    assert mention_a.conditions[0]["value"] == ALICE and mention_b.conditions[0]["value"] == BOB
    assert alice.get_rule("content", ".m.rule.contains_user_name").pattern == ALICE[1:].split(":")[0]
    assert bob.get_rule("content", ".m.rule.contains_user_name").pattern == BOB[1:].split(":")[0]
    assert alice.get_rule("override", ".m.rule.invite_for_me").conditions[2]["pattern"] == ALICE
    assert bob.get_rule("override", ".m.rule.invite_for_me").conditions[2]["pattern"] == BOB
    assert alice.to_client_json()["global"]["underride"] != bob.to_client_json()["global"]["underride"]


def test_evaluation_rules_share_what_does_not_name_the_user() -> None:
    """Memory of a cached ruleset per user: the evaluation dicts of shared defaults are the same objects in
    every ruleset, and a user-naming rule shares its actions and the conditions not naming the user; what
    names the user stays the user's own, and a changed default's actions are the user's too."""
    alice = PushRuleset(ALICE, default_overrides={".m.rule.is_user_mention": {"actions": ["notify"]}})
    bob, carol = PushRuleset(BOB), PushRuleset("@carol:example.org")
    by_id = {name: {r["rule_id"]: r for r in rs.evaluation_rules()} for name, rs in
             (("alice", alice), ("bob", bob), ("carol", carol))}
    assert by_id["bob"][".m.rule.message"] is by_id["carol"][".m.rule.message"]
    assert by_id["bob"][".m.rule.message"]["conditions"] == [
        {"kind": "event_match", "key": "type", "pattern": "m.room.message"}]
    invite_b, invite_c = by_id["bob"][".m.rule.invite_for_me"], by_id["carol"][".m.rule.invite_for_me"]
    assert invite_b is not invite_c
    assert invite_b["conditions"][0] is invite_c["conditions"][0]  # type == m.room.member
    assert invite_b["conditions"][2] == {"kind": "event_match", "key": "state_key", "pattern": BOB}
    assert invite_c["conditions"][2]["pattern"] == "@carol:example.org"
    assert invite_b["actions"] is invite_c["actions"]
    assert by_id["bob"][".m.rule.contains_user_name"]["conditions"] == [
        {"kind": "event_match", "key": "content.body", "pattern": BOB[1:].split(":")[0]}]
    assert by_id["alice"][".m.rule.is_user_mention"]["actions"] == ["notify"]
    assert by_id["bob"][".m.rule.is_user_mention"]["actions"] == [
        "notify", {"set_tweak": "sound", "value": "default"}, {"set_tweak": "highlight"}]
    ping_bob = message("ping", **{"m.mentions": {"user_ids": [BOB]}})
    assert matched_rule_id(ping_bob, ruleset=bob, user_id=BOB) == ".m.rule.is_user_mention"
    assert matched_rule_id(ping_bob, ruleset=carol, user_id="@carol:example.org") == ".m.rule.message"


def test_user_rules_take_effect() -> None:
    ruleset = PushRuleset(ALICE, [KEYWORD, MUTE_ROOM, OVERRIDE])
    # Priority: override, then content (the keyword), then room (the mute).
    assert matched_rule_id(message("database on fire", severity="critical"), ruleset=ruleset) == "sev1"
    assert matched_rule_id(message("database slow"), ruleset=ruleset) == "kw-db"
    assert run_actions(message("all quiet"), ruleset) is None  # the room rule mutes it
    other_room = dict(message("all quiet"), room_id="!other:example.com")
    assert matched_rule_id(other_room, ruleset=ruleset) == ".m.rule.message"


def test_sender_rule_matches_sender_exactly() -> None:
    ruleset = PushRuleset(ALICE, [{"kind": "sender", "rule_id": BOB, "actions": []}])
    assert matched_rule_id(message("x"), ruleset=ruleset) == BOB
    shouting = dict(message("x"), sender=BOB.upper())
    assert matched_rule_id(shouting, ruleset=ruleset) == ".m.rule.message"


def test_disabled_user_rule_does_not_match() -> None:
    ruleset = PushRuleset(ALICE, [dict(MUTE_ROOM, enabled=False)])
    assert matched_rule_id(message("x"), ruleset=ruleset) == ".m.rule.message"
    assert ruleset.get_rule("room", ROOM).to_client_json() == {"rule_id": ROOM, "default": False, "enabled": False, "actions": []}


def test_client_json_shape() -> None:
    body = PushRuleset(ALICE, [KEYWORD, MUTE_ROOM, OVERRIDE]).to_client_json()
    assert list(body) == ["global"]
    rules = body["global"]
    assert list(rules) == ["override", "content", "room", "sender", "underride"]
    assert rules["content"][0] == {
        "rule_id": "kw-db",
        "default": False,
        "enabled": True,
        "actions": ["notify", {"set_tweak": "highlight"}],
        "pattern": "database",
    }
    assert rules["content"][1]["pattern"] == "alice"
    assert rules["room"] == [{"rule_id": ROOM, "default": False, "enabled": True, "actions": []}]
    assert rules["override"][0] == {"rule_id": ".m.rule.master", "default": True, "enabled": False, "actions": [], "conditions": []}
    assert rules["override"][1]["conditions"] == OVERRIDE["conditions"]
    for kind_rules in rules.values():
        for rule in kind_rules:
            assert {"rule_id", "default", "enabled", "actions"} <= set(rule)


def test_get_rule_errors() -> None:
    ruleset = PushRuleset(ALICE)
    with pytest.raises(MatrixError) as missing:
        ruleset.get_rule("content", "nope")
    assert (missing.value.code, missing.value.errcode) == (404, "M_NOT_FOUND")
    with pytest.raises(MatrixError) as wrong_kind:
        ruleset.get_rule("override", ".m.rule.contains_user_name")
    assert wrong_kind.value.code == 404
    with pytest.raises(MatrixError) as bad_kind:
        ruleset.get_rule("global", ".m.rule.master")
    assert (bad_kind.value.code, bad_kind.value.errcode) == (400, "M_INVALID_PARAM")


def test_check_default_rule_exists() -> None:
    check_default_rule_exists("underride", ".m.rule.call")
    with pytest.raises(MatrixError) as err:
        check_default_rule_exists("override", ".m.rule.call")
    assert err.value.code == 404
    with pytest.raises(MatrixError) as err:
        check_default_rule_exists("override", ".m.rule.nonexistent")
    assert err.value.code == 404


# --- validate_rule -----------------------------------------------------------------------------------------------


def test_validate_rule_normalises_each_kind() -> None:
    assert validate_rule("content", "cake", {"pattern": "cake*lie", "actions": ["notify"]}) == {
        "kind": "content", "rule_id": "cake", "actions": ["notify"], "enabled": True, "pattern": "cake*lie",
    }
    assert validate_rule("override", "o", {"actions": ["dont_notify"]}) == {
        "kind": "override", "rule_id": "o", "actions": [], "enabled": True, "conditions": [],
    }
    assert validate_rule("room", ROOM, {"actions": [], "conditions": "ignored"}) == {
        "kind": "room", "rule_id": ROOM, "actions": [], "enabled": True,
    }
    assert validate_rule("sender", BOB, {"actions": ["notify"]})["rule_id"] == BOB
    beer = {
        "conditions": [
            {"kind": "event_match", "key": "content.body", "pattern": "beer"},
            {"kind": "room_member_count", "is": "<=10"},
            {"kind": "org.example.future", "whatever": 1},
            {"kind": "event_property_is", "key": "content.m\\.federate", "value": None},
        ],
        "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}],
    }
    assert validate_rule("underride", "beer", beer)["conditions"] == beer["conditions"]


def _error(kind: str, rule_id: str, body: Any) -> tuple[int, str]:
    with pytest.raises(MatrixError) as err:
        validate_rule(kind, rule_id, body)
    return err.value.code, err.value.errcode


@pytest.mark.parametrize(
    "kind,rule_id,body,expected",
    [
        ("global", "x", {"actions": []}, (400, "M_INVALID_PARAM")),
        ("content", ".m.rule.contains_user_name", {"pattern": "x", "actions": []}, (400, "M_INVALID_PARAM")),
        ("override", "", {"actions": []}, (400, "M_INVALID_PARAM")),
        ("override", "a/b", {"actions": []}, (400, "M_INVALID_PARAM")),
        ("override", "a\\b", {"actions": []}, (400, "M_INVALID_PARAM")),
        ("room", "#alias:example.com", {"actions": []}, (400, "M_INVALID_PARAM")),
        ("sender", "bob", {"actions": []}, (400, "M_INVALID_PARAM")),
        ("override", "x", [], (400, "M_BAD_JSON")),
        ("override", "x", {}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": "notify"}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": [1]}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": ["ring_loudly"]}, (400, "M_INVALID_PARAM")),
        ("override", "x", {"actions": [{"value": "x"}]}, (400, "M_INVALID_PARAM")),
        ("override", "x", {"actions": [{"set_tweak": "highlight", "value": "yes"}]}, (400, "M_INVALID_PARAM")),
        ("override", "x", {"actions": [], "conditions": {}}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": [], "conditions": ["event_match"]}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": [], "conditions": [{"key": "type"}]}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": [], "conditions": [{"kind": "room_member_count", "is": "lots"}]}, (400, "M_INVALID_PARAM")),
        ("override", "x", {"actions": [], "conditions": [{"kind": "room_member_count", "is": 2}]}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_property_is", "key": "k"}]}, (400, "M_BAD_JSON")),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_property_is", "key": "k", "value": [1]}]}, (400, "M_INVALID_PARAM")),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_property_contains", "key": "k", "value": 2**53}]}, (400, "M_INVALID_PARAM")),
        ("override", "x", {"actions": [], "conditions": [{"kind": "event_property_is", "key": "k", "value": 1.5}]}, (400, "M_INVALID_PARAM")),
        ("content", "x", {"actions": []}, (400, "M_BAD_JSON")),
        ("content", "x", {"actions": [], "pattern": 5}, (400, "M_BAD_JSON")),
    ],
)
def test_validate_rule_errors(kind: str, rule_id: str, body: Any, expected: tuple[int, str]) -> None:
    assert _error(kind, rule_id, body) == expected


def test_validate_rule_accepts_namespaced_actions_and_custom_tweaks() -> None:
    actions = ["notify", "org.example.page_on_call", {"set_tweak": "led", "value": "red"}, {"set_tweak": "highlight", "value": False}]
    assert validate_rule("override", "x", {"actions": actions})["actions"] == actions


def test_enabled_and_actions_bodies() -> None:
    assert validate_enabled_body({"enabled": False}) is False
    assert validate_actions_body({"actions": ["notify", "coalesce"]}) == ["notify"]
    for bad in ({}, {"enabled": "true"}, {"enabled": 1}, None):
        with pytest.raises(MatrixError) as err:
            validate_enabled_body(bad)
        assert err.value.errcode == "M_BAD_JSON"
    with pytest.raises(MatrixError):
        validate_actions_body({"enabled": True})


# --- insert_position ---------------------------------------------------------------------------------------------


def test_insert_position() -> None:
    rules = [{"rule_id": "a"}, {"rule_id": "b"}, {"rule_id": "c"}]
    assert insert_position(rules, None, None) == 0
    assert insert_position(rules, before="a") == 0
    assert insert_position(rules, before="c") == 2
    assert insert_position(rules, after="a") == 1
    assert insert_position(rules, after="c") == 3
    assert insert_position(["a", "b"], before="b", after="a") == 1  # before wins
    assert insert_position(["a", "b"], before="a", after="b") == 0
    assert insert_position([], None, None) == 0


def test_insert_position_errors() -> None:
    with pytest.raises(MatrixError) as missing:
        insert_position(["a"], before="zzz")
    assert (missing.value.code, missing.value.errcode) == (400, "M_UNKNOWN")
    assert missing.value.msg == "before/after rule not found: zzz"
    with pytest.raises(MatrixError) as default:
        insert_position(["a"], after=".m.rule.message")
    assert (default.value.code, default.value.errcode) == (400, "M_INVALID_PARAM")


def test_evaluating_an_event_leaves_no_reference_cycles() -> None:
    """Each sent event gets an evaluator: one that referenced itself (bound methods in a table) left ~10 objects
    per event to the cyclic collector, whose pauses were the latency benchmark's p99. Nothing must be left."""
    import gc

    ruleset = PushRuleset(ALICE)
    rules = ruleset.evaluation_rules()
    gc.collect()
    gc.disable()
    try:
        for i in range(50):
            event = message(f"@room hi alice {i}", **{"m.mentions": {"user_ids": [ALICE]}})
            assert run_actions(event, ruleset) is not None
            assert matched_rule_id(message("plain"), ruleset=ruleset) == ".m.rule.message"
        del event
        assert gc.collect() == 0
    finally:
        gc.enable()
    assert rules


def test_ruleset_keeps_no_copy_of_its_inputs_and_knows_when_it_is_the_defaults() -> None:
    """A cached ruleset holds its PushRules only (slots, no instance dicts, not the storage rows it was built
    from), and ``defaults_only`` says whether the user changed anything (the evaluator's shared fast path)."""
    rows = [dict(KEYWORD)]
    ruleset = PushRuleset(ALICE, rows, {})
    assert not hasattr(ruleset, "__dict__") and not hasattr(ruleset.all_rules()[0], "__dict__")
    assert "user_rules" not in type(ruleset).__slots__ and "default_overrides" not in type(ruleset).__slots__
    rows[0]["pattern"] = "changed later"  # the ruleset copied what it needed
    assert ruleset.get_rule("content", "kw-db").pattern == "database"
    assert ruleset.defaults_only is False
    assert PushRuleset(ALICE).defaults_only is True
    assert PushRuleset(ALICE, [], {}).defaults_only is True
    assert PushRuleset(ALICE, [], {".m.rule.suppress_notices": {"enabled": False}}).defaults_only is False
    assert ruleset.rules("content")[0].rule_id == "kw-db"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_localparts = st.text("abcdefghijklmnopqrstuvwxyz0123456789._=-/+", min_size=1, max_size=20)
_servers = st.sampled_from(["example.org", "chat.example.com", "localhost:8448", "[::1]:8008"])


def _resolved(value: Any, user_id: str) -> Any:
    from homeserver.push.evaluator import UserRef

    if type(value) is UserRef:
        return value.resolve(user_id)
    if isinstance(value, dict):
        return {k: _resolved(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, user_id) for v in value]
    return value


@settings(max_examples=60, deadline=None)
@given(_localparts, _servers)
def test_user_relative_default_rules_are_each_users_own_rules(local: str, server: str) -> None:
    """The one shared copy push evaluation uses for every member who changed nothing is, with its user references
    read as this member, exactly (values and key order) the rule of the member's whole default ruleset; rules
    naming nobody are the shared dicts themselves, and actions are shared (the actions memo keys on identity)."""
    import json

    from homeserver.push.evaluator import USER_ID, USER_LOCALPART
    from homeserver.push.rules import user_relative_default_rule

    user_id = f"@{local}:{server}"
    whole = PushRuleset(user_id).evaluation_rules()
    other = {r["rule_id"]: r for r in PushRuleset("@someone-else:example.net").evaluation_rules()}
    refs = set()
    for rule in whole:
        relative = user_relative_default_rule(rule["rule_id"])
        assert relative is user_relative_default_rule(rule["rule_id"])
        assert json.dumps(_resolved(relative, user_id)) == json.dumps(rule)
        assert relative["actions"] is other[rule["rule_id"]]["actions"]
        if rule == other[rule["rule_id"]]:
            assert relative is other[rule["rule_id"]]
        refs |= {c.get("pattern") for c in relative["conditions"]} | {c.get("value") for c in relative["conditions"]}
    assert USER_ID in refs and USER_LOCALPART in refs
    with pytest.raises(KeyError):
        user_relative_default_rule("not-a-default")


@settings(max_examples=60, deadline=None)
@given(_localparts, st.sampled_from(["", "hello", "ping {lp}", "{lp}!", "x{lp}y", "{uid} please"]),
       st.booleans(), st.booleans())
def test_evaluating_the_user_relative_rules_matches_like_the_users_own(local: str, body: str, mention: bool,
                                                                      invite: bool) -> None:
    from homeserver.push import PushRuleEvaluator
    from homeserver.push.rules import user_relative_default_rule

    user_id = f"@{local}:example.org"
    content: dict[str, Any] = {"msgtype": "m.text", "body": body.format(lp=local, uid=user_id)}
    if mention:
        content["m.mentions"] = {"user_ids": [user_id]}
    event: dict[str, Any] = {"type": "m.room.message", "content": content, "sender": "@x:example.org",
                             "room_id": ROOM}
    if invite:
        event = {"type": "m.room.member", "content": {"membership": "invite"}, "state_key": user_id,
                 "sender": "@x:example.org", "room_id": ROOM}
    ids = [".m.rule.invite_for_me", ".m.rule.is_user_mention", ".m.rule.contains_display_name",
           ".m.rule.contains_user_name"]
    own = {r["rule_id"]: r for r in PushRuleset(user_id).evaluation_rules()}
    evaluator = PushRuleEvaluator(event, 5, 0, {})
    for rule_id in ids:
        mine = evaluator.match([own[rule_id]], user_id, "Night Shift")
        relative = evaluator.match([user_relative_default_rule(rule_id)], user_id, "Night Shift")
        assert (mine is None) == (relative is None), rule_id


def test_a_defaults_only_ruleset_keeps_nothing_but_its_user_and_a_changed_one_keeps_its_rules() -> None:
    """Memory of the ruleset cache (one entry per user the server pushes to): a user who changed nothing costs
    a user ID; reading the ruleset (``/pushrules``, initial sync) builds it without keeping it."""
    plain = PushRuleset(BOB)
    assert plain._by_kind is None and plain._evaluation_rules is None
    first = plain.to_client_json()
    assert plain.evaluation_rules() == PushRuleset(BOB, [], {}).evaluation_rules()
    assert plain.get_rule("content", ".m.rule.contains_user_name").pattern == BOB[1:].split(":")[0]
    assert plain._by_kind is None and plain._evaluation_rules is None
    assert plain.to_client_json() == first
    changed = PushRuleset(BOB, [dict(KEYWORD)], {})
    rules = changed.evaluation_rules()
    assert changed._by_kind is not None and changed.evaluation_rules() is rules
    assert [r["rule_id"] for r in rules if r["kind"] == "content"] == ["kw-db", ".m.rule.contains_user_name"]
