"""Escalation end to end with real processes: a homeserver (each of tests.alerts' HOMESERVERS), the alert bridge
with escalation enabled, a Twilio-compatible HTTP server and a real SMTP server. An Alertmanager notification
comes in; the on-call person's matrix-nio client does not read it; SMS and email follow on the read timeout; the
person reads (a read receipt pushed to the bridge as ephemeral data) and acknowledges; nothing more is sent.
A second test SIGKILLs the bridge mid-policy and checks the next page still goes out once, on time."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from nio.api import ReceiptType

from escalation_e2e_lib import (
    EphemeralRegistration,
    EscalatingBridge,
    FakeTwilio,
    SmtpSink,
    escalation_yaml,
    login,
)
from tests.alerts.harness import FIXTURES, HomeserverUnderTest, metric
from tests.alerts.humans import PASSWORD, Human, content_of, is_root_alert, is_thread_reply

pytestmark = pytest.mark.slow

FIRING = (FIXTURES / "alertmanager" / "firing.json").read_bytes()
SUMMARY = "BlackBox Probe Failure: https://shop.example.org"


async def until(predicate: Callable[[], Any], timeout_s: float, human: Human | None = None) -> Any:
    """Poll ``predicate`` (syncing ``human`` meanwhile, else sleeping 0.1 s) until it is truthy; its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        if human is not None:
            await human.sync(timeout_ms=200)
        else:
            await asyncio.sleep(0.1)


def is_page_for(user_id: str, incident_id: str) -> Callable[[dict[str, Any]], bool]:
    """The escalation's Matrix page for ``incident_id``: an m.text mentioning exactly ``user_id``.

    (Rooms of earlier tests hold pages of other incidents with the same summary.)
    """

    def check(ev: dict[str, Any]) -> bool:
        c = content_of(ev)
        return (ev.get("type") == "m.room.message" and c.get("m.mentions") == {"user_ids": [user_id]}
                and c.get("body", "").startswith(f"{user_id}: [CRITICAL] {SUMMARY} (incident {incident_id})"))

    return check


def alert_of(page: dict[str, Any]) -> tuple[str, str]:
    """``(room_id, alert event ID)`` from the matrix.to link of a page."""
    m = re.search(r"https://matrix\.to/#/(![^/\s]+)/(\$\S+)$", body_of(page))
    assert m, body_of(page)
    assert m.group(1) == page["room_id"]
    return m.group(1), m.group(2)


def body_of(ev: dict[str, Any]) -> str:
    return str(content_of(ev).get("body", ""))


