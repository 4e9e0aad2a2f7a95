"""On-call schedules: rotations in layers, overrides, who is on call, handoffs and iCalendar export.

Vocabulary (PagerDuty/Opsgenie style, which on-call teams already know):

- A **rotation** hands a shift from one member to the next every ``shift_length``, starting at a local anchor
  (``start``, a naive wall-clock datetime in ``time_zone``). Handoffs are computed in *local wall-clock* time and
  only then converted to UTC, so a daily 09:00 handoff stays at 09:00 local across daylight-saving changes; the
  shift that spans a change is one hour shorter or longer in real time.
- A **layer** is a rotation plus optional restrictions (weekdays and a daily local time window) and an optional
  active range. Where several layers have someone on call, the *later* layer in the list wins; where a later
  layer is restricted away (a gap), earlier layers show through.
- An **override** puts ``user`` on call from ``start`` to ``end`` (aware datetimes). With ``replaces`` it only
  covers that person ("Bob covers Alice from Fri 18:00 to Mon 09:00"); without it, it takes the whole schedule.

All instants given to and returned by this module are timezone-aware ``datetime`` objects; naive ones raise
``ValueError``. Results are in UTC.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc

_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# A Matrix user ID: "@" localpart ":" server name (spec: Appendices "User Identifiers"; loosely, as historical
# localparts may hold more than the current grammar allows).
_USER_ID_RE = re.compile(r"^@[^:\s]+:[A-Za-z0-9.\-\[\]:]+$")
_DURATION_RE = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


class ScheduleError(ValueError):
    """A schedule definition is invalid; the message names the offending key (e.g. ``schedules.primary.layers[0]``)."""


#: The longest duration a schedule or policy may name (a rotation of a year is the longest that makes sense;
#: anything longer would overflow the date arithmetic that schedules and timers do).
MAX_DURATION = timedelta(days=366)


def parse_duration(value: Any, key: str) -> timedelta:
    """Parse ``"15m"``, ``"1h30m"``, ``"2d"`` or a number of seconds into a timedelta.

    Raises :class:`ScheduleError` naming ``key`` when the value is not a positive duration of at most
    :data:`MAX_DURATION` (366 days).
    """
    result: timedelta | None = None
    if isinstance(value, bool):
        raise ScheduleError(f"{key}: expected a duration such as 15m, got {value!r}")
    if isinstance(value, (int, float)):
        if not value > 0:  # also NaN
            raise ScheduleError(f"{key}: must be a positive duration, got {value!r}")
        if value > MAX_DURATION.total_seconds():
            raise ScheduleError(f"{key}: must be at most {MAX_DURATION.days} days, got {value!r} seconds")
        return timedelta(seconds=value)
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ScheduleError(f"{key}: must be a positive duration")
        result = value
    elif isinstance(value, str) and value.strip():
        m = _DURATION_RE.match(value)
        if m and any(m.groups()):
            d, h, mi, s = (int(g) if g else 0 for g in m.groups())
            try:
                result = timedelta(days=d, hours=h, minutes=mi, seconds=s)
            except OverflowError:
                raise ScheduleError(f"{key}: must be at most {MAX_DURATION.days} days, got {value!r}") from None
            if result <= timedelta(0):
                result = None
    if result is None:
        raise ScheduleError(f"{key}: expected a duration such as 15m, 12h or 1d, got {value!r}")
    if result > MAX_DURATION:
        raise ScheduleError(f"{key}: must be at most {MAX_DURATION.days} days, got {value!r}")
    return result


def load_zone(name: Any, key: str) -> ZoneInfo:
    """Return the IANA zone ``name`` (e.g. ``Europe/Berlin``); raises :class:`ScheduleError` naming ``key``."""
    if not isinstance(name, str) or not name:
        raise ScheduleError(f"{key}: expected an IANA time zone name such as Europe/Berlin, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ScheduleError(f"{key}: unknown time zone {name!r}") from e


def _require_aware(at: datetime, what: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {at!r}")
    return at.astimezone(UTC)


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """Convert a naive local wall-clock time to UTC.

    Ambiguous times (the repeated hour when clocks go back) take their first occurrence; times that do not exist
    (skipped when clocks go forward) take the offset in force before the change, i.e. they land just after it.
    """
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


@dataclass(frozen=True)
class Restriction:
    """Limit a layer to local ``start``..``end`` on ``weekdays`` (0 = Monday). ``end <= start`` wraps past midnight;
    the weekday is the one on which the window starts."""

    weekdays: frozenset[int] = frozenset(range(7))
    start: time = time(0, 0)
    end: time = time(0, 0)

    def windows(self, zone: ZoneInfo, day: datetime) -> tuple[datetime, datetime] | None:
        """The UTC window starting on local date ``day`` (naive midnight), or None when that weekday is excluded."""
        if day.weekday() not in self.weekdays:
            return None
        begin = datetime.combine(day.date(), self.start)
        finish_day = day.date() if self.end > self.start else day.date() + timedelta(days=1)
        finish = datetime.combine(finish_day, self.end)
        return local_to_utc(begin, zone), local_to_utc(finish, zone)

    def contains(self, zone: ZoneInfo, at_utc: datetime) -> bool:
        """True when aware ``at_utc`` lies in a window of this restriction (checking the one that began the day before,
        for windows that wrap midnight).
        """
        local_date = at_utc.astimezone(zone).replace(tzinfo=None)
        midnight = local_date.replace(hour=0, minute=0, second=0, microsecond=0)
        # A window that wraps midnight may have started the previous day.
        for day in (midnight - timedelta(days=1), midnight):
            w = self.windows(zone, day)
            if w and w[0] <= at_utc < w[1]:
                return True
        return False


@dataclass(frozen=True)
class Layer:
    """One rotation: ``members`` (Matrix user IDs) take turns every ``shift_length`` from local anchor ``start``.

    ``shift_length`` must be a whole number of hours (daily = 24h, weekly = 168h) so handoffs never run backwards
    around a daylight-saving change. ``active_from``/``active_until`` (aware) bound the layer; ``restrictions``
    (any-of) limit it to local time windows.
    """

    members: tuple[str, ...]
    shift_length: timedelta
    start: datetime
    time_zone: str = "UTC"
    restrictions: tuple[Restriction, ...] = ()
    active_from: datetime | None = None
    active_until: datetime | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.members:
            raise ScheduleError(f"layer {self.name!r}: members must not be empty")
        if self.shift_length < timedelta(hours=1) or self.shift_length % timedelta(hours=1):
            raise ScheduleError(f"layer {self.name!r}: shift_length must be a whole number of hours")
        if self.start.tzinfo is not None:
            raise ScheduleError(f"layer {self.name!r}: start is a local wall-clock time and must be naive")
        load_zone(self.time_zone, f"layer {self.name!r}: time_zone")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    def handoff_at(self, k: int) -> datetime:
        """UTC instant of the k-th handoff (k may be negative); shift k belongs to ``members[k % len]``."""
        return local_to_utc(self.start + k * self.shift_length, self.zone)

    def shift_index(self, at_utc: datetime) -> int:
        """Index k with ``handoff_at(k) <= at < handoff_at(k+1)``."""
        local = at_utc.astimezone(self.zone).replace(tzinfo=None)
        k = (local - self.start) // self.shift_length
        # The wall-clock guess is off by at most one shift around a DST change; bounded correction.
        for _ in range(4):
            if self.handoff_at(k) > at_utc:
                k -= 1
            elif self.handoff_at(k + 1) <= at_utc:
                k += 1
            else:
                break
        return k

    def is_active(self, at_utc: datetime) -> bool:
        """True when aware ``at_utc`` is within ``[active_from, active_until)`` and inside a restriction window
        (if any)."""
        if self.active_from is not None and at_utc < self.active_from:
            return False
        if self.active_until is not None and at_utc >= self.active_until:
            return False
        if self.restrictions and not any(r.contains(self.zone, at_utc) for r in self.restrictions):
            return False
        return True

    def on_call(self, at_utc: datetime) -> str | None:
        """Member on call at ``at_utc``, or None where the layer has a gap."""
        if not self.is_active(at_utc):
            return None
        return self.members[self.shift_index(at_utc) % len(self.members)]

    def boundaries(self, start: datetime, end: datetime) -> Iterable[datetime]:
        """Every instant in ``[start, end)`` at which this layer's answer may change (superset)."""
        k = self.shift_index(start)
        for _ in range(100000):
            t = self.handoff_at(k)
            if t >= end:
                break
            if t >= start:
                yield t
            k += 1
        for bound in (self.active_from, self.active_until):
            if bound is not None and start <= bound < end:
                yield bound
        if self.restrictions:
            zone = self.zone
            day = start.astimezone(zone).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
            day -= timedelta(days=1)
            last = end.astimezone(zone).replace(tzinfo=None)
            while day <= last:
                for r in self.restrictions:
                    w = r.windows(zone, day)
                    if w:
                        yield from (t for t in w if start <= t < end)
                day += timedelta(days=1)


