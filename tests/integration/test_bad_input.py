"""Bad input gets the spec's error and changes nothing (issue 2 item 8)."""

from __future__ import annotations

from tests.integration.roomlib import all_messages, bodies, get_state, users
from tests.support.client import CS, Api, q, register


def _send_path(room: str, txn: str, etype: str = "m.room.message") -> str:
    return f"rooms/{q(room)}/send/{q(etype)}/{txn}"


def _history_ids(user, room: str) -> list[str]:
    return [e["event_id"] for e in all_messages(user, room)]


def test_malformed_json_and_wrong_types(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(name="unchanged")
    before = _history_ids(alice, room)
    cases = [
        (b"{not json", "M_NOT_JSON"),
        (b"", "M_NOT_JSON"),
        (b"\xff\xfe{}", "M_NOT_JSON"),
        (b"[1, 2]", "M_BAD_JSON"),
        (b"\"text\"", "M_BAD_JSON"),
        (b"null", "M_BAD_JSON"),
    ]
    for i, (raw, code) in enumerate(cases):
        r = alice.req("PUT", _send_path(room, f"bad{i}"), raw_body=raw)
        assert (r.status, r.errcode()) == (400, code), (raw, r.json)
    for raw in (b"{not json", b"[]"):
        r = alice.req("POST", "createRoom", raw_body=raw)
        assert r.status == 400
    assert _history_ids(alice, room) == before


def test_forbidden_json_values_in_content(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    before = _history_ids(alice, room)
    raws = [
        b'{"body": "x", "n": 1.5}',
        b'{"body": "x", "n": NaN}',
        b'{"body": "x", "n": Infinity}',
        b'{"body": "x", "n": -Infinity}',
        b'{"body": "x", "n": 9007199254740992}',
        b'{"body": "x", "n": -9007199254740992}',
        b'{"body": "x", "n": 1e3}',
        b'{"body": "\\ud800"}',
        b'{"body": "x", "nested": {"deep": [1, 2.0]}}',
    ]
    for i, raw in enumerate(raws):
        r = alice.req("PUT", _send_path(room, f"f{i}"), raw_body=raw)
        assert r.status == 400 and r.errcode() in ("M_BAD_JSON", "M_NOT_JSON"), (raw, r.status, r.json)
        assert r.status != 500
    # Also on state.
    r = alice.req("PUT", f"rooms/{q(room)}/state/m.room.topic/", raw_body=b'{"topic": "x", "v": 0.5}')
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    assert get_state(alice, room, "m.room.topic").status == 404
    # Edge: the largest safe integers are fine.
    r = alice.req("PUT", _send_path(room, "edge"), raw_body=b'{"body": "edge", "n": 9007199254740991, '
                                                            b'"m": -9007199254740991}')
    assert r.status == 200
    after = _history_ids(alice, room)
    assert after[:-1] == before and len(after) == len(before) + 1


def test_event_too_large(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    before = _history_ids(alice, room)
    r = alice.req("PUT", _send_path(room, "big"), {"msgtype": "m.text", "body": "x" * 70000})
    assert (r.status, r.errcode()) == (413, "M_TOO_LARGE")
    # The limit is on the whole signed event: content just under 65536 bytes still fails once wrapped.
    r = alice.req("PUT", _send_path(room, "big2"), {"msgtype": "m.text", "body": "x" * 65400})
    assert (r.status, r.errcode()) == (413, "M_TOO_LARGE")
    r = alice.req("PUT", f"rooms/{q(room)}/state/org.tocsin.big/", {"v": "y" * 70000})
    assert (r.status, r.errcode()) == (413, "M_TOO_LARGE")
    assert _history_ids(alice, room) == before
    # Comfortably smaller is fine.
    assert alice.req("PUT", _send_path(room, "ok"), {"msgtype": "m.text", "body": "x" * 60000}).status == 200


def test_unknown_endpoints_and_methods(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    r = alice.req("GET", f"rooms/{q(room)}/no_such_thing")
    assert (r.status, r.errcode()) == (404, "M_UNRECOGNIZED")
    r = alice.req("GET", "createRoom")
    assert (r.status, r.errcode()) == (405, "M_UNRECOGNIZED")
    r = alice.req("POST", f"rooms/{q(room)}/send/m.room.message/t1", {"body": "x"})
    assert (r.status, r.errcode()) == (405, "M_UNRECOGNIZED")
    r = alice.req("DELETE", "sync")
    assert r.status == 405
    assert bodies(all_messages(alice, room)) == []


def test_bad_tokens_change_nothing(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(name="tokens")
    before = _history_ids(alice, room)
    content = {"msgtype": "m.text", "body": "nope"}
    path = CS + f"/rooms/{q(room)}/send/m.room.message/tok1"
    r = api.request("PUT", path, content)
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")
    r = api.request("PUT", path, content, token="syt_not_a_token")
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    r = api.request("PUT", CS + f"/rooms/{q(room)}/state/m.room.name/", {"name": "x"}, token="bad")
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    r = api.request("GET", CS + "/sync", token="bad")
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    r = api.request("POST", CS + "/createRoom", {}, token="bad")
    assert r.status == 401
    assert _history_ids(alice, room) == before
    assert get_state(alice, room, "m.room.name").json == {"name": "tokens"}
    # A logged-out token stops working.
    other = api.request("POST", CS + "/login", {"type": "m.login.password", "identifier":
                                                {"type": "m.id.user", "user": alice.user_id},
                                                "password": alice.password}).json["access_token"]
    assert api.request("POST", CS + "/logout", {}, token=other).status == 200
    r = api.request("PUT", path, content, token=other)
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    assert _history_ids(alice, room) == before


def test_bad_ids_in_paths(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    for path in (f"rooms/{q('nobang')}/messages", f"rooms/{q('nobang')}/members",
                 f"rooms/{q(room)}/event/{q('not-an-event')}"):
        r = alice.req("GET", path)
        assert 400 <= r.status < 500, (path, r.status)
    r = alice.req("POST", f"join/{q('neither')}", {})
    assert r.status == 400


def test_refused_membership_changes_nothing(api: Api) -> None:
    alice, bob, eve = users(api, 3)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    before = _history_ids(alice, room)
    assert eve.req("POST", f"rooms/{q(room)}/kick", {"user_id": bob.user_id}).status == 403
    assert bob.req("POST", f"rooms/{q(room)}/ban", {"user_id": alice.user_id}).status == 403
    assert bob.req("POST", f"rooms/{q(room)}/kick", {"user_id": alice.user_id, "reason": 5}).status == 400
    assert alice.req("POST", f"rooms/{q(room)}/ban", {"user_id": ["x"]}).status == 400
    assert _history_ids(alice, room) == before


def test_out_of_range_tokens_and_integers_are_400_not_500(api: Api) -> None:
    """Regression: a token position or ``ts`` beyond 64 bits overflowed SQLite (500); "²" passed isdigit()."""
    alice = register(api)
    room = alice.create_room()
    huge = "9" * 23
    for path, params in ((f"rooms/{q(room)}/messages", {"dir": "b", "from": "s" + huge}),
                         (f"rooms/{q(room)}/messages", {"dir": "b", "to": "s" + huge}),
                         (f"rooms/{q(room)}/messages", {"dir": "b", "from": "s²"}),
                         (f"rooms/{q(room)}/members", {"at": "s" + huge}),
                         ("sync", {"since": "s1_" + huge}),
                         ("sync", {"since": "s٣"}),
                         (f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event", {"ts": huge, "dir": "f"}),
                         (f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event", {"ts": "²", "dir": "f"})):
        r = alice.req("GET", path, params=params)
        assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM"), (path, params, r.status, r.json)
    # Capped parameters still accept big values.
    assert alice.req("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": huge}).status == 200


def test_deeply_nested_content(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    before = _history_ids(alice, room)
    for depth in (200, 5000):
        raw = ('{"body": "deep", "x": ' + "[" * depth + "]" * depth + "}").encode()
        r = alice.req("PUT", _send_path(room, f"deep{depth}"), raw_body=raw)
        assert r.status in (200, 400), (depth, r.status, r.json)
        if r.status == 200:
            before.append(r.json["event_id"])
    assert _history_ids(alice, room) == before


def test_nul_and_control_characters_are_valid_json(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    r = alice.req("PUT", _send_path(room, "nul"), raw_body=b'{"msgtype": "m.text", "body": "a\\u0000b\\u001f"}')
    assert r.status == 200, r.json
    ev = alice.ok("GET", f"rooms/{q(room)}/event/{q(r.json['event_id'])}")
    assert ev["content"]["body"] == "a\x00b\x1f"


def test_nul_in_identifiers_is_400_not_500(api: Api) -> None:
    """Regression: on PostgreSQL a NUL in an event type, state key, txnId, alias or a searchable body was a 500."""
    alice = register(api)
    room = alice.create_room()
    before = _history_ids(alice, room)
    for path, body in ((f"rooms/{q(room)}/send/{q('m.x' + chr(0))}/t1", {"a": 1}),
                       (f"rooms/{q(room)}/send/m.room.message/{q('t' + chr(0))}", {"body": "x"}),
                       (f"rooms/{q(room)}/state/m.room.topic/{q(chr(0))}", {"topic": "x"}),
                       (f"directory/room/{q('#a' + chr(0) + ':test.local')}", {"room_id": room})):
        r = alice.req("PUT", path, body)
        assert r.status == 400, (path, r.status, r.json)
    for body in ({"room_alias_name": "a\x00b"},
                 {"initial_state": [{"type": "org.x\x00", "content": {}}]},
                 {"initial_state": [{"type": "org.x", "state_key": "\x00", "content": {}}]}):
        r = alice.req("POST", "createRoom", body)
        assert r.status == 400, (body, r.status, r.json)
    assert _history_ids(alice, room) == before


def test_invalid_utf8_in_path_and_loose_integers_are_refused(api: Api) -> None:
    (alice,) = users(api, 1)
    room = alice.create_room()
    before = _history_ids(alice, room)
    for path in (f"rooms/{q(room)}/send/%ED%A0%80/t1", f"rooms/{q(room)}/send/m.room.message/%C3%28",
                 f"rooms/{q(room)}/state/m.room.name/%FF"):
        r = alice.req("PUT", path, {"msgtype": "m.text", "body": "x", "name": "x"})
        assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM"), path
    assert _history_ids(alice, room) == before
    for value in ("+1", " 1", "1_0", "\u0663", "1.0", ""):
        r = alice.req("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": value})
        assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM"), value


def test_token_in_header_and_query_is_refused(api: Api) -> None:
    (alice,) = users(api, 1)
    r = api.request("GET", CS + "/account/whoami", token=alice.access_token,
                    params={"access_token": alice.access_token})
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")


def test_non_user_id_profile_and_non_id_filter_are_400(api: Api) -> None:
    (alice,) = users(api, 1)
    r = alice.req("GET", "profile/alice")
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")
    r = alice.req("GET", "profile/alice/displayname")
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")
    for value in ("[]", "abc", "1.5"):
        r = alice.req("GET", "sync", params={"filter": value})
        assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM"), value
    r = alice.req("GET", "sync", params={"filter": "9999"})
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def test_creation_content_with_wrongly_typed_spec_fields_creates_nothing(api: Api) -> None:
    """``creation_content`` keys the m.room.create schema defines must have its types; no room is created."""
    alice = register(api)
    before = alice.ok("GET", "joined_rooms")["joined_rooms"]
    bad = [
        ({"type": 5}, "creation_content.type"),
        ({"m.federate": "no"}, "creation_content.m.federate"),
        ({"predecessor": "!old:test.local"}, "creation_content.predecessor"),
        ({"predecessor": {"event_id": "$x"}}, "creation_content.predecessor"),
        ({"predecessor": {"room_id": "!old:test.local", "event_id": 7}}, "creation_content.predecessor.event_id"),
    ]
    for content, named in bad:
        r = alice.req("POST", "createRoom", {"creation_content": content})
        assert (r.status, r.errcode()) == (400, "M_BAD_JSON"), (content, r.json)
        assert named in r.json["error"], r.json
    assert alice.ok("GET", "joined_rooms")["joined_rooms"] == before
    good = {"type": "m.space", "m.federate": False, "predecessor": {"room_id": "!old:test.local", "event_id": "$x"},
            "org.example.custom": [1, "two"]}
    room = alice.create_room(creation_content=good)
    create = alice.ok("GET", f"rooms/{q(room)}/state/m.room.create/")
    assert {k: create[k] for k in good} == good


def _raw_exchange(base_url: str, raw: bytes) -> bytes:
    """Send ``raw`` bytes as a request and read the whole answer (the server closes the connection)."""
    import socket
    import urllib.parse

    url = urllib.parse.urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            pass  # the server may answer and close before all of a huge request is sent
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_over_long_or_unparseable_requests_get_a_matrix_error(api: Api) -> None:
    """Lines over 16 KiB: 414 for the URL, 431 for a header, each with M_TOO_LARGE (not a silent close); other
    unparseable requests: 400 with a Matrix error body."""
    import json

    long_url = b"GET /_matrix/client/versions?x=" + b"a" * 70000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    long_header = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    for raw, status in ((long_url, b"414"), (long_header, b"431")):
        answer = _raw_exchange(api.base_url, raw)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == status, head
        assert b"Access-Control-Allow-Origin: *" in head
        assert json.loads(body)["errcode"] == "M_TOO_LARGE"
    # Requests Twisted cannot parse for other reasons: 400 with a Matrix error body, not an empty one.
    malformed = [
        b"GET /_matrix/client/versions HTTP/1.1\r\nHost: t\r\nX-A: " + b"a" * 9000 + b"\r\nX-B: " + b"b" * 9000
        + b"\r\n\r\n",  # each line fits, all headers together do not
        b"PUT /_matrix/client/v3/profile/x HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n{}",
        b"GARBAGE\r\n\r\n",
        b"GET /_matrix/client/versions HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n",
    ]
    for raw in malformed:
        answer = _raw_exchange(api.base_url, raw)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), (raw[:40], head)
        assert json.loads(body)["errcode"] == "M_UNKNOWN", (raw[:40], body)
    # A URL under the limit is served as usual.
    ok = _raw_exchange(api.base_url, b"GET /_matrix/client/versions?x=" + b"a" * 15000
                       + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200"), ok[:100]


_LONE = "\ud800"  # json.dumps writes it as the escape "\ud800": valid JSON text, no UTF-8 form once parsed


def test_lone_surrogates_anywhere_in_a_body_are_400_and_change_nothing(api: Api) -> None:
    """A ``"\\ud800"`` escape without its partner is refused with 400 ``M_BAD_JSON`` by every endpoint, wherever
    it sits in the body (values and keys, nested), and nothing is written; the reply is never lost, even where the
    error message would echo the value (that used to leave the request unanswered)."""
    alice = register(api)
    room = alice.create_room(name="kept")
    profile = alice.ok("GET", f"profile/{q(alice.user_id)}")
    rooms = alice.ok("GET", "joined_rooms")["joined_rooms"]
    taken = "u" + alice.user_id[2:12] + "x"
    authed = [
        ("POST", "createRoom", {"name": _LONE}),
        ("POST", "createRoom", {"topic": "t", "invite": [_LONE]}),
        ("POST", "createRoom", {"room_alias_name": _LONE}),
        ("POST", "createRoom", {"initial_state": [{"type": "m.room.topic", "state_key": _LONE,
                                                   "content": {"topic": "x"}}]}),
        ("POST", "createRoom", {"power_level_content_override": {"events": {_LONE: 50}}}),
        ("PUT", f"profile/{q(alice.user_id)}/displayname", {"displayname": _LONE}),
        ("PUT", f"profile/{q(alice.user_id)}/avatar_url", {"avatar_url": "mxc://x/" + _LONE}),
        ("PUT", f"presence/{q(alice.user_id)}/status", {"presence": "online", "status_msg": _LONE}),
        ("PUT", f"user/{q(alice.user_id)}/account_data/org.example", {"k": {"deep": [_LONE]}}),
        ("PUT", f"user/{q(alice.user_id)}/account_data/org.example", {_LONE: 1}),
        ("POST", f"user/{q(alice.user_id)}/filter", {"room": {"rooms": [_LONE]}}),
        ("POST", "user_directory/search", {"search_term": _LONE}),
        ("PUT", f"devices/{q(alice.device_id)}", {"display_name": _LONE}),
        ("POST", "keys/query", {"device_keys": {_LONE: []}}),
        ("POST", "keys/claim", {"one_time_keys": {alice.user_id: {_LONE: "signed_curve25519"}}}),
        ("PUT", "sendToDevice/m.test/t1", {"messages": {_LONE: {"*": {}}}}),
        ("PUT", "pushrules/global/content/r1", {"pattern": _LONE, "actions": ["notify"]}),
        ("POST", "pushers/set", {"kind": "http", "app_id": _LONE, "pushkey": "k", "app_display_name": "a",
                                 "device_display_name": "d", "lang": "en", "data": {"url": "http://x/"}}),
        ("POST", f"rooms/{q(room)}/report/$e", {"reason": _LONE}),
        ("POST", "room_keys/version", {"algorithm": _LONE, "auth_data": {}}),
        ("PUT", f"rooms/{q(room)}/state/m.room.name/", {"name": _LONE}),
    ]
    for method, path, body in authed:
        r = alice.req(method, path, body, timeout=20)
        assert (r.status, r.errcode()) == (400, "M_BAD_JSON"), (method, path, r.status, r.json)
        assert "surrogate" in r.json["error"], r.json
    unauthenticated = [
        ("POST", "/login", {"type": _LONE}),
        ("POST", "/login", {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": _LONE},
                            "password": "x"}),
        ("POST", "/register", {"username": taken, "password": _LONE, "auth": {"type": "m.login.dummy"}}),
        ("POST", "/register", {"username": taken, "password": "pw", "device_id": _LONE,
                               "auth": {"type": "m.login.dummy"}}),
        ("POST", "/register", {"username": taken, "password": "pw", "initial_device_display_name": _LONE,
                               "auth": {"type": "m.login.dummy"}}),
    ]
    for method, path, body in unauthenticated:
        r = api.request(method, CS + path, body, timeout=20)
        assert (r.status, r.errcode()) == (400, "M_BAD_JSON"), (path, body, r.status, r.json)
    # Nothing was written: no account, no room, same profile, no account data, no filter-free side effects.
    assert api.request("GET", CS + "/register/available", params={"username": taken}).status == 200
    assert alice.ok("GET", "joined_rooms")["joined_rooms"] == rooms
    assert alice.ok("GET", f"profile/{q(alice.user_id)}") == profile
    assert alice.req("GET", f"user/{q(alice.user_id)}/account_data/org.example").status == 404
    assert alice.ok("GET", f"rooms/{q(room)}/state/m.room.name/") == {"name": "kept"}
    # A properly paired surrogate escape is just a character outside the BMP, and fine.
    alice.ok("PUT", f"profile/{q(alice.user_id)}/displayname", {"displayname": "pager \ud83d\udcdf"})
    assert alice.ok("GET", f"profile/{q(alice.user_id)}/displayname")["displayname"] == "pager \U0001F4DF"


def test_create_room_with_out_of_range_power_levels_creates_nothing(api: Api) -> None:
    """``power_level_content_override`` values the event could never hold (integers beyond +-(2**53 - 1)) are
    refused before the room exists, not after its create event and the creator's join."""
    alice = register(api)
    rooms = alice.ok("GET", "joined_rooms")["joined_rooms"]
    for override in ({"users_default": 2**53 + 1}, {"users": {alice.user_id: 100, "@b:test.local": -2**60}},
                     {"events": {"m.room.name": 2**53}}, {"notifications": {"room": 2**70}}):
        r = alice.req("POST", "createRoom", {"power_level_content_override": override})
        assert r.status == 400 and r.errcode() in ("M_BAD_JSON", "M_INVALID_ROOM_STATE"), (override, r.json)
    assert alice.ok("GET", "joined_rooms")["joined_rooms"] == rooms


def test_refresh_with_a_non_string_token_is_a_type_error(api: Api) -> None:
    r = api.request("POST", CS + "/refresh", {"refresh_token": 5})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON"), r.json
    r = api.request("POST", CS + "/refresh", {})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM"), r.json


def test_numbers_beyond_a_double_are_refused_everywhere(api: Api) -> None:
    """``1e400`` parses to infinity, which no reply can encode: refused with 400 ``M_BAD_JSON`` by every endpoint
    (it used to be stored in account data, tags, push rules, pushers and profiles, and every later read of it,
    /sync included, answered 500), and the user's reads keep working."""
    alice = register(api)
    room = alice.create_room()
    me = q(alice.user_id)
    writes = [
        ("PUT", f"user/{me}/account_data/org.inf", b'{"a": 1e400}'),
        ("PUT", f"user/{me}/rooms/{q(room)}/account_data/org.inf", b'{"a": -1e400}'),
        ("PUT", f"user/{me}/rooms/{q(room)}/tags/u.x", b'{"order": 1e400}'),
        ("PUT", "pushrules/global/override/r1", b'{"actions": [{"set_tweak": "x", "value": 1e400}], "conditions": []}'),
        ("POST", "pushers/set", b'{"kind": "http", "app_id": "a", "pushkey": "k", "app_display_name": "a", '
                                b'"device_display_name": "d", "lang": "en", '
                                b'"data": {"url": "https://p.example/_matrix/push/v1/notify", "x": 1e400}}'),
        ("PUT", f"profile/{me}/displayname", b'{"displayname": "x", "n": 1e999}'),
        ("POST", "room_keys/version", b'{"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", '
                                      b'"auth_data": {"x": 1e400}}'),
        ("POST", "keys/device_signing/upload", b'{"master_key": {"x": 1e400}}'),
        ("PUT", _send_path(room, "inf"), b'{"body": "x", "n": 1E+400}'),
    ]
    for method, path, raw in writes:
        r = alice.req(method, path, raw_body=raw)
        assert (r.status, r.errcode()) == (400, "M_BAD_JSON"), (path, r.status, r.json)
        assert "out of range" in r.json["error"], r.json
    assert alice.req("GET", f"user/{me}/account_data/org.inf").status == 404
    assert alice.ok("GET", f"user/{me}/rooms/{q(room)}/tags") == {"tags": {}}
    assert alice.ok("GET", "pushers") == {"pushers": []}
    assert alice.req("GET", "pushrules/global/override/r1").status == 404
    assert alice.sync()["next_batch"]
    # Ordinary floats are still fine where the spec allows them (a tag's order).
    alice.ok("PUT", f"user/{me}/rooms/{q(room)}/tags/u.y", raw_body=b'{"order": 0.25}')
    assert alice.ok("GET", f"user/{me}/rooms/{q(room)}/tags") == {"tags": {"u.y": {"order": 0.25}}}


def test_create_room_with_a_non_string_preset_or_over_long_initial_state_creates_nothing(api: Api) -> None:
    alice = register(api)
    rooms = alice.ok("GET", "joined_rooms")["joined_rooms"]
    for preset in ([], {}, [1], {"a": 1}, 5):
        r = alice.req("POST", "createRoom", {"preset": preset})
        assert r.status == 400 and r.errcode() in ("M_BAD_JSON", "M_INVALID_PARAM"), (preset, r.json)
    for ev in ({"type": "x" * 300, "state_key": "", "content": {}},
               {"type": "org.example.s", "state_key": "k" * 300, "content": {}},
               {"type": "org.example." + "é" * 130, "content": {}}):
        r = alice.req("POST", "createRoom", {"initial_state": [ev], "room_alias_name": "longstate" + str(len(ev))})
        assert (r.status, r.errcode()) == (400, "M_INVALID_ROOM_STATE"), r.json
        assert "longer than 255 bytes" in r.json["error"]
    assert alice.ok("GET", "joined_rooms")["joined_rooms"] == rooms
    # Exactly 255 bytes is allowed.
    room = alice.create_room(initial_state=[{"type": "org.example.s", "state_key": "k" * 255, "content": {"v": 1}}])
    assert alice.ok("GET", f"rooms/{q(room)}/state/org.example.s/{'k' * 255}") == {"v": 1}


def test_notifications_from_token_out_of_range_is_400(api: Api) -> None:
    alice = register(api)
    for token in ("99999999999999999999999999999", "9223372036854775808", "18446744073709551616", "\u00b2",
                  "-1", "12a"):
        r = alice.req("GET", "notifications", params={"from": token})
        assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM"), (token, r.json)
    assert alice.ok("GET", "notifications", params={"from": "9007199254740991"}) == {"notifications": []}
