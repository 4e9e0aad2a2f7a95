"""SMS and voice calls through a Twilio-compatible HTTP API (Twilio's 2010-04-01 REST API, via treq).

``POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json`` with form fields ``To``, ``From``, ``Body`` sends an
SMS; ``.../Calls.json`` with ``To``, ``From`` and ``Twiml`` places a call that reads the summary with ``<Say>``.
HTTP basic auth is the account SID and auth token. The provider's ``sid`` in the JSON reply is the provider ID.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from appservices.channels.base import AttemptRecorder, BaseChannel, DeliveryError, PageMessage, Recipient


class _TwilioChannel(BaseChannel):
    resource = ""

    def __init__(self, clock: IReactorTime, base_url: str, account_sid: str, auth_token: str, from_number: str,
                 recorder: AttemptRecorder | None = None, max_attempts: int = 3, backoff_s: float = 2.0,
                 timeout_s: float = 10.0, http_client: Any = None) -> None:
        super().__init__(clock, recorder, max_attempts, backoff_s)
        self.url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}/{self.resource}"
        self.auth = (account_sid.encode(), auth_token.encode())
        self.from_number = from_number
        self.timeout_s = timeout_s
        # Pages are rare: a fresh connection each time keeps no idle sockets to a provider around.
        self.http = http_client or HTTPClient(Agent(clock, pool=HTTPConnectionPool(clock, persistent=False)))

    def address_of(self, recipient: Recipient) -> str:
        """The recipient's phone number (their user ID when they have none), recorded with each attempt."""
        return recipient.phone or recipient.user_id

    def form(self, recipient: Recipient, message: PageMessage) -> dict[str, str]:
        """The form fields of the Twilio request (``To``, ``From``, ``Body`` or ``Twiml``); subclasses implement it."""
        raise NotImplementedError

    @defer.inlineCallbacks
    def attempt(self, recipient: Recipient, message: PageMessage) -> Any:
        """POST the form to the Twilio resource (timeout ``timeout_s`` seconds); fires with the message/call ``sid``.

        Raises :class:`DeliveryError`: permanent when the recipient has no phone or Twilio answers another 4xx,
        retryable on 5xx, 429 or a reply without ``sid``.
        """
        if not recipient.phone:
            raise DeliveryError(f"{recipient.user_id} has no phone number", permanent=True)
        response = yield self.http.post(self.url, data=self.form(recipient, message), auth=self.auth,
                                        timeout=self.timeout_s)
        body = yield response.content()
        if response.code >= 500 or response.code == 429:
            raise DeliveryError(f"HTTP {response.code}")
        if response.code >= 400:
            # Twilio reports bad numbers and auth errors as 4xx: retrying cannot help.
            raise DeliveryError(f"HTTP {response.code}: {body[:200].decode('utf-8', 'replace')}", permanent=True)
        try:
            sid = json.loads(body)["sid"]
        except (ValueError, KeyError, TypeError) as e:
            raise DeliveryError(f"unexpected reply: {body[:200]!r}") from e
        return str(sid)


class SmsChannel(_TwilioChannel):
    """SMS via ``Messages.json``; the body is the headline, incident ID and matrix.to link (kept short)."""

    name = "sms"
    resource = "Messages.json"

    def form(self, recipient: Recipient, message: PageMessage) -> dict[str, str]:
        """``To``/``From``/``Body``: the plain-text page, cut to Twilio's 1600-character limit."""
        return {"To": recipient.phone or "", "From": self.from_number, "Body": message.text()[:1600]}


class VoiceChannel(_TwilioChannel):
    """Voice call via ``Calls.json`` with inline TwiML that says the summary twice."""

    name = "voice"
    resource = "Calls.json"

    def form(self, recipient: Recipient, message: PageMessage) -> dict[str, str]:
        """``To``/``From``/``Twiml``: a TwiML ``<Say>`` of the headline and incident ID, spoken twice."""
        said = escape(f"{message.headline()}. Incident {message.incident_id}.")
        twiml = f"<Response><Say>{said}</Say><Pause length=\"1\"/><Say>{said}</Say></Response>"
        return {"To": recipient.phone or "", "From": self.from_number, "Twiml": twiml}