@dataclass(frozen=True)
class Override:
    """``user`` is on call in ``[start, end)`` (aware datetimes), in place of ``replaces`` or of everybody."""

    user: str
    start: datetime
    end: datetime
    replaces: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.start, "override start")
        _require_aware(self.end, "override end")
        if self.end <= self.start:
            raise ScheduleError(f"override for {self.user}: end must be after start")

    def covers(self, at_utc: datetime) -> bool:
        """True when aware ``at_utc`` is in ``[start, end)``."""
        return self.start <= at_utc < self.end


@dataclass(frozen=True)
class Schedule:
    """A named on-call schedule: ``layers`` (later wins) and ``overrides`` (applied in list order)."""

    name: str
    layers: tuple[Layer, ...]
    overrides: tuple[Override, ...] = ()
    time_zone: str = "UTC"


@dataclass(frozen=True)
class Handoff:
    """The on-call set changes at ``at`` (UTC) from ``previous`` to ``current``."""

    at: datetime
    previous: tuple[str, ...]
    current: tuple[str, ...]


def who_is_on_call(schedule: Schedule, at: datetime) -> list[str]:
    """Matrix user IDs on call for ``schedule`` at the aware instant ``at``; empty list when nobody is.

    The topmost layer with someone on call gives the base person. Then each override covering ``at`` applies in
    order: with ``replaces`` it swaps that person for its ``user``; without, the overrides' users take over (several
    overlapping whole-schedule overrides are all on call). The list has no duplicates.
    Raises ValueError for a naive ``at``.
    """
    at_utc = _require_aware(at, "at")
    base: str | None = None
    for layer in reversed(schedule.layers):
        base = layer.on_call(at_utc)
        if base is not None:
            break
    people: list[str] = [base] if base is not None else []
    takeover: list[str] = []
    for ov in schedule.overrides:
        if not ov.covers(at_utc):
            continue
        if ov.replaces is None:
            takeover.append(ov.user)
        else:
            people = [ov.user if p == ov.replaces else p for p in people]
    if takeover:
        people = takeover
    return list(dict.fromkeys(people))


