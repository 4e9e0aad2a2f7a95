"""Unit tests of the alert bridge's pure parts: parsing, auth, routing, rendering, commands, store, report."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from typing import Any, Iterator
from pathlib import Path

import pytest
import yaml
from twisted.internet import defer
from hypothesis import given
from hypothesis import strategies as st

from appservices.alerts import store
from appservices.alerts.auth import AuthFailed, SourceAuth, check_auth
from appservices.alerts.commands import Command, CommandError, parse_command, parse_duration
from appservices.alerts.config import ConfigError, parse_config
from appservices.alerts.incidents import IncidentManager
from appservices.alerts.ingest import BadPayload, parse_alertmanager, parse_generic, parse_grafana, parse_zabbix
from appservices.alerts.metrics import AlertMetrics
from appservices.alerts.render import (
    CONTENT_BUDGET, IncidentView, content_size, make_edit, render_fitted, sanitise_html, truncate_utf8,
)
from appservices.alerts.report import build_report, format_csv
from appservices.alerts.routing import Matcher, Route, Router

from tests.support.server import create_pg_database, drop_pg_database

from .harness import FIXTURES, REPO_ROOT


def fixture(source: str, name: str) -> dict:
    return json.loads((FIXTURES / source / f"{name}.json").read_text())


# -- ingest ---------------------------------------------------------------------------------------------------


def test_alertmanager_grouped_multi() -> None:
    g = parse_alertmanager(fixture("alertmanager", "grouped_multi"))
    assert g.dedup_key == '{}/{team="storage"}:{alertname="DiskSpaceLow", cluster="prod-eu-1"}'
    assert g.status == "firing" and g.truncated_alerts == 2 and g.severity == "warning"
    assert [a.status for a in g.alerts] == ["firing", "firing", "resolved", "firing"]
    assert g.alerts[0].ends_at is None and g.alerts[2].ends_at == "2024-05-14T02:15:22.004Z"
    assert g.routing_labels["team"] == "storage"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b.pop("alerts"), "missing field alerts"),
        (lambda b: b["alerts"][0].pop("labels"), "missing field alerts[0].labels"),
        (lambda b: b.__setitem__("status", "weird"), "field status must be 'firing' or 'resolved', not 'weird'"),
        (lambda b: b["alerts"][0].__setitem__("labels", ["x"]), "field alerts[0].labels must be of type dict"),
        (lambda b: b.__setitem__("truncatedAlerts", "x"), "field truncatedAlerts must be a non-negative integer"),
        (lambda b: b.__setitem__("truncatedAlerts", 1e30), "field truncatedAlerts must be a non-negative integer"),
        (lambda b: b.__setitem__("truncatedAlerts", -1), "field truncatedAlerts must be a non-negative integer"),
    ],
)
def test_alertmanager_rejections_name_the_field(mutate, message) -> None:  # type: ignore[no-untyped-def]
    body = fixture("alertmanager", "firing")
    mutate(body)
    with pytest.raises(BadPayload) as e:
        parse_alertmanager(body)
    assert str(e.value) == message and e.value.code == 400


def test_alertmanager_wrong_version_is_422() -> None:
    body = fixture("alertmanager", "firing")
    body["version"] = "3"
    with pytest.raises(BadPayload) as e:
        parse_alertmanager(body)
    assert e.value.code == 422


def test_grafana_links_and_values() -> None:
    g = parse_grafana(fixture("grafana", "firing_multi"))
    assert g.dedup_key == "1/{}:{}" and len(g.alerts) == 2
    assert g.alerts[0].links["silence"].startswith("https://grafana.example.com/alerting/silence/new")
    assert "dashboard" not in g.alerts[0].links  # empty URL is not a link
    assert g.alerts[0].values == {"B": 44.23943737541908, "C": 1}
    assert parse_grafana(fixture("grafana", "test_notification")).alerts[0].values == {}


def test_zabbix_problem_update_recovery_and_default_params_share_one_key() -> None:
    problem = parse_zabbix(fixture("zabbix", "problem"))
    assert problem.status == "firing" and problem.severity == "high"
    assert problem.common_labels["team"] == "dba" and problem.mentions == ["@oncall-dba:example.com"]
    assert problem.alerts[0].generator_url == (
        "https://zabbix.example.com/tr_events.php?triggerid=23851&eventid=4207731"
    )
    update = parse_zabbix(fixture("zabbix", "update_acknowledged"))
    assert update.source_ack_by == "zabbix:Mei Lin" and "heavy reporting query" in (update.update_note or "")
    recovery = parse_zabbix(fixture("zabbix", "recovery"))
    assert recovery.status == "resolved" and recovery.alerts[0].ends_at == "2024.05.14 03:33:45"
    default = parse_zabbix(fixture("zabbix", "default_media_params"))
    assert {problem.dedup_key, update.dedup_key, recovery.dedup_key, default.dedup_key} == {"4207731"}
    assert problem.alerts[0].fingerprint == default.alerts[0].fingerprint


def test_generic_template() -> None:
    template = {"dedup_key": "check.id", "status": "state", "labels": {"severity": "level", "host": "check.host"},
                "annotations": {"summary": "msg"}}
    g = parse_generic({"check": {"id": 7, "host": "web-1"}, "state": "down", "level": "critical", "msg": "Down"},
                      "uptime", template)
    assert (g.source, g.dedup_key, g.status, g.severity, g.title) == ("generic:uptime", "7", "firing", "critical", "Down")
    assert parse_generic({"check": {"id": 7}, "state": "OK"}, "uptime", template).status == "resolved"
    with pytest.raises(BadPayload, match="missing field check.id"):
        parse_generic({"state": "down"}, "uptime", template)


# -- auth -----------------------------------------------------------------------------------------------------


def test_bearer_and_hmac() -> None:
    auth = SourceAuth(token="t0k", hmac_secret="s3cret", hmac_header="X-Sig", hmac_timestamp_header="X-Ts")
    body = b'{"a": 1}'
    check_auth(auth, "Bearer t0k", {}, body)
    sig = hmac.new(b"s3cret", b"1700000000:" + body, hashlib.sha256).hexdigest()
    check_auth(auth, None, {"x-sig": "sha256=" + sig, "x-ts": "1700000000"}, body)
    with pytest.raises(AuthFailed) as e:
        check_auth(auth, None, {"x-sig": sig, "x-ts": "1700000001"}, body)
    assert e.value.code == 403
    with pytest.raises(AuthFailed) as e:
        check_auth(auth, "Bearer nope", {}, body)
    assert e.value.code == 403
    with pytest.raises(AuthFailed) as e:
        check_auth(auth, None, {}, body)
    assert e.value.code == 401


# -- routing --------------------------------------------------------------------------------------------------


def test_matchers_like_alertmanager() -> None:
    assert Matcher.parse('team="storage"').matches({"team": "storage"})
    assert not Matcher.parse('team="storage"').matches({"team": "storage-2"})
    assert Matcher.parse('severity=~"crit.*|page"').matches({"severity": "critical"})
    assert not Matcher.parse('severity=~"crit"').matches({"severity": "critical"})  # anchored
    assert Matcher.parse('env!="prod"').matches({})
    assert Matcher.parse('env!~"prod|staging"').matches({"env": "dev"})
    assert Matcher.parse('"服务等级"="P1"').matches({"服务等级": "P1"})


def test_router_first_match_then_default() -> None:
    a = Route("a", "#a:x", (Matcher.parse('team="storage"'),))
    b = Route("b", "#b:x", (Matcher.parse('severity="critical"'),), sources=("zabbix",))
    router = Router([a, b], Route("default", "#d:x"))
    assert router.route_for("alertmanager", {"team": "storage", "severity": "critical"}).name == "a"
    assert router.route_for("alertmanager", {"severity": "critical"}).name == "default"
    assert router.route_for("zabbix", {"severity": "critical"}).name == "b"


# -- rendering ------------------------------------------------------------------------------------------------


def test_sanitiser_strips_script_and_javascript_links() -> None:
    dirty = '<p onclick="x()">hi<script>alert(1)</script><a href="javascript:alert(1)">l</a><iframe></iframe></p>'
    assert sanitise_html(dirty) == "<p>hi<a>l</a></p>"


def test_render_escapes_source_text() -> None:
    body = fixture("alertmanager", "firing")
    body["alerts"][0]["annotations"]["description"] = '<img src=x onerror=alert(1)> & <b>bold</b>'
    content = render_fitted(parse_alertmanager(body), IncidentView("I-1", "firing", "main"))
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in content["formatted_body"]
    assert "<img" not in content["formatted_body"]


def test_oversized_fits_and_edit_fits() -> None:
    g = parse_alertmanager(fixture("alertmanager", "oversized_annotations"))
    content = render_fitted(g, IncidentView("I-1", "firing", "main", mentions=["@a:x"]))
    assert content_size(content) <= CONTENT_BUDGET
    assert "truncated" in content["body"]
    edit = make_edit("$root", render_fitted(g, IncidentView("I-1", "resolved", "main"), budget=28000))
    assert content_size(edit) <= CONTENT_BUDGET and edit["m.mentions"] == {}
    assert edit["m.new_content"]["body"].startswith("✅ RESOLVED")


@given(st.text(), st.integers(min_value=0, max_value=200))
def test_truncate_utf8_never_exceeds_and_is_a_prefix(text: str, limit: int) -> None:
    cut, dropped = truncate_utf8(text, limit)
    assert len(cut.encode()) <= max(limit, 0) or dropped == 0
    assert text.startswith(cut)
    assert len(cut.encode()) + dropped == len(text.encode())


# -- commands -------------------------------------------------------------------------------------------------


def test_commands() -> None:
    assert parse_command("!ack") == Command("ack")
    assert parse_command("> <@bot:x> alert\n\n!assign @bob:example.com") == Command("assign", "@bob:example.com")
    assert parse_command("!note disk cleaned") == Command("note", "disk cleaned")
    assert parse_command("hello") is None and parse_command("!unknown") is None
    with pytest.raises(CommandError):
        parse_command("!assign bob")
    assert parse_duration("2h") == 7200 and parse_duration("1d12h30m") == 131400
    with pytest.raises(CommandError):
        parse_duration("soon")


# -- config, store, state machine, report -----------------------------------------------------------------------


@pytest.fixture
def config_dict(tmp_path: Path) -> dict:
    reg = yaml.safe_load((REPO_ROOT / "config" / "alerts-registration.yaml").read_text())
    (tmp_path / "reg.yaml").write_text(yaml.safe_dump(reg))
    raw = yaml.safe_load((REPO_ROOT / "config" / "alerts.yaml").read_text())
    raw["registration"] = "reg.yaml"
    raw["database"] = {"engine": "sqlite", "args": {"database": str(tmp_path / "a.db")}}
    return raw


def test_sample_config_loads_and_errors_name_the_key(config_dict: dict, tmp_path: Path) -> None:
    cfg = parse_config(config_dict, str(tmp_path))
    assert cfg.router.route_for("alertmanager", {"team": "storage"}).room == "#alerts-storage:example.com"
    assert cfg.max_body_bytes == 1048576
    config_dict["routes"][0]["match"] = ['team=~"("']
    with pytest.raises(ConfigError, match=r"routes\[0\]\.match"):
        parse_config(config_dict, str(tmp_path))


@pytest.fixture(params=["sqlite", "postgres"])
def store_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict]:
    """The bridge's ``database`` config: a SQLite file, or a fresh PostgreSQL database (dropped afterwards).

    PostgreSQL unreachable is an error, not a skip.
    """
    if request.param == "sqlite":
        yield {"engine": "sqlite", "args": {"database": str(tmp_path / "s.db")}}
        return
    args = create_pg_database("tocsin_alerts_test")
    try:
        yield {"engine": "postgres", "args": args}
    finally:
        drop_pg_database(args["dbname"])


def test_state_machine_in_store(config_dict: dict, tmp_path: Path, store_database: dict) -> None:
    cfg = parse_config(config_dict, str(tmp_path))
    db = store.Database(store_database["engine"], store_database["args"])
    db.run_sync(store.prepare)
    db.run_sync(store.prepare)  # idempotent: a restart runs it again
    mgr = IncidentManager(cfg, db, client=None, metrics=AlertMetrics())  # type: ignore[arg-type]
    route = cfg.router.default
    firing = parse_alertmanager(fixture("alertmanager", "firing"))
    inc, events = db.run_sync(mgr._store_group, firing, route, 1_000)
    assert inc.state == "firing" and events == [("opened", None)]
    again, _ = db.run_sync(mgr._store_group, firing, route, 2_000)
    assert again.incident_id == inc.incident_id and again.notifications == 2
    kinds = [r["kind"] for r in db.run_sync(store.pending_outbox)]
    assert kinds == ["root", "thread", "edit"]  # one top-level message, the repeat goes to thread + edit
    acked, ev = db.run_sync(mgr._apply_in_txn, inc.incident_id, Command("ack"), "@a:x", "$e1", 61_000, None)
    assert (acked.state, acked.acknowledged_by, acked.acknowledged_ts, ev) == ("acknowledged", "@a:x", 61_000, "acknowledged")
    resolved, _ = db.run_sync(mgr._store_group, parse_alertmanager(fixture("alertmanager", "resolved")), route, 121_000)
    assert resolved.state == "resolved" and resolved.resolved_by == "source"
    # A resolved notification with nothing open is a no-op; a re-fire opens a new incident.
    assert db.run_sync(mgr._store_group, parse_alertmanager(fixture("alertmanager", "resolved")), route, 130_000)[0] is None
    refire, _ = db.run_sync(mgr._store_group, firing, route, 140_000)
    assert refire.incident_id != inc.incident_id
    rows = {(r.dimension, r.value): r for r in build_report(db.run_sync(store.list_incidents))}
    assert rows[("total", "all")].incidents == 2
    assert rows[("route", "default")].mtta_s == 60.0 and rows[("route", "default")].mttr_s == 120.0
    assert "route,default,2,1,1,60.0,120.0" in format_csv(list(rows.values()))

    # The report script reads the same database.
    config_dict["database"] = store_database
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config_dict))
    out = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "alerts_report"), "-c", str(tmp_path / "c.yaml"),
                          "--csv", "--since", "0"], capture_output=True, text=True, check=True).stdout
    assert "severity,critical,2,1,1,60.0,120.0" in out
    table = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "alerts_report"), "-c",
                            str(tmp_path / "c.yaml")], capture_output=True, text=True, check=True).stdout
    assert "1m00s" in table and "2m00s" in table
    db.close()


def test_store_queries_on_both_engines(config_dict: dict, tmp_path: Path, store_database: dict) -> None:
    """Every store function the bridge uses, with values that differ between engines (unicode, ms > 2**31)."""
    cfg = parse_config(config_dict, str(tmp_path))
    db = store.Database(store_database["engine"], store_database["args"])
    db.run_sync(store.prepare)
    mgr = IncidentManager(cfg, db, client=None, metrics=AlertMetrics())  # type: ignore[arg-type]
    route = cfg.router.default
    t0 = 1_715_650_000_000  # May 2024 in ms: needs BIGINT
    group = parse_alertmanager(fixture("alertmanager", "unicode_labels"))
    inc, _ = db.run_sync(mgr._store_group, group, route, t0)
    # At most one open incident per (source, dedup key), enforced by the database itself.
    with pytest.raises(Exception):
        db.run_sync(store.create_incident, group, "default", "#r:x", None, t0 + 1)
    assert db.run_sync(store.get_open_incident, group.source, group.dedup_key).incident_id == inc.incident_id
    loaded = db.run_sync(lambda txn: store.load_group(txn, store.get_incident(txn, inc.incident_id)))
    assert loaded.title == group.title and loaded.common_labels == group.common_labels
    assert [a.fingerprint for a in loaded.alerts] == sorted(a.fingerprint for a in group.alerts)

    # Outbox: ordered, transaction IDs fixed at enqueue, attempts counted, removed when done.
    rows = db.run_sync(store.pending_outbox)
    assert [r["kind"] for r in rows] == ["root"]
    seq2 = db.run_sync(store.enqueue, inc.incident_id, "edit", {"text": "✅ ok"}, t0 + 2)
    seq3 = db.run_sync(store.enqueue, inc.incident_id, "edit", {}, t0 + 3)
    assert db.run_sync(store.later_edit_pending, inc.incident_id, seq2) is True
    assert db.run_sync(store.later_edit_pending, inc.incident_id, seq3) is False
    db.run_sync(store.outbox_failed, rows[0]["seq"])
    again = db.run_sync(store.pending_outbox)
    assert [(r["seq"], r["attempts"], r["txn_id"]) for r in again][0] == (rows[0]["seq"], 1, rows[0]["txn_id"])
    assert json.loads(again[1]["payload_json"]) == {"text": "✅ ok"}
    for r in again:
        db.run_sync(mgr._sent, r, "$root" if r["kind"] == "root" else None, t0 + 4)
    assert db.run_sync(store.pending_outbox) == []
    assert db.run_sync(store.get_incident, inc.incident_id).root_event_id == "$root"
    db.run_sync(store.record_message, "$thread1", inc.incident_id, "thread", t0 + 5)
    db.run_sync(store.record_message, "$thread1", inc.incident_id, "thread", t0 + 6)  # idempotent
    assert db.run_sync(store.incident_for_event, "$thread1").incident_id == inc.incident_id
    assert db.run_sync(store.incident_for_event, "$root").incident_id == inc.incident_id
    assert db.run_sync(store.incident_for_event, "$nope") is None

    # Each chat event acts once.
    assert db.run_sync(store.mark_event_handled, "$cmd", t0) is True
    assert db.run_sync(store.mark_event_handled, "$cmd", t0) is False

    # Rooms cache, actions, filters.
    db.run_sync(store.set_room_id, "#alerts:example.com", "!a:example.com")
    db.run_sync(store.set_room_id, "#alerts:example.com", "!b:example.com")
    assert db.run_sync(store.get_room_id, "#alerts:example.com") == "!b:example.com"
    assert db.run_sync(store.known_room_ids) == ["!b:example.com"]
    db.run_sync(mgr._apply_in_txn, inc.incident_id, Command("note", "נפל השרת 🔥"), "@a:x", "$n", t0 + 7, None)
    actions = db.run_sync(store.list_actions, inc.incident_id)
    assert [(a["action"], a["detail"]) for a in actions][-1] == ("note", "נפל השרת 🔥")
    assert actions[-1]["ts"] == t0 + 7
    assert [i.incident_id for i in db.run_sync(store.list_incidents, "firing", t0, t0 + 1, "default")] == [
        inc.incident_id
    ]
    assert db.run_sync(store.list_incidents, None, t0 + 1) == []
    assert db.run_sync(store.list_incidents, "resolved") == []
    assert [(r["route"], r["state"], int(r["n"])) for r in db.run_sync(store.count_open)] == [
        ("default", "firing", 1)
    ]
    db.close()


class _InlineDatabase(store.Database):
    """The store with ``run`` on the calling thread: every Deferred of the bridge fires at once, no reactor."""

    def run(self, fn, *args):  # type: ignore[no-untyped-def]
        return defer.maybeDeferred(self.run_sync, fn, *args)


class _Homeserver:
    """Just enough client-server API for chat handling: power levels per room, sends recorded."""

    def __init__(self, levels: dict[str, dict[str, int]]) -> None:
        self.levels = levels
        self.sent: list[tuple[str, dict]] = []

    def get_state_event(self, room_id: str, event_type: str, state_key: str = "") -> defer.Deferred:
        return defer.succeed({"users": self.levels.get(room_id, {})})

    def send_event(self, room_id: str, event_type: str, content: dict, txn_id: str) -> defer.Deferred:
        self.sent.append((room_id, content))
        return defer.succeed({"event_id": f"$sent{len(self.sent)}"})


def test_chat_naming_an_incident_from_another_room_does_not_act_on_it(config_dict: dict, tmp_path: Path) -> None:
    """A ✅, a thread command or a reply sent in some other room (one of mallory's own, where she has power 100
    and the bot joined on invite) that names an incident's event ID must not act on the incident: only the
    incident's own room commands it."""
    cfg = parse_config(config_dict, str(tmp_path))
    db = _InlineDatabase("sqlite", {"database": str(tmp_path / "chat.db")})
    db.run_sync(store.prepare)
    alerts, elsewhere = "!alerts:example.com", "!mallory:example.com"
    hs = _Homeserver({alerts: {"@alice:example.com": 50}, elsewhere: {"@mallory:example.com": 100}})
    mgr = IncidentManager(cfg, db, client=hs, metrics=AlertMetrics())  # type: ignore[arg-type]
    inc, _ = db.run_sync(mgr._store_group, parse_alertmanager(fixture("alertmanager", "firing")), cfg.router.default,
                         1_000)
    db.run_sync(store.set_room_id, inc.room, alerts)
    mgr.flush()
    root = db.run_sync(store.get_incident, inc.incident_id).root_event_id
    assert root is not None and hs.sent[0][0] == alerts
    sent_before = len(hs.sent)

    def event(room_id: str, sender: str, n: int, content: dict, etype: str = "m.room.message") -> dict:
        return {"type": etype, "room_id": room_id, "sender": sender, "event_id": f"$ev{n}", "content": content}

    mallory = "@mallory:example.com"
    mgr.on_transaction("t1", [
        event(elsewhere, mallory, 1, {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "✅"}},
              "m.reaction"),
        event(elsewhere, mallory, 2, {"msgtype": "m.text", "body": "!resolve",
                                      "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
        event(elsewhere, mallory, 3, {"msgtype": "m.text", "body": "!silence 1d",
                                      "m.relates_to": {"m.in_reply_to": {"event_id": root}}}),
    ])
    after = db.run_sync(store.get_incident, inc.incident_id)
    assert (after.state, after.acknowledged_by, after.muted_until_ts) == ("firing", None, None)
    assert [a["action"] for a in db.run_sync(store.list_actions, inc.incident_id)] == ["opened"]
    assert len(hs.sent) == sent_before  # not even an answer in the incident's thread

    # In the incident's own room the same reaction acknowledges it.
    mgr.on_transaction("t2", [event(alerts, "@alice:example.com", 4, {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "✅"}}, "m.reaction")])
    after = db.run_sync(store.get_incident, inc.incident_id)
    assert (after.state, after.acknowledged_by) == ("acknowledged", "@alice:example.com")
    db.close()


