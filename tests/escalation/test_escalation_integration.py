"""The bridge-side pieces of escalation without processes: receipt parsing, read matching by arrival order,
the bridge config's ``escalation`` section, the ``!oncall`` answer and the start-up reconciliation with the
bridge's incidents."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from appservices.escalation.integration import (
    BridgeEscalation,
    EscalationSetupError,
    load_settings,
    receipts_of,
    registration_wants_ephemeral,
)
from appservices.escalation.schedule import load_schedules
from appservices.escalation.store import EscalationStore


def test_receipts_of_keeps_read_and_private_read_only() -> None:
    edus: list[Any] = [
        {"type": "m.receipt", "room_id": "!r:hs", "content": {
            "$a": {"m.read": {"@alice:hs": {"ts": 1000, "thread_id": "main"}},
                   "m.read.private": {"@bob:hs": {"ts": 2000}}},
            "$b": {"m.fully_read": {"@carol:hs": {"ts": 3000}}, "m.read": {"@dave:hs": {}}},
        }},
        {"type": "m.typing", "room_id": "!r:hs", "content": {"user_ids": ["@alice:hs"]}},
        {"type": "m.receipt", "content": {"$c": {"m.read": {"@x:hs": {"ts": 1}}}}},  # no room_id: ignored
        "garbage",
        # Malformed receipt EDUs are skipped, not a reason to fail the whole transaction.
        {"type": "m.receipt", "room_id": "!r:hs", "content": {"$e": {"m.read": [1]}, "$f": {"m.read": "x"}}},
        {"type": "m.receipt", "room_id": "!r:hs", "content": ["not", "an", "object"]},
    ]
    assert receipts_of(edus) == [("@alice:hs", "!r:hs", "$a", 1000), ("@bob:hs", "!r:hs", "$a", 2000),
                                 ("@dave:hs", "!r:hs", "$b", None)]


def _incident(store: EscalationStore, incident_id: str, room: str, alert: str | None, user: str) -> None:
    def fn(txn: Any) -> None:
        store.upsert_incident(txn, {
            "incident_id": incident_id, "route": "r", "priority": "high", "policy_name": "p", "room_id": room,
            "alert_event_id": alert, "summary": "s", "alert_key": incident_id, "state": "open", "tier_index": 0,
            "cycle": 0, "opened_ts": 0, "acked_ts": None, "acked_by": None, "resolved_ts": None,
            "last_tier_hook_cycle": -1})
        store.touch_recipient(txn, incident_id, user, 0)

    store.transaction(fn)


def test_a_receipt_counts_for_the_alert_and_everything_after_it_in_its_room() -> None:
    store = EscalationStore.sqlite(":memory:")
    for n, ev in enumerate(["$old", "$alert1", "$chat", "$alert2", "$later"]):
        assert store.transaction(lambda t, e=ev: store.record_room_event(t, "!r:hs", e, n))
    assert not store.transaction(lambda t: store.record_room_event(t, "!r:hs", "$chat", 99))  # retried txn
    _incident(store, "i1", "!r:hs", "$alert1", "@alice:hs")
    _incident(store, "i2", "!r:hs", "$alert2", "@alice:hs")
    _incident(store, "other-room", "!elsewhere:hs", "$alert1", "@alice:hs")
    _incident(store, "page-only", "!r:hs", None, "@alice:hs")
    store.transaction(lambda t: store.insert_page(t, "pg", "page-only", "@alice:hs", "matrix", 0, "page", 0,
                                                  "delivered"))
    store.transaction(lambda t: t.execute("UPDATE escalation_pages SET provider_id = '$later' WHERE page_id = 'pg'"))

    def read_by(user: str, event: str, room: str = "!r:hs") -> list[str]:
        return sorted(store.transaction(lambda t: BridgeEscalation._read_by(t, user, room, event)))

    assert read_by("@alice:hs", "$old") == []                 # before every alert
    assert read_by("@alice:hs", "$chat") == ["i1"]            # after alert 1, before alert 2
    assert read_by("@alice:hs", "$later") == ["i1", "i2", "page-only"]
    assert read_by("@alice:hs", "$unknown") == []             # never seen: no order to compare
    assert read_by("@bob:hs", "$later") == []                 # bob was not paged
    store.transaction(lambda t: store.set_read(t, "i1", "@alice:hs", 5))
    assert read_by("@alice:hs", "$later") == ["i2", "page-only"]  # already read: not again
    assert store.transaction(lambda t: store.forget_room_events(t, 3)) == 3


def _write(path: Path, data: Any) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_settings_resolve_paths_and_name_bad_keys(tmp_path: Path) -> None:
    assert load_settings(_write(tmp_path / "a.yaml", {"homeserver": {}})) is None
    s = load_settings(_write(tmp_path / "b.yaml", {"escalation": {"config": "esc.yaml", "handoff_rooms":
                                                                  {"primary": "#team:hs"}}}))
    assert s is not None
    assert (s.config_path, s.database_args, s.receipts) == (str(tmp_path / "esc.yaml"),
                                                            {"database": str(tmp_path / "escalation.db")}, "auto")
    bad = {
        "escalation.config: required": {},
        "escalation.colour: unknown key": {"config": "x", "colour": 1},
        "escalation.receipts: expected auto, ephemeral or sync": {"config": "x", "receipts": "smoke"},
        "escalation.database.engine": {"config": "x", "database": {"engine": "mysql"}},
        "escalation.database.args.dsn": {"config": "x", "database": {"engine": "postgres", "args": {}}},
        "escalation.handoff_rooms": {"config": "x", "handoff_rooms": {"primary": "team"}},
        "escalation.severity_priorities": {"config": "x", "severity_priorities": {"p1": "urgent"}},
        "escalation.ical_days": {"config": "x", "ical_days": 0},
    }
    for message, section in bad.items():
        with pytest.raises(EscalationSetupError, match=message.replace(".", r"\.")):
            load_settings(_write(tmp_path / "bad.yaml", {"escalation": section}))


def test_registration_ephemeral_keys(tmp_path: Path) -> None:
    assert registration_wants_ephemeral(_write(tmp_path / "r1.yaml", {"receive_ephemeral": True}))
    assert registration_wants_ephemeral(_write(tmp_path / "r2.yaml", {"de.sorunome.msc2409.push_ephemeral": True}))
    assert not registration_wants_ephemeral(_write(tmp_path / "r3.yaml", {"id": "x"}))


def test_oncall_answer_names_people_and_next_handoff() -> None:
    schedules = load_schedules({
        "primary": {"time_zone": "Europe/Berlin", "layers": [
            {"members": ["@alice:hs", "@bob:hs"], "rotation": "weekly", "start": "2024-01-01T09:00"}]},
        "empty": {"layers": [{"members": ["@carol:hs"], "rotation": "daily", "start": "2024-01-01T09:00",
                              "active_until": "2024-02-01T00:00"}]},
    })
    fake = SimpleNamespace(config=SimpleNamespace(schedules=schedules))
    # Wednesday; 2024-06-03 is 22 weeks after the first handoff, so that week is Alice's (even), the next Bob's.
    at = datetime(2024, 6, 5, 10, 0, tzinfo=timezone.utc)
    assert BridgeEscalation.oncall_text(fake, "primary", at) == (  # type: ignore[arg-type]
        "On call at 2024-06-05 10:00 UTC:\n"
        "- primary: @alice:hs (next handoff 2024-06-10 07:00 UTC to @bob:hs)")
    assert BridgeEscalation.oncall_text(fake, None, at).splitlines()[1] == "- empty: nobody"  # type: ignore[arg-type]
    assert BridgeEscalation.oncall_text(fake, "nope", at) == (  # type: ignore[arg-type]
        "No schedule named 'nope' (known: empty, primary).")


def test_reconcile_applies_what_the_bridge_changed_while_the_engine_did_not_hear(tmp_path: Path) -> None:
    """Start-up reconciliation (a crash between a bridge change and its hand-over to the engine): each open
    incident the engine never heard of starts, acks/unacks/resolutions are replayed, nothing else is touched."""
    from twisted.internet import defer

    from appservices.alerts import store as alerts_store
    from appservices.alerts.ingest import parse_alertmanager
    from tests.alerts.harness import FIXTURES

    alerts_db = alerts_store.Database("sqlite", {"database": str(tmp_path / "alerts.db")})
    alerts_db.run_sync(alerts_store.prepare)
    firing = parse_alertmanager(json.loads((FIXTURES / "alertmanager" / "firing.json").read_text()))

    def bridge_incident(key: str, **fields: Any) -> str:
        group = dataclasses.replace(firing, dedup_key=key)
        inc = alerts_db.run_sync(alerts_store.create_incident, group, "default", "#r:hs", "primary", 1_000)
        if fields:
            alerts_db.run_sync(lambda txn: alerts_store.update_incident(txn, inc.incident_id, **fields))
        return inc.incident_id

    esc_store = EscalationStore.sqlite(":memory:")

    def engine_knows(incident_id: str, state: str) -> None:
        _incident(esc_store, incident_id, "!r:hs", "$a", "@alice:hs")
        esc_store.transaction(lambda t: t.execute(
            "UPDATE escalation_incidents SET state = ? WHERE incident_id = ?", (state, incident_id)))

    new_firing = bridge_incident("new-firing")
    new_acked = bridge_incident("new-acked", state="acknowledged", acknowledged_by="@bob:hs")
    bridge_incident("new-resolved", state="resolved", resolved_by="source")  # over before the engine heard
    acked = bridge_incident("acked", state="acknowledged", acknowledged_by="@carol:hs")
    engine_knows(acked, "open")
    resolved = bridge_incident("resolved", state="resolved", resolved_by="@dave:hs")
    engine_knows(resolved, "open")
    unacked = bridge_incident("unacked")
    engine_knows(unacked, "acknowledged")
    unchanged_open = bridge_incident("unchanged-open")
    engine_knows(unchanged_open, "open")
    old = bridge_incident("old", state="resolved", resolved_by="source")
    engine_knows(old, "resolved")

    calls: list[tuple[str, str, str | None]] = []
    esc = BridgeEscalation.__new__(BridgeEscalation)
    esc.store = esc_store
    esc.bridge = SimpleNamespace(db=SimpleNamespace(
        run=lambda fn, *args: defer.maybeDeferred(alerts_db.run_sync, fn, *args)))
    esc._chains = {}
    esc.on_incident_opened = lambda inc: calls.append(("opened", inc.incident_id, None))  # type: ignore[method-assign]
    esc.on_incident_acknowledged = (  # type: ignore[method-assign]
        lambda inc, actor: calls.append(("acknowledged", inc.incident_id, actor)))
    esc.on_incident_unacknowledged = (  # type: ignore[method-assign]
        lambda inc, actor: calls.append(("unacknowledged", inc.incident_id, actor)))
    esc.on_incident_resolved = (  # type: ignore[method-assign]
        lambda inc, actor: calls.append(("resolved", inc.incident_id, actor)))

    done = esc.reconcile()
    assert done.called
    assert sorted(calls) == sorted([
        ("opened", new_firing, None),
        ("opened", new_acked, None), ("acknowledged", new_acked, "@bob:hs"),
        ("acknowledged", acked, "@carol:hs"),
        ("resolved", resolved, "@dave:hs"),
        ("unacknowledged", unacked, "unknown"),
    ])
    # An incident's own changes keep their order: opened before acknowledged.
    assert calls.index(("opened", new_acked, None)) < calls.index(("acknowledged", new_acked, "@bob:hs"))
    alerts_db.close()


def test_status_asked_from_another_room_is_not_answered(tmp_path: Path) -> None:
    """``!status`` names its incident by the event ID it replies to; asked from another room (one the bot was
    invited to by anybody) it must not post the escalation trail (who was paged, who read what) into the
    incident's thread. Asked in the incident's own room it is answered."""
    from twisted.internet import defer

    from appservices.alerts import store as alerts_store
    from appservices.alerts.ingest import parse_alertmanager
    from tests.alerts.harness import FIXTURES

    alerts_db = alerts_store.Database("sqlite", {"database": str(tmp_path / "alerts.db")})
    alerts_db.run_sync(alerts_store.prepare)
    firing = parse_alertmanager(json.loads((FIXTURES / "alertmanager" / "firing.json").read_text()))
    inc = alerts_db.run_sync(alerts_store.create_incident, firing, "default", "#r:hs", "primary", 1_000)
    alerts_db.run_sync(lambda txn: alerts_store.update_incident(txn, inc.incident_id, root_event_id="$root"))
    alerts_db.run_sync(alerts_store.set_room_id, "#r:hs", "!r:hs")

    esc = BridgeEscalation.__new__(BridgeEscalation)
    esc.bot_user_id = "@bot:hs"
    esc.engine = SimpleNamespace(status=lambda incident_id: defer.succeed(None))
    levels = {"@mallory:hs": 0, "@lead:hs": 50}
    esc.bridge = SimpleNamespace(
        db=SimpleNamespace(run=lambda fn, *args: defer.maybeDeferred(alerts_db.run_sync, fn, *args)),
        config=SimpleNamespace(registration=SimpleNamespace(is_interested_in_user=lambda user_id: False),
                               command_power_level=50),
        manager=SimpleNamespace(flush=lambda: None, power_level=lambda room, user: defer.succeed(levels[user])))

    def ask(room_id: str, n: int, sender: str = "@lead:hs") -> list[str]:
        ev = {"type": "m.room.message", "room_id": room_id, "sender": sender, "event_id": f"$q{n}",
              "content": {"msgtype": "m.text", "body": "!status",
                          "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"}}}
        assert esc._on_command(ev).called
        return [json.loads(r["payload_json"])["text"] for r in alerts_db.run_sync(alerts_store.pending_outbox)]

    assert ask("!mallory:hs", 1) == []
    # In the room, but below the power level the bridge requires for commands: no trail either.
    assert ask("!r:hs", 3, sender="@mallory:hs") == []
    assert ask("!r:hs", 2) == ["Escalation: not escalated (no policy started for this incident)."]
    alerts_db.close()


def test_alert_posted_after_the_opening_links_it_in_the_engine(tmp_path: Path) -> None:
    """BridgeEscalation.on_alert_posted: queued behind the incident's earlier changes, it watches the room (for
    /sync receipts) and hands the event to the engine."""
    from twisted.internet import defer

    calls: list[tuple[str, ...]] = []
    esc = BridgeEscalation.__new__(BridgeEscalation)
    esc._chains = {}
    esc.engine = SimpleNamespace(alert_posted=lambda i, r, e: calls.append(("posted", i, r, e)) or defer.succeed(None))

    def watch(room_id: str) -> Any:
        calls.append(("watch", room_id))
        return defer.succeed(None)

    esc._watch_room = watch  # type: ignore[method-assign]
    incident = SimpleNamespace(incident_id="I-1")
    d = esc.on_alert_posted(incident, "!r:hs", "$alert")  # type: ignore[arg-type]
    assert d.called
    assert calls == [("watch", "!r:hs"), ("posted", "I-1", "!r:hs", "$alert")]
