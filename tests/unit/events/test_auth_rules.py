"""Authorization rules of room versions 10 and 11 (spec: Room versions -> "Authorization rules")."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from signedjson.key import generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from unpaddedbase64 import encode_base64

from events_testlib import ALICE, BOB, CAROL, DAVE, Room
from homeserver.events.auth import (
    NAMED_LEVEL_DEFAULTS,
    auth_types_for_event,
    check_auth_event_selection,
    check_auth_rules,
    check_redaction_allowed,
    get_named_level,
    get_send_level,
    get_user_power_level,
)
from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.http.errors import AuthError

V10 = KNOWN_ROOM_VERSIONS["10"]
V11 = KNOWN_ROOM_VERSIONS["11"]
VERSIONS = [V10, V11]
EVE = "@eve:test"
OUTSIDER = "@x:other.example"

# Alice 100 (creator), Bob 50 (moderator), Eve 50, Carol 0; power levels themselves need 50 so Bob can try changes.
BASE_PL: dict[str, Any] = {
    "users": {ALICE: 100, BOB: 50, EVE: 50},
    "users_default": 0,
    "events": {"m.room.name": 50, "m.room.power_levels": 50, "m.room.tombstone": 100},
    "events_default": 0,
    "state_default": 50,
    "ban": 50,
    "kick": 50,
    "invite": 0,
    "redact": 50,
    "notifications": {"room": 50},
}
BASE_MEMBERS = {BOB: "join", CAROL: "join", EVE: "join"}


def make_room(version: RoomVersion, join_rule: str = "invite", members: dict[str, str] | None = None,
              pl_changes: dict[str, Any] | None = None, create_extra: dict[str, Any] | None = None) -> Room:
    pl = pl_with(**(pl_changes or {}))
    room = Room(version, power_levels=pl, join_rule=join_rule, create_extra=create_extra)
    for user, membership in {**BASE_MEMBERS, **(members or {})}.items():
        room.set_membership(user, membership)
    return room


def member(sender: str, membership: str, target: str | None = None, **extra: Any) -> tuple:
    return ("m.room.member", sender, {"membership": membership, **extra}, target or sender)


def pl_with(**changes: Any) -> dict[str, Any]:
    pl = copy.deepcopy(BASE_PL)
    for key, value in changes.items():
        if value is None:
            pl.pop(key, None)
        else:
            pl[key] = value
    return pl


# (id, join_rule, extra memberships, power-level overrides, event (type, sender, content, state_key), allowed)
CASES: list[tuple] = [
    # --- join (rule 4.3)
    ("join public", "public", {}, {}, member(DAVE, "join"), True),
    ("join invite-only uninvited", "invite", {}, {}, member(DAVE, "join"), False),
    ("join invite-only invited", "invite", {DAVE: "invite"}, {}, member(DAVE, "join"), True),
    ("rejoin when joined (profile change)", "invite", {}, {}, member(CAROL, "join", displayname="C"), True),
    ("join knock-rule invited", "knock", {DAVE: "invite"}, {}, member(DAVE, "join"), True),
    ("join knock-rule after knock only", "knock", {DAVE: "knock"}, {}, member(DAVE, "join"), False),
    ("join public while banned", "public", {DAVE: "ban"}, {}, member(DAVE, "join"), False),
    ("join invited while banned", "invite", {DAVE: "ban"}, {}, member(DAVE, "join"), False),
    ("join someone else", "public", {}, {}, member(CAROL, "join", DAVE), False),
    ("join private rule", "private", {}, {}, member(DAVE, "join"), False),
    ("join restricted no authoriser", "restricted", {}, {}, member(DAVE, "join"), False),
    ("join restricted authorised by admin", "restricted", {}, {},
     member(DAVE, "join", join_authorised_via_users_server=ALICE), True),
    ("join restricted invited", "restricted", {DAVE: "invite"}, {}, member(DAVE, "join"), True),
    ("join restricted authoriser not joined", "restricted", {EVE: "leave"}, {},
     member(DAVE, "join", join_authorised_via_users_server=EVE), False),
    ("join restricted authoriser below invite level", "restricted", {}, {"invite": 50},
     member(DAVE, "join", join_authorised_via_users_server=CAROL), False),
    ("join restricted authoriser at invite level", "restricted", {}, {"invite": 50},
     member(DAVE, "join", join_authorised_via_users_server=BOB), True),
    ("join knock_restricted authorised", "knock_restricted", {}, {},
     member(DAVE, "join", join_authorised_via_users_server=ALICE), True),
    ("join knock_restricted unauthorised", "knock_restricted", {}, {}, member(DAVE, "join"), False),
    ("join authoriser from server that did not sign", "restricted", {}, {},
     member(DAVE, "join", join_authorised_via_users_server="@admin:other.example"), False),
    # --- invite (rule 4.4)
    ("invite by member", "invite", {}, {}, member(CAROL, "invite", DAVE), True),
    ("invite below invite level", "invite", {}, {"invite": 50}, member(CAROL, "invite", DAVE), False),
    ("invite at invite level", "invite", {}, {"invite": 50}, member(BOB, "invite", DAVE), True),
    ("invite by non-member", "invite", {DAVE: "leave"}, {}, member(DAVE, "invite", "@frank:test"), False),
    ("invite by invited user", "invite", {DAVE: "invite"}, {}, member(DAVE, "invite", "@frank:test"), False),
    ("invite joined user", "invite", {}, {}, member(ALICE, "invite", CAROL), False),
    ("invite banned user", "invite", {DAVE: "ban"}, {}, member(ALICE, "invite", DAVE), False),
    ("re-invite invited user", "invite", {DAVE: "invite"}, {}, member(ALICE, "invite", DAVE), True),
    ("invite user who left", "invite", {DAVE: "leave"}, {}, member(ALICE, "invite", DAVE), True),
    ("invite knocking user", "knock", {DAVE: "knock"}, {}, member(ALICE, "invite", DAVE), True),
    # --- leave (rule 4.5): self-leave, reject invite, rescind knock, kick, unban
    ("leave self joined", "invite", {}, {}, member(CAROL, "leave"), True),
    ("leave self never joined", "invite", {}, {}, member(DAVE, "leave"), False),
    ("reject invite", "invite", {DAVE: "invite"}, {}, member(DAVE, "leave"), True),
    ("rescind knock", "knock", {DAVE: "knock"}, {}, member(DAVE, "leave"), True),
    ("leave self while banned", "invite", {DAVE: "ban"}, {}, member(DAVE, "leave"), False),
    ("leave self already left", "invite", {DAVE: "leave"}, {}, member(DAVE, "leave"), False),
    ("kick lower user", "invite", {}, {}, member(BOB, "leave", CAROL), True),
    ("kick equal user", "invite", {}, {}, member(BOB, "leave", EVE), False),
    ("kick higher user", "invite", {}, {}, member(BOB, "leave", ALICE), False),
    ("kick below kick level", "invite", {}, {}, member(CAROL, "leave", DAVE), False),
    ("kick by non-member", "invite", {BOB: "leave"}, {}, member(BOB, "leave", CAROL), False),
    ("kick with kick level 0", "invite", {}, {"kick": 0, "users": {ALICE: 100, CAROL: 1}}, member(CAROL, "leave", DAVE),
     True),
    ("revoke invite", "invite", {DAVE: "invite"}, {}, member(BOB, "leave", DAVE), True),
    ("unban by admin", "invite", {DAVE: "ban"}, {}, member(ALICE, "leave", DAVE), True),
    ("unban below ban level", "invite", {DAVE: "ban"}, {"ban": 75}, member(BOB, "leave", DAVE), False),
    ("unban at ban level", "invite", {DAVE: "ban"}, {}, member(BOB, "leave", DAVE), True),
    # --- ban (rule 4.6)
    ("ban lower user", "invite", {}, {}, member(BOB, "ban", CAROL), True),
    ("ban absent user", "invite", {}, {}, member(BOB, "ban", DAVE), True),
    ("ban equal user", "invite", {}, {}, member(BOB, "ban", EVE), False),
    ("ban higher user", "invite", {}, {}, member(BOB, "ban", ALICE), False),
    ("ban below ban level", "invite", {}, {}, member(CAROL, "ban", DAVE), False),
    ("ban by non-member", "invite", {BOB: "leave"}, {}, member(BOB, "ban", CAROL), False),
    ("ban self", "invite", {}, {}, member(BOB, "ban", BOB), False),
    # --- knock (rule 4.7)
    ("knock knock-rule", "knock", {}, {}, member(DAVE, "knock"), True),
    ("knock knock_restricted", "knock_restricted", {}, {}, member(DAVE, "knock"), True),
    ("knock after leaving", "knock", {DAVE: "leave"}, {}, member(DAVE, "knock"), True),
    ("knock invite-only", "invite", {}, {}, member(DAVE, "knock"), False),
    ("knock public", "public", {}, {}, member(DAVE, "knock"), False),
    ("knock for someone else", "knock", {}, {}, member(CAROL, "knock", DAVE), False),
    ("knock when joined", "knock", {}, {}, member(CAROL, "knock"), False),
    ("knock when invited (spec allows)", "knock", {DAVE: "invite"}, {}, member(DAVE, "knock"), True),
    ("knock when banned", "knock", {DAVE: "ban"}, {}, member(DAVE, "knock"), False),
    ("unknown membership", "public", {}, {}, member(DAVE, "wander"), False),
    ("member without state_key", "public", {}, {}, ("m.room.member", DAVE, {"membership": "join"}, None), False),
    ("member without membership", "public", {}, {}, ("m.room.member", DAVE, {"displayname": "D"}, DAVE), False),
    # --- other events: membership (rule 5), third-party invite (6), send levels (7), @-state keys (8)
    ("message by member", "invite", {}, {}, ("m.room.message", CAROL, {"body": "ack"}, None), True),
    ("message by non-member", "public", {}, {}, ("m.room.message", DAVE, {"body": "hi"}, None), False),
    ("message by invited user", "invite", {DAVE: "invite"}, {}, ("m.room.message", DAVE, {}, None), False),
    ("message below events_default", "invite", {}, {"events_default": 10},
     ("m.room.message", CAROL, {"body": "x"}, None), False),
    ("message at events_default", "invite", {}, {"events_default": 50},
     ("m.room.message", BOB, {"body": "x"}, None), True),
    ("per-type message level", "invite", {}, {"events": {"m.reaction": 5}}, ("m.reaction", CAROL, {}, None), False),
    ("name below its level", "invite", {}, {}, ("m.room.name", CAROL, {"name": "n"}, ""), False),
    ("name at its level", "invite", {}, {}, ("m.room.name", BOB, {"name": "n"}, ""), True),
    ("topic below state_default", "invite", {}, {}, ("m.room.topic", CAROL, {"topic": "t"}, ""), False),
    ("topic at state_default", "invite", {}, {}, ("m.room.topic", BOB, {"topic": "t"}, ""), True),
    ("state_default missing means 50", "invite", {}, {"state_default": None},
     ("m.room.topic", CAROL, {"topic": "t"}, ""), False),
    ("users_default grants level", "invite", {}, {"users_default": 50},
     ("m.room.topic", CAROL, {"topic": "t"}, ""), True),
    ("state key of another user", "invite", {}, {"state_default": 0}, ("org.tocsin.pager", CAROL, {}, BOB), False),
    ("state key of self", "invite", {}, {"state_default": 0}, ("org.tocsin.pager", CAROL, {}, CAROL), True),
    ("state key of another user by admin", "invite", {}, {}, ("org.tocsin.pager", ALICE, {}, CAROL), False),
    ("third party invite by member", "invite", {}, {}, ("m.room.third_party_invite", CAROL, {}, "tok"), True),
    ("third party invite below invite level", "invite", {}, {"invite": 50},
     ("m.room.third_party_invite", CAROL, {}, "tok"), False),
    ("third party invite by non-member", "public", {}, {}, ("m.room.third_party_invite", DAVE, {}, "tok"), False),
    ("redaction needs only the events level", "invite", {}, {},
     ("m.room.redaction", CAROL, {"reason": "oops"}, None), True),
    ("redaction below its events level", "invite", {}, {"events": {"m.room.redaction": 50}},
     ("m.room.redaction", CAROL, {}, None), False),
    ("message from non-federating server", "public", {OUTSIDER: "join"}, {},
     ("m.room.message", OUTSIDER, {}, None), True),
    # --- power levels (rule 9)
    ("pl: admin raises ban level", "invite", {}, {}, ("m.room.power_levels", ALICE, pl_with(ban=60), ""), True),
    ("pl: below pl event level", "invite", {}, {}, ("m.room.power_levels", CAROL, pl_with(), ""), False),
    ("pl: mod promotes to own level", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(users={ALICE: 100, BOB: 50, EVE: 50, CAROL: 50}), ""), True),
    ("pl: mod promotes above own level", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(users={ALICE: 100, BOB: 50, EVE: 50, CAROL: 51}), ""), False),
    ("pl: mod demotes admin", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(users={ALICE: 0, BOB: 50, EVE: 50}), ""), False),
    ("pl: mod removes admin entry", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(users={BOB: 50, EVE: 50}), ""), False),
    ("pl: mod demotes equal mod", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(users={ALICE: 100, BOB: 50, EVE: 10}), ""), False),
    ("pl: mod demotes self", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(users={ALICE: 100, BOB: 10, EVE: 50}), ""), True),
    ("pl: mod removes own entry", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(users={ALICE: 100, EVE: 50}), ""), True),
    ("pl: mod raises self", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(users={ALICE: 100, BOB: 60, EVE: 50}), ""), False),
    ("pl: admin demotes mod", "invite", {}, {},
     ("m.room.power_levels", ALICE, pl_with(users={ALICE: 100, BOB: 0, EVE: 50}), ""), True),
    ("pl: mod lowers kick", "invite", {}, {}, ("m.room.power_levels", BOB, pl_with(kick=40), ""), True),
    ("pl: mod sets ban above own", "invite", {}, {}, ("m.room.power_levels", BOB, pl_with(ban=75), ""), False),
    ("pl: mod changes level above own", "invite", {}, {"redact": 75},
     ("m.room.power_levels", BOB, pl_with(redact=50), ""), False),
    ("pl: mod removes level above own", "invite", {}, {"redact": 75},
     ("m.room.power_levels", BOB, pl_with(redact=None), ""), False),
    ("pl: mod adds named level at own", "invite", {}, {"invite": None},
     ("m.room.power_levels", BOB, pl_with(invite=50), ""), True),
    ("pl: mod lowers event level", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(events={"m.room.name": 0, "m.room.power_levels": 50,
                                                   "m.room.tombstone": 100}), ""), True),
    ("pl: mod changes event level above own", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(events={"m.room.name": 50, "m.room.power_levels": 50,
                                                   "m.room.tombstone": 50}), ""), False),
    ("pl: mod adds event level above own", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(events={"m.room.name": 50, "m.room.power_levels": 50,
                                                   "m.room.tombstone": 100, "m.room.avatar": 60}), ""), False),
    ("pl: mod raises notifications above own", "invite", {}, {},
     ("m.room.power_levels", BOB, pl_with(notifications={"room": 100}), ""), False),
    ("pl: admin raises notifications", "invite", {}, {},
     ("m.room.power_levels", ALICE, pl_with(notifications={"room": 100}), ""), True),
    ("pl: string level rejected", "invite", {}, {}, ("m.room.power_levels", ALICE, pl_with(ban="50"), ""), False),
    ("pl: bool level rejected", "invite", {}, {}, ("m.room.power_levels", ALICE, pl_with(kick=True), ""), False),
    ("pl: string user level rejected", "invite", {}, {},
     ("m.room.power_levels", ALICE, pl_with(users={ALICE: "100"}), ""), False),
    ("pl: string event level rejected", "invite", {}, {},
     ("m.room.power_levels", ALICE, pl_with(events={"m.room.name": "50"}), ""), False),
    ("pl: events not an object", "invite", {}, {}, ("m.room.power_levels", ALICE, pl_with(events=[]), ""), False),
    ("pl: users not an object", "invite", {}, {}, ("m.room.power_levels", ALICE, pl_with(users=[ALICE]), ""), False),
    ("pl: users key not a user ID", "invite", {}, {},
     ("m.room.power_levels", ALICE, pl_with(users={ALICE: 100, "bob": 5}), ""), False),
    ("pl: non-empty state key", "invite", {}, {}, ("m.room.power_levels", ALICE, pl_with(), "x"), True),
]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_auth_table(version: RoomVersion, case: tuple) -> None:
    _, join_rule, members, pl_changes, (type_, sender, content, state_key), allowed = case
    room = make_room(version, join_rule, members, pl_changes)
    event = room.make(type_, sender, content, state_key)
    state_before = dict(room.state)
    if allowed:
        room.check(event)
    else:
        with pytest.raises(AuthError) as info:
            room.check(event)
        assert info.value.code == 403 and info.value.errcode == "M_FORBIDDEN"
    assert room.state == state_before


def test_float_power_level_rejected() -> None:
    # The builder refuses floats in content, so forge the PDU directly: a remote server could send one.
    room = make_room(V10)
    pdu = room.make("m.room.power_levels", ALICE, pl_with(), "").get_pdu_json()
    pdu["content"]["ban"] = 50.0
    with pytest.raises(AuthError, match="ban"):
        room.check(Event(pdu, V10))


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_m_federate_false_rejects_other_servers(version: RoomVersion) -> None:
    room = make_room(version, "public", create_extra={"m.federate": False})
    with pytest.raises(AuthError, match="federated"):
        room.check(room.make(*member(OUTSIDER, "join")))
    room.check(room.make(*member(DAVE, "join")))


# --- create events (rule 1)

def create_event(version: RoomVersion, content: dict, sender: str = ALICE, room_id: str = "!room:test",
                 prev: list[str] | None = None) -> Event:
    room = Room(version)
    pdu = room.state[("m.room.create", "")].get_pdu_json()
    pdu.update(content=content, sender=sender, room_id=room_id, prev_events=prev or [])
    return Event(pdu, version)


@pytest.mark.parametrize(
    "version, content, sender, room_id, prev, allowed",
    [
        (V10, {"creator": ALICE, "room_version": "10"}, ALICE, "!room:test", [], True),
        (V10, {"creator": ALICE}, ALICE, "!room:test", [], True),
        (V10, {"room_version": "10"}, ALICE, "!room:test", [], False),
        (V11, {"room_version": "11"}, ALICE, "!room:test", [], True),
        (V11, {"room_version": "99"}, ALICE, "!room:test", [], False),
        (V10, {"creator": ALICE, "room_version": "99"}, ALICE, "!room:test", [], False),
        (V11, {}, ALICE, "!room:elsewhere.example", [], False),
        (V11, {}, ALICE, "!room:test", ["$earlier"], False),
    ],
)
def test_create_rules(version, content, sender, room_id, prev, allowed) -> None:
    event = create_event(version, content, sender, room_id, prev)
    if allowed:
        check_auth_rules(version, event, {})
    else:
        with pytest.raises(AuthError):
            check_auth_rules(version, event, {})


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_event_without_create_in_auth_state_rejected(version: RoomVersion) -> None:
    room = make_room(version)
    event = room.make("m.room.message", CAROL, {})
    state = dict(room.state)
    del state[("m.room.create", "")]
    with pytest.raises(AuthError, match="m.room.create"):
        check_auth_rules(version, event, state)


def test_creator_v10_from_content_v11_from_sender() -> None:
    # v10: content.creator is the creator; v11 ignores it and uses the create event's sender.
    # Direct construction: Alice sends the create event naming Bob as creator.
    for version, expected_creator in ((V10, BOB), (V11, ALICE)):
        create = create_event(version, {"creator": BOB, "room_version": version.identifier})
        state = {("m.room.create", ""): create}
        assert get_user_power_level(expected_creator, state) == 100
        other = ALICE if expected_creator == BOB else BOB
        assert get_user_power_level(other, state) == 0
        # Only the creator's first join straight after the create event is allowed without join rules.
        for user in (ALICE, BOB):
            join = Event({**create.get_pdu_json(), "type": "m.room.member", "sender": user, "state_key": user,
                          "content": {"membership": "join"}, "prev_events": [create.event_id],
                          "auth_events": [create.event_id], "depth": 2}, version)
            if user == expected_creator:
                check_auth_rules(version, join, state)
            else:
                with pytest.raises(AuthError):
                    check_auth_rules(version, join, state)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_restricted_join_authoriser_must_have_signed(version: RoomVersion) -> None:
    room = make_room(version, "restricted", members={"@admin:other.example": "join"},
                     pl_changes={"users": {ALICE: 100, "@admin:other.example": 100}})
    event = room.make(*member(DAVE, "join", join_authorised_via_users_server="@admin:other.example"))
    with pytest.raises(AuthError, match="signed"):
        room.check(event)
    # Once the authorising server has signed too (signature bytes are the caller's to verify), the join passes.
    pdu = event.get_pdu_json()
    pdu["signatures"]["other.example"] = {"ed25519:a": "c2ln"}
    room.check(Event(pdu, version))


# --- third-party invites (rule 4.4.1), with a real identity-server key

@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_third_party_invite(version: RoomVersion) -> None:
    is_key = generate_signing_key("0")
    public_key = encode_base64(get_verify_key(is_key).encode())
    room = make_room(version)
    room.send("m.room.third_party_invite", CAROL,
              {"display_name": "d***", "key_validity_url": "https://is/k", "public_key": public_key,
               "public_keys": [{"public_key": public_key}]}, "tok")

    def invite(signed: dict, sender: str = CAROL, target: str = DAVE) -> Event:
        return room.make("m.room.member", sender,
                         {"membership": "invite", "third_party_invite": {"display_name": "d***", "signed": signed}},
                         target)

    good = sign_json({"mxid": DAVE, "token": "tok", "sender": CAROL}, "identity.example", is_key)
    room.check(invite(good))
    # Auth events must name the third-party invite by its token.
    assert ("m.room.third_party_invite", "tok") in auth_types_for_event(
        version, "m.room.member", CAROL, DAVE, invite(good).content)

    forged = sign_json({"mxid": DAVE, "token": "tok", "sender": CAROL}, "identity.example", generate_signing_key("0"))
    wrong_mxid = sign_json({"mxid": EVE, "token": "tok"}, "identity.example", is_key)
    wrong_token = sign_json({"mxid": DAVE, "token": "nope"}, "identity.example", is_key)
    tampered = copy.deepcopy(good)
    tampered["extra"] = "x"
    for bad, reason in (
        (forged, "signature"),
        (wrong_mxid, "mxid"),
        (wrong_token, "third_party_invite for this token"),
        (tampered, "signature"),
        ({"mxid": DAVE, "token": "tok"}, "signatures"),
        ({"token": "tok", "signatures": {}}, "mxid"),
    ):
        with pytest.raises(AuthError, match=reason):
            room.check(invite(bad))
    with pytest.raises(AuthError, match="sender"):
        room.check(invite(good, sender=BOB))
    room.set_membership(DAVE, "ban")
    with pytest.raises(AuthError, match="banned"):
        room.check(invite(good))


# --- auth event selection (Server-Server API "Auth events selection") and rule 2

@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_auth_types_for_event(version: RoomVersion) -> None:
    base = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", CAROL)]
    assert auth_types_for_event(version, "m.room.create", ALICE, "", {}) == []
    assert auth_types_for_event(version, "m.room.message", CAROL, None, {"body": "x"}) == base
    assert auth_types_for_event(version, "m.room.topic", CAROL, "", {}) == base
    assert auth_types_for_event(version, "m.room.member", CAROL, CAROL, {"membership": "join"}) == base + [
        ("m.room.join_rules", "")]
    assert auth_types_for_event(version, "m.room.member", CAROL, DAVE, {"membership": "invite"}) == base + [
        ("m.room.member", DAVE), ("m.room.join_rules", "")]
    assert auth_types_for_event(version, "m.room.member", CAROL, DAVE, {"membership": "ban"}) == base + [
        ("m.room.member", DAVE)]
    assert auth_types_for_event(version, "m.room.member", CAROL, CAROL, {"membership": "leave"}) == base
    assert auth_types_for_event(version, "m.room.member", CAROL, CAROL, {"membership": "knock"}) == base + [
        ("m.room.join_rules", "")]
    assert auth_types_for_event(
        version, "m.room.member", CAROL, CAROL, {"membership": "join", "join_authorised_via_users_server": BOB}
    ) == base + [("m.room.join_rules", ""), ("m.room.member", BOB)]


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_check_auth_event_selection(version: RoomVersion) -> None:
    room = make_room(version)
    event = room.make(*member(BOB, "ban", CAROL))
    create, pl = room.state[("m.room.create", "")], room.state[("m.room.power_levels", "")]
    bob, carol = room.state[("m.room.member", BOB)], room.state[("m.room.member", CAROL)]
    check_auth_event_selection(version, event, [create, pl, bob, carol])
    with pytest.raises(AuthError, match="Duplicate"):
        check_auth_event_selection(version, event, [create, pl, bob, carol, carol])
    with pytest.raises(AuthError, match="Unexpected"):
        check_auth_event_selection(version, event, [create, pl, bob, room.state[("m.room.join_rules", "")]])
    with pytest.raises(AuthError, match="m.room.create"):
        check_auth_event_selection(version, event, [pl, bob])
    message = room.make("m.room.message", CAROL, {})
    with pytest.raises(AuthError, match="not a state event"):
        check_auth_event_selection(version, event, [create, message])


# --- helpers used by handlers

def test_power_level_helpers() -> None:
    room = make_room(V10, pl_changes={"users_default": 5})
    state = room.state
    assert get_user_power_level(ALICE, state) == 100
    assert get_user_power_level(CAROL, state) == 5
    assert get_named_level(state, "ban", NAMED_LEVEL_DEFAULTS["ban"]) == 50
    assert get_named_level(state, "invite", 0) == 0
    assert NAMED_LEVEL_DEFAULTS == {"invite": 0, "kick": 50, "ban": 50, "redact": 50}
    pl = state[("m.room.power_levels", "")].content
    assert get_send_level("m.room.name", True, pl) == 50
    assert get_send_level("m.room.tombstone", True, pl) == 100
    assert get_send_level("m.room.topic", True, pl) == 50
    assert get_send_level("m.room.message", False, pl) == 0
    assert get_send_level("m.room.message", False, {"events_default": 20}) == 20
    assert get_send_level("m.room.topic", True, {}) == 50
    assert get_send_level("m.room.topic", True, None) == 0
    assert get_send_level("m.room.message", False, None) == 0

    bare = Room(V11, join_rule=None)
    assert get_named_level(bare.state, "kick", 50) == 50
    assert get_user_power_level(ALICE, bare.state) == 100
    assert get_user_power_level(BOB, bare.state) == 0
    assert get_user_power_level(BOB, {}) == 0


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_without_power_levels_creator_rules(version: RoomVersion) -> None:
    room = Room(version, join_rule="public")
    room.send(*member(CAROL, "join"))
    room.send("m.room.topic", ALICE, {"topic": "t"}, "")
    room.send("m.room.topic", CAROL, {"topic": "state_default is 0 without power levels"}, "")
    room.send(*member(ALICE, "ban", CAROL))
    with pytest.raises(AuthError):
        room.check(room.make(*member(CAROL, "join")))


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"v{v.identifier}")
def test_check_redaction_allowed(version: RoomVersion) -> None:
    room = make_room(version)
    by_carol = room.make("m.room.redaction", CAROL, {}, redacts="$x")
    by_bob = room.make("m.room.redaction", BOB, {}, redacts="$x")
    assert check_redaction_allowed(by_carol, CAROL, room.state)
    assert not check_redaction_allowed(by_carol, BOB, room.state)
    assert not check_redaction_allowed(by_carol, None, room.state)
    assert check_redaction_allowed(by_bob, CAROL, room.state)
    assert check_redaction_allowed(by_bob, None, room.state)
    room.force("m.room.power_levels", ALICE, pl_with(redact=75), "")
    assert not check_redaction_allowed(by_bob, CAROL, room.state)
