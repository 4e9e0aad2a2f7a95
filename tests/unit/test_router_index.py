"""JsonRouter tries a request only against the routes that can match its path (by the client-API segment after
the version): the route and path parameters it picks must be exactly those of a scan of every route in
registration order, for paths of every registered route and for paths no route has."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.http.errors import MatrixError
from homeserver.http.server import JsonRouter
from homeserver.rest import register_all_servlets


def _router() -> JsonRouter:
    router = JsonRouter()
    register_all_servlets(MagicMock(), router)  # registration only reads handlers' collaborators
    return router


ROUTER = _router()


def _outcome(router: JsonRouter, path: str, scan_all: bool) -> tuple[Any, ...]:
    if scan_all:
        router._candidates = lambda _path: router._routes  # type: ignore[method-assign]
    try:
        route, kwargs = router._route_for(path)
        return ("route", route.pattern.pattern, kwargs)
    except MatrixError as e:
        return ("error", e.code, e.errcode)
    finally:
        if scan_all:
            del router._candidates


def _same_as_full_scan(path: str) -> tuple[Any, ...]:
    indexed = _outcome(ROUTER, path, scan_all=False)
    assert indexed == _outcome(ROUTER, path, scan_all=True), path
    return indexed


def test_every_route_is_found_and_the_hot_ones_try_few_patterns() -> None:
    assert _same_as_full_scan("/_matrix/client/v3/sync")[1] == "^/_matrix/client/(?:r0|v3)/sync$"
    assert _same_as_full_scan("/_matrix/client/r0/rooms/%21r%3Ahs/send/m.room.message/t1") == (
        "route", ROUTER._by_pattern[next(p for p in ROUTER._by_pattern if "/send/" in p)].pattern.pattern,
        {"room_id": "!r:hs", "event_type": "m.room.message", "txn_id": "t1"})
    assert _same_as_full_scan("/_matrix/client/versions")[1] == "^/_matrix/client/versions$"
    assert _same_as_full_scan("/_matrix/client/unstable/keys/signatures/upload")[0] == "route"
    assert _same_as_full_scan("/_matrix/media/v3/config")[1] == "^/_matrix/media/(?:r0|v3|v1)/config$"
    assert _same_as_full_scan("/_matrix/client/v3/nosuch") == ("error", 404, "M_UNRECOGNIZED")
    assert _same_as_full_scan("/_matrix/client/v3/rooms/%00/state") == ("error", 400, "M_INVALID_PARAM")
    assert len(ROUTER._candidates("/_matrix/client/v3/sync")) <= 3
    assert len(ROUTER._candidates("/_matrix/client/v3/keys/query")) < len(ROUTER._routes) // 4


@pytest.mark.parametrize("index", range(len(ROUTER._routes)))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_paths_of_each_route_get_the_route_a_full_scan_gets(index: int, data: st.DataObject) -> None:
    route = ROUTER._routes[index]
    path = data.draw(st.from_regex(route.pattern, fullmatch=True))
    outcome = _same_as_full_scan(path)
    if outcome[0] == "route" and "\x00" not in path and "%" not in path:
        assert ROUTER._route_for(path)[0].methods  # a real route answers


SEGMENTS = st.sampled_from(["_matrix", "client", "media", "v1", "v3", "r0", "unstable", "sync", "rooms", "keys",
                            "send", "state", "upload", "query", "x", "%21a%3Ab", "", "versions", "register"])


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(SEGMENTS, min_size=0, max_size=7), slash=st.booleans())
def test_any_path_gets_what_a_full_scan_gets(parts: list[str], slash: bool) -> None:
    _same_as_full_scan("/" + "/".join(parts) + ("/" if slash else ""))
    _same_as_full_scan("/_matrix/client/" + "/".join(parts))


def test_a_route_registered_after_requests_is_found() -> None:
    router = _router()
    with pytest.raises(MatrixError):
        router._route_for("/_matrix/client/v3/sync/extra")
    router.register("GET", r"/_matrix/client/(?:r0|v3)/sync/extra", MagicMock(), "extra")
    assert router._route_for("/_matrix/client/v3/sync/extra")[0].name == "extra"
    router.register("GET", r"/_matrix/client/(?P<version>[^/]+)/wildcard", MagicMock(), "wildcard")
    assert router._route_for("/_matrix/client/v7/wildcard")[0].name == "wildcard"
    # A parameter where the segment is: tried for paths whose segment other routes name literally too.
    router.register("GET", r"/_matrix/client/(?:r0|v3)/(?P<any>[^/]+)/catchall", MagicMock(), "catchall")
    assert router._route_for("/_matrix/client/v3/rooms/catchall") == (router._routes[-1], {"any": "rooms"})