def test_unread_page_goes_to_sms_and_email_then_read_and_ack_stop_it(
    escalation_homeserver: HomeserverUnderTest, escalation_registration: EphemeralRegistration,
    twilio: FakeTwilio, smtp: SmtpSink, escalation_session_dir: Path,
) -> None:
    hs = escalation_homeserver
    alice_id, bob_id = f"@alice:{hs.server_name}", f"@bob:{hs.server_name}"
    room_alias = f"#esc-main:{hs.server_name}"
    # Bob takes over schedule "backup" 25 s from now: the bridge announces that handoff in the room.
    handoff = (datetime.now(timezone.utc) + timedelta(seconds=25)).replace(microsecond=0)
    read_timeout, tier_timeout = 3, 14
    bridge = EscalatingBridge(
        escalation_session_dir / f"main-{hs.name}", escalation_registration, hs, room_alias,
        escalation_yaml(twilio, smtp, hs.server_name, read_timeout, tier_timeout,
                        handoff.strftime("%Y-%m-%dT%H:%M:%S")),
        handoff_room=room_alias,
    )
    bridge.start()

    async def scenario() -> None:
        alice = Human(hs, "alice")
        await alice.login()
        try:
            t0 = time.monotonic()
            incident_id = bridge.post_alert(FIRING)["incident_id"]
            page = await alice.wait_for(is_page_for(alice_id, incident_id), timeout_s=10)
            room, root = alert_of(page)
            root_ev = await alice.wait_for(lambda e: e["event_id"] == root)
            assert is_root_alert(root_ev, "BlackBox Probe Failure")

            # Alice's client shows nothing as read; after the read timeout the SMS goes out...
            sms = (await until(twilio.messages, 15, alice))[0]
            assert sms.form["To"] == "+15550001" and sms.form["From"] == "+15005550006"
            assert sms.form["Body"].startswith(f"[CRITICAL] {SUMMARY}\nIncident {incident_id}\n")
            assert read_timeout - 0.5 <= sms.at - t0 <= read_timeout + 4, sms.at - t0
            # ...and one read timeout later the email.
            mail = (await until(smtp.messages, 15, alice))[0]
            assert mail.rcpt_tos == ["alice@example.org"] and mail.mail_from == "tocsin@example.org"
            assert mail.message["Subject"] == f"[CRITICAL] {SUMMARY}"
            plain = mail.message.get_body(("plain",)).get_content()
            html = mail.message.get_body(("html",)).get_content()
            assert f"Open the alert: https://matrix.to/#/{room}/{root}" in plain
            assert f'href="https://matrix.to/#/{room}/{root}"' in html
            assert read_timeout - 1 <= mail.at - sms.at <= read_timeout + 3, mail.at - sms.at

            # Alice reads (a receipt on the newest event she has) and the bridge learns it from the homeserver.
            newest = [e for e in alice.events if e["room_id"] == room][-1]["event_id"]
            await alice.client.update_receipt_marker(room, newest, ReceiptType.read)
            await until(lambda: metric(bridge.get("/metrics")[1], "tocsin_escalation_time_to_read_seconds_count"),
                        15, alice)
            await alice.thread_command(room, root, "!ack")
            await alice.wait_for(lambda e: is_thread_reply(e, root, f"Acknowledged by {alice_id}"))

            # Past the tier timeout (bob would be paged) and further: nothing else goes out.
            while time.monotonic() < t0 + tier_timeout + read_timeout + 2:
                await alice.sync(timeout_ms=500)
            assert len(twilio.messages()) == 1 and len(smtp.messages()) == 1
            assert len([e for e in alice.events if is_page_for(alice_id, incident_id)(e)]) == 1
            assert not [e for e in alice.events if (content_of(e).get("m.mentions") or {}).get("user_ids") == [bob_id]]

            # !status: the bridge's own summary, then the escalation trail per person.
            await alice.thread_command(room, root, "!status")
            trail = body_of(await alice.wait_for(lambda e: is_thread_reply(e, root, "Escalation trail")))
            assert f"Incident {incident_id}: acknowledged, priority critical, policy oncall, tier 1, cycle 1" in trail
            ts = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
            assert re.search(
                rf"- {re.escape(alice_id)}: notified matrix {ts} \(delivered\), sms {ts} \(delivered\), "
                rf"email {ts} \(delivered\); read {ts}; acked {ts}", trail), trail

            # !oncall in the room, with and without a schedule name.
            await alice.send(room, {"msgtype": "m.text", "body": "!oncall primary"})
            answer = body_of(await alice.wait_for(lambda e: e["room_id"] == room and body_of(e).startswith("On call at")))
            assert f"- primary: {alice_id}" in answer and "backup" not in answer
            await alice.send(room, {"msgtype": "m.text", "body": "!oncall"})
            answer = body_of(await alice.wait_for(lambda e: e["room_id"] == room and body_of(e).startswith("On call at")
                                                  and "backup" in body_of(e)))
            assert f"- backup: {alice_id} (next handoff {handoff:%Y-%m-%d %H:%M} UTC to {bob_id})" in answer
            await alice.send(room, {"msgtype": "m.text", "body": "!oncall nosuch"})
            await alice.wait_for(lambda e: e["room_id"] == room
                                 and body_of(e) == "No schedule named 'nosuch' (known: backup, primary).")

            # The handoff is announced in the team room when it happens, mentioning the new on-call person.
            note = await alice.wait_for(lambda e: e["room_id"] == room and "On-call handoff for schedule backup" in body_of(e),
                                        timeout_s=max(5.0, (handoff - datetime.now(timezone.utc)).total_seconds() + 10))
            assert f"{alice_id} → {bob_id}" in body_of(note)
            assert content_of(note)["m.mentions"] == {"user_ids": [bob_id]}
            assert datetime.now(timezone.utc) >= handoff
        finally:
            await alice.close()

    try:
        asyncio.run(scenario())
        # iCalendar export over HTTP with the API token.
        code, ics = bridge.get("/api/v1/schedules/primary.ics")
        assert code == 200 and ics.startswith("BEGIN:VCALENDAR") and f"SUMMARY:On call (primary): {alice_id}" in ics
        assert bridge.get("/api/v1/schedules/primary.ics", token=None)[0] == 401
        assert bridge.get("/api/v1/schedules/primary.ics", token="wrong")[0] == 403
        assert bridge.get("/api/v1/schedules/nosuch.ics")[0] == 404
        # /metrics carries the bridge's and the escalation's metrics.
        text = bridge.get("/metrics")[1]
        assert metric(text, "tocsin_alerts_received_total", source="alertmanager", status="firing") == 1
        for channel in ("matrix", "sms", "email"):
            assert metric(text, "tocsin_escalation_pages_sent_total", channel=channel, result="delivered") == 1
        assert metric(text, "tocsin_escalation_escalations_total", tier="1") == 1
        assert metric(text, "tocsin_escalation_escalations_total", tier="2") == 0
        assert metric(text, "tocsin_escalation_time_to_acknowledge_seconds_count") == 1
        assert metric(text, "tocsin_channel_delivery_attempts_total", channel="sms", result="delivered") == 1
    finally:
        bridge.stop()
        print(f"\n--- bridge log tail ---\n{bridge.log_tail(60)}")


