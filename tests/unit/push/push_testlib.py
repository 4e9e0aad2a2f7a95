"""Helpers shared by the push rule tests: events shaped like real client-format events."""

from __future__ import annotations

from typing import Any

from homeserver.push import PushRuleEvaluator, PushRuleset

ALICE = "@alice:example.com"
BOB = "@bob:example.com"
ROOM = "!incident42:example.com"


def message(body: str, msgtype: str = "m.text", **content: Any) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "content": {"msgtype": msgtype, "body": body, **content},
        "sender": BOB,
        "room_id": ROOM,
        "event_id": "$msg:example.com",
        "origin_server_ts": 1_700_000_000_000,
    }


def state(event_type: str, state_key: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": event_type,
        "state_key": state_key,
        "content": content,
        "sender": BOB,
        "room_id": ROOM,
        "event_id": "$state:example.com",
        "origin_server_ts": 1_700_000_000_000,
    }


def matched_rule_id(
    event: dict[str, Any],
    *,
    ruleset: PushRuleset | None = None,
    member_count: int = 5,
    sender_level: int = 0,
    power_levels: dict[str, Any] | None = None,
    user_id: str = ALICE,
    display_name: str | None = "Liddell",
) -> str | None:
    ruleset = ruleset or PushRuleset(user_id)
    evaluator = PushRuleEvaluator(event, member_count, sender_level, power_levels or {})
    rule = evaluator.match(ruleset.evaluation_rules(), user_id, display_name)
    return None if rule is None else rule["rule_id"]


def run_actions(event: dict[str, Any], ruleset: PushRuleset | None = None, **kwargs: Any) -> list[Any] | None:
    ruleset = ruleset or PushRuleset(ALICE)
    evaluator = PushRuleEvaluator(
        event, kwargs.get("member_count", 5), kwargs.get("sender_level", 0), kwargs.get("power_levels", {})
    )
    return evaluator.run(ruleset.evaluation_rules(), kwargs.get("user_id", ALICE), kwargs.get("display_name"))