def test_postgres_connection_lost_fails_one_call_then_reconnects() -> None:
    """A killed PostgreSQL backend fails the call in flight (so ingest answers 500) and the next call reconnects."""
    import psycopg2

    args = create_pg_database("tocsin_alerts_test")
    db = store.Database("postgres", args)
    try:
        db.run_sync(store.prepare)
        pid = db.run_sync(lambda txn: txn.fetchone("SELECT pg_backend_pid() AS pid")["pid"])
        admin = psycopg2.connect(**dict(args, dbname="postgres"))
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        admin.close()
        with pytest.raises(psycopg2.Error):
            db.run_sync(store.set_room_id, "#a:x", "!a:x")
        db.run_sync(store.set_room_id, "#a:x", "!b:x")
        assert db.run_sync(store.get_room_id, "#a:x") == "!b:x"
        assert db.run_sync(lambda txn: txn.fetchone("SELECT pg_backend_pid() AS pid")["pid"]) != pid
    finally:
        db.close()
        drop_pg_database(args["dbname"])


def test_zabbix_event_id_must_not_be_empty() -> None:
    """event_id is the dedup key: an empty one would put every such problem into one incident."""
    body = fixture("zabbix", "problem")
    body["event_id"] = " "
    with pytest.raises(BadPayload) as e:
        parse_zabbix(body)
    assert str(e.value) == "field event_id must not be empty" and e.value.code == 400


