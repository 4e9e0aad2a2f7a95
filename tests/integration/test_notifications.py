"""GET /notifications: paging, read flags and only=highlight (issue 3 item 3)."""

from __future__ import annotations

from tests.integration.pushlib import receipt, room_with
from tests.support.client import Api


def test_notifications_list(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    first = alice.send(room, "one")
    mention = alice.send(room, "bob!", **{"m.mentions": {"user_ids": [bob.user_id]}})
    third = alice.send(room, "three")
    assert receipt(bob, room, first).status == 200
    body = bob.ok("GET", "notifications")
    got = [(n["event"]["event_id"], n["read"], n["room_id"]) for n in body["notifications"]]
    assert got[:3] == [(third, False, room), (mention, False, room), (first, True, room)]
    # .m.rule.invite_for_me notified Bob of his invite, before he read anything.
    invite = body["notifications"][3]
    assert (invite["event"]["type"], invite["event"]["state_key"], invite["read"]) == (
        "m.room.member", bob.user_id, True)
    assert len(got) == 4
    assert body["notifications"][1]["actions"][0] == "notify"
    assert {"set_tweak": "highlight"} in body["notifications"][1]["actions"]
    assert all(isinstance(n["ts"], int) for n in body["notifications"])
    page1 = bob.ok("GET", "notifications", params={"limit": 2})
    assert [n["event"]["event_id"] for n in page1["notifications"]] == [third, mention]
    page2 = bob.ok("GET", "notifications", params={"limit": 2, "from": page1["next_token"]})
    assert [n["event"]["event_id"] for n in page2["notifications"]] == [first, invite["event"]["event_id"]]
    highlights = bob.ok("GET", "notifications", params={"only": "highlight"})
    assert [n["event"]["event_id"] for n in highlights["notifications"]] == [mention]
    r = bob.req("GET", "notifications", params={"from": "nonsense"})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")
