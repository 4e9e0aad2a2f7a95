"""Channels against loopback servers started in the test: a Twisted HTTP server speaking the Twilio API and
webhooks, and aiosmtpd for SMTP (plain+AUTH and STARTTLS). Runs on the real reactor via twisted.trial."""

from __future__ import annotations

import base64
import email
import json
import shutil
import tempfile
import ssl as std_ssl
from email import policy as email_policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from OpenSSL import crypto
from aiosmtpd.smtp import AuthResult, LoginPassword
from twisted.internet import defer, reactor
from twisted.internet import ssl as tw_ssl
from twisted.trial import unittest
from twisted.web import resource, server

from appservices.channels.base import PageMessage, Recipient
from appservices.channels.email import EmailChannel
from appservices.channels.matrix import MatrixMentionChannel, mention_content
from appservices.channels.twilio import SmsChannel, VoiceChannel
from appservices.channels.webhook import WebhookChannel
from appservices.escalation.store import EscalationStore
from tests.support.server import free_port

SID, TOKEN = "AC0123456789abcdef", "s3cret-token"
MESSAGE = PageMessage(incident_id="inc-42", summary="db1 disk 97% full", priority="critical", room_id="!ops:x.org",
                      event_id="$ev1", page_id="page-1")
ALICE = Recipient(user_id="@alice:x.org", email="alice@example.org", phone="+15550001", room_id="!ops:x.org")


class FakeTwilio(resource.Resource):
    """Minimal Twilio 2010-04-01 API: Messages.json and Calls.json with basic auth; can fail the first N calls."""

    isLeaf = True

    def __init__(self, fail_first: int = 0, fail_code: int = 500) -> None:
        super().__init__()
        self.requests: list[tuple[bytes, dict[str, list[str]]]] = []
        self.fail_first, self.fail_code = fail_first, fail_code

    def render_POST(self, request: Any) -> bytes:
        expected = b"Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode())
        if request.getHeader("authorization") != expected.decode():
            request.setResponseCode(401)
            return b'{"code": 20003, "message": "Authenticate"}'
        form = parse_qs(request.content.read().decode())
        self.requests.append((request.path, form))
        if len(self.requests) <= self.fail_first:
            request.setResponseCode(self.fail_code)
            return b'{"message": "try later"}'
        kind = request.path.rsplit(b"/", 1)[-1]
        if request.path != f"/2010-04-01/Accounts/{SID}/".encode() + kind or kind not in (b"Messages.json", b"Calls.json"):
            request.setResponseCode(404)
            return b"{}"
        request.setResponseCode(201)
        prefix = "SM" if kind == b"Messages.json" else "CA"
        request.setHeader("content-type", "application/json")
        return json.dumps({"sid": f"{prefix}{len(self.requests):032d}", "status": "queued"}).encode()


class FakeHook(resource.Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []

    def render_POST(self, request: Any) -> bytes:
        self.bodies.append(json.loads(request.content.read()))
        return json.dumps({"id": f"hook-{len(self.bodies)}"}).encode()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


def check_login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"pager", b"pw")
    return AuthResult(success=ok, handled=False)


