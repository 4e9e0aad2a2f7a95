"""Endpoints clients call at start-up or occasionally: TURN, third-party protocols, refresh, knock."""

from tests.support.client import CS, Api, q, register


def test_turn_server_is_empty_without_turn(api: Api) -> None:
    user = register(api)
    assert user.ok("GET", "voip/turnServer") == {}
    r = api.request("GET", CS + "/voip/turnServer")
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")


def test_thirdparty_protocols(api: Api) -> None:
    user = register(api)
    assert user.ok("GET", "thirdparty/protocols") == {}
    r = user.req("GET", "thirdparty/protocol/irc")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = user.req("GET", "thirdparty/user/irc")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def test_refresh_tokens_are_never_valid(api: Api) -> None:
    r = api.request("POST", CS + "/refresh", {"refresh_token": "anything"})
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    r = api.request("POST", CS + "/refresh", {})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")


def test_knock_on_knockable_room(api: Api) -> None:
    owner, guest = register(api), register(api)
    room = owner.create_room(preset="private_chat")
    r = guest.req("POST", f"knock/{q(room)}", {"reason": "let me in"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    owner.ok("PUT", f"rooms/{q(room)}/state/m.room.join_rules", {"join_rule": "knock"})
    assert guest.ok("POST", f"knock/{q(room)}", {"reason": "let me in"}) == {"room_id": room}
    member = owner.ok("GET", f"rooms/{q(room)}/state/m.room.member/{q(guest.user_id)}")
    assert member == {"membership": "knock", "reason": "let me in"}
    synced = guest.sync()
    assert room in synced["rooms"]["knock"]
    owner.invite(room, guest.user_id)
    guest.join(room)
    assert owner.ok("GET", f"rooms/{q(room)}/state/m.room.member/{q(guest.user_id)}")["membership"] == "join"


def test_account_threepids_are_empty(api: Api) -> None:
    user = register(api)
    assert user.ok("GET", "account/3pid") == {"threepids": []}


def test_messages_filter_error_names_the_filter(api: Api) -> None:
    user = register(api)
    room = user.create_room()
    r = user.req("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "filter": '{"limit": -3}'})
    assert r.status == 400 and r.errcode() == "M_BAD_JSON"
    assert "filter.limit" in r.json["error"] and "room.timeline" not in r.json["error"]