def test_sigkill_mid_policy_next_page_goes_out_once_on_time(
    escalation_homeserver: HomeserverUnderTest, escalation_registration: EphemeralRegistration,
    twilio: FakeTwilio, smtp: SmtpSink, escalation_session_dir: Path,
) -> None:
    hs = escalation_homeserver
    alice_id = f"@alice:{hs.server_name}"
    read_timeout = 5
    bridge = EscalatingBridge(
        escalation_session_dir / f"kill-{hs.name}", escalation_registration, hs,
        f"#esc-kill:{hs.server_name}",
        escalation_yaml(twilio, smtp, hs.server_name, read_timeout, tier_timeout_s=120),
    )
    bridge.start()

    async def scenario() -> None:
        alice = Human(hs, "alice")
        await alice.login()
        try:
            t0 = time.monotonic()
            incident_id = bridge.post_alert(FIRING)["incident_id"]
            page = await alice.wait_for(is_page_for(alice_id, incident_id), timeout_s=10)
            seen = time.monotonic()
            # Mid-policy: the chat page is out, the SMS timer is pending in the database.
            bridge.kill()
            bridge.start()
            restarted = time.monotonic()
            assert restarted < t0 + read_timeout, "restart too slow for an on-time check"
            sms = (await until(twilio.messages, 15, alice))[0]
            # Due read_timeout after the chat page, which went out between t0 and `seen`.
            assert t0 + read_timeout - 0.2 <= sms.at <= seen + read_timeout + 1.5, (sms.at - t0, seen - t0)
            mail = (await until(smtp.messages, 15, alice))[0]
            assert sms.at + read_timeout - 0.5 <= mail.at <= sms.at + read_timeout + 2
            while time.monotonic() < mail.at + read_timeout + 1:
                await alice.sync(timeout_ms=500)
            # Once each: nothing doubled by the restart, nothing lost.
            assert [m.form["To"] for m in twilio.messages()] == ["+15550001"]
            assert [m.rcpt_tos for m in smtp.messages()] == [["alice@example.org"]]
            assert len([e for e in alice.events if is_page_for(alice_id, incident_id)(e)]) == 1
            room, root = alert_of(page)
            await alice.thread_command(room, root, "!status")
            trail = body_of(await alice.wait_for(lambda e: is_thread_reply(e, root, "Escalation trail")))
            assert f"Incident {incident_id}: open" in trail
            assert trail.count("(delivered)") == 3 and "read -; acked -" in trail
        finally:
            await alice.close()

    try:
        asyncio.run(scenario())
    finally:
        bridge.stop()
        print(f"\n--- bridge log tail ---\n{bridge.log_tail(60)}")


