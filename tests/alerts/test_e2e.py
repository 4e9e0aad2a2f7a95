"""End-to-end: fixtures posted to a running bridge attached to a running homeserver; a matrix-nio human
sees the messages, edits and thread replies, and acts on incidents from chat. Parametrised by homeserver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import pytest

from .harness import FIXTURES, BridgeProcess, HomeserverUnderTest, metric
from .humans import Human, content_of, is_edit_of, is_root_alert, is_thread_reply

pytestmark = pytest.mark.slow


def test_alertmanager_lifecycle_from_chat(alert_bridge: BridgeProcess, homeserver_under_test: HomeserverUnderTest) -> None:
    bridge, hs = alert_bridge, homeserver_under_test
    firing = (FIXTURES / "alertmanager" / "firing.json").read_bytes()

    # Refusals: nothing stored, each counted.
    assert bridge.post("alertmanager", firing, token=None)[0] == 401
    assert bridge.post("alertmanager", firing, token="wrong")[0] == 403
    code, body = bridge.post("alertmanager", b'{"version": "4", ')
    assert code == 400 and "invalid JSON" in body["error"]
    missing = json.loads(firing)
    del missing["groupKey"]
    code, body = bridge.post("alertmanager", json.dumps(missing).encode())
    assert code == 400 and body["error"] == "missing field groupKey"
    code, body = bridge.post("alertmanager", b'{"pad": "' + b"x" * 250_000 + b'"}')
    assert code == 413
    assert bridge.incidents() == []
    metrics = bridge.metrics()
    assert metric(metrics, "tocsin_alert_requests_rejected_total", source="alertmanager", reason="forbidden") == 1
    assert metric(metrics, "tocsin_alert_requests_rejected_total", source="alertmanager", reason="missing_field") == 1

    async def scenario() -> None:
        alice = Human(hs, "alice", bridge.alias_prefix)
        await alice.login()
        try:
            code, body = bridge.post("alertmanager", firing)
            assert code == 200, body
            incident_id = body["incident_id"]
            root_ev = await alice.wait_for(lambda e: is_root_alert(e, "BlackBox Probe Failure"))
            root, room = root_ev["event_id"], root_ev["room_id"]
            c = content_of(root_ev)
            assert c["body"].startswith("🔴 FIRING [CRITICAL]")
            assert c["m.mentions"] == {"user_ids": [alice.user_id]}
            assert '<a href="http://prometheus.example.org:9090/graph' in c["formatted_body"]
            assert "silences/new" in c["formatted_body"]

            # A repeat edits the message and posts into its thread, no new top-level alert.
            assert bridge.post("alertmanager", firing)[0] == 200
            await alice.wait_for(lambda e: is_edit_of(e, root, "2 notifications"))
            await alice.wait_for(lambda e: is_thread_reply(e, root, "Still firing"))

            await alice.thread_command(room, root, "!ack")
            await alice.wait_for(lambda e: is_thread_reply(e, root, f"Acknowledged by {alice.user_id}"))
            await alice.wait_for(lambda e: is_edit_of(e, root, "ACKNOWLEDGED"))
            inc = bridge.incident(incident_id)
            assert inc["state"] == "acknowledged" and inc["acknowledged_by"] == alice.user_id

            await alice.reply_command(room, root, f"!assign @bob:{hs.server_name}")
            await alice.wait_for(lambda e: is_thread_reply(e, root, "Assigned to @bob"))
            await alice.thread_command(room, root, "!note restarted the probe target")
            await alice.wait_for(lambda e: is_thread_reply(e, root, "Note by"))
            inc = bridge.incident(incident_id)
            assert inc["assignee"] == f"@bob:{hs.server_name}"
            actions = [(a["action"], a["actor"], a["detail"]) for a in inc["actions"]]
            assert ("note", alice.user_id, "restarted the probe target") in actions
            assert ("ack", alice.user_id, None) in actions

            assert bridge.post_fixture("alertmanager", "resolved")[0] == 200
            await alice.wait_for(lambda e: is_edit_of(e, root, "✅ RESOLVED"))
            await alice.wait_for(lambda e: is_thread_reply(e, root, "Resolved by alertmanager"))
            inc = bridge.incident(incident_id)
            assert inc["state"] == "resolved" and inc["resolved_by"] == "source"
            roots = [e for e in alice.events if is_root_alert(e, "BlackBox Probe Failure")]
            assert len(roots) == 1

            # Re-fire after resolution starts a new incident with a new message.
            code, body = bridge.post("alertmanager", firing)
            assert body["incident_id"] != incident_id
            await alice.wait_for(lambda e: is_root_alert(e, "BlackBox Probe Failure") and e["event_id"] != root)
        finally:
            await alice.close()

    asyncio.run(scenario())
    metrics = bridge.metrics()
    assert metric(metrics, "tocsin_incident_acknowledgements_total", via="command") >= 1
    assert metric(metrics, "tocsin_incident_time_to_acknowledge_seconds_count") >= 1


def test_reaction_needs_power_level(alert_bridge: BridgeProcess, homeserver_under_test: HomeserverUnderTest) -> None:
    bridge, hs = alert_bridge, homeserver_under_test
    body = (FIXTURES / "grafana" / "firing_multi.json").read_bytes()
    # Grafana signs with HMAC instead of a token here.
    sig = hmac.new(bridge.hmac_secret.encode(), body, hashlib.sha256).hexdigest()
    assert bridge.post("grafana", body, token=None, headers={"X-Grafana-Alerting-Signature": "0" * 64})[0] == 403
    code, resp = bridge.post("grafana", body, token=None, headers={"X-Grafana-Alerting-Signature": sig})
    assert code == 200, resp
    incident_id = resp["incident_id"]

    async def scenario() -> None:
        alice, bob = Human(hs, "alice", bridge.alias_prefix), Human(hs, "bob", bridge.alias_prefix)
        await alice.login()
        await bob.login()
        try:
            root_ev = await alice.wait_for(lambda e: is_root_alert(e, "High memory usage"))
            root, room = root_ev["event_id"], root_ev["room_id"]
            assert "2/2 firing" in content_of(root_ev)["body"]
            await alice.client.room_invite(room, bob.user_id)
            await bob.wait_for(lambda e: e["room_id"] == room)
            await bob.react(room, root)
            await alice.wait_for(lambda e: is_thread_reply(e, root, "needs power level 50"))
            assert bridge.incident(incident_id)["state"] == "firing"
            await alice.react(room, root)
            await alice.wait_for(lambda e: is_thread_reply(e, root, "Acknowledged by"))
            inc = bridge.incident(incident_id)
            assert inc["state"] == "acknowledged" and inc["acknowledged_by"] == alice.user_id
        finally:
            await alice.close()
            await bob.close()

    asyncio.run(scenario())
    assert metric(bridge.metrics(), "tocsin_incident_acknowledgements_total", via="reaction") == 1


def _post_ok(bridge: BridgeProcess, source: str, name: str) -> Any:
    code, body = bridge.post_fixture(source, name)
    assert code == 200, (source, name, body)
    return body["incident_id"]


def test_every_fixture_renders(alert_bridge: BridgeProcess, homeserver_under_test: HomeserverUnderTest) -> None:
    bridge, hs = alert_bridge, homeserver_under_test

    async def scenario() -> None:
        alice = Human(hs, "alice", bridge.alias_prefix)
        await alice.login()
        try:
            _post_ok(bridge, "alertmanager", "unicode_labels")
            ev = await alice.wait_for(lambda e: is_root_alert(e, "数据库主库 CPU 使用率超过 95%"))
            c = content_of(ev)
            assert "服务等级=\u2068P1\u2069" in c["formatted_body"]
            assert "עברית: השרת עמוס" in c["body"] and "👩‍💻🧑🏽‍🚒" in c["body"]

            # long_annotations and oversized_annotations are two alerts of one group: the second edits the first.
            _post_ok(bridge, "alertmanager", "long_annotations")
            big = json.loads((FIXTURES / "alertmanager" / "oversized_annotations.json").read_text())
            summary = big["alerts"][0]["annotations"]["summary"]
            ev = await alice.wait_for(lambda e: is_root_alert(e, summary))
            assert "<details><summary>description (" in content_of(ev)["formatted_body"]
            _post_ok(bridge, "alertmanager", "oversized_annotations")
            edit = await alice.wait_for(lambda e: is_edit_of(e, ev["event_id"], "truncated"))
            assert len(json.dumps(edit, ensure_ascii=False).encode()) <= 65536

            grouped = _post_ok(bridge, "alertmanager", "grouped_multi")
            ev = await alice.wait_for(lambda e: is_root_alert(e, "DiskSpaceLow"))
            assert "and 2 more alerts not shown" in content_of(ev)["body"]
            assert bridge.incident(grouped)["route"] == "storage"
            storage_room = ev["room_id"]

            _post_ok(bridge, "grafana", "test_notification")
            await alice.wait_for(lambda e: is_root_alert(e, "Notification test"))

            zid = _post_ok(bridge, "zabbix", "problem")
            ev = await alice.wait_for(lambda e: is_root_alert(e, "High CPU utilization"))
            zroot = ev["event_id"]
            assert ev["room_id"] != storage_room
            assert _post_ok(bridge, "zabbix", "default_media_params") == zid
            assert _post_ok(bridge, "zabbix", "update_acknowledged") == zid
            await alice.wait_for(lambda e: is_thread_reply(e, zroot, "Mei Lin acknowledged"))
            assert bridge.incident(zid)["acknowledged_by"] == "zabbix:Mei Lin"
            assert _post_ok(bridge, "zabbix", "recovery") == zid
            await alice.wait_for(lambda e: is_edit_of(e, zroot, "RESOLVED"))
            assert bridge.incident(zid)["state"] == "resolved"
        finally:
            await alice.close()

    asyncio.run(scenario())
    assert {i["route"] for i in bridge.incidents(route="dba")} == {"dba"}


def test_restart_loses_nothing_and_posts_nothing_twice(
    alert_bridge: BridgeProcess, homeserver_under_test: HomeserverUnderTest
) -> None:
    bridge, hs = alert_bridge, homeserver_under_test
    body = json.loads((FIXTURES / "alertmanager" / "firing.json").read_text())
    body["groupKey"] = '{}:{alertname="RestartCheck"}'
    body["commonAnnotations"]["summary"] = body["alerts"][0]["annotations"]["summary"] = "Restart check alert"
    raw = json.dumps(body).encode()

    async def scenario() -> None:
        alice = Human(hs, "alice", bridge.alias_prefix)
        await alice.login()
        try:
            code, resp = bridge.post("alertmanager", raw)
            assert code == 200
            root = (await alice.wait_for(lambda e: is_root_alert(e, "Restart check alert")))["event_id"]
            bridge.stop()
            bridge.start()
            code, resp2 = bridge.post("alertmanager", raw)
            assert resp2["incident_id"] == resp["incident_id"]
            await alice.wait_for(lambda e: is_edit_of(e, root, "2 notifications"))
            await alice.sync()
            assert len([e for e in alice.events if is_root_alert(e, "Restart check alert")]) == 1
        finally:
            await alice.close()

    asyncio.run(scenario())
