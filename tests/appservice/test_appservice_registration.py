"""Registration parsing and namespace rules (pure functions, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.appservice.registration import load_registrations, parse_registration
from homeserver.config import ConfigError


def _raw(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": "irc", "url": "http://127.0.0.1:9000/", "as_token": "a", "hs_token": "h", "sender_localpart": "ircbot",
        "namespaces": {"users": [{"regex": "@_irc_.*", "exclusive": True}, {"regex": "@guest-.*", "exclusive": False}],
                       "aliases": [{"regex": "#_irc_.*:example.org", "exclusive": True}],
                       "rooms": [{"regex": "!bridged.*", "exclusive": False}]},
    }
    raw.update(changes)
    return raw


def test_namespaces_and_defaults() -> None:
    s = parse_registration(_raw(), "/x.yaml", "example.org")
    assert s.url == "http://127.0.0.1:9000" and s.sender == "@ircbot:example.org"
    assert s.rate_limited is True and s.receive_ephemeral is False and s.protocols == ()
    assert s.is_interested_in_user("@_irc_bob:example.org") and s.is_exclusive_user("@_irc_bob:example.org")
    assert s.is_interested_in_user("@guest-1:example.org") and not s.is_exclusive_user("@guest-1:example.org")
    assert s.is_exclusive_user("@ircbot:example.org")  # the sender is always the appservice's
    assert not s.is_interested_in_user("@bob:example.org")
    assert not s.is_interested_in_user("@bob_irc_:example.org")  # matched from the start
    assert s.is_exclusive_alias("#_irc_chan:example.org") and not s.is_interested_in_alias("#chan:example.org")
    assert s.is_interested_in_room_id("!bridged123:example.org") and not s.is_interested_in_room_id("!x:y")


def test_null_url_and_optional_fields() -> None:
    s = parse_registration(_raw(url=None, rate_limited=False, protocols=["irc"],
                                **{"de.sorunome.msc2409.push_ephemeral": True}), "/x.yaml", "example.org")
    assert s.url is None and s.rate_limited is False and s.protocols == ("irc",) and s.receive_ephemeral


@pytest.mark.parametrize("changes, key", [
    ({"url": "ftp://x"}, "url"),
    ({"as_token": ""}, "as_token"),
    ({"rate_limited": "no"}, "rate_limited"),
    ({"protocols": "irc"}, "protocols"),
    ({"namespaces": {"users": [{"regex": "[", "exclusive": True}]}}, "namespaces.users[0].regex"),
    ({"namespaces": {"rooms": [{"exclusive": True}]}}, "namespaces.rooms[0].regex"),
    ({"namespaces": {"people": []}}, "namespaces"),
    ({"receive_ephemeral": 1}, "receive_ephemeral"),
])
def test_bad_values_name_file_and_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_registration(_raw(**changes), "/etc/as/irc.yaml", "example.org")
    assert "/etc/as/irc.yaml" in str(e.value) and f": {key}:" in str(e.value)


def test_tokens_unique_across_files(tmp_path: Any) -> None:
    import yaml

    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump(_raw()))
    b.write_text(yaml.safe_dump(_raw(id="slack", sender_localpart="slackbot", as_token="h", hs_token="z")))
    with pytest.raises(ConfigError) as e:
        load_registrations([str(a), str(b)], "example.org")
    assert str(b) in str(e.value) and "as_token" in str(e.value) and str(a) in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_registrations([str(tmp_path / "missing.yaml")], "example.org")
    assert "missing.yaml" in str(e.value)
