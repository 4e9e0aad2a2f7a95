import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.events.canonical import MAX_PDU_SIZE, encode_canonical_json, validate_canonical_json
from homeserver.http.errors import BadJsonError


def test_encoding_sorts_keys_and_drops_whitespace() -> None:
    assert encode_canonical_json({"b": 1, "a": [1, 2], "c": {"z": None, "y": True}}) == (
        b'{"a":[1,2],"b":1,"c":{"y":true,"z":null}}'
    )


def test_encoding_is_utf8_not_escaped() -> None:
    assert encode_canonical_json({"k": "\u00e9\u65e5"}) == '{"k":"\u00e9\u65e5"}'.encode("utf-8")


def test_max_pdu_size() -> None:
    assert MAX_PDU_SIZE == 65536


@pytest.mark.parametrize(
    "value, path_fragment",
    [
        ({"a": 1.5}, "content.a"),
        ({"a": [1, 2, 0.0]}, "content.a[2]"),
        ({"n": float("nan")}, "content.n"),
        ({"i": float("inf")}, "content.i"),
        ({"i": float("-inf")}, "content.i"),
        ({"big": 2**53}, "content.big"),
        ({"small": -(2**53)}, "content.small"),
        ({"deep": {"x": {"y": [2**60]}}}, "content.deep.x.y[0]"),
        ({"s": json.loads('"\\ud800"')}, "content.s"),
        ({"s": json.loads('"a\\udfff"')}, "content.s"),
        ({json.loads('"\\ud83d"'): 1}, "content."),
        ({1: "x"}, "content"),
        ({"b": b"bytes"}, "content.b"),
        ({"o": object()}, "content.o"),
    ],
)
def test_rejections_name_the_path(value: object, path_fragment: str) -> None:
    with pytest.raises(BadJsonError) as info:
        validate_canonical_json(value)
    assert info.value.errcode == "M_BAD_JSON"
    assert info.value.code == 400
    assert path_fragment in info.value.msg


def test_custom_root_path_is_reported() -> None:
    with pytest.raises(BadJsonError, match=r"unsigned\.x"):
        validate_canonical_json({"x": 0.5}, path="unsigned")


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"a": 2**53 - 1, "b": -(2**53 - 1), "c": 0},
        {"t": True, "f": False, "n": None, "l": [], "s": "\U0001f600 paired surrogates are fine"},
        {"nested": [{"x": ["y", {"z": 1}]}]},
    ],
)
def test_accepts_valid_values(value: object) -> None:
    validate_canonical_json(value)


def test_deep_nesting_does_not_recurse() -> None:
    value: object = 1
    for _ in range(5000):
        value = [value]
    validate_canonical_json({"v": value})
    bad: object = 0.5
    for _ in range(5000):
        bad = {"k": bad}
    with pytest.raises(BadJsonError):
        validate_canonical_json(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_valid_json_round_trips_through_canonical_encoding(value: object) -> None:
    validate_canonical_json(value)
    assert json.loads(encode_canonical_json(value)) == value


def test_copy_json_is_deep_and_equal() -> None:
    from homeserver.events.canonical import copy_json

    original = {"a": [1, {"b": "c"}], "d": {"e": None, "f": True}, "g": 2.5}
    copied = copy_json(original)
    assert copied == original
    copied["a"][1]["b"] = "changed"
    copied["d"]["e"] = 1
    assert original == {"a": [1, {"b": "c"}], "d": {"e": None, "f": True}, "g": 2.5}