def test_listeners_hear_when_the_outbox_posts_an_alert(config_dict: dict, tmp_path: Path) -> None:
    """When the outbox posts an incident's alert message (possibly long after the incident opened, the
    homeserver having been down), listeners get ``on_alert_posted(incident, room_id, event_id)``: escalation
    links its pages and read receipts to it. Edits and thread notices are not announced."""
    cfg = parse_config(config_dict, str(tmp_path))
    db = _InlineDatabase("sqlite", {"database": str(tmp_path / "posted.db")})
    db.run_sync(store.prepare)
    hs = _Homeserver({})
    mgr = IncidentManager(cfg, db, client=hs, metrics=AlertMetrics())  # type: ignore[arg-type]
    heard: list[tuple[str, str, str]] = []

    class Listener:
        def on_alert_posted(self, incident: Any, room_id: str, event_id: str) -> None:
            heard.append((incident.incident_id, room_id, event_id))

    mgr.add_listener(Listener())
    inc, _ = db.run_sync(mgr._store_group, parse_alertmanager(fixture("alertmanager", "firing")), cfg.router.default,
                         1_000)
    db.run_sync(store.set_room_id, inc.room, "!alerts:example.com")
    mgr.flush()
    root = db.run_sync(store.get_incident, inc.incident_id).root_event_id
    assert heard == [(inc.incident_id, "!alerts:example.com", root)]
    db.run_sync(mgr._store_group, parse_alertmanager(fixture("alertmanager", "firing")), cfg.router.default, 2_000)
    mgr.flush()
    assert len(hs.sent) >= 2 and len(heard) == 1
    db.close()
