"""Discovery endpoints and the HTTP behaviour every endpoint shares (errors, CORS, body cap)."""

from tests.support.client import CS, Api


def test_versions_lists_v1_versions(api: Api) -> None:
    r = api.request("GET", "/_matrix/client/versions")
    assert r.status == 200
    assert "v1.1" in r.json["versions"]
    assert r.headers["Access-Control-Allow-Origin"] == "*"


def test_well_known_points_at_the_server(api: Api, homeserver) -> None:
    r = api.request("GET", "/.well-known/matrix/client")
    assert r.status == 200
    assert r.json["m.homeserver"]["base_url"].rstrip("/") == homeserver.base_url


def test_unknown_endpoint_and_wrong_method(api: Api) -> None:
    r = api.request("GET", CS + "/no/such/thing")
    assert (r.status, r.errcode()) == (404, "M_UNRECOGNIZED")
    r = api.request("DELETE", "/_matrix/client/versions")
    assert (r.status, r.errcode()) == (405, "M_UNRECOGNIZED")
    assert r.headers["Content-Type"] == "application/json"


def test_cors_preflight_on_any_path(api: Api) -> None:
    r = api.request("OPTIONS", CS + "/rooms/!x:y/send/m.room.message/1")
    assert r.status == 200
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "PUT" in r.headers["Access-Control-Allow-Methods"]


def test_missing_and_unknown_token(api: Api) -> None:
    r = api.request("GET", CS + "/capabilities")
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")
    r = api.request("GET", CS + "/capabilities", token="nope")
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    r = api.request("GET", CS + "/capabilities", params={"access_token": "nope"})
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")


def test_body_over_cap_rejected_before_reading(api: Api) -> None:
    r = api.request("POST", CS + "/login", raw_body=b"x" * (2 * 1024 * 1024))
    assert (r.status, r.errcode()) == (413, "M_TOO_LARGE")


def test_server_keys_are_signed(api: Api, homeserver) -> None:
    from signedjson.key import decode_verify_key_bytes
    from signedjson.sign import verify_signed_json
    from unpaddedbase64 import decode_base64

    r = api.request("GET", "/_matrix/key/v2/server")
    assert r.status == 200
    (key_id, key), = r.json["verify_keys"].items()
    verify_key = decode_verify_key_bytes(key_id, decode_base64(key["key"]))
    verify_signed_json(r.json, homeserver.server_name, verify_key)


def test_metrics_exposed(api: Api) -> None:
    api.request("GET", "/_matrix/client/versions")
    r = api.request("GET", "/metrics")
    assert r.status == 200
    assert b"tocsin_http_requests_total" in r.body
