"""POST /search ``count`` counts only results the searcher may see: matches in history before they joined (with
``history_visibility: joined``) are neither returned nor counted, on every page. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import secrets

from tests.integration.test_search import room_events
from tests.support.client import Api, q, register


def test_count_excludes_matches_in_unreadable_history(api: Api) -> None:
    lead, newcomer = register(api), register(api)
    w = "zq" + secrets.token_hex(4)
    room_id = lead.create_room(preset="public_chat")
    lead.ok("PUT", f"rooms/{q(room_id)}/state/m.room.history_visibility", {"history_visibility": "joined"})
    hidden = [lead.send(room_id, f"private incident {w} {i}") for i in range(4)]
    newcomer.join(room_id)
    seen = [lead.send(room_id, f"shared update {w} {i}") for i in range(3)]

    for order_by in ("recent", "rank"):
        first = room_events(newcomer, {"search_term": w, "order_by": order_by, "filter": {"limit": 2}})
        assert first["count"] == 3  # not 7: the four earlier matches are invisible to the newcomer
        got = [r["result"]["event_id"] for r in first["results"]]
        second = room_events(newcomer, {"search_term": w, "order_by": order_by, "filter": {"limit": 2}},
                             first["next_batch"])
        assert second["count"] == 3
        got += [r["result"]["event_id"] for r in second["results"]]
        assert sorted(got) == sorted(seen) and not set(got) & set(hidden)
        assert "next_batch" not in second

    # The room's older member sees and counts everything.
    full = room_events(lead, {"search_term": w, "order_by": "recent", "filter": {"limit": 2}})
    assert full["count"] == 7
    everything = room_events(lead, {"search_term": w, "order_by": "recent", "filter": {"limit": 50}})
    assert everything["count"] == 7 and "next_batch" not in everything
