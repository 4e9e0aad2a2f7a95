"""The escalation state machine.

Inputs (called by the alert bridge): incident opened / acknowledged / unacknowledged / resolved, and read receipts.
Outputs: pages through channels, a webhook when the last tier is reached, and :meth:`EscalationEngine.status`.

Per incident: ``open`` -> (tier 0 paged; each ``timeout`` the next tier; after the last tier, ``repeat`` more
cycles) -> ``acknowledged`` (all paging stops; ``ack_timeout`` re-opens it) -> ``resolved``. Unacknowledging
restarts at tier 0.

Per paged person (read-aware delivery): the first channel of the tier is used; after ``read_timeout`` a person who
has not read gets the next channel (matrix -> sms -> voice); a person who read but did not acknowledge gets a
reminder every ``reminder`` (default ``read_timeout``).

Every state change runs in one store transaction that also claims the timer that caused it, records the pages and
inserts the follow-up timers; the sends happen after the commit. Transactions run through
:meth:`EscalationStore.run` (on the store's database thread once the store is started, so the reactor never waits
for the disk); every public input therefore returns a Deferred that fires once the change is committed and its
pages are handed to their channels. Timers are re-armed from the store by :meth:`EscalationEngine.start`, so after
a restart pending escalations fire at their time, once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python import log

from appservices.channels.base import Channel, DeliveryResult, PageMessage, Recipient
from appservices.escalation import metrics
from appservices.escalation.policy import PHONE_CHANNELS, EscalationPolicy, PolicySet, Tier, priority_rank
from appservices.escalation.schedule import Schedule, who_is_on_call
from appservices.escalation.store import EscalationStore, TimerRow, Txn

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
#: Timers that belong to the running escalation (cancelled on ack, resolve and tier changes).
_PAGING_TIMERS = ("tier", "read_check")
#: A page whose channel failed for a reason that may pass (homeserver or provider down, 5xx, timeout) is tried
#: again this many times, after PAGE_RETRY_BASE_S * 2**n seconds (at most PAGE_RETRY_MAX_S), while the incident
#: is open: about an hour in all (30 s, 1, 2, 4, 8 min, then 15 min three times). Durable timers: a restart keeps the schedule.
PAGE_RETRIES = 8
PAGE_RETRY_BASE_S = 30.0
PAGE_RETRY_MAX_S = 900.0


@dataclass
class Notification:
    """One page to one person: ``channel``, ``ts_ms`` (ms since epoch), ``status`` and why (``purpose``)."""

    channel: str
    ts_ms: int
    status: str
    purpose: str
    tier: int


@dataclass
class PersonStatus:
    """What one person got and did: notifications, first read (ms) and acknowledgement (ms) or None."""

    user_id: str
    notifications: list[Notification] = field(default_factory=list)
    read_ts: int | None = None
    acked_ts: int | None = None


@dataclass
class IncidentStatus:
    """Answer to ``!status``: the incident's state and, per person, notified by what/when, read, acked."""

    incident_id: str
    state: str
    priority: str
    policy: str
    tier: int
    cycle: int
    opened_ts: int
    acked_by: str | None
    people: list[PersonStatus]

    def render(self) -> str:
        """Plain text for a chat reply; times are UTC ISO-8601."""

        def t(ms: int | None) -> str:
            return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ") if ms else "-"

        lines = [f"Incident {self.incident_id}: {self.state}, priority {self.priority}, policy {self.policy},"
                 f" tier {self.tier + 1}, cycle {self.cycle + 1}"]
        for p in self.people:
            sent = ", ".join(f"{n.channel} {t(n.ts_ms)} ({n.status})" for n in p.notifications) or "nothing"
            lines.append(f"- {p.user_id}: notified {sent}; read {t(p.read_ts)}; acked {t(p.acked_ts)}")
        return "\n".join(lines)


@dataclass
class _Effects:
    """What a committed transaction asks the reactor to do."""

    arm: list[TimerRow] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    # (page_id, channel, to, msg) or, for a retry, (page_id, channel, to, msg, retries so far)
    sends: list[tuple[Any, ...]] = field(default_factory=list)
    escalated_tiers: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # channels of pages recorded without sending


