"""Properties of the auth rules over random room histories (hypothesis)."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from events_testlib import ALICE, BOB, CAROL, DAVE, Room
from homeserver.events.auth import check_auth_rules
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.errors import AuthError

USERS = [ALICE, BOB, CAROL, DAVE]
MEMBERSHIPS = ["join", "invite", "leave", "ban", "knock"]
JOIN_RULES = ["public", "invite", "knock", "restricted", "knock_restricted"]

action = st.one_of(
    st.tuples(st.just("member"), st.sampled_from(USERS), st.sampled_from(USERS), st.sampled_from(MEMBERSHIPS)),
    st.tuples(st.just("join_rules"), st.sampled_from(USERS), st.sampled_from(JOIN_RULES), st.none()),
    st.tuples(st.just("power"), st.sampled_from(USERS), st.sampled_from(USERS), st.sampled_from([0, 10, 50, 100])),
    st.tuples(st.just("message"), st.sampled_from(USERS), st.none(), st.none()),
    st.tuples(st.just("topic"), st.sampled_from(USERS), st.none(), st.none()),
)


def to_event(room: Room, act: tuple):
    kind, sender, arg, extra = act
    if kind == "member":
        content = {"membership": extra}
        if extra == "join" and sender == arg:
            content["join_authorised_via_users_server"] = ALICE
        return room.make("m.room.member", sender, content, arg)
    if kind == "join_rules":
        return room.make("m.room.join_rules", sender, {"join_rule": arg}, "")
    if kind == "power":
        old = room.state.get(("m.room.power_levels", ""))
        content = copy.deepcopy(old.content) if old else {"users": {}}
        content.setdefault("users", {})[arg] = extra
        return room.make("m.room.power_levels", sender, content, "")
    if kind == "message":
        return room.make("m.room.message", sender, {"body": "page"})
    return room.make("m.room.topic", sender, {"topic": "t"}, "")


@settings(max_examples=60, deadline=None)
@given(version=st.sampled_from(["10", "11"]), actions=st.lists(action, max_size=12))
def test_allowed_events_stay_allowed_and_checks_are_pure(version: str, actions: list[tuple]) -> None:
    room_version = KNOWN_ROOM_VERSIONS[version]
    room = Room(room_version, power_levels={"users": {ALICE: 100}}, join_rule="invite")
    for act in actions:
        event = to_event(room, act)
        state_snapshot = dict(room.state)
        pdu_snapshot = event.get_pdu_json()
        membership_of_sender = room.state.get(("m.room.member", event.sender))
        sender_membership = membership_of_sender.membership if membership_of_sender else "leave"
        try:
            check_auth_rules(room_version, event, room.state)
        except AuthError as first:
            # Denied events stay denied, with the same reason.
            try:
                check_auth_rules(room_version, event, dict(room.state))
            except AuthError as second:
                assert second.msg == first.msg
            else:
                raise AssertionError(f"{act} was denied, then allowed against the same state")
            allowed = False
        else:
            # Re-checking against the same state (even a rebuilt mapping in another order) still allows it.
            check_auth_rules(room_version, event, dict(reversed(list(room.state.items()))))
            allowed = True
        # Checking never changes the state or the event.
        assert room.state == state_snapshot
        assert event.get_pdu_json() == pdu_snapshot
        # Rules that hold whatever the history: banned users cannot join; only joined users send non-member events.
        if act[0] == "member" and act[3] == "join" and sender_membership == "ban":
            assert not allowed
        if act[0] != "member" and sender_membership != "join":
            assert not allowed
        if allowed:
            room.apply(event)
