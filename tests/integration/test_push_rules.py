"""The /pushrules API and m.push_rules account data (issue 3 item 2, and its bad input)."""

from __future__ import annotations

from typing import Any

from tests.support.client import Api, User, q, register

RULES = "pushrules/global"


def _ids(user: User, kind: str) -> list[str]:
    return [r["rule_id"] for r in user.ok("GET", "pushrules/")["global"][kind]]


def _push_rules_account_data(user: User, since: str | None = None) -> Any:
    body = user.sync(since=since)
    for ev in body["account_data"]["events"]:
        if ev["type"] == "m.push_rules":
            return ev["content"]
    return None


def test_defaults_in_spec_order(api: Api) -> None:
    u = register(api)
    rules = u.ok("GET", "pushrules/")["global"]
    assert [r["rule_id"] for r in rules["override"]] == [
        ".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
        ".m.rule.is_user_mention", ".m.rule.contains_display_name", ".m.rule.is_room_mention",
        ".m.rule.roomnotif", ".m.rule.tombstone", ".m.rule.reaction", ".m.rule.room.server_acl",
        ".m.rule.suppress_edits"]
    assert [r["rule_id"] for r in rules["content"]] == [".m.rule.contains_user_name"]
    assert rules["content"][0]["pattern"] == u.user_id[1:].split(":")[0]
    assert [r["rule_id"] for r in rules["underride"]] == [
        ".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one", ".m.rule.message",
        ".m.rule.encrypted"]
    assert rules["room"] == [] and rules["sender"] == []
    assert u.ok("GET", f"{RULES}/") == rules
    master = u.ok("GET", f"{RULES}/override/.m.rule.master")
    assert master == {"rule_id": ".m.rule.master", "default": True, "enabled": False, "actions": [],
                      "conditions": []}


def test_put_with_before_after_and_delete(api: Api) -> None:
    u = register(api)
    assert u.req("PUT", f"{RULES}/content/pager", {"actions": ["notify"], "pattern": "pager"}).status == 200
    assert u.req("PUT", f"{RULES}/content/sev1", {"actions": ["notify"], "pattern": "sev1"},
                 params={"before": "pager"}).status == 200
    assert u.req("PUT", f"{RULES}/content/sev3", {"actions": [], "pattern": "sev3"},
                 params={"after": "pager"}).status == 200
    assert _ids(u, "content") == ["sev1", "pager", "sev3", ".m.rule.contains_user_name"]
    # Moving an existing rule keeps a single copy.
    assert u.req("PUT", f"{RULES}/content/sev3", {"actions": ["notify"], "pattern": "sev3"},
                 params={"before": "sev1"}).status == 200
    assert _ids(u, "content") == ["sev3", "sev1", "pager", ".m.rule.contains_user_name"]
    got = u.ok("GET", f"{RULES}/content/sev3")
    assert got == {"rule_id": "sev3", "default": False, "enabled": True, "actions": ["notify"], "pattern": "sev3"}
    assert u.req("DELETE", f"{RULES}/content/sev1").status == 200
    assert _ids(u, "content") == ["sev3", "pager", ".m.rule.contains_user_name"]
    r = u.req("GET", f"{RULES}/content/sev1")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def test_room_sender_override_rules(api: Api) -> None:
    u = register(api)
    room = u.create_room()
    assert u.req("PUT", f"{RULES}/room/{q(room)}", {"actions": []}).status == 200
    assert u.req("PUT", f"{RULES}/sender/{q('@bot:test.local')}", {"actions": ["notify"]}).status == 200
    cond = [{"kind": "event_match", "key": "content.body", "pattern": "CRITICAL*"}]
    assert u.req("PUT", f"{RULES}/override/crit", {"actions": ["notify", {"set_tweak": "highlight"}],
                                                   "conditions": cond}).status == 200
    rules = u.ok("GET", "pushrules/")["global"]
    assert rules["room"] == [{"rule_id": room, "default": False, "enabled": True, "actions": []}]
    assert rules["sender"][0]["rule_id"] == "@bot:test.local"
    # User override rules come after .m.rule.master and before the other default overrides.
    assert [r["rule_id"] for r in rules["override"]][:3] == [".m.rule.master", "crit", ".m.rule.suppress_notices"]
    assert rules["override"][1]["conditions"] == cond


def test_enabled_and_actions_of_user_and_default_rules(api: Api) -> None:
    u = register(api)
    assert u.ok("GET", f"{RULES}/override/.m.rule.master/enabled") == {"enabled": False}
    assert u.req("PUT", f"{RULES}/override/.m.rule.master/enabled", {"enabled": True}).status == 200
    assert u.ok("GET", f"{RULES}/override/.m.rule.master/enabled") == {"enabled": True}
    assert u.req("PUT", f"{RULES}/underride/.m.rule.message/actions",
                 {"actions": ["notify", {"set_tweak": "sound", "value": "default"}]}).status == 200
    assert u.ok("GET", f"{RULES}/underride/.m.rule.message/actions") == {
        "actions": ["notify", {"set_tweak": "sound", "value": "default"}]}
    assert u.req("PUT", f"{RULES}/content/x", {"actions": ["notify"], "pattern": "x"}).status == 200
    assert u.req("PUT", f"{RULES}/content/x/enabled", {"enabled": False}).status == 200
    assert u.ok("GET", f"{RULES}/content/x")["enabled"] is False
    # Re-putting a rule keeps its enabled state.
    assert u.req("PUT", f"{RULES}/content/x", {"actions": [], "pattern": "x"}).status == 200
    assert u.ok("GET", f"{RULES}/content/x") == {"rule_id": "x", "default": False, "enabled": False,
                                                 "actions": [], "pattern": "x"}


