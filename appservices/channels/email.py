"""Email over SMTP (twisted.mail ``ESMTPSenderFactory``): STARTTLS and AUTH configurable.

Each page is a ``multipart/alternative`` message with a plain-text and an HTML part giving the summary, the
priority, the incident ID and a link to the alert in its room (``https://matrix.to/#/<room>/<event>``). The
``Message-ID`` we generate is recorded as the provider ID.
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from io import BytesIO
from typing import Any

from twisted.internet import defer, ssl
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.mail.smtp import ESMTPSenderFactory

from appservices.channels.base import AttemptRecorder, BaseChannel, DeliveryError, PageMessage, Recipient


def build_email(sender: str, recipient: Recipient, message: PageMessage, message_id: str) -> bytes:
    """The RFC 5322 bytes of a page: subject = headline, plain + HTML alternatives."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient.email or ""
    msg["Subject"] = message.headline()
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = message_id
    msg["X-Tocsin-Incident"] = message.incident_id
    link = message.link
    plain = [message.headline(), "", f"Incident: {message.incident_id}", f"Priority: {message.priority}"]
    if link:
        plain += ["", f"Open the alert: {link}"]
    plain += ["", "Acknowledge in the room with !ack, or react to the alert."]
    msg.set_content("\n".join(plain) + "\n")
    link_html = f'<p><a href="{html.escape(link)}">Open the alert in Matrix</a></p>' if link else ""
    msg.add_alternative(
        "<html><body>"
        f"<h2>{html.escape(message.headline())}</h2>"
        f"<p>Incident <code>{html.escape(message.incident_id)}</code>, priority "
        f"<strong>{html.escape(message.priority)}</strong></p>"
        f"{link_html}<p>Acknowledge in the room with <code>!ack</code>, or react to the alert.</p>"
        "</body></html>\n",
        subtype="html",
    )
    return msg.as_bytes()


class EmailChannel(BaseChannel):
    """SMTP delivery. ``starttls``: require STARTTLS (``tls_verify`` checks the server certificate against
    ``host``); ``username``/``password``: AUTH (required when given). ``port`` defaults to 587."""

    name = "email"

    def __init__(self, reactor: Any, host: str, sender: str, port: int = 587, starttls: bool = True,
                 username: str | None = None, password: str | None = None, tls_verify: bool = True,
                 recorder: AttemptRecorder | None = None, max_attempts: int = 3, backoff_s: float = 2.0,
                 timeout_s: float = 30.0, clock: IReactorTime | None = None) -> None:
        super().__init__(clock or reactor, recorder, max_attempts, backoff_s)
        self.reactor: IReactorTCP = reactor
        self.host, self.port, self.sender = host, port, sender
        self.starttls, self.tls_verify = starttls, tls_verify
        self.username, self.password = username, password
        self.timeout_s = timeout_s

    def address_of(self, recipient: Recipient) -> str:
        """The recipient's email address (their user ID when they have none), recorded with each attempt."""
        return recipient.email or recipient.user_id

    def attempt(self, recipient: Recipient, message: PageMessage) -> "defer.Deferred[str]":
        """Send one email over SMTP (STARTTLS and AUTH when configured; connect timeout ``timeout_s`` seconds).

        Fires with the RFC 5322 ``Message-ID`` it generated; fails with a permanent :class:`DeliveryError` when the
        recipient has no email address, or with the SMTP client's error.
        """
        if not recipient.email:
            return defer.fail(DeliveryError(f"{recipient.user_id} has no email address", permanent=True))
        domain = self.sender.rpartition("@")[2] or "localhost"
        message_id = make_msgid(idstring=message.incident_id.replace("@", "_")[:40], domain=domain)
        body = build_email(self.sender, recipient, message, message_id)
        done: defer.Deferred[Any] = defer.Deferred()
        context = None
        if self.starttls:
            context = ssl.optionsForClientTLS(self.host) if self.tls_verify else ssl.CertificateOptions(verify=False)
        factory = ESMTPSenderFactory(
            self.username.encode() if self.username else None,
            self.password.encode() if self.password else None,
            self.sender, [recipient.email], BytesIO(body), done, retries=0, contextFactory=context,
            requireAuthentication=self.username is not None, requireTransportSecurity=self.starttls,
        )
        factory.domain = domain.encode()
        self.reactor.connectTCP(self.host, self.port, factory, timeout=self.timeout_s)
        done.addCallback(lambda _: message_id)
        return done
