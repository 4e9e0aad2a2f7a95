"""``/sync``: initial and incremental, long-poll, filters, limited timelines and prev_batch, invites, leaves,
summaries, full_state, and nothing delivered twice across a chain of syncs (issue 2 item 6)."""

from __future__ import annotations

import random
import threading
import time
import uuid

from tests.integration.roomlib import bodies, messages, put_state, send_raw, timeline, users
from tests.support.client import Api, q, register


def test_initial_sync_has_state_and_timeline(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(name="Initial")
    alice.send(room, "hello")
    s = alice.sync()
    assert isinstance(s["next_batch"], str) and s["next_batch"]
    joined = s["rooms"]["join"][room]
    evs = joined["timeline"]["events"] + joined["state"]["events"]
    assert {e["type"] for e in evs} >= {"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"}
    assert bodies(joined["timeline"]["events"])[-1] == "hello"
    assert all("room_id" not in e for e in evs)
    for key in ("ephemeral", "account_data", "summary", "unread_notifications"):
        assert key in joined
    # No state event appears both in state and timeline.
    ids = [e["event_id"] for e in evs]
    assert len(ids) == len(set(ids))


def test_incremental_sync_returns_only_new_events(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    t1 = bob.sync()["next_batch"]
    alice.send(room, "one")
    alice.send(room, "two")
    s = bob.sync(since=t1)
    tl = s["rooms"]["join"][room]["timeline"]
    assert bodies(tl["events"]) == ["one", "two"]
    assert tl["limited"] is False
    assert s["rooms"]["join"][room]["state"]["events"] == []
    s2 = bob.sync(since=s["next_batch"])
    assert room not in s2["rooms"]["join"]


def test_long_poll_wakes_on_message(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = bob.sync()["next_batch"]

    def later() -> None:
        time.sleep(0.5)
        alice.send(room, "wake up")

    thread = threading.Thread(target=later)
    thread.start()
    started = time.monotonic()
    # Answered well before the 30 s timeout: woken by the message (the send and the wake-up get 15 s on a busy
    # machine; a long-poll left to time out would answer with the message too, at 30 s).
    s = bob.sync(since=token, timeout=30000)
    elapsed = time.monotonic() - started
    thread.join()
    assert bodies(timeline(s, room)) == ["wake up"]
    assert 0.4 < elapsed < 15, elapsed


def test_long_poll_times_out_empty(api: Api) -> None:
    alice = register(api)
    alice.create_room()
    # Creating the room is activity: alice comes online, recorded in the background. Her own presence change
    # would (rightly) wake the long-poll, so let it land before taking the token.
    deadline = time.monotonic() + 15
    while alice.ok("GET", f"presence/{q(alice.user_id)}/status")["presence"] != "online":
        assert time.monotonic() < deadline, "alice never came online"
        time.sleep(0.05)
    # The status reads the in-memory state; its stream position may still be in flight, and a token taken before
    # it lands is woken by it. Take the token once an immediate sync from it has nothing more to say.
    token = alice.sync()["next_batch"]
    while True:
        s = alice.sync(since=token, timeout=0)
        if not s.get("presence", {}).get("events"):
            break
        assert time.monotonic() < deadline, "alice's presence change never landed"
        token = s["next_batch"]
    started = time.monotonic()
    s = alice.sync(since=token, timeout=1200)
    elapsed = time.monotonic() - started
    assert 1.1 < elapsed < 4, (elapsed, s)  # the answer tells what woke it, if anything did
    assert s["rooms"]["join"] == {} and s["rooms"]["invite"] == {} and s["rooms"]["leave"] == {}
    # Nothing was lost: the next sync from the new token still works.
    assert alice.sync(since=s["next_batch"])["rooms"]["join"] == {}


def test_long_poll_on_filtered_out_change_waits_then_answers_empty(api: Api) -> None:
    """Something was announced for the user's rooms but the filter hides it: the server builds, finds nothing,
    waits (holding the empty answer encoded) and at the timeout answers that empty answer, whose next_batch is
    past the hidden message and still usable."""
    alice, bob = users(api, 2)
    hidden = alice.create_room(preset="public_chat")
    shown = alice.create_room(preset="public_chat")
    bob.join(hidden)
    flt = {"room": {"not_rooms": [hidden]}, "presence": {"not_types": ["*"]}}
    token = alice.sync(filter=flt)["next_batch"]
    bob.send(hidden, "filtered out")
    started = time.monotonic()
    s = alice.sync(since=token, timeout=1200, filter=flt)
    elapsed = time.monotonic() - started
    assert 1.1 < elapsed < 4, elapsed
    assert s["rooms"]["join"] == {} and s["rooms"]["leave"] == {} and s["next_batch"] != token
    assert set(s) >= {"next_batch", "rooms", "device_one_time_keys_count"}
    assert s["device_one_time_keys_count"] == {"signed_curve25519": 0}
    # The answer's token is usable: a message in the shown room after it arrives, the hidden one never does.
    threading.Timer(0.3, lambda: alice.send(shown, "visible")).start()
    later = alice.sync(since=s["next_batch"], timeout=5000, filter=flt)
    assert list(later["rooms"]["join"]) == [shown]
    assert bodies(later["rooms"]["join"][shown]["timeline"]["events"]) == ["visible"]


def test_long_poll_ignores_other_users_rooms(api: Api) -> None:
    alice, carol = users(api, 2)
    alice.create_room()
    other_room = carol.create_room()
    token = alice.sync()["next_batch"]
    threading.Timer(0.3, lambda: carol.send(other_room, "not for alice")).start()
    started = time.monotonic()
    s = alice.sync(since=token, timeout=1500)
    assert time.monotonic() - started > 1.4
    assert other_room not in s["rooms"]["join"]


def test_sync_filters_types_senders_limit(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = alice.sync()["next_batch"]
    for i in range(3):
        alice.send(room, f"a{i}")
        bob.send(room, f"b{i}")
        send_raw(alice, room, {"n": i}, etype="org.tocsin.alert")
    def tl(flt):
        return alice.sync(since=token, filter={"room": {"timeline": flt}})["rooms"]["join"][room]["timeline"]
    assert bodies(tl({"senders": [bob.user_id]})["events"]) == ["b0", "b1", "b2"]
    assert {e["type"] for e in tl({"types": ["org.tocsin.*"]})["events"]} == {"org.tocsin.alert"}
    assert all(e["type"] != "m.room.message" for e in tl({"not_types": ["m.room.message"]})["events"])
    assert bodies(tl({"not_senders": [bob.user_id], "types": ["m.room.message"]})["events"]) == ["a0", "a1", "a2"]
    limited = tl({"limit": 2})
    assert len(limited["events"]) == 2 and limited["limited"] is True
    # Stored filter by ID works the same as inline.
    fid = alice.ok("POST", f"user/{q(alice.user_id)}/filter",
                   {"room": {"timeline": {"senders": [bob.user_id]}}})["filter_id"]
    s = alice.sync(since=token, filter=fid)
    assert bodies(timeline(s, room)) == ["b0", "b1", "b2"]
    # Room filters.
    s = alice.sync(since=token, filter={"room": {"not_rooms": [room]}})
    assert room not in s["rooms"]["join"]


def test_sync_event_fields_and_federation_format(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    token = alice.sync()["next_batch"]
    alice.send(room, "shape")
    s = alice.sync(since=token, filter={"event_fields": ["type", "content.body"]})
    (ev,) = timeline(s, room)
    assert ev == {"type": "m.room.message", "content": {"body": "shape"}}
    s = alice.sync(since=token, filter={"event_format": "federation"})
    (ev,) = timeline(s, room)
    assert ev["event_id"] and ev["content"] == {"msgtype": "m.text", "body": "shape"}
    for key in ("auth_events", "prev_events", "depth", "hashes", "signatures"):
        assert key in ev, key
    # The PDU is whole: its content hash verifies.
    assert ev["room_id"] == room
    from homeserver.events.hashing import check_content_hash

    pdu = {k: v for k, v in ev.items() if k not in ("event_id", "unsigned")}
    assert check_content_hash(pdu)


def test_lazy_load_members(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    carol.send(room, "from carol")
    flt = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}}
    s = bob.sync(filter=flt)
    joined = s["rooms"]["join"][room]
    members = {e["state_key"] for e in joined["state"]["events"] if e["type"] == "m.room.member"}
    # alice is silent but a hero of this unnamed room, whose membership the spec requires with lazy-loading
    assert members == {carol.user_id, bob.user_id, alice.user_id}
    assert joined["summary"]["m.joined_member_count"] == 3


def test_include_leave(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    assert room not in bob.sync()["rooms"]["leave"]
    left = bob.sync(filter={"room": {"include_leave": True}})["rooms"]["leave"][room]
    assert left["timeline"]["events"][-1]["content"]["membership"] == "leave"


def test_limited_timeline_prev_batch_reaches_previous_sync(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alice.send(room, "before-token")
    token = bob.sync()["next_batch"]
    sent = [alice.send(room, f"gap{i}") for i in range(12)]
    s = bob.sync(since=token, filter={"room": {"timeline": {"limit": 5}}})
    tl = s["rooms"]["join"][room]["timeline"]
    assert tl["limited"] is True
    assert [e["event_id"] for e in tl["events"]] == sent[-5:]
    # Paginate back from prev_batch to the previous sync's token: exactly the missing events.
    back = messages(bob, room, dir="b", limit=100, to=token, **{"from": tl["prev_batch"]}).json
    assert [e["event_id"] for e in reversed(back["chunk"])] == sent[:-5]
    # Without `to`, the page continues straight into the older history with no duplicate.
    older = messages(bob, room, dir="b", limit=7, **{"from": tl["prev_batch"]}).json
    assert [e["event_id"] for e in reversed(older["chunk"])] == sent[:7]
    more = messages(bob, room, dir="b", limit=1, **{"from": older["end"]}).json
    assert bodies(more["chunk"]) == ["before-token"]


def test_limited_timeline_includes_state_changes_in_gap(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat", name="old")
    bob.join(room)
    token = bob.sync()["next_batch"]
    put_state(alice, room, "m.room.name", {"name": "new"})
    for i in range(6):
        alice.send(room, f"x{i}")
    s = bob.sync(since=token, filter={"room": {"timeline": {"limit": 3}}})
    joined = s["rooms"]["join"][room]
    assert joined["timeline"]["limited"] is True
    names = [e for e in joined["state"]["events"] if e["type"] == "m.room.name"]
    assert [e["content"] for e in names] == [{"name": "new"}]


def test_invite_then_join_then_leave_sections(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(name="War room", topic="sev1")
    token = bob.sync()["next_batch"]
    alice.invite(room, bob.user_id)
    s = bob.sync(since=token)
    inv = s["rooms"]["invite"][room]["invite_state"]["events"]
    by_type = {(e["type"], e["state_key"]): e for e in inv}
    assert by_type[("m.room.name", "")]["content"] == {"name": "War room"}
    assert by_type[("m.room.member", bob.user_id)]["content"]["membership"] == "invite"
    assert ("m.room.create", "") in by_type and ("m.room.join_rules", "") in by_type
    assert all(set(e) >= {"type", "state_key", "content", "sender"} for e in inv)
    s2 = bob.sync(since=s["next_batch"])
    assert room not in s2["rooms"]["invite"]
    bob.join(room)
    s3 = bob.sync(since=s2["next_batch"])
    assert room in s3["rooms"]["join"] and room not in s3["rooms"]["invite"]
    # Newly joined: the full state arrives.
    evs = s3["rooms"]["join"][room]["state"]["events"] + s3["rooms"]["join"][room]["timeline"]["events"]
    assert {"m.room.create", "m.room.name", "m.room.topic"} <= {e["type"] for e in evs}
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    s4 = bob.sync(since=s3["next_batch"])
    assert room in s4["rooms"]["leave"] and room not in s4["rooms"]["join"]


def test_summary_heroes_and_counts(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    alice.invite(room, carol.user_id)
    summary = alice.sync()["rooms"]["join"][room]["summary"]
    assert summary["m.joined_member_count"] == 2
    assert summary["m.invited_member_count"] == 1
    assert set(summary["m.heroes"]) == {bob.user_id, carol.user_id}
    named = alice.create_room(name="Named")
    assert "m.heroes" not in alice.sync()["rooms"]["join"][named]["summary"] or \
        alice.sync()["rooms"]["join"][named]["summary"]["m.heroes"] == []


def test_incremental_summary_only_when_membership_or_name_changed(api: Api) -> None:
    """Spec: the summary fields "may be omitted" when unchanged since the last sync; they must come back with
    the new values as soon as a membership (or another state event) changes them, even with a filter that
    hides member events from the timeline."""
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    token = alice.sync()["next_batch"]
    alice.send(room, "only a message")
    s = alice.sync(since=token)
    assert s["rooms"]["join"][room]["summary"] == {}
    only_messages = '{"room":{"timeline":{"types":["m.room.message"]}}}'
    bob.join(room)
    s2 = alice.sync(since=s["next_batch"], filter=only_messages)
    summary = s2["rooms"]["join"][room]["summary"]
    assert (summary["m.joined_member_count"], summary["m.invited_member_count"]) == (2, 0)
    assert summary["m.heroes"] == [bob.user_id]
    alice.send(room, "another message")
    s3 = alice.sync(since=s2["next_batch"], filter=only_messages)
    assert s3["rooms"]["join"][room]["summary"] == {}


def test_full_state(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(name="Full")
    token = alice.sync()["next_batch"]
    s = alice.sync(since=token, full_state="true")
    joined = s["rooms"]["join"][room]
    types = {e["type"] for e in joined["state"]["events"] + joined["timeline"]["events"]}
    assert {"m.room.create", "m.room.name", "m.room.power_levels"} <= types


def test_bad_sync_params(api: Api) -> None:
    alice = register(api)
    for params in ({"since": "garbage"}, {"timeout": "soon"}, {"filter": "{bad json"},
                   {"filter": "no-such-filter-id"}, {"set_presence": "dancing"}, {"full_state": "maybe"}):
        r = alice.req("GET", "sync", params=params)
        assert 400 <= r.status < 500, (params, r.status, r.json)


def test_nothing_delivered_twice_or_lost_across_sync_chain(api: Api) -> None:
    """Property-style: random messages and state changes between syncs with random timeline limits; the union of
    timelines plus back-pagination of limited gaps equals exactly the sent events, in order."""
    rng = random.Random(20240607)
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = bob.sync()["next_batch"]
    sent: list[str] = []
    received: list[str] = []
    for _ in range(12):
        for _ in range(rng.randint(0, 6)):
            if rng.random() < 0.25:
                r = put_state(alice, room, "org.tocsin.status", {"v": uuid.uuid4().hex}, rng.choice(["a", "b"]))
                sent.append(r.json["event_id"])
            else:
                sender = rng.choice([alice, bob])
                sent.append(sender.send(room, uuid.uuid4().hex))
        limit = rng.choice([2, 3, 50])
        s = bob.sync(since=token, filter={"room": {"timeline": {"limit": limit}}})
        room_part = s["rooms"]["join"].get(room)
        if room_part:
            tl = room_part["timeline"]
            if tl["limited"]:
                gap = messages(bob, room, dir="b", limit=100, to=token, **{"from": tl["prev_batch"]}).json
                received.extend(e["event_id"] for e in reversed(gap["chunk"]))
            received.extend(e["event_id"] for e in tl["events"])
        token = s["next_batch"]
    assert received == sent


def test_rejoin_after_leave_gets_full_state_and_no_missed_events(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat", name="rejoin")
    bob.join(room)
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    token = bob.sync()["next_batch"]
    alice.send(room, "while away")
    put_state(alice, room, "m.room.topic", {"topic": "changed while away"})
    bob.join(room)
    alice.send(room, "welcome back")
    s = bob.sync(since=token)
    joined = s["rooms"]["join"][room]
    state = {(e["type"], e["state_key"]): e for e in joined["state"]["events"] + joined["timeline"]["events"]
             if "state_key" in e}
    assert state[("m.room.topic", "")]["content"] == {"topic": "changed while away"}
    assert state[("m.room.name", "")]["content"] == {"name": "rejoin"}
    assert bodies(joined["timeline"]["events"])[-1] == "welcome back"
    assert room not in s["rooms"]["leave"]


def test_ban_shows_in_leave_section(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = bob.sync()["next_batch"]
    alice.ok("POST", f"rooms/{q(room)}/ban", {"user_id": bob.user_id, "reason": "flood"})
    alice.send(room, "after ban")
    s = bob.sync(since=token)
    left = s["rooms"]["leave"][room]
    last = left["timeline"]["events"][-1]
    assert last["content"]["membership"] == "ban" and last["state_key"] == bob.user_id
    assert "after ban" not in bodies(left["timeline"]["events"])


def test_rejected_and_rescinded_invites(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    r1 = alice.create_room()
    r2 = alice.create_room()
    token = bob.sync()["next_batch"]
    alice.invite(r1, bob.user_id)
    alice.invite(r2, bob.user_id)
    s = bob.sync(since=token)
    assert {r1, r2} <= set(s["rooms"]["invite"])
    bob.ok("POST", f"rooms/{q(r1)}/leave", {})  # reject
    alice.ok("POST", f"rooms/{q(r2)}/kick", {"user_id": bob.user_id})  # rescind
    s2 = bob.sync(since=s["next_batch"])
    assert {r1, r2} <= set(s2["rooms"]["leave"])
    assert not ({r1, r2} & set(s2["rooms"]["invite"]))
    # An outsider never hears of either room.
    assert not ({r1, r2} & set(carol.sync()["rooms"]["join"]) | set(carol.sync()["rooms"]["leave"]))


def test_sync_timeline_limit_zero_and_state_filter(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(name="zero", topic="t")
    token = alice.sync()["next_batch"]
    alice.send(room, "hidden by limit")
    s = alice.sync(since=token, filter={"room": {"timeline": {"limit": 0}}})
    tl = s["rooms"]["join"][room]["timeline"]
    assert tl["events"] == [] and tl["limited"] is True
    s = alice.sync(filter={"room": {"state": {"types": ["m.room.name"]}, "timeline": {"limit": 1}}})
    state = s["rooms"]["join"][room]["state"]["events"]
    assert {e["type"] for e in state} == {"m.room.name"}


def test_since_token_ahead_of_the_server_does_not_hide_new_messages(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    future = "s999999999_0_0_0_0_0_0"
    first = alice.sync(since=future)
    alice.send(room, "after the rollback")
    later = alice.sync(since=first["next_batch"], timeout=5000)
    assert [e["content"]["body"] for e in timeline(later, room) if e["type"] == "m.room.message"] == \
        ["after the rollback"]


def test_newly_joined_room_brings_its_recent_history(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    alice.send(room, "before bob came")
    since = bob.sync()["next_batch"]
    bob.join(room)
    got = bob.sync(since=since)
    events = timeline(got, room)
    assert [e["content"]["body"] for e in events if e["type"] == "m.room.message"] == ["before bob came"]
    assert events[-1]["type"] == "m.room.member" and events[-1]["state_key"] == bob.user_id
    seen = {e["type"] for e in got["rooms"]["join"][room]["state"]["events"]} | {e["type"] for e in events}
    assert {"m.room.create", "m.room.power_levels", "m.room.join_rules"} <= seen
