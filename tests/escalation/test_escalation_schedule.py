"""On-call schedules: layers, overrides, handoffs across DST, iCalendar export, YAML loading."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appservices.escalation.schedule import (
    Layer,
    Override,
    Restriction,
    Schedule,
    ScheduleError,
    load_schedule,
    next_handoffs,
    to_ical,
    who_is_on_call,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def daily(members: tuple[str, ...], zone: str, start: datetime, **kw: object) -> Layer:
    return Layer(members=members, shift_length=timedelta(days=1), start=start, time_zone=zone, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "zone, start, end, offsets",
    [
        # Berlin springs forward on 2024-03-31 (+1 -> +2) and falls back on 2024-10-27 (+2 -> +1).
        ("Europe/Berlin", datetime(2024, 3, 29, tzinfo=UTC), datetime(2024, 4, 2, tzinfo=UTC), [1, 1, 2, 2]),
        ("Europe/Berlin", datetime(2024, 10, 25, tzinfo=UTC), datetime(2024, 10, 29, tzinfo=UTC), [2, 2, 1, 1]),
        # New York: 2024-03-10 (-5 -> -4) and 2024-11-03 (-4 -> -5).
        ("America/New_York", datetime(2024, 3, 8, 12, tzinfo=UTC), datetime(2024, 3, 12, 12, tzinfo=UTC),
         [-5, -5, -4, -4]),
        ("America/New_York", datetime(2024, 11, 1, 12, tzinfo=UTC), datetime(2024, 11, 5, 12, tzinfo=UTC),
         [-4, -4, -5, -5]),
    ],
)
def test_daily_handoff_stays_at_local_nine_across_dst(zone: str, start: datetime, end: datetime,
                                                     offsets: list[int]) -> None:
    layer = daily(("@a:x", "@b:x", "@c:x"), zone, datetime(2024, 1, 1, 9, 0))
    handoffs = next_handoffs(Schedule("p", (layer,)), start, end)
    assert len(handoffs) == 4
    for h, offset in zip(handoffs, offsets):
        local = h.at.astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (9, 0)
        assert local.utcoffset() == timedelta(hours=offset)
    # The shift spanning the change is 23 h (spring) or 25 h (autumn) of real time.
    lengths = {(b.at - a.at) for a, b in zip(handoffs, handoffs[1:])}
    assert timedelta(hours=24) in lengths and len(lengths) == 2
    # Rotation order continues across the change: each handoff passes to the next member.
    members = ["@a:x", "@b:x", "@c:x"]
    for a, b in zip(handoffs, handoffs[1:]):
        assert members.index(b.current[0]) == (members.index(a.current[0]) + 1) % 3


def test_weekly_rotation_and_who_is_on_call_berlin() -> None:
    layer = Layer(("@alice:x", "@bob:x"), timedelta(days=7), datetime(2024, 3, 25, 9, 0), "Europe/Berlin")
    s = Schedule("primary", (layer,))
    assert who_is_on_call(s, datetime(2024, 3, 25, 9, 0, tzinfo=BERLIN)) == ["@alice:x"]
    assert who_is_on_call(s, datetime(2024, 4, 1, 8, 59, tzinfo=BERLIN)) == ["@alice:x"]
    # 2024-04-01 09:00 CEST is 07:00 UTC, although the rotation started at 08:00 UTC (CET).
    assert who_is_on_call(s, datetime(2024, 4, 1, 7, 0, tzinfo=UTC)) == ["@bob:x"]
    assert who_is_on_call(s, datetime(2024, 4, 1, 6, 59, tzinfo=UTC)) == ["@alice:x"]
    with pytest.raises(ValueError):
        who_is_on_call(s, datetime(2024, 4, 1))


def test_later_layer_wins_where_it_has_someone_and_override_covers() -> None:
    base = daily(("@alice:x",), "Europe/Berlin", datetime(2024, 1, 1, 9))
    nights = Layer(("@night:x",), timedelta(days=1), datetime(2024, 1, 1, 0), "Europe/Berlin",
                   restrictions=(Restriction(frozenset(range(7)), time(20, 0), time(8, 0)),))
    # "Bob covers Alice from Fri 18:00 to Mon 09:00" (2024-06-07 is a Friday).
    cover = Override("@bob:x", datetime(2024, 6, 7, 18, tzinfo=BERLIN), datetime(2024, 6, 10, 9, tzinfo=BERLIN),
                     replaces="@alice:x")
    s = Schedule("ops", (base, nights), (cover,))
    assert who_is_on_call(s, datetime(2024, 6, 7, 12, tzinfo=BERLIN)) == ["@alice:x"]
    assert who_is_on_call(s, datetime(2024, 6, 7, 19, tzinfo=BERLIN)) == ["@bob:x"]
    assert who_is_on_call(s, datetime(2024, 6, 7, 23, tzinfo=BERLIN)) == ["@night:x"]  # not Alice: no cover
    assert who_is_on_call(s, datetime(2024, 6, 10, 7, tzinfo=BERLIN)) == ["@night:x"]
    assert who_is_on_call(s, datetime(2024, 6, 10, 8, 30, tzinfo=BERLIN)) == ["@bob:x"]
    assert who_is_on_call(s, datetime(2024, 6, 10, 9, 0, tzinfo=BERLIN)) == ["@alice:x"]
    changes = [(h.at.astimezone(BERLIN).strftime("%a %H:%M"), h.current)
               for h in next_handoffs(s, datetime(2024, 6, 7, 12, tzinfo=BERLIN), datetime(2024, 6, 8, 12, tzinfo=BERLIN))]
    assert changes == [("Fri 18:00", ("@bob:x",)), ("Fri 20:00", ("@night:x",)), ("Sat 08:00", ("@bob:x",))]


def test_ical_export_round_trips() -> None:
    layer = daily(("@a:x", "@b:x"), "America/New_York", datetime(2024, 3, 1, 9))
    s = Schedule("sre", (layer,))
    body = to_ical(s, datetime(2024, 3, 9, 14, tzinfo=UTC), datetime(2024, 3, 11, 14, tzinfo=UTC))
    cal = icalendar.Calendar.from_ical(body)
    events = [(str(e["SUMMARY"]), e.decoded("DTSTART"), e.decoded("DTEND")) for e in cal.walk("VEVENT")]
    assert events == [
        # Mar 9 is shift 8 (even: @a) starting 09:00 EST = 14:00 UTC; Mar 10 09:00 is EDT = 13:00 UTC.
        ("On call (sre): @a:x", datetime(2024, 3, 9, 14, tzinfo=UTC), datetime(2024, 3, 10, 13, tzinfo=UTC)),
        ("On call (sre): @b:x", datetime(2024, 3, 10, 13, tzinfo=UTC), datetime(2024, 3, 11, 13, tzinfo=UTC)),
        ("On call (sre): @a:x", datetime(2024, 3, 11, 13, tzinfo=UTC), datetime(2024, 3, 11, 14, tzinfo=UTC)),
    ]
    assert len({str(e["UID"]) for e in cal.walk("VEVENT")}) == 3


def test_load_schedule_from_yaml_mapping_and_errors() -> None:
    s = load_schedule("primary", {
        "time_zone": "Europe/Berlin",
        "layers": [{"members": ["@alice:x", "@bob:x"], "rotation": "weekly", "start": "2024-01-01T09:00"},
                   {"members": ["@carol:x"], "rotation": "custom", "shift_length": "12h", "start": "2024-01-01T20:00",
                    "restrictions": [{"days": ["sat", "sun"], "start": "20:00", "end": "08:00"}]}],
        "overrides": [{"user": "@bob:x", "replaces": "@alice:x", "start": "2024-01-05T18:00",
                       "end": "2024-01-08T09:00"}],
    })
    assert who_is_on_call(s, datetime(2024, 1, 2, 12, tzinfo=BERLIN)) == ["@alice:x"]
    assert who_is_on_call(s, datetime(2024, 1, 5, 19, tzinfo=BERLIN)) == ["@bob:x"]
    assert who_is_on_call(s, datetime(2024, 1, 6, 21, tzinfo=BERLIN)) == ["@carol:x"]
    assert who_is_on_call(s, datetime(2024, 1, 10, 21, tzinfo=BERLIN)) == ["@bob:x"]  # week 2, weekday: no carol
    with pytest.raises(ScheduleError, match=r"^schedules\.p\.layers\[0\]\.rotation:"):
        load_schedule("p", {"layers": [{"members": ["@a:x"], "rotation": "hourly", "start": "2024-01-01T09:00"}]})
    with pytest.raises(ScheduleError, match=r"^schedules\.p\.time_zone: unknown time zone"):
        load_schedule("p", {"time_zone": "Mars/Olympus", "layers": [{"members": ["@a:x"], "start": "2024-01-01"}]})
    with pytest.raises(ScheduleError, match=r"^schedules\.p\.layers\[0\]\.shift_length: must be a whole number"):
        load_schedule("p", {"layers": [{"members": ["@a:x"], "rotation": "custom", "shift_length": "90m",
                                        "start": "2024-01-01"}]})
    with pytest.raises(ScheduleError, match=r"^schedules\.p\.layers\[0\]\.members\[1\]: expected a Matrix user ID"):
        load_schedule("p", {"layers": [{"members": ["@a:x", "alice"], "start": "2024-01-01"}]})
    with pytest.raises(ScheduleError, match=r"^schedules\.p\.layers\[0\]\.shift_length: must be at most 366 days"):
        load_schedule("p", {"layers": [{"members": ["@a:x"], "rotation": "custom", "shift_length": "99999999999h",
                                        "start": "2024-01-01"}]})
    with pytest.raises(ScheduleError, match=r"^schedules\.p\.overrides\[0\]\.end: required"):
        load_schedule("p", {"layers": [{"members": ["@a:x"], "start": "2024-01-01"}],
                            "overrides": [{"user": "@b:x", "start": "2024-01-01T00:00"}]})


# ---- property: the schedule names exactly what its layers and overrides imply ---------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York"]
PEOPLE = ["@a:x", "@b:x", "@c:x", "@d:x"]
# Restriction edges away from 01:00-03:59, where local wall-clock checks and instants legitimately disagree.
SAFE_TIMES = [time(h) for h in (0, 6, 8, 9, 12, 17, 18, 20, 22)]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def expected_member(layer: Layer, at: datetime) -> str | None:
    """Independent model: linear scan over handoffs, local wall-clock restriction check."""
    zone = ZoneInfo(layer.time_zone)
    if layer.active_from and at < layer.active_from or layer.active_until and at >= layer.active_until:
        return None
    if layer.restrictions:
        local = at.astimezone(zone)
        ok = False
        for r in layer.restrictions:
            t = local.time().replace(tzinfo=None)
            if r.end > r.start:
                ok |= local.weekday() in r.weekdays and r.start <= t < r.end
            else:
                ok |= (local.weekday() in r.weekdays and t >= r.start) or \
                      ((local.weekday() - 1) % 7 in r.weekdays and t < r.end)
        if not ok:
            return None
    best = None
    for k in range(-2000, 2000):
        h = (layer.start + k * layer.shift_length).replace(tzinfo=zone).astimezone(UTC)
        if h <= at:
            best = k
        else:
            break
    assert best is not None
    return layer.members[best % len(layer.members)]


layer_strategy = st.builds(
    lambda members, hours, zone, offset_h, restr: Layer(
        tuple(members), timedelta(hours=hours), (T0 + timedelta(hours=offset_h)).replace(tzinfo=None), zone,
        restrictions=restr),
    st.lists(st.sampled_from(PEOPLE), min_size=1, max_size=3),
    st.sampled_from([1, 6, 8, 12, 24, 168]),
    st.sampled_from(ZONES),
    st.integers(-24 * 20, 24 * 20),
    st.one_of(st.just(()), st.lists(st.builds(Restriction, st.frozensets(st.integers(0, 6), min_size=1),
                                              st.sampled_from(SAFE_TIMES), st.sampled_from(SAFE_TIMES)),
                                     min_size=1, max_size=2).map(tuple)),
)
override_strategy = st.builds(
    lambda user, start_min, length_min, replaces: Override(
        user, T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=start_min + length_min), replaces),
    st.sampled_from(PEOPLE), st.integers(-3000, 3000), st.integers(1, 3000), st.one_of(st.none(), st.sampled_from(PEOPLE)),
)


@settings(max_examples=150, deadline=None)
@given(layers=st.lists(layer_strategy, min_size=1, max_size=3),
       overrides=st.lists(override_strategy, max_size=3),
       minute=st.integers(-3000, 3000))
def test_schedule_names_exactly_what_layers_and_overrides_imply(layers: list[Layer], overrides: list[Override],
                                                                 minute: int) -> None:
    at = T0 + timedelta(minutes=minute)
    schedule = Schedule("p", tuple(layers), tuple(overrides))
    base = None
    for layer in layers:  # later layers win where they have someone
        person = expected_member(layer, at)
        if person is not None:
            base = person
    people = [base] if base else []
    active = [o for o in overrides if o.start <= at < o.end]
    whole = [o.user for o in active if o.replaces is None]
    for o in active:
        if o.replaces is not None:
            people = [o.user if p == o.replaces else p for p in people]
    if whole:
        people = whole
    expected = list(dict.fromkeys(people))
    assert who_is_on_call(schedule, at) == expected
    # next_handoffs agrees with point queries: just before and at each change the set differs as reported.
    for h in next_handoffs(schedule, at, at + timedelta(hours=30)):
        assert tuple(who_is_on_call(schedule, h.at)) == h.current
        assert tuple(who_is_on_call(schedule, h.at - timedelta(microseconds=1))) == h.previous