def test_receipts_through_sync_when_not_pushed_read_page_gets_reminders_not_sms(
    escalation_homeserver: HomeserverUnderTest, sync_registration: EphemeralRegistration,
    twilio: FakeTwilio, smtp: SmtpSink, escalation_session_dir: Path,
) -> None:
    hs = escalation_homeserver
    alice_id = f"@alice:{hs.server_name}"
    watcher_id = f"@receipts:{hs.server_name}"
    read_timeout = 6
    bridge = EscalatingBridge(
        escalation_session_dir / f"sync-{hs.name}", sync_registration, hs, f"#escsync-main:{hs.server_name}",
        escalation_yaml(twilio, smtp, hs.server_name, read_timeout, tier_timeout_s=120, reminder="3s"),
        # Homeservers refuse /sync to appservice users: an ordinary account watches the receipts.
        sync_account=login(hs, "receipts", PASSWORD),
    )
    bridge.start()

    async def scenario() -> None:
        alice = Human(hs, "alice")
        await alice.login()
        try:
            incident_id = bridge.post_alert(FIRING)["incident_id"]
            page = await alice.wait_for(is_page_for(alice_id, incident_id), timeout_s=10)
            room, root = alert_of(page)
            # The bridge invited the receipt account with the first page; it joins from its own /sync.
            await alice.wait_for(lambda e: e.get("type") == "m.room.member" and e.get("state_key") == watcher_id
                                 and content_of(e).get("membership") == "join", timeout_s=read_timeout - 2)
            # She reads at once: the receipt account sees it in its /sync (no ephemeral push).
            await alice.client.update_receipt_marker(room, page["event_id"], ReceiptType.read)
            await until(lambda: metric(bridge.get("/metrics")[1], "tocsin_escalation_time_to_read_seconds_count"),
                        read_timeout - 1, alice)
            # Read but not acknowledged: reminded in chat instead of being texted.
            reminder = await alice.wait_for(
                lambda e: body_of(e).startswith(f"{alice_id}: Reminder: [CRITICAL] {SUMMARY} (incident {incident_id})"),
                timeout_s=read_timeout + 6)
            assert content_of(reminder)["m.mentions"] == {"user_ids": [alice_id]}
            await alice.thread_command(room, root, "!ack")
            await alice.wait_for(lambda e: is_thread_reply(e, root, f"Acknowledged by {alice_id}"))
            await alice.thread_command(room, root, "!status")
            trail = body_of(await alice.wait_for(lambda e: is_thread_reply(e, root, "Escalation trail")))
            ts = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
            assert re.search(rf"- {re.escape(alice_id)}: notified matrix {ts} \(delivered\), matrix {ts} "
                             rf"\(delivered\).*; read {ts}; acked {ts}", trail), trail
        finally:
            await alice.close()

    try:
        asyncio.run(scenario())
        assert twilio.messages() == [] and smtp.messages() == []
    finally:
        bridge.stop()
        print(f"\n--- bridge log tail ---\n{bridge.log_tail(60)}")
