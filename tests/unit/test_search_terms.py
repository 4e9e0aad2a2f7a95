"""Search term handling: words reach the index as plain words (no FTS5/tsquery syntax), next_batch tokens."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from homeserver.handlers.search import _parse_batch, parse_room_events_criteria
from homeserver.http.errors import BadJsonError, InvalidParamError
from homeserver.storage.search import search_words


def test_words_lowercased_deduplicated_in_order() -> None:
    assert search_words('Disk "FULL" on db1 -- disk OR NEAR(x*)') == ["disk", "full", "on", "db1", "or", "near", "x"]
    assert search_words("!!! ???") == []
    assert search_words("Störung überfällig") == ["störung", "überfällig"]
    assert len(search_words(" ".join(f"w{i}" for i in range(40)))) == 16


@given(st.text(max_size=200))
def test_words_never_carry_query_syntax(term: str) -> None:
    for w in search_words(term):
        assert w and w == w.lower()
        assert not set(w) & set('"*()-:^+{}[]&|!<>')


def test_next_batch_tokens_match_order() -> None:
    assert _parse_batch(None, "rank") == (None, 0)
    assert _parse_batch("r42", "recent") == (42, 0)
    assert _parse_batch("k20", "rank") == (None, 20)
    for token, order in (("k20", "recent"), ("r42", "rank"), ("r-1", "recent"), ("x", "rank"), ("k", "rank")):
        with pytest.raises(InvalidParamError):
            _parse_batch(token, order)


def test_criteria_defaults_and_limits() -> None:
    c = parse_room_events_criteria({"search_term": "cpu", "unknown": True})
    assert (c.keys, c.order_by, c.limit, c.before_limit, c.group_by) == (
        ["content.body", "content.name", "content.topic"], "rank", 10, None, [])
    c = parse_room_events_criteria({"search_term": "cpu", "filter": {"limit": 5000}, "event_context": {}})
    assert (c.limit, c.before_limit, c.after_limit, c.include_profile) == (50, 5, 5, False)
    with pytest.raises(BadJsonError):
        parse_room_events_criteria({"search_term": "cpu", "include_state": "yes"})
    with pytest.raises(InvalidParamError):
        parse_room_events_criteria({"search_term": "cpu", "filter": {"limit": 0}})