def next_handoffs(schedule: Schedule, start: datetime, end: datetime) -> list[Handoff]:
    """Every change of the on-call set in ``(start, end)``, in time order.

    ``start``/``end`` are aware; the list holds :class:`Handoff` with UTC instants. A rotation handoff from a person
    to the same person (one-member layer) is not a change and is left out.
    """
    s, e = _require_aware(start, "start"), _require_aware(end, "end")
    candidates: set[datetime] = set()
    for layer in schedule.layers:
        candidates.update(t for t in layer.boundaries(s, e) if t > s)
    for ov in schedule.overrides:
        candidates.update(t for t in (ov.start, ov.end) if s < t < e)
    result: list[Handoff] = []
    current = tuple(who_is_on_call(schedule, s))
    for t in sorted(candidates):
        now = tuple(who_is_on_call(schedule, t))
        if now != current:
            result.append(Handoff(at=t, previous=current, current=now))
            current = now
    return result


def on_call_segments(schedule: Schedule, start: datetime, end: datetime) -> list[tuple[datetime, datetime, tuple[str, ...]]]:
    """Split ``[start, end)`` into maximal ``(from, to, people)`` segments with a constant on-call set (UTC)."""
    s, e = _require_aware(start, "start"), _require_aware(end, "end")
    segments = []
    cursor, people = s, tuple(who_is_on_call(schedule, s))
    for h in next_handoffs(schedule, s, e):
        segments.append((cursor, h.at, people))
        cursor, people = h.at, h.current
    if cursor < e:
        segments.append((cursor, e, people))
    return [seg for seg in segments if seg[2]]


