"""device_lists in /sync and GET /keys/changes come from the membership events of the user's own rooms: joins and
leaves elsewhere on the server never show up, joins in shared rooms always do (spec: "Tracking the device list
for a user"). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.support.client import Api, q, register


def _device_lists(body: dict) -> tuple[list[str], list[str]]:
    lists = body.get("device_lists", {})
    return lists.get("changed", []), lists.get("left", [])


def test_joins_in_other_rooms_do_not_reach_the_user_and_shared_joins_do(api: Api) -> None:
    oncall, sre, outsider, stranger = register(api), register(api), register(api), register(api)
    incident = oncall.create_room(invite=[sre.user_id])
    elsewhere = outsider.create_room(invite=[stranger.user_id])
    since = oncall.sync()["next_batch"]
    stranger.join(elsewhere)  # membership churn in a room the on-call user is not in
    sre.join(incident)
    body = oncall.sync(since)
    changed, left = _device_lists(body)
    assert sre.user_id in changed
    assert outsider.user_id not in changed and stranger.user_id not in changed
    keys_changes = oncall.ok("GET", "keys/changes", params={"from": since, "to": body["next_batch"]})
    assert sre.user_id in keys_changes["changed"] and stranger.user_id not in keys_changes["changed"]

    since = body["next_batch"]
    stranger.ok("POST", f"rooms/{q(elsewhere)}/leave", {})
    sre.ok("POST", f"rooms/{q(incident)}/leave", {})
    changed, left = _device_lists(oncall.sync(since))
    assert left == [sre.user_id] and stranger.user_id not in changed


def test_keys_changes_derives_the_users_own_joins(api: Api) -> None:
    # GET /keys/changes has no room information from sync: the user's own join is read from their memberships.
    lead, responder = register(api), register(api)
    war_room = lead.create_room(invite=[responder.user_id])
    since = responder.sync()["next_batch"]
    responder.join(war_room)
    to = responder.sync()["next_batch"]
    assert lead.user_id in responder.ok("GET", "keys/changes", params={"from": since, "to": to})["changed"]
    responder.ok("POST", f"rooms/{q(war_room)}/leave", {})
    to2 = responder.sync()["next_batch"]
    assert lead.user_id in responder.ok("GET", "keys/changes", params={"from": to, "to": to2})["left"]
