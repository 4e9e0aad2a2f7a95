"""Hypothesis properties of push rule evaluation."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.push import PushRuleEvaluator, PushRuleset, actions_to_counts
from homeserver.push.evaluator import compile_glob
from push_testlib import ALICE, BOB, ROOM

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

WORD_CHARS = "abcXYZ019_éÜ"
SEPARATORS = " -.,!@:\n"

words = st.text(alphabet=WORD_CHARS, min_size=1, max_size=6)
separators = st.text(alphabet=SEPARATORS, min_size=1, max_size=3)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, list[str]]:
    tokens = draw(st.lists(words, min_size=0, max_size=8))
    parts = [draw(st.text(alphabet=SEPARATORS, max_size=2))]
    for i, token in enumerate(tokens):
        parts.append(token)
        parts.append(draw(separators) if i < len(tokens) - 1 else draw(st.text(alphabet=SEPARATORS, max_size=2)))
    return "".join(parts), tokens


@FAST
@given(bodies(), words)
def test_glob_without_wildcards_matches_only_whole_words_of_body(body_tokens: tuple[str, list[str]], word: str) -> None:
    body, tokens = body_tokens
    event = {"type": "m.room.message", "content": {"msgtype": "m.text", "body": body}, "sender": BOB, "room_id": ROOM}
    rules = [{"rule_id": "kw", "actions": ["notify"], "conditions": [
        {"kind": "event_match", "key": "content.body", "pattern": word}]}]
    matched = PushRuleEvaluator(event, 3, 0, {}).run(rules, ALICE, None) is not None
    assert matched == any(token.lower() == word.lower() for token in tokens)


def _reference(pattern: str, word_boundary: bool) -> re.Pattern[str]:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    if word_boundary:
        body = rf"(?<!\w){body}(?!\w)"
    return re.compile(body, re.IGNORECASE | re.DOTALL)


@FAST
@given(st.text(alphabet="ab*? -", max_size=7), st.text(alphabet="abAB -\n", max_size=12), st.booleans())
def test_segment_glob_matcher_agrees_with_a_backtracking_regex(pattern: str, value: str, word: bool) -> None:
    reference = _reference(pattern, word)
    expected = (reference.search(value) if word else reference.fullmatch(value)) is not None
    assert compile_glob(pattern, word)(value) is expected


# --- random events against the default ruleset -------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["", "x", "m.replace", ALICE]))


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(
        ["m.room.message", "m.room.encrypted", "m.room.member", "m.reaction", "m.call.invite",
         "m.room.tombstone", "m.room.server_acl", "m.room.topic", "org.example.alert"]))
    content: dict[str, Any] = {
        "body": draw(st.sampled_from(["", "alice", "Alice?", "@room now", "hi Liddell", "disk full", "x alice y"])),
        "msgtype": draw(st.sampled_from(["m.text", "m.notice", "m.emote"])),
    }
    if draw(st.booleans()):
        content["m.mentions"] = draw(st.fixed_dictionaries({}, optional={
            "user_ids": st.lists(st.sampled_from([ALICE, BOB, "@carol:example.com"]), max_size=2),
            "room": st.booleans(),
        }))
    if draw(st.booleans()):
        content["m.relates_to"] = {"rel_type": draw(st.sampled_from(["m.replace", "m.thread", "m.annotation"])),
                                   "event_id": "$x"}
    if event_type == "m.room.member":
        content["membership"] = draw(st.sampled_from(["invite", "join", "leave"]))
    content["extra"] = draw(st.dictionaries(st.sampled_from(["a", "b.c", "d\\e"]), scalars, max_size=3))
    event: dict[str, Any] = {"type": event_type, "content": content, "sender": BOB, "room_id": ROOM}
    if draw(st.booleans()):
        event["state_key"] = draw(st.sampled_from(["", ALICE, BOB]))
    return event


user_rules = st.lists(
    st.one_of(
        st.builds(lambda p, n: {"kind": "content", "rule_id": f"kw{n}", "pattern": p, "actions": ["notify"]},
                  st.sampled_from(["disk", "full*", "a?ice", "room"]), st.integers(0, 3)),
        st.builds(lambda a: {"kind": "room", "rule_id": ROOM, "actions": a},
                  st.sampled_from([[], ["notify"], ["notify", {"set_tweak": "highlight"}]])),
        st.builds(lambda a: {"kind": "sender", "rule_id": BOB, "actions": a}, st.sampled_from([[], ["notify"]])),
        st.builds(lambda key, v: {"kind": "override", "rule_id": "prop", "actions": ["notify"],
                                  "conditions": [{"kind": "event_property_is", "key": key, "value": v}]},
                  st.sampled_from(["content.extra.a", "content.extra.b\\.c", "content.extra.d\\\\e", "state_key"]),
                  scalars),
    ),
    max_size=4,
)


def _counts(event: dict[str, Any], ruleset: PushRuleset, members: int, level: int) -> tuple[bool, bool]:
    evaluator = PushRuleEvaluator(event, members, level, {"notifications": {"room": 50}})
    return actions_to_counts(evaluator.run(ruleset.evaluation_rules(), ALICE, "Liddell"))


@FAST
@given(events(), user_rules, st.integers(1, 4), st.integers(0, 100))
def test_disabling_master_never_reduces_notifications(
    event: dict[str, Any], rules: list[dict[str, Any]], members: int, level: int
) -> None:
    muted = PushRuleset(ALICE, rules, {".m.rule.master": {"enabled": True}})
    unmuted = PushRuleset(ALICE, rules, {".m.rule.master": {"enabled": False}})
    notify_muted, highlight_muted = _counts(event, muted, members, level)
    notify_unmuted, highlight_unmuted = _counts(event, unmuted, members, level)
    assert notify_muted <= notify_unmuted
    assert highlight_muted <= highlight_unmuted


def _reordered(value: Any, order: Any) -> Any:
    if isinstance(value, dict):
        keys = order.draw(st.permutations(sorted(value)))
        return {k: _reordered(value[k], order) for k in keys}
    if isinstance(value, list):
        return [_reordered(v, order) for v in value]
    return value


@FAST
@given(events(), user_rules, st.integers(1, 4), st.integers(0, 100), st.data())
def test_evaluation_does_not_depend_on_key_order(
    event: dict[str, Any], rules: list[dict[str, Any]], members: int, level: int, data: st.DataObject
) -> None:
    ruleset = PushRuleset(ALICE, rules)
    shuffled = _reordered(event, data)
    assert shuffled == event
    first = PushRuleEvaluator(event, members, level, {}).match(ruleset.evaluation_rules(), ALICE, "Liddell")
    second = PushRuleEvaluator(shuffled, members, level, {}).match(ruleset.evaluation_rules(), ALICE, "Liddell")
    assert (first or {}).get("rule_id") == (second or {}).get("rule_id")