class TwilioAndWebhookTests(unittest.TestCase):
    def serve(self, res: resource.Resource) -> str:
        port = reactor.listenTCP(0, server.Site(res), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    @defer.inlineCallbacks
    def test_sms_and_voice_use_the_twilio_api_and_record_attempts(self) -> Any:
        fake = FakeTwilio()
        base = self.serve(fake)
        store = EscalationStore.sqlite(":memory:")
        sms = SmsChannel(reactor, base, SID, TOKEN, "+15559999", recorder=store, backoff_s=0.01)
        voice = VoiceChannel(reactor, base, SID, TOKEN, "+15559999", recorder=store, backoff_s=0.01)
        r1 = yield sms.send(ALICE, MESSAGE)
        r2 = yield voice.send(ALICE, MESSAGE)
        self.assertEqual((r1.ok, r1.provider_id, r1.attempts), (True, "SM" + "1".zfill(32), 1))
        self.assertEqual((r2.ok, r2.provider_id), (True, "CA" + "2".zfill(32)))
        (p1, f1), (p2, f2) = fake.requests
        self.assertEqual(p1, f"/2010-04-01/Accounts/{SID}/Messages.json".encode())
        self.assertEqual((f1["To"], f1["From"]), (["+15550001"], ["+15559999"]))
        self.assertEqual(f1["Body"], ["[CRITICAL] db1 disk 97% full\nIncident inc-42\nhttps://matrix.to/#/!ops:x.org/$ev1"])
        self.assertEqual(p2, f"/2010-04-01/Accounts/{SID}/Calls.json".encode())
        self.assertIn("<Say>[CRITICAL] db1 disk 97% full. Incident inc-42.</Say>", f2["Twiml"][0])
        rows = [(a["channel"], a["recipient"], a["attempt"], a["result"], a["provider_id"]) for a in store.attempts()]
        self.assertEqual(rows, [("sms", "+15550001", 1, "delivered", r1.provider_id),
                                ("voice", "+15550001", 1, "delivered", r2.provider_id)])

    @defer.inlineCallbacks
    def test_retries_with_backoff_then_fails(self) -> Any:
        fake = FakeTwilio(fail_first=2)
        store = EscalationStore.sqlite(":memory:")
        sms = SmsChannel(reactor, self.serve(fake), SID, TOKEN, "+15559999", recorder=store, max_attempts=3,
                         backoff_s=0.01)
        result = yield sms.send(ALICE, MESSAGE)
        self.assertEqual((result.ok, result.attempts), (True, 3))
        self.assertEqual([a["result"] for a in store.attempts("page-1")], ["failed", "failed", "delivered"])
        always = FakeTwilio(fail_first=100)
        sms2 = SmsChannel(reactor, self.serve(always), SID, TOKEN, "+15559999", recorder=store, max_attempts=3,
                          backoff_s=0.01)
        result = yield sms2.send(ALICE, MESSAGE)
        self.assertEqual((result.ok, result.attempts, result.error), (False, 3, "DeliveryError: HTTP 500"))
        self.assertEqual(len(always.requests), 3)
        # A 4xx (wrong credentials) is permanent: one attempt only.
        bad = SmsChannel(reactor, self.serve(FakeTwilio()), SID, "wrong", "+15559999", max_attempts=3, backoff_s=0.01)
        result = yield bad.send(ALICE, MESSAGE)
        self.assertEqual((result.ok, result.attempts), (False, 1))
        self.assertIn("HTTP 401", result.error)

    @defer.inlineCallbacks
    def test_webhook_posts_json(self) -> Any:
        hook = FakeHook()
        base = self.serve(hook)
        channel = WebhookChannel(reactor, headers={"Authorization": "Bearer t"}, backoff_s=0.01)
        result = yield channel.send(Recipient(user_id="hook", url=f"{base}/escalated"), MESSAGE)
        self.assertEqual((result.ok, result.provider_id), (True, "hook-1"))
        self.assertEqual(hook.bodies, [{"incident_id": "inc-42", "summary": "db1 disk 97% full",
                                        "priority": "critical", "tier": 1, "purpose": "page",
                                        "room_id": "!ops:x.org", "event_id": "$ev1",
                                        "link": "https://matrix.to/#/!ops:x.org/$ev1", "recipient": "hook"}])

    @defer.inlineCallbacks
    def test_matrix_mention(self) -> Any:
        sent: list[tuple[str, dict[str, Any], str]] = []

        def send_message(room: str, content: dict[str, Any], txn_id: str) -> defer.Deferred[str]:
            sent.append((room, content, txn_id))
            return defer.succeed("$page1")

        result = yield MatrixMentionChannel(reactor, send_message).send(ALICE, MESSAGE)
        self.assertEqual(result.provider_id, "$page1")
        room, content, txn_id = sent[0]
        # The transaction ID is fixed by the page, so a resend after a crash posts nothing new.
        self.assertEqual(txn_id, f"tocsin-page-{MESSAGE.page_id}-@alice:x.org")
        self.assertEqual(room, "!ops:x.org")
        self.assertEqual(content["m.mentions"], {"user_ids": ["@alice:x.org"]})
        self.assertEqual(content["body"], "@alice:x.org: [CRITICAL] db1 disk 97% full (incident inc-42) "
                                          "https://matrix.to/#/!ops:x.org/$ev1")
        self.assertEqual(mention_content(Recipient(user_id="!ops:x.org"), MESSAGE)["m.mentions"], {"room": True})


class EmailTests(unittest.TestCase):
    def start_smtp(self, **kw: Any) -> tuple[Mailbox, int]:
        box = Mailbox()
        port = free_port()  # aiosmtpd needs a fixed port
        controller = Controller(box, hostname="127.0.0.1", port=port, **kw)
        controller.start()
        self.addCleanup(controller.stop)
        return box, port

    @defer.inlineCallbacks
    def test_plain_with_auth_multipart(self) -> Any:
        box, port = self.start_smtp(authenticator=check_login, auth_require_tls=False)
        store = EscalationStore.sqlite(":memory:")
        channel = EmailChannel(reactor, "127.0.0.1", "tocsin@example.org", port=port, starttls=False,
                               username="pager", password="pw", recorder=store, backoff_s=0.01)
        result = yield channel.send(ALICE, MESSAGE)
        self.assertTrue(result.ok, result.error)
        self.assertEqual(len(box.messages), 1)
        rcpts, raw = box.messages[0]
        self.assertEqual(rcpts, ["alice@example.org"])
        msg = email.message_from_bytes(raw, policy=email_policy.default)
        self.assertEqual(msg["Subject"], "[CRITICAL] db1 disk 97% full")
        self.assertEqual(msg["Message-ID"], result.provider_id)
        self.assertEqual(msg.get_content_type(), "multipart/alternative")
        plain = msg.get_body(("plain",)).get_content()
        html_part = msg.get_body(("html",)).get_content()
        self.assertIn("Open the alert: https://matrix.to/#/!ops:x.org/$ev1", plain)
        self.assertIn('<a href="https://matrix.to/#/!ops:x.org/$ev1">', html_part)
        self.assertEqual([a["result"] for a in store.attempts()], ["delivered"])
        # Wrong password: the server refuses, the channel retries then fails.
        bad = EmailChannel(reactor, "127.0.0.1", "tocsin@example.org", port=port, starttls=False,
                           username="pager", password="nope", max_attempts=2, backoff_s=0.01)
        result = yield bad.send(ALICE, MESSAGE)
        self.assertEqual((result.ok, result.attempts), (False, 2))
        self.assertEqual(len(box.messages), 1)

    @defer.inlineCallbacks
    def test_starttls(self) -> Any:
        tmp = Path(tempfile.mkdtemp(prefix="tocsin-smtp-tls-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        key = tw_ssl.KeyPair.generate(size=2048)
        cert = key.selfSignedCert(1, CN="localhost")
        (tmp / "cert.pem").write_bytes(cert.dumpPEM())
        (tmp / "key.pem").write_bytes(key.dump(crypto.FILETYPE_PEM))
        ctx = std_ssl.create_default_context(std_ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(tmp / "cert.pem"), str(tmp / "key.pem"))
        box, port = self.start_smtp(tls_context=ctx, require_starttls=True, authenticator=check_login)
        channel = EmailChannel(reactor, "127.0.0.1", "tocsin@example.org", port=port, starttls=True,
                               tls_verify=False, username="pager", password="pw", backoff_s=0.01)
        result = yield channel.send(ALICE, MESSAGE)
        self.assertTrue(result.ok, result.error)
        self.assertEqual(len(box.messages), 1)


def test_page_headline_isolates_right_to_left_and_direction_controls_only() -> None:
    """A summary with an RLO and no pop, or with Hebrew, is wrapped in FSI ... PDI in every channel's text (the
    Matrix body and formatted_body included), so "(incident ...)" after it keeps its order; plain ASCII is not
    wrapped (an SMS of GSM-7 characters stays one)."""
    import dataclasses

    hostile = dataclasses.replace(MESSAGE, summary="\u202eRLO with no pop")
    hebrew = dataclasses.replace(MESSAGE, summary="דיסק מלא")
    assert hostile.headline() == "[CRITICAL] \u2068\u202eRLO with no pop\u2069"
    assert hebrew.headline() == "[CRITICAL] \u2068דיסק מלא\u2069"
    assert MESSAGE.headline() == "[CRITICAL] db1 disk 97% full"
    content = mention_content(ALICE, hostile)
    assert "\u2068\u202eRLO with no pop\u2069 (incident inc-42)" in content["body"]
    assert "\u2068\u202eRLO with no pop\u2069</strong> (incident inc-42)" in content["formatted_body"]
    assert hostile.text().startswith("[CRITICAL] \u2068\u202eRLO with no pop\u2069\nIncident inc-42")
