"""End-to-end, part two: the chat commands not covered by test_e2e.py (``!unack``, ``!resolve``, ``!status``,
``!silence`` at a fake Alertmanager and as a mute in the bridge), generic JSON ingest, and a bridge killed
right after answering 2xx. Parametrised by homeserver and bridge database like test_e2e.py."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import pytest

from .fake_alertmanager import FakeAlertmanager
from .harness import FIXTURES, BridgeProcess, HomeserverUnderTest
from .humans import Human, content_of, is_edit_of, is_root_alert, is_thread_reply

pytestmark = pytest.mark.slow


def _alertmanager_body(name: str, summary: str, **extra_group_labels: str) -> bytes:
    """firing.json made into a group of its own: ``alertname`` = ``name`` and the given summary."""
    body = json.loads((FIXTURES / "alertmanager" / "firing.json").read_text())
    group_labels = {"alertname": name, **extra_group_labels}
    body["groupLabels"] = group_labels
    body["groupKey"] = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in sorted(group_labels.items())) + "}"
    body["commonLabels"].update(group_labels)
    body["commonAnnotations"]["summary"] = summary
    for i, alert in enumerate(body["alerts"]):
        alert["labels"].update(group_labels)
        alert["annotations"]["summary"] = summary
        alert["fingerprint"] = f"{name.lower()}{i:04d}"
    return json.dumps(body).encode()


def _post(bridge: BridgeProcess, source: str, raw: bytes) -> str:
    code, resp = bridge.post(source, raw)
    assert code == 200, resp
    assert resp["status"] == "stored"
    return str(resp["incident_id"])


def _actions(bridge: BridgeProcess, incident_id: str) -> list[tuple[str, str, Any]]:
    return [(a["action"], a["actor"], a["detail"]) for a in bridge.incident(incident_id)["actions"]]


def test_unack_status_resolve_from_chat(alert_bridge: BridgeProcess, homeserver_under_test: HomeserverUnderTest) -> None:
    bridge, hs = alert_bridge, homeserver_under_test
    raw = _alertmanager_body("ChatCommands", "Chat commands check")

    async def scenario() -> None:
        alice = Human(hs, "alice", bridge.alias_prefix)
        await alice.login()
        try:
            iid = _post(bridge, "alertmanager", raw)
            root_ev = await alice.wait_for(lambda e: is_root_alert(e, "Chat commands check"))
            root, room = root_ev["event_id"], root_ev["room_id"]

            await alice.thread_command(room, root, "!ack")
            await alice.wait_for(lambda e: is_thread_reply(e, root, f"Acknowledged by {alice.user_id}"))
            await alice.thread_command(room, root, "!unack")
            await alice.wait_for(lambda e: is_thread_reply(e, root, f"Acknowledgement withdrawn by {alice.user_id}"))
            inc = bridge.incident(iid)
            assert (inc["state"], inc["acknowledged_by"]) == ("firing", None)
            # The edit after !unack shows the incident firing again, not acknowledged.
            edit = await alice.wait_for(lambda e: is_edit_of(e, root, "FIRING"))
            assert "ACKNOWLEDGED" not in edit["content"]["m.new_content"]["body"]
            await alice.reply_command(room, root, "!unack")
            await alice.wait_for(lambda e: is_thread_reply(e, root, f"Incident {iid} is not acknowledged."))

            await alice.reply_command(room, root, "!status")
            status = await alice.wait_for(lambda e: is_thread_reply(e, root, f"Incident {iid}: FIRING"))
            text = content_of(status)["body"]
            assert "critical · route main · alertmanager" in text
            assert "1/1 alerts firing, 1 notifications" in text
            assert "Escalation policy: primary" in text

            await alice.thread_command(room, root, "!resolve")
            await alice.wait_for(lambda e: is_thread_reply(e, root, f"Resolved by {alice.user_id} after"))
            await alice.wait_for(lambda e: is_edit_of(e, root, "RESOLVED"))
            inc = bridge.incident(iid)
            assert (inc["state"], inc["resolved_by"]) == ("resolved", alice.user_id)
            assert inc["resolved_ts"] >= inc["created_ts"]
            await alice.thread_command(room, root, "!ack")
            await alice.wait_for(lambda e: is_thread_reply(e, root, f"Incident {iid} is already resolved"))
            assert bridge.incident(iid)["state"] == "resolved"

            acts = _actions(bridge, iid)
            assert [a for a in acts if a[0] in ("ack", "unack", "resolve")] == [
                ("ack", alice.user_id, None), ("unack", alice.user_id, None), ("resolve", alice.user_id, None),
            ]
            # The source still says firing: after a resolve from chat that opens a new incident and message.
            new_iid = _post(bridge, "alertmanager", raw)
            assert new_iid != iid
            await alice.wait_for(lambda e: is_root_alert(e, "Chat commands check") and e["event_id"] != root)
        finally:
            await alice.close()

    asyncio.run(scenario())


def test_silence_at_alertmanager_or_muted_in_the_bridge(
    alert_bridge: BridgeProcess, homeserver_under_test: HomeserverUnderTest, fake_alertmanager: FakeAlertmanager
) -> None:
    bridge, hs = alert_bridge, homeserver_under_test
    raw = _alertmanager_body("SilenceCheck", "Silence check alert", cluster="prod-eu-1")

    async def scenario() -> None:
        alice = Human(hs, "alice", bridge.alias_prefix)
        await alice.login()
        try:
            iid = _post(bridge, "alertmanager", raw)
            root_ev = await alice.wait_for(lambda e: is_root_alert(e, "Silence check alert"))
            root, room = root_ev["event_id"], root_ev["room_id"]
            before_ms = int(time.time() * 1000)
            await alice.thread_command(room, root, "!silence 2h")

            if bridge.alertmanager_url:
                reply = await alice.wait_for(lambda e: is_thread_reply(e, root, "Silenced at Alertmanager until"))
                mine = [s for s in fake_alertmanager.silences if iid in s["comment"]]
                assert len(mine) == 1
                silence = mine[0]
                assert silence["matchers"] == [
                    {"name": "alertname", "value": "SilenceCheck", "isRegex": False, "isEqual": True},
                    {"name": "cluster", "value": "prod-eu-1", "isRegex": False, "isEqual": True},
                ]
                assert silence["createdBy"] == alice.user_id
                starts = datetime.fromisoformat(silence["startsAt"].replace("Z", "+00:00"))
                ends = datetime.fromisoformat(silence["endsAt"].replace("Z", "+00:00"))
                assert (ends - starts).total_seconds() == 7200
                assert f"(silence {silence['id']})" in content_of(reply)["body"]
                assert ("silence", alice.user_id, f"alertmanager:{silence['id']}") in _actions(bridge, iid)
                assert bridge.incident(iid)["muted_until_ts"] is None
            else:
                await alice.wait_for(lambda e: is_thread_reply(e, root, "Muted in the bridge until"))
                assert not [s for s in fake_alertmanager.silences if iid in s["comment"]]
                inc = bridge.incident(iid)
                muted_until = inc["muted_until_ts"]
                assert before_ms + 7200_000 <= muted_until <= int(time.time() * 1000) + 7200_000
                assert ("mute", alice.user_id, str(muted_until)) in _actions(bridge, iid)
                # A repeat while muted edits the message but posts nothing into the thread. The outbox keeps an
                # incident's messages in order, so once the edit is seen any thread notice would be too.
                assert _post(bridge, "alertmanager", raw) == iid
                await alice.wait_for(lambda e: is_edit_of(e, root, "2 notifications"))
                assert not [e for e in alice.events if is_thread_reply(e, root, "Still firing")]
            # !silence never changes the incident's state.
            assert bridge.incident(iid)["state"] == "firing"
        finally:
            await alice.close()

    asyncio.run(scenario())


def test_generic_json_end_to_end(alert_bridge: BridgeProcess, homeserver_under_test: HomeserverUnderTest) -> None:
    bridge, hs = alert_bridge, homeserver_under_test
    down = {
        "monitor": {"id": "mon-42", "name": "api-health", "url": "https://api.example.org/health"},
        "state": "down",
        "severity": "critical",
        "message": "API health check failing",
        "details": "HTTP 503 on 3 consecutive checks",
    }
    missing = dict(down, monitor={"name": "api-health"})
    code, resp = bridge.post("generic/uptime", json.dumps(missing).encode())
    assert code == 400 and "missing field monitor.id" in resp["error"]
    assert bridge.post("generic/uptime", json.dumps(down).encode(), token="wrong")[0] == 403
    assert bridge.post("generic/nosuch", json.dumps(down).encode(), token="x")[0] == 404
    assert not [i for i in bridge.incidents() if i["source"] == "generic:uptime"]

    async def scenario() -> None:
        alice = Human(hs, "alice", bridge.alias_prefix)
        await alice.login()
        try:
            iid = _post(bridge, "generic/uptime", json.dumps(down).encode())
            root_ev = await alice.wait_for(lambda e: is_root_alert(e, "API health check failing"))
            root = root_ev["event_id"]
            c = content_of(root_ev)
            assert c["body"].startswith("🔴 FIRING [CRITICAL]")
            assert "HTTP 503 on 3 consecutive checks" in c["body"]
            assert 'href="https://api.example.org/health"' in c["formatted_body"]
            assert c["m.mentions"] == {"user_ids": [alice.user_id]}
            inc = bridge.incident(iid)
            assert (inc["source"], inc["dedup_key"], inc["route"], inc["severity"]) == (
                "generic:uptime", "mon-42", "main", "critical")
            assert [a["labels"]["alertname"] for a in inc["alerts"]] == ["api-health"]

            assert _post(bridge, "generic/uptime", json.dumps(dict(down, state="up")).encode()) == iid
            await alice.wait_for(lambda e: is_edit_of(e, root, "RESOLVED"))
            await alice.wait_for(lambda e: is_thread_reply(e, root, "Resolved by generic:uptime"))
            inc = bridge.incident(iid)
            assert (inc["state"], inc["resolved_by"]) == ("resolved", "source")
        finally:
            await alice.close()

    asyncio.run(scenario())


def test_killed_right_after_2xx_keeps_the_alert_and_posts_it_once(
    alert_bridge: BridgeProcess, homeserver_under_test: HomeserverUnderTest
) -> None:
    bridge, hs = alert_bridge, homeserver_under_test
    summaries = [f"Crash check {i}" for i in range(3)]
    bodies = [_alertmanager_body(f"CrashCheck{i}", s) for i, s in enumerate(summaries)]

    async def scenario() -> None:
        alice = Human(hs, "alice", bridge.alias_prefix)
        await alice.login()
        try:
            # SIGKILL as soon as the last 2xx is in: no shutdown code runs, sends may be mid-flight or not started.
            ids = [_post(bridge, "alertmanager", raw) for raw in bodies]
            bridge.kill()
            bridge.start()
            for iid, summary in zip(ids, summaries):
                inc = bridge.incident(iid)
                assert (inc["state"], inc["title"]) == ("firing", summary)
            roots = [await alice.wait_for(lambda e, s=s: is_root_alert(e, s)) for s in summaries]
            # A few more syncs give any duplicate time to show up.
            for _ in range(3):
                await alice.sync()
            for summary in summaries:
                assert len([e for e in alice.events if is_root_alert(e, summary)]) == 1, summary
            # The restarted bridge knows the messages it sent before the kill: a command on them still works.
            await alice.thread_command(roots[0]["room_id"], roots[0]["event_id"], "!ack")
            await alice.wait_for(lambda e: is_thread_reply(e, roots[0]["event_id"], "Acknowledged by"))
            assert bridge.incident(ids[0])["state"] == "acknowledged"
        finally:
            await alice.close()

    asyncio.run(scenario())
