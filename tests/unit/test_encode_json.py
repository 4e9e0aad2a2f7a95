"""``encode_json``: replies are compact UTF-8 JSON, the same whichever encoder produced them."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.http.server import encode_json

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_round_trips_and_matches_the_standard_encoder(value) -> None:
    try:
        expected = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            encode_json(value)
        return
    data = encode_json(value)
    assert json.loads(data) == value
    assert data == expected


@pytest.mark.parametrize("value", [float("nan"), {"a": [float("inf")]}, [float("-inf")]])
def test_nan_and_infinity_are_refused_not_written_as_null(value) -> None:
    with pytest.raises(ValueError):
        encode_json(value)


def test_big_integers_and_non_string_keys_fall_back_to_the_standard_encoder() -> None:
    assert encode_json({"n": 2**70, 1: "x"}) == b'{"n":1180591620717411303424,"1":"x"}'
