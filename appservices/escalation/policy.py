"""Escalation policies, priorities, people and rate limits loaded from YAML (``config/escalation.yaml``).

An escalation policy is an ordered list of **tiers**. Each tier names its targets (users, schedules, rooms), the
channels used per person in order (``matrix`` mention first, then e.g. ``sms`` and ``voice``), a ``read_timeout``
after which a person who has not read the page gets the next channel, an optional ``reminder`` interval for people
who read but did not acknowledge, and a ``timeout`` after which the incident escalates to the next tier. After the
last tier the policy starts again from the first, ``repeat`` more times.

``priorities`` maps an incident priority (``critical``, ``high``, ``warning``, ``info``) to a policy name, so
critical incidents page faster and by voice while warnings stay in chat during working hours.

Every bad value raises :class:`PolicyError` whose message starts with the dotted key, e.g.
``policies.default.tiers[1].timeout: expected a duration such as 15m``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import yaml

from appservices.escalation.schedule import (
    Schedule,
    ScheduleError,
    _check_keys,
    _expect_mapping,
    _parse_time,
    _parse_weekdays,
    load_schedules,
    load_zone,
    parse_duration,
)

#: Channel names a tier may use, in the vocabulary of the channels package.
CHANNEL_NAMES = ("matrix", "email", "sms", "voice")
#: Priorities from most to least urgent; a rule may only *raise* along this order.
PRIORITIES = ("critical", "high", "warning", "info")
#: Channels that ring a phone: rate-limited per person and silenced in quiet hours for non-critical incidents.
PHONE_CHANNELS = frozenset({"sms", "voice"})


class PolicyError(ScheduleError):
    """An escalation config value is wrong; the message names the key."""


def priority_rank(priority: str) -> int:
    """0 for ``critical`` ... 3 for ``info``; unknown priorities rank below ``info``."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


@dataclass(frozen=True)
class Target:
    """Who a tier pages: ``kind`` is ``user`` (a Matrix user ID), ``schedule`` (its on-call people) or ``room``."""

    kind: str
    value: str


@dataclass(frozen=True)
class Tier:
    """One escalation step. Durations are timedeltas; ``channels`` is the per-person order of channels."""

    targets: tuple[Target, ...]
    timeout: timedelta
    channels: tuple[str, ...] = ("matrix",)
    read_timeout: timedelta = timedelta(minutes=5)
    reminder: timedelta | None = None


@dataclass(frozen=True)
class Rule:
    """"The same alert fired ``count`` times within ``within``" -> raise priority to ``raise_priority`` and/or jump to
    tier ``jump_to_tier`` (0-based)."""

    name: str
    count: int
    within: timedelta
    raise_priority: str | None = None
    jump_to_tier: int | None = None


@dataclass(frozen=True)
class WorkingHours:
    """Local weekday window in which a policy may page; outside it the first page waits for the next window."""

    time_zone: str
    days: frozenset[int]
    start: time
    end: time

    def contains(self, at: datetime) -> bool:
        """True when aware datetime ``at`` falls on one of ``days`` (0 = Monday) within ``[start, end)`` local time."""
        local = at.astimezone(ZoneInfo(self.time_zone))
        return local.weekday() in self.days and self.start <= local.time().replace(tzinfo=None) < self.end

    def next_start(self, at: datetime) -> datetime:
        """``at`` itself when inside the window, else the next window start (aware, within 8 days)."""
        if self.contains(at):
            return at
        zone = ZoneInfo(self.time_zone)
        local = at.astimezone(zone).replace(tzinfo=None)
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            candidate = datetime.combine(day, self.start).replace(tzinfo=zone, fold=0)
            if candidate > at:
                return candidate
        return at


@dataclass(frozen=True)
class EscalationPolicy:
    """A named policy: ``tiers`` in order, ``repeat`` extra cycles, optional ``ack_timeout`` (an acknowledged
    incident that is not resolved within it pages again), ``rules``, ``working_hours`` and ``last_tier_webhook``
    (URL called once per cycle when the last tier is reached)."""

    name: str
    tiers: tuple[Tier, ...]
    repeat: int = 0
    ack_timeout: timedelta | None = None
    rules: tuple[Rule, ...] = ()
    working_hours: WorkingHours | None = None
    last_tier_webhook: str | None = None


