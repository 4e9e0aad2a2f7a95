"""Escalation engine on a fake clock: read-aware channel chain, ack/unack, repeats, rules, limits, restart."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from twisted.internet.task import Clock

from appservices.escalation.engine import EscalationEngine
from appservices.escalation.policy import load_policy_set
from appservices.escalation.schedule import load_schedules
from appservices.escalation.store import EscalationStore
from escalation_testlib import RecordingChannel, now

# 2024-06-05 10:00 UTC, a Wednesday.
START = datetime(2024, 6, 5, 10, 0, tzinfo=timezone.utc).timestamp()
MIN = 60.0

CONFIG: dict[str, Any] = {
    "policies": {
        "default": {
            "repeat": 1,
            "ack_timeout": "30m",
            "last_tier_webhook": "http://127.0.0.1:9/hook",
            "rules": [{"name": "flapping", "count": 3, "within": "10m", "raise_priority": "critical"}],
            "tiers": [
                {"targets": [{"user": "@alice:x"}], "timeout": "15m", "channels": ["matrix", "sms", "voice"],
                 "read_timeout": "5m", "reminder": "4m"},
                {"targets": [{"schedule": "primary"}, {"room": "!ops:x"}], "timeout": "10m"},
            ],
        },
        "critical": {
            "tiers": [{"targets": [{"user": "@alice:x"}, {"user": "@bob:x"}], "timeout": "5m",
                       "channels": ["voice", "matrix"], "read_timeout": "2m"}],
        },
        "warning": {
            "working_hours": {"time_zone": "Europe/Berlin", "days": ["mon", "tue", "wed", "thu", "fri"],
                              "start": "09:00", "end": "17:00"},
            "rules": [{"count": 2, "within": "1h", "jump_to_tier": 2}],
            "tiers": [{"targets": [{"user": "@alice:x"}], "timeout": "30m"},
                      {"targets": [{"user": "@bob:x"}], "timeout": "30m"}],
        },
    },
    "priorities": {"critical": "critical", "warning": "warning"},
    "people": {
        "@alice:x": {"phone": "+15550001", "email": "alice@example.org", "time_zone": "Europe/Berlin"},
        "@bob:x": {"phone": "+15550002", "time_zone": "America/New_York",
                   "quiet_hours": {"start": "22:00", "end": "07:00"}},
    },
    "rate_limits": {"sms": {"count": 1, "per": "1h"}},
    "schedules": {"primary": {"time_zone": "Europe/Berlin",
                              "layers": [{"members": ["@bob:x"], "rotation": "daily", "start": "2024-01-01T09:00"}]}},
}


class Harness:
    def __init__(self, db: str = ":memory:", at: float = START, config: dict[str, Any] | None = None) -> None:
        cfg = config or CONFIG
        self.clock = Clock()
        self.clock.advance(at)
        self.store = self._open_store(db)
        schedules = load_schedules(cfg.get("schedules"))
        self.channels = {n: RecordingChannel(n, self.clock) for n in ("matrix", "email", "sms", "voice")}
        self.webhook = RecordingChannel("webhook", self.clock)
        self.engine = EscalationEngine(self.clock, self.store, load_policy_set(cfg, schedules), schedules,
                                       self.channels, webhook=self.webhook)
        self.engine.start()

    def _open_store(self, db: str) -> EscalationStore:
        return EscalationStore.sqlite(db)

    def open(self, incident: str = "inc1", priority: str = "high", **kw: Any) -> None:
        self.engine.incident_opened(incident, priority=priority, summary="disk full on db1", room_id="!ops:x",
                                    alert_event_id="$alert1", route="db", **kw)

    def advance(self, minutes: float) -> None:
        # Step a minute at a time so each timer fires at its own instant.
        for _ in range(int(minutes)):
            self.clock.advance(MIN)

    def log(self) -> list[tuple[str, str, str, float]]:
        """(channel, recipient, purpose, minutes after START) of every send, in time order."""
        out = [(name, r.user_id, m.purpose, (t - START) / MIN)
               for name, ch in {**self.channels, "webhook": self.webhook}.items() for r, m, t in ch.sent]
        return sorted(out, key=lambda e: (e[3], e[0], e[1]))

    def total(self) -> int:
        return sum(len(c.sent) for c in self.channels.values()) + len(self.webhook.sent)


def test_unread_page_walks_the_channel_chain_then_escalates_and_repeats() -> None:
    h = Harness()
    h.open()
    h.advance(60)
    assert h.log() == [
        ("matrix", "@alice:x", "page", 0), ("sms", "@alice:x", "page", 5), ("voice", "@alice:x", "page", 10),
        # tier 2 at 15 min: on-call person of schedule "primary", the room, and the last-tier webhook
        ("matrix", "!ops:x", "page", 15), ("matrix", "@bob:x", "page", 15),
        ("webhook", "http://127.0.0.1:9/hook", "last_tier", 15),
        # repeat 1: tier 1 again after tier 2's 10 min; SMS is now rate limited (1 per hour) -> not sent
        ("matrix", "@alice:x", "page", 25), ("voice", "@alice:x", "page", 35),
        ("matrix", "!ops:x", "page", 40), ("matrix", "@bob:x", "page", 40),
        ("webhook", "http://127.0.0.1:9/hook", "last_tier", 40),
    ]
    status = now(h.engine.status("inc1"))
    assert status is not None and status.state == "open" and (status.tier, status.cycle) == (1, 1)
    alice = next(p for p in status.people if p.user_id == "@alice:x")
    assert [(n.channel, n.status) for n in alice.notifications] == [
        ("matrix", "delivered"), ("sms", "delivered"), ("voice", "delivered"),
        ("matrix", "delivered"), ("sms", "rate_limited"), ("voice", "delivered")]
    assert "@alice:x: notified matrix 2024-06-05 10:00:00Z (delivered)" in status.render()


def test_read_without_ack_gets_reminders_and_ack_stops_everything() -> None:
    h = Harness()
    h.open()
    h.advance(2)
    matrix_event = h.store.transaction(lambda t: t.fetchone(
        "SELECT provider_id FROM escalation_pages WHERE channel = 'matrix'"))[0]
    before = REGISTRY.get_sample_value("tocsin_escalation_time_to_read_seconds_count") or 0
    # A receipt naming the page from another room reads nothing.
    assert now(h.engine.read_receipt("@alice:x", "!elsewhere:x", matrix_event, int((START + MIN) * 1000))) == []
    assert now(h.engine.read_receipt("@alice:x", "!ops:x", matrix_event, int((START + 2 * MIN) * 1000))) == ["inc1"]
    assert REGISTRY.get_sample_value("tocsin_escalation_time_to_read_seconds_count") == before + 1
    h.advance(12)  # read_check at 5 -> reminder, again at 9 and 13 (reminder every 4 min); no SMS
    assert h.log() == [("matrix", "@alice:x", "page", 0), ("matrix", "@alice:x", "reminder", 5),
                       ("matrix", "@alice:x", "reminder", 9), ("matrix", "@alice:x", "reminder", 13)]
    h.engine.incident_acknowledged("inc1", "@alice:x")
    h.advance(29)
    assert h.total() == 4
    status = now(h.engine.status("inc1"))
    assert status is not None and status.state == "acknowledged" and status.acked_by == "@alice:x"
    alice = status.people[0]
    assert (alice.read_ts, alice.acked_ts) == (int((START + 2 * MIN) * 1000), int((START + 14 * MIN) * 1000))
    # ack_timeout (30 min) without resolve: re-opened and paged from tier 1 again.
    h.advance(1)
    assert h.log()[-1] == ("matrix", "@alice:x", "page", 44)
    assert now(h.engine.status("inc1")).state == "open"  # type: ignore[union-attr]
    h.engine.incident_resolved("inc1")
    h.advance(120)
    assert h.total() == 5


def test_unack_restarts_at_first_tier() -> None:
    h = Harness()
    h.open()
    h.advance(16)
    h.engine.incident_acknowledged("inc1", "@bob:x")
    h.advance(10)
    n = h.total()
    h.engine.incident_unacknowledged("inc1", "@bob:x")
    assert h.log()[n:] == [("matrix", "@alice:x", "page", 26)]
    assert now(h.engine.status("inc1")).tier == 0  # type: ignore[union-attr]


def test_flapping_alert_raises_priority_to_critical_policy() -> None:
    h = Harness()
    h.open()
    h.advance(2)
    h.open()
    h.advance(2)
    assert h.total() == 1
    h.open()  # third firing within 10 min -> critical: voice first, both people
    status = now(h.engine.status("inc1"))
    assert status is not None and (status.priority, status.policy) == ("critical", "critical")
    assert h.log()[1:] == [("voice", "@alice:x", "page", 4), ("voice", "@bob:x", "page", 4)]
    h.advance(2)  # critical read_timeout 2 min -> matrix next; the old policy's SMS step (due at 5) is gone
    assert h.log()[3:] == [("matrix", "@alice:x", "page", 6), ("matrix", "@bob:x", "page", 6)]
    h.advance(10)
    assert h.total() == 5  # single tier, no repeat: exhausted


def test_warning_waits_for_working_hours_and_quiet_hours_silence_phones() -> None:
    # 2024-06-05 20:00 UTC = 22:00 Berlin: outside working hours; next window Thursday 09:00 Berlin = 07:00 UTC.
    late = datetime(2024, 6, 5, 20, 0, tzinfo=timezone.utc).timestamp()
    h = Harness(at=late)
    h.engine.incident_opened("w1", priority="warning", summary="cert expires in 20 days", room_id="!ops:x")
    assert h.total() == 0
    h.clock.advance(11 * 3600 - 1)
    assert h.total() == 0
    h.clock.advance(1)
    assert [(r.user_id, m.purpose) for r, m, _ in h.channels["matrix"].sent] == [("@alice:x", "page")]
    # a second firing within an hour jumps to tier 2 (Bob); the first one was 11 h ago and does not count
    h.engine.incident_opened("w1", priority="warning", summary="cert expires in 20 days", room_id="!ops:x")
    assert [r.user_id for r, m, _ in h.channels["matrix"].sent] == ["@alice:x"]
    h.clock.advance(10 * MIN)
    h.engine.incident_opened("w1", priority="warning", summary="cert expires in 20 days", room_id="!ops:x")
    assert [r.user_id for r, m, _ in h.channels["matrix"].sent] == ["@alice:x", "@bob:x"]

    # Bob's quiet hours (22:00-07:00 New York) silence SMS/voice for non-critical incidents only.
    night = datetime(2024, 6, 6, 4, 0, tzinfo=timezone.utc).timestamp()  # 00:00 New York
    cfg = dict(CONFIG, policies={"default": {"tiers": [{"targets": [{"user": "@bob:x"}], "timeout": "1h",
                                                        "channels": ["sms", "matrix"]}]}}, priorities={})
    h2 = Harness(at=night, config=cfg)
    h2.engine.incident_opened("q1", priority="high", summary="x", room_id="!ops:x")
    h2.engine.incident_opened("q2", priority="critical", summary="y", room_id="!ops:x")
    assert [(r.user_id, m.incident_id) for r, m, _ in h2.channels["sms"].sent] == [("@bob:x", "q2")]
    status = now(h2.engine.status("q1"))
    assert status is not None and status.people[0].notifications[0].status == "suppressed_quiet_hours"


def test_restart_fires_pending_timer_once(tmp_path: Path) -> None:
    db = str(tmp_path / "escalation.db")
    first = Harness(db)
    first.open()
    first.advance(7)  # matrix at 0, sms at 5; voice due at 10, tier 2 due at 15
    first.engine.stop()
    first.store.close()
    # The process is down from minute 7 to minute 12; two new processes start over the same file.
    a = Harness(db, at=START + 12 * MIN)
    b = Harness(db, at=START + 12 * MIN)
    a.clock.advance(0)
    b.clock.advance(0)  # voice (overdue) fires at start, once between both processes
    voices = a.channels["voice"].sent + b.channels["voice"].sent
    assert [(r.user_id, m.purpose) for r, m, _ in voices] == [("@alice:x", "page")]
    for _ in range(10):
        a.clock.advance(MIN)
        b.clock.advance(MIN)
    bob_pages = [e for h in (a, b) for e in h.log() if e[1] == "@bob:x"]
    assert bob_pages and [e[3] for e in bob_pages] == [15.0]
    assert a.total() + b.total() == 4  # voice, bob, room, webhook: nothing twice, nothing lost


def test_metrics_count_pages_and_escalations() -> None:
    def value(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = (value("tocsin_escalation_pages_sent_total", channel="sms", result="delivered"),
              value("tocsin_escalation_escalations_total", tier="2"),
              value("tocsin_escalation_time_to_acknowledge_seconds_sum"))
    h = Harness()
    h.open()
    h.advance(16)
    h.engine.incident_acknowledged("inc1", "@bob:x")
    after = (value("tocsin_escalation_pages_sent_total", channel="sms", result="delivered"),
             value("tocsin_escalation_escalations_total", tier="2"),
             value("tocsin_escalation_time_to_acknowledge_seconds_sum"))
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (1, 1, 16 * 60)


# ---- property: an acknowledged incident never pages again until it is unacknowledged -------------------------

ops = st.lists(st.one_of(
    st.tuples(st.just("advance"), st.integers(1, 40)),
    st.tuples(st.just("ack"), st.sampled_from(["@alice:x", "@bob:x"])),
    st.tuples(st.just("unack"), st.just("")),
    st.tuples(st.just("fire"), st.just("")),
    st.tuples(st.just("read"), st.sampled_from(["@alice:x", "@bob:x"])),
), max_size=25)


@settings(max_examples=60, deadline=None)
@given(ops)
def test_acknowledged_incident_never_pages_until_unacknowledged(steps: list[tuple[str, Any]]) -> None:
    h = Harness()
    h.open()
    acked = False
    for op, arg in steps:
        count = h.total()
        if op == "advance":
            for _ in range(arg):
                h.clock.advance(MIN)
                if acked and now(h.engine.status("inc1")).state == "open":  # type: ignore[union-attr]
                    acked = False  # ack_timeout (30 min) re-opened it; that is an unacknowledgement
                    count = h.total()
                if acked:
                    assert h.total() == count
        elif op == "ack":
            h.engine.incident_acknowledged("inc1", arg)
            acked = True
            assert now(h.engine.status("inc1")).state == "acknowledged"  # type: ignore[union-attr]
        elif op == "unack":
            h.engine.incident_unacknowledged("inc1")
            if acked:
                assert h.total() > count  # restarts at tier 1 and pages at once
            acked = False
        elif op == "fire":
            h.open()
        else:
            h.engine.read_receipt(arg, "!ops:x", "$alert1")
        if acked:
            assert h.total() == count


class FlakyChannel(RecordingChannel):
    """Fails (as after its own retries) while ``down``; a ``permanent`` failure is never retried."""

    def __init__(self, name: str, clock: Any) -> None:
        super().__init__(name, clock)
        self.down = True
        self.permanent = False
        self.failures = 0
        self.failed_pages: list[str | None] = []

    def send(self, recipient: Any, message: Any) -> Any:
        from twisted.internet import defer

        from appservices.channels.base import DeliveryResult

        if self.down:
            self.failures += 1
            self.failed_pages.append(message.page_id)
            return defer.succeed(DeliveryResult(ok=False, error="homeserver unreachable", attempts=2,
                                                permanent=self.permanent))
        return super().send(recipient, message)


def _flaky_matrix(h: Harness) -> FlakyChannel:
    flaky = FlakyChannel("matrix", h.clock)
    h.channels["matrix"] = flaky
    h.engine.channels["matrix"] = flaky
    return flaky


def test_a_page_that_failed_for_a_passing_reason_is_sent_again_once_the_channel_is_back() -> None:
    """The homeserver (or a provider) is down when a page is due: the page is tried again with backoff while
    the incident is open, and delivered once when the channel is back; a restart in between keeps the retry."""
    h = Harness()
    flaky = _flaky_matrix(h)
    h.open()
    assert flaky.failures == 1 and flaky.to("@alice:x") == []
    h.clock.advance(30)  # first retry after 30 s: still down
    assert flaky.failures == 2
    flaky.down = False
    h.clock.advance(60)  # second retry after another 60 s: delivered
    assert [m.purpose for m in flaky.to("@alice:x")] == ["page"]
    status = now(h.engine.status("inc1"))
    alice = next(p for p in status.people if p.user_id == "@alice:x")
    assert [(n.channel, n.status) for n in alice.notifications][:1] == [("matrix", "delivered")]
    h.clock.advance(3600)
    assert len([m for m in flaky.to("@alice:x") if m.tier == 0 and m.purpose == "page"]) <= 3  # later cycles only


def test_no_retry_after_ack_or_for_a_permanent_failure(tmp_path: Path) -> None:
    h = Harness()
    flaky = _flaky_matrix(h)
    h.open()
    now(h.engine.incident_acknowledged("inc1", "@alice:x"))
    flaky.down = False
    h.clock.advance(600)
    assert flaky.to("@alice:x") == [] and flaky.failures == 1
    h2 = Harness()
    flaky2 = _flaky_matrix(h2)
    flaky2.permanent = True
    h2.open()
    h2.clock.advance(120)
    assert flaky2.failures == 1


def test_page_retry_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "esc.db")
    h = Harness(db)
    flaky = _flaky_matrix(h)
    h.open()
    assert flaky.failures == 1
    h.engine.stop()
    h2 = Harness(db, at=h.clock.seconds())  # a new process: the pending retry timer is re-armed from the store
    flaky2 = _flaky_matrix(h2)
    flaky2.down = False
    h2.clock.advance(31)
    assert [m.purpose for m in flaky2.to("@alice:x")] == ["page"]


def test_alert_posted_later_is_linked_for_pages_and_receipts() -> None:
    """Escalation started without the alert event (homeserver unreachable at opening); once the outbox posts
    it, later pages carry it and a read receipt on it marks the incident read."""
    h = Harness()
    h.engine.incident_opened("inc2", priority="high", summary="db down", room_id=None, alert_event_id=None,
                             route="db")
    assert h.channels["matrix"].to("@alice:x")[0].event_id is None
    now(h.engine.alert_posted("inc2", "!ops:x", "$late-alert"))
    now(h.engine.alert_posted("inc2", "!ops:x", "$other"))  # only the first posting counts
    h.advance(5)  # read timeout: the SMS page now links to the alert
    sms = h.channels["sms"].to("@alice:x")
    assert sms and sms[-1].event_id == "$late-alert" and sms[-1].room_id == "!ops:x"
    assert now(h.engine.read_receipt("@alice:x", "!ops:x", "$late-alert")) == ["inc2"]


def test_a_page_is_retried_at_most_page_retries_times_across_a_restart(tmp_path: Path) -> None:
    """The retry count travels in the durable timer's payload: a restart does not start it again."""
    from appservices.escalation.engine import PAGE_RETRIES

    db = str(tmp_path / "esc.db")
    h = Harness(db)
    flaky = _flaky_matrix(h)
    h.open()
    first = flaky.failed_pages[0]
    h.clock.advance(30)  # two retries, 30 s then 60 s apart
    h.clock.advance(60)
    assert flaky.failed_pages.count(first) == 3
    h.engine.stop()
    h2 = Harness(db, at=h.clock.seconds())
    flaky2 = _flaky_matrix(h2)
    h2.advance(4 * 60)
    assert flaky.failed_pages.count(first) + flaky2.failed_pages.count(first) == 1 + PAGE_RETRIES