def to_ical(schedule: Schedule, start: datetime, end: datetime, prodid: str = "-//Tocsin//escalation//EN") -> bytes:
    """iCalendar (RFC 5545) export: one VEVENT per person per on-call segment in ``[start, end)``.

    Events are in UTC with a stable UID (schedule, person, start), so re-exporting updates calendars in place.
    Returns the ``text/calendar`` body as bytes.
    """
    from icalendar import Calendar, Event

    cal = Calendar()
    cal.add("prodid", prodid)
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"On call: {schedule.name}")
    stamp = _require_aware(start, "start")
    for seg_start, seg_end, people in on_call_segments(schedule, start, end):
        for person in people:
            ev = Event()
            uid = hashlib.sha256(f"{schedule.name}|{person}|{seg_start.isoformat()}".encode()).hexdigest()[:32]
            ev.add("uid", f"{uid}@tocsin")
            ev.add("dtstamp", stamp)
            ev.add("dtstart", seg_start)
            ev.add("dtend", seg_end)
            ev.add("summary", f"On call ({schedule.name}): {person}")
            cal.add_component(ev)
    return cal.to_ical()


# ---------------------------------------------------------------------------------------------------------------
# Loading from YAML-shaped mappings (config/escalation.yaml, key ``schedules``)

_ROTATION_LENGTHS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}


def _parse_local_datetime(value: Any, key: str) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ScheduleError(f"{key}: expected a date-time such as 2024-01-01T09:00, got {value!r}")