@dataclass(frozen=True)
class Person:
    """Contact details and preferences of one Matrix user."""

    user_id: str
    email: str | None = None
    phone: str | None = None
    time_zone: str = "UTC"
    quiet_hours: tuple[time, time] | None = None

    def in_quiet_hours(self, at: datetime) -> bool:
        """True when aware ``at`` is inside the person's quiet hours in their time zone (a window may wrap midnight)."""
        if self.quiet_hours is None:
            return False
        start, end = self.quiet_hours
        now = at.astimezone(ZoneInfo(self.time_zone)).time().replace(tzinfo=None)
        if start <= end:
            return start <= now < end
        return now >= start or now < end


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` pages per person on one channel within ``per``."""

    count: int
    per: timedelta


@dataclass
class PolicySet:
    """Every policy plus the priority mapping, people and per-channel rate limits."""

    policies: dict[str, EscalationPolicy]
    priorities: dict[str, str] = field(default_factory=dict)
    default_policy: str = "default"
    people: dict[str, Person] = field(default_factory=dict)
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)

    def select(self, priority: str) -> EscalationPolicy:
        """Policy for an incident ``priority``; falls back to ``default_policy``. Raises KeyError if neither exists."""
        name = self.priorities.get(priority, self.default_policy)
        return self.policies[name]

    def person(self, user_id: str) -> Person:
        """The configured :class:`Person` for ``user_id``, or one with no contact details and UTC."""
        return self.people.get(user_id) or Person(user_id=user_id)


@dataclass
class EscalationConfig:
    """Everything in ``escalation.yaml``: policies, schedules and the raw ``channels`` settings."""

    policies: PolicySet
    schedules: dict[str, Schedule]
    channels: dict[str, Any]


# ---------------------------------------------------------------------------------------------------------------


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    return _expect_mapping(value, key, PolicyError)


def _keys(data: Mapping[str, Any], allowed: set[str], key: str) -> None:
    _check_keys(data, allowed, key, PolicyError)


def _duration(value: Any, key: str) -> timedelta:
    try:
        return parse_duration(value, key)
    except ScheduleError as e:
        raise PolicyError(str(e)) from None


def _int(value: Any, key: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PolicyError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _load_tier(data: Any, key: str) -> Tier:
    data = _mapping(data, key)
    _keys(data, {"targets", "timeout", "channels", "read_timeout", "reminder"}, key)
    raw_targets = data.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise PolicyError(f"{key}.targets: expected a non-empty list of {{user|schedule|room: ...}}")
    targets = []
    for i, t in enumerate(raw_targets):
        tkey = f"{key}.targets[{i}]"
        t = _mapping(t, tkey)
        if len(t) != 1 or next(iter(t)) not in ("user", "schedule", "room"):
            raise PolicyError(f"{tkey}: expected exactly one of user, schedule or room")
        kind, value = next(iter(t.items()))
        if not isinstance(value, str) or not value:
            raise PolicyError(f"{tkey}.{kind}: expected a non-empty string")
        if kind == "user" and not value.startswith("@"):
            raise PolicyError(f"{tkey}.user: expected a Matrix user ID such as @alice:example.org, got {value!r}")
        if kind == "room" and not value.startswith("!"):
            raise PolicyError(f"{tkey}.room: expected a room ID such as !abc:example.org, got {value!r}")
        targets.append(Target(kind, value))
    if "timeout" not in data:
        raise PolicyError(f"{key}.timeout: required (time before escalating to the next tier, e.g. 15m)")
    channels = data.get("channels", ["matrix"])
    if not isinstance(channels, list) or not channels:
        raise PolicyError(f"{key}.channels: expected a non-empty list from {', '.join(CHANNEL_NAMES)}")
    for i, c in enumerate(channels):
        if c not in CHANNEL_NAMES:
            raise PolicyError(f"{key}.channels[{i}]: unknown channel {c!r} (known: {', '.join(CHANNEL_NAMES)})")
    if len(set(channels)) != len(channels):
        raise PolicyError(f"{key}.channels: lists a channel twice")
    return Tier(
        targets=tuple(targets),
        timeout=_duration(data["timeout"], f"{key}.timeout"),
        channels=tuple(channels),
        read_timeout=_duration(data.get("read_timeout", "5m"), f"{key}.read_timeout"),
        reminder=_duration(data["reminder"], f"{key}.reminder") if data.get("reminder") is not None else None,
    )


def _load_policy(name: str, data: Any, key: str, schedules: Mapping[str, Schedule] | None) -> EscalationPolicy:
    data = _mapping(data, key)
    _keys(data, {"tiers", "repeat", "ack_timeout", "rules", "working_hours", "last_tier_webhook"}, key)
    raw_tiers = data.get("tiers")
    if not isinstance(raw_tiers, list) or not raw_tiers:
        raise PolicyError(f"{key}.tiers: expected a non-empty list of tiers")
    tiers = tuple(_load_tier(t, f"{key}.tiers[{i}]") for i, t in enumerate(raw_tiers))
    if schedules is not None:
        for i, tier in enumerate(tiers):
            for j, t in enumerate(tier.targets):
                if t.kind == "schedule" and t.value not in schedules:
                    raise PolicyError(f"{key}.tiers[{i}].targets[{j}].schedule: no schedule named {t.value!r}")
    rules = []
    for i, r in enumerate(data.get("rules") or []):
        rkey = f"{key}.rules[{i}]"
        r = _mapping(r, rkey)
        _keys(r, {"name", "count", "within", "raise_priority", "jump_to_tier"}, rkey)
        for required in ("count", "within"):
            if required not in r:
                raise PolicyError(f"{rkey}.{required}: required")
        raise_to = r.get("raise_priority")
        if raise_to is not None and raise_to not in PRIORITIES:
            raise PolicyError(f"{rkey}.raise_priority: expected one of {', '.join(PRIORITIES)}, got {raise_to!r}")
        jump = r.get("jump_to_tier")
        if jump is not None:
            jump = _int(jump, f"{rkey}.jump_to_tier", 1) - 1
            if jump >= len(tiers):
                raise PolicyError(f"{rkey}.jump_to_tier: policy has only {len(tiers)} tiers")
        if raise_to is None and jump is None:
            raise PolicyError(f"{rkey}: needs raise_priority or jump_to_tier")
        rules.append(Rule(name=str(r.get("name", f"rule {i}")), count=_int(r["count"], f"{rkey}.count", 2),
                          within=_duration(r["within"], f"{rkey}.within"), raise_priority=raise_to,
                          jump_to_tier=jump))
    wh = None
    if data.get("working_hours") is not None:
        wkey = f"{key}.working_hours"
        w = _mapping(data["working_hours"], wkey)
        _keys(w, {"time_zone", "days", "start", "end"}, wkey)
        tz = w.get("time_zone", "UTC")
        load_zone(tz, f"{wkey}.time_zone")
        try:
            days = _parse_weekdays(w.get("days", ["mon", "tue", "wed", "thu", "fri"]), f"{wkey}.days")
            start = _parse_time(w.get("start", "09:00"), f"{wkey}.start")
            end = _parse_time(w.get("end", "17:00"), f"{wkey}.end")
        except ScheduleError as e:
            raise PolicyError(str(e)) from None
        if end <= start:
            raise PolicyError(f"{wkey}.end: must be after start")
        wh = WorkingHours(tz, days, start, end)
    hook = data.get("last_tier_webhook")
    if hook is not None and (not isinstance(hook, str) or not hook.startswith(("http://", "https://"))):
        raise PolicyError(f"{key}.last_tier_webhook: expected an http(s) URL, got {hook!r}")
    return EscalationPolicy(
        name=name, tiers=tiers, repeat=_int(data.get("repeat", 0), f"{key}.repeat"),
        ack_timeout=_duration(data["ack_timeout"], f"{key}.ack_timeout") if data.get("ack_timeout") else None,
        rules=tuple(rules), working_hours=wh, last_tier_webhook=hook,
    )


def load_policy_set(data: Any, schedules: Mapping[str, Schedule] | None = None) -> PolicySet:
    """Build a :class:`PolicySet` from the top-level YAML mapping (keys ``policies``, ``priorities``,
    ``default_policy``, ``people``, ``rate_limits``). Schedule targets are checked against ``schedules`` when given.
    Raises :class:`PolicyError` naming the key."""
    data = _mapping(data, "escalation")
    raw = _mapping(data.get("policies"), "policies")
    if not raw:
        raise PolicyError("policies: define at least one policy")
    policies = {name: _load_policy(name, p, f"policies.{name}", schedules) for name, p in raw.items()}
    default = data.get("default_policy", "default")
    if default not in policies:
        raise PolicyError(f"default_policy: no policy named {default!r}")
    priorities = dict(_mapping(data.get("priorities") or {}, "priorities"))
    for prio, name in priorities.items():
        if prio not in PRIORITIES:
            raise PolicyError(f"priorities.{prio}: unknown priority (known: {', '.join(PRIORITIES)})")
        if name not in policies:
            raise PolicyError(f"priorities.{prio}: no policy named {name!r}")
    people = {}
    for user_id, p in _mapping(data.get("people") or {}, "people").items():
        pkey = f"people.{user_id}"
        p = _mapping(p or {}, pkey)
        _keys(p, {"email", "phone", "time_zone", "quiet_hours"}, pkey)
        tz = p.get("time_zone", "UTC")
        load_zone(tz, f"{pkey}.time_zone")
        quiet = None
        if p.get("quiet_hours") is not None:
            q = _mapping(p["quiet_hours"], f"{pkey}.quiet_hours")
            try:
                quiet = (_parse_time(q.get("start"), f"{pkey}.quiet_hours.start"),
                         _parse_time(q.get("end"), f"{pkey}.quiet_hours.end"))
            except ScheduleError as e:
                raise PolicyError(str(e)) from None
        phone = p.get("phone")
        if phone is not None and not (isinstance(phone, str) and phone.startswith("+") and phone[1:].isdigit()):
            raise PolicyError(f"{pkey}.phone: expected an E.164 number such as +4915112345678, got {phone!r}")
        email = p.get("email")
        if email is not None and not (isinstance(email, str) and "@" in email):
            raise PolicyError(f"{pkey}.email: expected an email address, got {email!r}")
        people[user_id] = Person(user_id=user_id, email=email, phone=phone, time_zone=tz, quiet_hours=quiet)
    limits = {}
    for channel, lim in _mapping(data.get("rate_limits") or {}, "rate_limits").items():
        lkey = f"rate_limits.{channel}"
        if channel not in CHANNEL_NAMES:
            raise PolicyError(f"{lkey}: unknown channel (known: {', '.join(CHANNEL_NAMES)})")
        lim = _mapping(lim, lkey)
        _keys(lim, {"count", "per"}, lkey)
        limits[channel] = RateLimit(count=_int(lim.get("count"), f"{lkey}.count", 1),
                                    per=_duration(lim.get("per"), f"{lkey}.per"))
    return PolicySet(policies=policies, priorities=priorities, default_policy=default, people=people,
                     rate_limits=limits)


def load_escalation_config(source: str | Path | Mapping[str, Any]) -> EscalationConfig:
    """Load ``escalation.yaml`` (a path) or an already-parsed mapping. Raises PolicyError/ScheduleError naming the key."""
    if isinstance(source, Mapping):
        data = source
    else:
        with open(source, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    data = _mapping(data, "escalation.yaml")
    _keys(data, {"policies", "priorities", "default_policy", "people", "rate_limits", "schedules", "channels"},
          "escalation.yaml")
    schedules = load_schedules(data.get("schedules"))
    policies = load_policy_set(data, schedules)
    channels = dict(_mapping(data.get("channels") or {}, "channels"))
    return EscalationConfig(policies=policies, schedules=schedules, channels=channels)