class EscalationEngine:
    """Drive escalations for incidents.

    ``clock``: an ``IReactorTime`` (the reactor, or ``task.Clock`` in tests). ``store``: the persistent timer and
    state store. ``policies``/``schedules``: loaded config. ``channels``: channel name (``matrix``, ``email``,
    ``sms``, ``voice``) -> :class:`Channel`. ``webhook``: channel used for ``last_tier_webhook`` calls.
    Call :meth:`start` once before use (re-arms persisted timers).
    """

    def __init__(self, clock: IReactorTime, store: EscalationStore, policies: PolicySet,
                 schedules: Mapping[str, Schedule], channels: Mapping[str, Channel],
                 webhook: Channel | None = None, new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.clock = clock
        self.store = store
        self.policies = policies
        self.schedules = dict(schedules)
        self.channels = dict(channels)
        self.webhook = webhook
        self._new_id = new_id
        self._calls: dict[str, IDelayedCall] = {}
        self._started = False

    # ---- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> "defer.Deferred[None]":
        """Re-arm every pending timer from the store (overdue ones fire at once) and resend pages queued before a
        crash. Fires when that is done."""
        self._started = True
        effects = _Effects()

        def resume(txn: Txn) -> None:
            effects.arm.extend(self.store.pending_timers_in(txn))
            for page in self.store.queued_pages(txn):
                inc = self.store.get_incident(txn, page["incident_id"])
                if inc is None:
                    continue
                to = self._recipient(page["user_id"], page["channel"], inc)
                effects.sends.append((page["page_id"], page["channel"], to,
                                      self._message(inc, page["tier_index"], page["purpose"], page["page_id"])))

        d = self.store.run(resume)
        d.addCallback(lambda _: self._apply(effects))
        return d

    def stop(self) -> None:
        """Cancel in-memory timers (their rows stay pending for the next start)."""
        for call in self._calls.values():
            if call.active():
                call.cancel()
        self._calls.clear()
        self._started = False

    # ---- inputs --------------------------------------------------------------------------------------------------

    def incident_opened(self, incident_id: str, *, priority: str, summary: str, room_id: str | None = None,
                        alert_event_id: str | None = None, route: str | None = None,
                        alert_key: str | None = None, policy_name: str | None = None) -> "defer.Deferred[None]":
        """An incident opened (or the same alert fired again).

        A new or resolved incident starts escalating at tier 1 of ``policy_name`` (the route's policy) when that
        names a configured policy, else of the policy for ``priority`` (``priorities``, then ``default_policy``).
        Every call counts as one firing of ``alert_key`` (default: ``incident_id``) for the policy's "N times
        within W" rules. Fires when the resulting pages were handed to their channels.
        """
        key = alert_key or incident_id

        def txn_fn(txn: Txn, fx: _Effects) -> None:
            now = self._now_ms()
            inc = self.store.get_incident(txn, incident_id)
            if inc is None or inc["state"] == RESOLVED:
                if policy_name is not None and policy_name in self.policies.policies:
                    policy = self.policies.policies[policy_name]
                else:
                    policy = self.policies.select(priority)
                inc = {"incident_id": incident_id, "route": route, "priority": priority, "policy_name": policy.name,
                       "room_id": room_id, "alert_event_id": alert_event_id, "summary": summary, "alert_key": key,
                       "state": OPEN, "tier_index": 0, "cycle": 0, "opened_ts": now, "acked_ts": None,
                       "acked_by": None, "resolved_ts": None, "last_tier_hook_cycle": -1}
                txn.execute("DELETE FROM escalation_recipients WHERE incident_id = ?", (incident_id,))
                self._start_tier(txn, fx, inc, 0, 0)
            self._apply_rules(txn, fx, inc, key)
            self.store.upsert_incident(txn, inc)

        return self._run(txn_fn)

    def alert_posted(self, incident_id: str, room_id: str, event_id: str) -> "defer.Deferred[None]":
        """The incident's alert message is in ``room_id`` as ``event_id``, after escalation had already started
        without it (the homeserver was unreachable when the incident opened). Later pages link to it, and a read
        receipt on it counts as reading the incident."""

        def txn_fn(txn: Txn, fx: _Effects) -> None:
            inc = self.store.get_incident(txn, incident_id)
            if inc is None or inc["alert_event_id"] is not None:
                return
            inc.update(alert_event_id=event_id, room_id=inc["room_id"] or room_id)
            self.store.upsert_incident(txn, inc)

        return self._run(txn_fn)

    def incident_acknowledged(self, incident_id: str, user_id: str) -> "defer.Deferred[None]":
        """``user_id`` acknowledged: paging stops. With ``ack_timeout`` it re-pages if not resolved in time."""

        def txn_fn(txn: Txn, fx: _Effects) -> None:
            now = self._now_ms()
            inc = self.store.get_incident(txn, incident_id)
            if inc is None or inc["state"] != OPEN:
                return
            inc.update(state=ACKNOWLEDGED, acked_ts=now, acked_by=user_id)
            fx.cancel += self.store.cancel_timers(txn, incident_id)
            self.store.touch_recipient(txn, incident_id, user_id, now)
            self.store.set_read(txn, incident_id, user_id, now)
            self.store.set_acked(txn, incident_id, user_id, now)
            metrics.TIME_TO_ACKNOWLEDGE.observe(max(0, now - inc["opened_ts"]) / 1000)
            policy = self._policy(inc)
            if policy.ack_timeout is not None:
                self._add_timer(txn, fx, incident_id, "ack_timeout", now + _ms(policy.ack_timeout), {})
            self.store.upsert_incident(txn, inc)

        return self._run(txn_fn)

    def incident_unacknowledged(self, incident_id: str, user_id: str | None = None) -> "defer.Deferred[None]":
        """The acknowledgement was withdrawn: escalation restarts at tier 1."""

        def txn_fn(txn: Txn, fx: _Effects) -> None:
            inc = self.store.get_incident(txn, incident_id)
            if inc is None or inc["state"] != ACKNOWLEDGED:
                return
            self._reopen(txn, fx, inc)
            self.store.upsert_incident(txn, inc)

        return self._run(txn_fn)

    def incident_resolved(self, incident_id: str) -> "defer.Deferred[None]":
        """The incident is resolved: every pending timer is cancelled; nothing pages again."""

        def txn_fn(txn: Txn, fx: _Effects) -> None:
            inc = self.store.get_incident(txn, incident_id)
            if inc is None or inc["state"] == RESOLVED:
                return
            inc.update(state=RESOLVED, resolved_ts=self._now_ms())
            fx.cancel += self.store.cancel_timers(txn, incident_id)
            self.store.upsert_incident(txn, inc)

        return self._run(txn_fn)

    def read_receipt(self, user_id: str, room_id: str, event_id: str,
                     ts_ms: int | None = None) -> "defer.Deferred[list[str]]":
        """``user_id`` sent an ``m.read`` / ``m.read.private`` receipt for ``event_id`` in ``room_id`` at ``ts_ms``
        (spec: Client-Server API, "Receipts"). Counts as reading every incident of ``room_id`` whose alert event or
        Matrix page is ``event_id`` (a receipt sent in another room names nothing there). Fires with the incident
        IDs newly marked read."""
        ts = self._now_ms() if ts_ms is None else ts_ms

        def txn_fn(txn: Txn) -> list[str]:
            marked = []
            for incident_id in self.store.incidents_for_event(txn, event_id):
                incident = self.store.get_incident(txn, incident_id)
                if incident is None or incident["room_id"] != room_id:
                    continue
                if self._mark_read(txn, incident_id, user_id, ts):
                    marked.append(incident_id)
            return marked

        return self.store.run(txn_fn)

    def mark_read(self, incident_id: str, user_id: str, ts_ms: int | None = None) -> "defer.Deferred[bool]":
        """Mark an incident read by ``user_id`` directly (for a bridge that resolved receipt ordering itself).
        Fires with True if this was the person's first read."""
        ts = self._now_ms() if ts_ms is None else ts_ms
        return self.store.run(lambda txn: self._mark_read(txn, incident_id, user_id, ts))

    def status(self, incident_id: str) -> "defer.Deferred[IncidentStatus | None]":
        """Per-person notification, read and acknowledgement state of an incident (fires with None if unknown)."""

        def txn_fn(txn: Txn) -> IncidentStatus | None:
            inc = self.store.get_incident(txn, incident_id)
            if inc is None:
                return None
            people: dict[str, PersonStatus] = {}
            for uid, r in self.store.recipients(txn, incident_id).items():
                people[uid] = PersonStatus(uid, read_ts=r["read_ts"], acked_ts=r["acked_ts"])
            for p in self.store.pages_for(txn, incident_id):
                person = people.setdefault(p["user_id"], PersonStatus(p["user_id"]))
                person.notifications.append(Notification(p["channel"], p["created_ts"], p["status"], p["purpose"],
                                                         p["tier_index"]))
            return IncidentStatus(incident_id, inc["state"], inc["priority"], inc["policy_name"], inc["tier_index"],
                                  inc["cycle"], inc["opened_ts"], inc["acked_by"], sorted(people.values(),
                                                                                          key=lambda p: p.user_id))

        return self.store.run(txn_fn)

    # ---- timers --------------------------------------------------------------------------------------------------

    def _arm(self, timer: TimerRow) -> None:
        delay = max(0.0, (timer.due_ts - self._now_ms()) / 1000)
        old = self._calls.pop(timer.timer_id, None)
        if old is not None and old.active():
            old.cancel()
        self._calls[timer.timer_id] = self.clock.callLater(delay, self._fire, timer.timer_id)

    def _fire(self, timer_id: str) -> None:
        self._calls.pop(timer_id, None)

        def txn_fn(txn: Txn, fx: _Effects) -> None:
            timer = self.store.claim_timer(txn, timer_id, self._now_ms())
            if timer is None:
                return  # already fired elsewhere, or cancelled
            inc = self.store.get_incident(txn, timer.incident_id)
            if inc is None:
                return
            handler = {"tier": self._on_tier_timer, "read_check": self._on_read_check,
                       "ack_timeout": self._on_ack_timeout, "page_retry": self._on_page_retry}[timer.kind]
            handler(txn, fx, inc, timer.payload)
            self.store.upsert_incident(txn, inc)

        d = self._run(txn_fn)
        d.addErrback(lambda f: log.err(f, f"escalation timer {timer_id} failed"))

    def _on_tier_timer(self, txn: Txn, fx: _Effects, inc: dict[str, Any], payload: dict[str, Any]) -> None:
        if inc["state"] != OPEN:
            return
        policy = self._policy(inc)
        tier, cycle = payload["tier"], payload["cycle"]
        if tier >= len(policy.tiers):
            if cycle >= policy.repeat:
                # Exhausted: stop reminders too, so nothing loops forever on an abandoned incident.
                fx.cancel += self.store.cancel_timers(txn, inc["incident_id"], _PAGING_TIMERS)
                return
            tier, cycle = 0, cycle + 1
        self._start_tier(txn, fx, inc, tier, cycle)

    def _on_read_check(self, txn: Txn, fx: _Effects, inc: dict[str, Any], payload: dict[str, Any]) -> None:
        if inc["state"] != OPEN or inc["tier_index"] != payload["tier"]:
            return
        user, index = payload["user"], payload["channel_index"]
        tier = self._policy(inc).tiers[payload["tier"]]
        state = self.store.recipients(txn, inc["incident_id"]).get(user, {})
        now = self._now_ms()
        if state.get("acked_ts"):
            return
        if state.get("read_ts"):
            self._page(txn, fx, inc, user, tier.channels[0], payload["tier"], "reminder")
            interval = tier.reminder or tier.read_timeout
            self._add_timer(txn, fx, inc["incident_id"], "read_check", now + _ms(interval), payload)
            return
        if index + 1 < len(tier.channels):
            self._page(txn, fx, inc, user, tier.channels[index + 1], payload["tier"], "page")
            self._add_timer(txn, fx, inc["incident_id"], "read_check", now + _ms(tier.read_timeout),
                            dict(payload, channel_index=index + 1))

    def _on_ack_timeout(self, txn: Txn, fx: _Effects, inc: dict[str, Any], payload: dict[str, Any]) -> None:
        if inc["state"] == ACKNOWLEDGED:
            self._reopen(txn, fx, inc)

    # ---- rules ---------------------------------------------------------------------------------------------------

    def _reopen(self, txn: Txn, fx: _Effects, inc: dict[str, Any]) -> None:
        fx.cancel += self.store.cancel_timers(txn, inc["incident_id"])
        inc.update(state=OPEN, acked_ts=None, acked_by=None)
        txn.execute("UPDATE escalation_recipients SET acked_ts = NULL, read_ts = NULL WHERE incident_id = ?",
                    (inc["incident_id"],))
        self._start_tier(txn, fx, inc, 0, 0)

    def _apply_rules(self, txn: Txn, fx: _Effects, inc: dict[str, Any], key: str) -> None:
        now = self._now_ms()
        txn.execute("INSERT INTO escalation_firings (alert_key, fired_ts) VALUES (?, ?)", (key, now))
        for rule in self._policy(inc).rules:
            row = txn.fetchone("SELECT COUNT(*) FROM escalation_firings WHERE alert_key = ? AND fired_ts > ?",
                               (key, now - _ms(rule.within)))
            if row is None or int(row[0]) < rule.count:
                continue
            if rule.raise_priority and priority_rank(rule.raise_priority) < priority_rank(inc["priority"]):
                inc["priority"] = rule.raise_priority
                inc["policy_name"] = self.policies.select(rule.raise_priority).name
                if inc["state"] == OPEN:
                    fx.cancel += self.store.cancel_timers(txn, inc["incident_id"], _PAGING_TIMERS)
                    self._start_tier(txn, fx, inc, 0, inc["cycle"])
                return  # the new policy's rules apply from the next firing on
            if rule.jump_to_tier is not None and inc["state"] == OPEN and inc["tier_index"] < rule.jump_to_tier:
                fx.cancel += self.store.cancel_timers(txn, inc["incident_id"], _PAGING_TIMERS)
                self._start_tier(txn, fx, inc, rule.jump_to_tier, inc["cycle"])

    # ---- paging --------------------------------------------------------------------------------------------------

    def _start_tier(self, txn: Txn, fx: _Effects, inc: dict[str, Any], tier_index: int, cycle: int) -> None:
        policy = self._policy(inc)
        now = self._now_ms()
        wh = policy.working_hours
        if wh is not None and not wh.contains(self._now_dt()):
            # Outside working hours this policy waits for the next window instead of paging.
            due = int(wh.next_start(self._now_dt()).timestamp() * 1000)
            self._add_timer(txn, fx, inc["incident_id"], "tier", due, {"tier": tier_index, "cycle": cycle})
            return
        tier = policy.tiers[tier_index]
        inc.update(tier_index=tier_index, cycle=cycle)
        fx.escalated_tiers.append(tier_index)
        users, rooms = self._resolve_targets(tier)
        for user in users:
            self._page(txn, fx, inc, user, tier.channels[0], tier_index, "page")
            self._add_timer(txn, fx, inc["incident_id"], "read_check", now + _ms(tier.read_timeout),
                            {"user": user, "tier": tier_index, "channel_index": 0, "cycle": cycle})
        for room in rooms:
            self._page(txn, fx, inc, room, "matrix", tier_index, "page", room_target=True)
        self._add_timer(txn, fx, inc["incident_id"], "tier", now + _ms(tier.timeout),
                        {"tier": tier_index + 1, "cycle": cycle})
        if tier_index == len(policy.tiers) - 1 and policy.last_tier_webhook and inc["last_tier_hook_cycle"] < cycle:
            inc["last_tier_hook_cycle"] = cycle
            page_id = self._new_id()
            self.store.insert_page(txn, page_id, inc["incident_id"], policy.last_tier_webhook, "webhook", tier_index,
                                   "last_tier", now)
            fx.sends.append((page_id, "webhook", Recipient(user_id=policy.last_tier_webhook,
                                                           url=policy.last_tier_webhook),
                             self._message(inc, tier_index, "last_tier", page_id)))

    def _resolve_targets(self, tier: Tier) -> tuple[list[str], list[str]]:
        users: list[str] = []
        rooms: list[str] = []
        at = self._now_dt()
        for t in tier.targets:
            if t.kind == "user":
                users.append(t.value)
            elif t.kind == "schedule":
                schedule = self.schedules.get(t.value)
                if schedule is None:
                    log.msg(f"escalation: unknown schedule {t.value!r}; nobody paged for it")
                    continue
                users.extend(who_is_on_call(schedule, at))
            else:
                rooms.append(t.value)
        return list(dict.fromkeys(users)), list(dict.fromkeys(rooms))

    def _page(self, txn: Txn, fx: _Effects, inc: dict[str, Any], user: str, channel: str, tier_index: int,
              purpose: str, room_target: bool = False) -> None:
        now = self._now_ms()
        person = self.policies.person(user)
        status = "queued"
        if channel in PHONE_CHANNELS and inc["priority"] != "critical" and person.in_quiet_hours(self._now_dt()):
            status = "suppressed_quiet_hours"
        elif channel in self.policies.rate_limits:
            limit = self.policies.rate_limits[channel]
            if self.store.count_recent_pages(txn, user, channel, now - _ms(limit.per)) >= limit.count:
                status = "rate_limited"
        if status == "queued":
            if channel not in self.channels:
                status = "no_channel"
            elif (channel == "email" and not person.email) or (channel in PHONE_CHANNELS and not person.phone):
                status = "no_contact"
        if not room_target:
            self.store.touch_recipient(txn, inc["incident_id"], user, now)
        page_id = self._new_id()
        self.store.insert_page(txn, page_id, inc["incident_id"], user, channel, tier_index, purpose, now, status)
        if status == "queued":
            fx.sends.append((page_id, channel, self._recipient(user, channel, inc),
                             self._message(inc, tier_index, purpose, page_id)))
        else:
            fx.skipped.append(f"{channel}:{status}")

    def _recipient(self, user: str, channel: str, inc: dict[str, Any]) -> Recipient:
        if channel == "webhook":
            return Recipient(user_id=user, url=user)
        person = self.policies.person(user)
        return Recipient(user_id=user, email=person.email, phone=person.phone, room_id=inc["room_id"])

    def _message(self, inc: dict[str, Any], tier_index: int, purpose: str, page_id: str) -> PageMessage:
        return PageMessage(incident_id=inc["incident_id"], summary=inc["summary"], priority=inc["priority"],
                           room_id=inc["room_id"], event_id=inc["alert_event_id"], tier=tier_index, purpose=purpose,
                           page_id=page_id)

    def _mark_read(self, txn: Txn, incident_id: str, user_id: str, ts: int) -> bool:
        state = self.store.recipients(txn, incident_id).get(user_id)
        if state is None or state["read_ts"] is not None:
            return False
        self.store.set_read(txn, incident_id, user_id, ts)
        metrics.TIME_TO_READ.observe(max(0, ts - state["first_paged_ts"]) / 1000)
        return True

    # ---- plumbing ------------------------------------------------------------------------------------------------

    def _add_timer(self, txn: Txn, fx: _Effects, incident_id: str, kind: str, due_ms: int,
                   payload: dict[str, Any]) -> None:
        timer = TimerRow(self._new_id(), incident_id, kind, due_ms, payload)
        self.store.insert_timer(txn, timer)
        fx.arm.append(timer)

    def _run(self, txn_fn: Callable[[Txn, _Effects], None]) -> "defer.Deferred[None]":
        fx = _Effects()
        d = self.store.run(lambda txn: txn_fn(txn, fx))
        d.addCallback(lambda _: self._apply(fx))
        return d

    def _apply(self, fx: _Effects) -> "defer.Deferred[None]":
        for timer_id in fx.cancel:
            call = self._calls.pop(timer_id, None)
            if call is not None and call.active():
                call.cancel()
        if self._started:
            for timer in fx.arm:
                self._arm(timer)
        for tier in fx.escalated_tiers:
            metrics.ESCALATIONS.labels(str(tier + 1)).inc()
        for skipped in fx.skipped:
            metrics.PAGES_SENT.labels(*skipped.split(":", 1)).inc()
        sends = [self._send(*s) for s in fx.sends]
        d = defer.gatherResults(sends, consumeErrors=True)
        d.addCallback(lambda _: None)
        return d

    def _send(self, page_id: str, channel_name: str, to: Recipient, message: PageMessage,
              retry: int = 0) -> "defer.Deferred[None]":
        """Hand one page to its channel and record the outcome; ``retry`` is how many times this page was tried
        again already (carried by the ``page_retry`` timer's payload, so it survives a restart)."""
        channel = self.webhook if channel_name == "webhook" else self.channels.get(channel_name)
        if channel is None:
            metrics.PAGES_SENT.labels(channel_name, "no_channel").inc()
            return self.store.finish_page(page_id, "no_channel", None, self._now_ms())
        d = defer.maybeDeferred(channel.send, to, message)

        def done(result: DeliveryResult) -> "defer.Deferred[Any]":
            status = "delivered" if result.ok else "failed"
            metrics.PAGES_SENT.labels(channel_name, status).inc()
            d = self.store.finish_page(page_id, status, result.provider_id, self._now_ms())
            if not result.ok and not result.permanent:
                d.addCallback(lambda _: self._schedule_page_retry(page_id, message.incident_id, retry))
            return d

        def failed(f: Any) -> "defer.Deferred[Any]":
            log.err(f, f"escalation: channel {channel_name} raised")
            metrics.PAGES_SENT.labels(channel_name, "failed").inc()
            return self.store.finish_page(page_id, "failed", None, self._now_ms())

        d.addCallbacks(done, failed)
        return d

    def _schedule_page_retry(self, page_id: str, incident_id: str, retry: int) -> "defer.Deferred[None]":
        """After a page failed for a reason that may pass: a durable ``page_retry`` timer, while the incident is
        open and the page has retries left (:data:`PAGE_RETRIES`, backoff from :data:`PAGE_RETRY_BASE_S`)."""

        def txn_fn(txn: Txn, fx: _Effects) -> None:
            inc = self.store.get_incident(txn, incident_id)
            if retry >= PAGE_RETRIES or inc is None or inc["state"] != OPEN:
                return
            delay_s = min(PAGE_RETRY_MAX_S, PAGE_RETRY_BASE_S * 2 ** retry)
            self._add_timer(txn, fx, incident_id, "page_retry", self._now_ms() + int(delay_s * 1000),
                            {"page_id": page_id, "retry": retry + 1})

        d = self._run(txn_fn)
        d.addErrback(lambda f: log.err(f, f"escalation: scheduling a retry of page {page_id} failed"))
        return d

    def _on_page_retry(self, txn: Txn, fx: _Effects, inc: dict[str, Any], payload: dict[str, Any]) -> None:
        """A failed page's retry is due: send it again if the incident is still open and it is still failed."""
        page = self.store.get_page(txn, payload["page_id"])
        if inc["state"] != OPEN or page is None or page["status"] != "failed":
            return
        self.store.requeue_page(txn, page["page_id"])
        fx.sends.append((page["page_id"], page["channel"], self._recipient(page["user_id"], page["channel"], inc),
                         self._message(inc, page["tier_index"], page["purpose"], page["page_id"]), payload["retry"]))

    def _policy(self, inc: dict[str, Any]) -> EscalationPolicy:
        return self.policies.policies[inc["policy_name"]]

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), timezone.utc)


def _ms(td: Any) -> int:
    return int(td.total_seconds() * 1000)
