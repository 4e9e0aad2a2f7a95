"""PushHandler.prepare's fast path for members with the default ruleset gives exactly what evaluating each
member's whole ruleset gives."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from homeserver.handlers.push import PushHandler
from homeserver.push import PushRuleEvaluator, PushRuleset, actions_to_counts, strip_legacy_actions
from homeserver.streams import StreamIdGenerator

ROOM = "!r:test"
SENDER = "@alert-bot:test"
MEMBERS = ["@alice:test", "@bob:test", "@carol:test", "@dave:test"]
NAMES = {"@alice:test": "Alice", "@bob:test": "Night Shift", "@carol:test": None, "@dave:test": "Alice",
         SENDER: "Alert Bot"}


class FakeEvent:
    def __init__(self, etype: str, content: dict[str, Any], state_key: str | None = None,
                 sender: str = SENDER, event_id: str = "$e") -> None:
        self.type, self.content, self.state_key, self.sender = etype, content, state_key, sender
        self.room_id, self.event_id = ROOM, event_id

    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def membership(self) -> str | None:
        return self.content.get("membership") if self.type == "m.room.member" else None


def make_handler(custom: dict[str, tuple[list[Any], dict[str, Any]]]) -> tuple[PushHandler, dict[Any, str]]:
    members = {u: FakeEvent("m.room.member", {"membership": "join", **({"displayname": NAMES[u]} if NAMES[u]
                                                                       else {})}, u, u, f"$m-{u}")
               for u in MEMBERS + [SENDER]}
    pl = FakeEvent("m.room.power_levels", {"users": {SENDER: 50}}, "", SENDER, "$pl")
    by_id = {e.event_id: e for e in [*members.values(), pl]}
    state_ids = {("m.room.member", u): e.event_id for u, e in members.items()}
    state_ids[("m.room.power_levels", "")] = "$pl"

    async def get_events(ids: Any) -> dict[str, Any]:
        return {i: by_id[i] for i in ids if i in by_id}

    async def get_event(i: str) -> Any:
        return by_id.get(i)

    async def get_users_in_room(room_id: str) -> frozenset[str]:
        return frozenset(MEMBERS + [SENDER])

    async def get_push_rules_for_users(users: Any) -> dict[str, Any]:
        return {u: custom.get(u, ([], {})) for u in users}

    hs = SimpleNamespace(
        push_store=SimpleNamespace(get_push_rules_for_users=get_push_rules_for_users),
        room_store=SimpleNamespace(get_users_in_room=get_users_in_room),
        event_store=SimpleNamespace(stream_ids=StreamIdGenerator(0), get_events=get_events, get_event=get_event),
        event_creation_handler=SimpleNamespace(add_persist_hook=lambda hook: None),
    )
    return PushHandler(hs), state_ids


def expected(event: FakeEvent, custom: dict[str, tuple[list[Any], dict[str, Any]]]) -> list[tuple[str, int, str]]:
    event_dict: dict[str, Any] = {"type": event.type, "content": event.content, "sender": SENDER, "room_id": ROOM}
    if event.state_key is not None:
        event_dict["state_key"] = event.state_key
    evaluator = PushRuleEvaluator(event_dict, len(MEMBERS) + 1, 50, {"users": {SENDER: 50}})
    out = []
    for user in MEMBERS:
        rules, overrides = custom.get(user, ([], {}))
        actions = evaluator.run(PushRuleset(user, rules, overrides).evaluation_rules(), user, NAMES[user])
        notify, highlight = actions_to_counts(actions)
        if notify:
            out.append((user, int(highlight), json.dumps(strip_legacy_actions(actions), separators=(",", ":"))))
    return out


def prepared(event: FakeEvent, custom: dict[str, tuple[list[Any], dict[str, Any]]]) -> list[tuple[str, int, str]]:
    handler, state_ids = make_handler(custom)
    out: list[Any] = []
    defer.ensureDeferred(handler.prepare(event, state_ids)).addBoth(out.append)  # type: ignore[arg-type]
    return sorted(out[0].actions)


CUSTOM = {"@carol:test": ([{"kind": "content", "rule_id": "db", "pattern": "db*", "actions": ["notify",
                                                                                             {"set_tweak":
                                                                                              "highlight"}]}],
                          {}),
          "@dave:test": ([], {".m.rule.message": {"enabled": False}})}

WORDS = ["alice", "Alice", "night", "shift", "Night Shift", "bob", "carol", "db-1", "@room", "down", "ok"]


@settings(max_examples=150, deadline=None)
@given(
    words=st.lists(st.sampled_from(WORDS), max_size=6),
    msgtype=st.sampled_from(["m.text", "m.notice", "m.emote"]),
    mentions=st.one_of(st.none(), st.fixed_dictionaries({"user_ids": st.lists(st.sampled_from(MEMBERS),
                                                                              max_size=2),
                                                         "room": st.booleans()})),
    custom=st.booleans(),
)
def test_fast_path_matches_full_evaluation(words: list[str], msgtype: str, mentions: Any, custom: bool) -> None:
    content: dict[str, Any] = {"msgtype": msgtype, "body": " ".join(words)}
    if mentions is not None:
        content["m.mentions"] = mentions
    event = FakeEvent("m.room.message", content)
    rules = CUSTOM if custom else {}
    assert prepared(event, rules) == sorted(expected(event, rules))


def test_invite_and_other_event_types() -> None:
    invite = FakeEvent("m.room.member", {"membership": "invite"}, "@erin:test")
    handler_out = prepared(invite, {})
    # Only the invitee is notified (member events are otherwise silent).
    assert [u for u, _, _ in handler_out] == ["@erin:test"]
    for etype, content, skey in [("m.room.tombstone", {"body": "moved"}, ""), ("m.reaction", {}, None),
                                 ("m.room.encrypted", {"algorithm": "x"}, None), ("m.call.invite", {}, None)]:
        event = FakeEvent(etype, content, skey)
        assert prepared(event, CUSTOM) == sorted(expected(event, CUSTOM))
