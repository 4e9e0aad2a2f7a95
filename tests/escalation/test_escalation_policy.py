"""Loading escalation.yaml: the shipped example loads, and bad values name their key."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from twisted.internet.task import Clock

from appservices.channels.factory import build_channels
from appservices.escalation.policy import PolicyError, load_escalation_config
from appservices.escalation.schedule import ScheduleError, who_is_on_call

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "escalation.yaml"


def example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_config_loads_and_means_what_it_says() -> None:
    cfg = load_escalation_config(EXAMPLE)
    ps = cfg.policies
    assert ps.select("critical").tiers[0].channels == ("voice", "sms", "matrix")
    assert ps.select("critical").tiers[0].timeout == timedelta(minutes=5)
    assert ps.select("high").name == "default" and ps.select("high").repeat == 2
    assert ps.select("warning").working_hours is not None and ps.select("warning").tiers[0].channels == ("matrix",)
    assert ps.policies["warning"].rules[0].jump_to_tier == 1
    assert ps.person("@alice:example.org").phone == "+4915112345678"
    primary = cfg.schedules["primary"]
    # Week of 2024-05-27 is Alice's (21 weeks after the 2024-01-01 start); Bob covers her from Fri 18:00 Berlin.
    assert who_is_on_call(primary, datetime(2024, 5, 31, 15, 0, tzinfo=timezone.utc)) == ["@alice:example.org"]
    assert who_is_on_call(primary, datetime(2024, 5, 31, 17, 0, tzinfo=timezone.utc)) == ["@bob:example.org"]
    assert who_is_on_call(primary, datetime(2024, 6, 1, 20, 0, tzinfo=timezone.utc)) == ["@dave:example.org"]
    assert who_is_on_call(primary, datetime(2024, 6, 3, 7, 0, tzinfo=timezone.utc)) == ["@bob:example.org"]
    channels, webhook = build_channels(cfg.channels, Clock(), None)
    assert sorted(channels) == ["email", "sms", "voice"] and webhook is not None


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["policies"]["default"]["tiers"][1].update(timeout="soon"),
     r"^policies\.default\.tiers\[1\]\.timeout: expected a duration"),
    (lambda c: c["policies"]["default"]["tiers"][0].update(channels=["matrix", "pager"]),
     r"^policies\.default\.tiers\[0\]\.channels\[1\]: unknown channel 'pager'"),
    (lambda c: c["policies"]["default"]["tiers"][0].update(targets=[{"schedule": "nope"}]),
     r"^policies\.default\.tiers\[0\]\.targets\[0\]\.schedule: no schedule named 'nope'"),
    (lambda c: c["policies"]["default"]["tiers"][0].update(targets=[{"user": "alice"}]),
     r"^policies\.default\.tiers\[0\]\.targets\[0\]\.user: expected a Matrix user ID"),
    (lambda c: c["policies"]["default"].update(repeat=-1), r"^policies\.default\.repeat: expected an integer >= 0"),
    (lambda c: c["policies"]["default"]["rules"][0].update(raise_priority="urgent"),
     r"^policies\.default\.rules\[0\]\.raise_priority: expected one of"),
    (lambda c: c["policies"]["warning"]["rules"][0].update(jump_to_tier=3),
     r"^policies\.warning\.rules\[0\]\.jump_to_tier: policy has only 2 tiers"),
    (lambda c: c["policies"]["default"].update(escalate_after="5m"),
     r"^policies\.default\.escalate_after: unknown key"),
    (lambda c: c["priorities"].update(critical="missing"), r"^priorities\.critical: no policy named 'missing'"),
    (lambda c: c["people"]["@alice:example.org"].update(phone="0151"), r"^people\.@alice:example\.org\.phone: expected"),
    (lambda c: c["rate_limits"]["sms"].update(per="never"), r"^rate_limits\.sms\.per: expected a duration"),
    # Durations that would overflow timedelta or the date arithmetic after it (they used to raise OverflowError).
    (lambda c: c["rate_limits"]["sms"].update(per="999999999999d"), r"^rate_limits\.sms\.per: must be at most 366"),
    (lambda c: c["rate_limits"]["sms"].update(per="99999999999h"), r"^rate_limits\.sms\.per: must be at most 366"),
    (lambda c: c["rate_limits"]["sms"].update(per=1e300), r"^rate_limits\.sms\.per: must be at most 366"),
    (lambda c: c["rate_limits"]["sms"].update(per=float("nan")), r"^rate_limits\.sms\.per: must be a positive"),
    (lambda c: c["policies"]["warning"]["working_hours"].update(time_zone="Berlin"),
     r"^policies\.warning\.working_hours\.time_zone: unknown time zone"),
])
def test_bad_values_name_their_key(mutate: Any, message: str) -> None:
    cfg = example()
    mutate(cfg)
    with pytest.raises(ScheduleError, match=message):
        load_escalation_config(cfg)


def test_bad_channel_settings_name_their_key() -> None:
    cfg = copy.deepcopy(example()["channels"])
    del cfg["sms"]["auth_token"]
    with pytest.raises(PolicyError, match=r"^channels\.sms\.auth_token: required"):
        build_channels(cfg, Clock(), None)
    cfg = copy.deepcopy(example()["channels"])
    cfg["email"]["port"] = "587"
    with pytest.raises(PolicyError, match=r"^channels\.email\.port: expected int"):
        build_channels(cfg, Clock(), None)