def _parse_time(value: Any, key: str) -> time:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 09:00 as a sexagesimal number of minutes.
        if 0 <= value < 24 * 60:
            return time(value // 60, value % 60)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value)
        except ValueError:
            pass
    raise ScheduleError(f"{key}: expected a local time such as 09:00, got {value!r}")


def _parse_weekdays(value: Any, key: str) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise ScheduleError(f"{key}: expected a list of weekdays such as [monday, friday]")
    days = set()
    for i, d in enumerate(value):
        name = str(d).lower()
        matches = [n for n, full in enumerate(_WEEKDAYS) if full == name or full[:3] == name]
        if not matches:
            raise ScheduleError(f"{key}[{i}]: unknown weekday {d!r}")
        days.add(matches[0])
    return frozenset(days)


def _aware(value: Any, zone: ZoneInfo, key: str) -> datetime:
    dt = _parse_local_datetime(value, key)
    if dt.tzinfo is None:
        return local_to_utc(dt, zone)
    return dt.astimezone(UTC)


def _expect_mapping(value: Any, key: str, error: type[ScheduleError] = ScheduleError) -> Mapping[str, Any]:
    """``value`` if it is a mapping; else ``error`` (a ScheduleError subclass) naming the config ``key``."""
    if not isinstance(value, Mapping):
        raise error(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def _check_keys(data: Mapping[str, Any], allowed: set[str], key: str,
                error: type[ScheduleError] = ScheduleError) -> None:
    """Raise ``error`` naming the first key of ``data`` outside ``allowed`` (config keys are never ignored)."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise error(f"{key}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")


def load_schedule(name: str, data: Any, key: str | None = None) -> Schedule:
    """Build a :class:`Schedule` from its YAML mapping (see config/escalation.yaml). Raises ScheduleError naming the key."""
    key = key or f"schedules.{name}"
    data = _expect_mapping(data, key)
    _check_keys(data, {"time_zone", "layers", "overrides"}, key)
    tz_name = data.get("time_zone", "UTC")
    zone = load_zone(tz_name, f"{key}.time_zone")
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ScheduleError(f"{key}.layers: expected a non-empty list of layers")
    layers = []
    for i, raw in enumerate(raw_layers):
        lkey = f"{key}.layers[{i}]"
        raw = _expect_mapping(raw, lkey)
        _check_keys(raw, {"name", "members", "rotation", "shift_length", "start", "time_zone", "restrictions",
                          "active_from", "active_until"}, lkey)
        members = raw.get("members")
        if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
            raise ScheduleError(f"{lkey}.members: expected a non-empty list of Matrix user IDs")
        for m, member in enumerate(members):
            if not _USER_ID_RE.match(member):
                raise ScheduleError(f"{lkey}.members[{m}]: expected a Matrix user ID such as @alice:example.org, "
                                    f"got {member!r}")
        rotation = raw.get("rotation", "weekly")
        if rotation in _ROTATION_LENGTHS:
            if "shift_length" in raw:
                raise ScheduleError(f"{lkey}.shift_length: only allowed with rotation: custom")
            length = _ROTATION_LENGTHS[rotation]
        elif rotation == "custom":
            length = parse_duration(raw.get("shift_length"), f"{lkey}.shift_length")
            if length % timedelta(hours=1):
                raise ScheduleError(f"{lkey}.shift_length: must be a whole number of hours")
        else:
            raise ScheduleError(f"{lkey}.rotation: expected daily, weekly or custom, got {rotation!r}")
        layer_tz = raw.get("time_zone", tz_name)
        layer_zone = load_zone(layer_tz, f"{lkey}.time_zone")
        if "start" not in raw:
            raise ScheduleError(f"{lkey}.start: required (local date-time of the first handoff, e.g. 2024-01-01T09:00)")
        start = _parse_local_datetime(raw["start"], f"{lkey}.start")
        if start.tzinfo is not None:
            start = start.astimezone(layer_zone).replace(tzinfo=None)
        restrictions = []
        for j, r in enumerate(raw.get("restrictions") or []):
            rkey = f"{lkey}.restrictions[{j}]"
            r = _expect_mapping(r, rkey)
            _check_keys(r, {"days", "start", "end"}, rkey)
            days = _parse_weekdays(r["days"], f"{rkey}.days") if "days" in r else frozenset(range(7))
            restrictions.append(Restriction(days, _parse_time(r.get("start", "00:00"), f"{rkey}.start"),
                                            _parse_time(r.get("end", "00:00"), f"{rkey}.end")))
        layers.append(Layer(
            members=tuple(members), shift_length=length, start=start, time_zone=layer_tz,
            restrictions=tuple(restrictions),
            active_from=_aware(raw["active_from"], layer_zone, f"{lkey}.active_from") if "active_from" in raw else None,
            active_until=_aware(raw["active_until"], layer_zone, f"{lkey}.active_until") if "active_until" in raw else None,
            name=str(raw.get("name", f"layer {i}")),
        ))
    overrides = []
    for i, raw in enumerate(data.get("overrides") or []):
        okey = f"{key}.overrides[{i}]"
        raw = _expect_mapping(raw, okey)
        _check_keys(raw, {"user", "start", "end", "replaces"}, okey)
        for required in ("user", "start", "end"):
            if required not in raw:
                raise ScheduleError(f"{okey}.{required}: required")
        ov_start, ov_end = _aware(raw["start"], zone, f"{okey}.start"), _aware(raw["end"], zone, f"{okey}.end")
        if ov_end <= ov_start:
            raise ScheduleError(f"{okey}.end: must be after start")
        overrides.append(Override(user=str(raw["user"]), start=ov_start, end=ov_end,
                                  replaces=str(raw["replaces"]) if raw.get("replaces") else None))
    return Schedule(name=name, layers=tuple(layers), overrides=tuple(overrides), time_zone=tz_name)


def load_schedules(data: Any, key: str = "schedules") -> dict[str, Schedule]:
    """Build every schedule of the ``schedules`` mapping (name -> definition)."""
    if data is None:
        return {}
    data = _expect_mapping(data, key)
    return {name: load_schedule(name, raw, f"{key}.{name}") for name, raw in data.items()}