def test_m_push_rules_account_data_stays_in_step(api: Api) -> None:
    u = register(api)
    since = u.sync()["next_batch"]
    assert u.req("PUT", f"{RULES}/content/oncall", {"actions": ["notify"], "pattern": "oncall"}).status == 200
    content = _push_rules_account_data(u, since)
    assert content == u.ok("GET", "pushrules/")
    assert "oncall" in [r["rule_id"] for r in content["global"]["content"]]
    since = u.sync()["next_batch"]
    assert u.req("PUT", f"{RULES}/override/.m.rule.master/enabled", {"enabled": True}).status == 200
    content = _push_rules_account_data(u, since)
    assert content["global"]["override"][0] == {"rule_id": ".m.rule.master", "default": True, "enabled": True,
                                               "actions": [], "conditions": []}
    assert _push_rules_account_data(u) == u.ok("GET", "pushrules/")


def test_bad_rules_are_refused_and_change_nothing(api: Api) -> None:
    u = register(api)
    assert u.req("PUT", f"{RULES}/content/keep", {"actions": ["notify"], "pattern": "keep"}).status == 200
    before = u.ok("GET", "pushrules/")
    since = u.sync()["next_batch"]
    cases: list[tuple[str, str, Any, dict[str, str] | None, int, str]] = [
        ("PUT", f"{RULES}/bogus/x", {"actions": []}, None, 400, "M_INVALID_PARAM"),
        ("GET", f"{RULES}/bogus/x", None, None, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/content/.m.rule.mine", {"actions": [], "pattern": "a"}, None, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/content/nopattern", {"actions": []}, None, 400, "M_BAD_JSON"),
        ("PUT", f"{RULES}/override/bad", {"actions": [], "conditions": [{"key": "type"}]}, None, 400,
         "M_BAD_JSON"),
        ("PUT", f"{RULES}/override/bad", {"actions": [], "conditions": [{"kind": "room_member_count",
                                                                         "is": "lots"}]}, None, 400,
         "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/bad", {"actions": ["explode"]}, None, 400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/override/bad", {"actions": "notify"}, None, 400, "M_BAD_JSON"),
        ("PUT", f"{RULES}/content/y", {"actions": [], "pattern": "y"}, {"before": "missing"}, 400, "M_UNKNOWN"),
        ("PUT", f"{RULES}/content/y", {"actions": [], "pattern": "y"}, {"after": ".m.rule.contains_user_name"},
         400, "M_INVALID_PARAM"),
        ("PUT", f"{RULES}/room/not-a-room", {"actions": []}, None, 400, "M_INVALID_PARAM"),
        ("DELETE", f"{RULES}/content/missing", None, None, 404, "M_NOT_FOUND"),
        ("DELETE", f"{RULES}/override/.m.rule.master", None, None, 400, "M_INVALID_PARAM"),
        ("GET", f"{RULES}/override/.m.rule.nope", None, None, 404, "M_NOT_FOUND"),
        ("PUT", f"{RULES}/override/.m.rule.nope/enabled", {"enabled": True}, None, 404, "M_NOT_FOUND"),
        ("PUT", f"{RULES}/content/.m.rule.master/enabled", {"enabled": True}, None, 404, "M_NOT_FOUND"),
        ("PUT", f"{RULES}/content/missing/actions", {"actions": []}, None, 404, "M_NOT_FOUND"),
        ("PUT", f"{RULES}/content/keep/enabled", {"enabled": "yes"}, None, 400, "M_BAD_JSON"),
        ("PUT", f"{RULES}/content/keep/actions", {"actions": [{"set_tweak": "highlight", "value": 1}]}, None,
         400, "M_INVALID_PARAM"),
        ("GET", "pushrules/device/", None, None, 400, "M_INVALID_PARAM"),
    ]
    for method, path, body, params, status, errcode in cases:
        r = u.req(method, path, body, params=params)
        assert (r.status, r.errcode()) == (status, errcode), (method, path, r.status, r.json)
    assert u.ok("GET", "pushrules/") == before
    assert _push_rules_account_data(u, since) is None


def test_default_rules_in_initial_sync_and_account_data(api: Api) -> None:
    user = register(api)
    synced = user.sync()
    events = {e["type"]: e["content"] for e in synced["account_data"]["events"]}
    override_ids = [r["rule_id"] for r in events["m.push_rules"]["global"]["override"]]
    assert override_ids[0] == ".m.rule.master"
    assert ".m.rule.is_user_mention" in override_ids
    fetched = user.ok("GET", f"user/{q(user.user_id)}/account_data/m.push_rules")
    assert fetched == events["m.push_rules"]
