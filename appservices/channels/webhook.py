"""Generic JSON webhook channel: ``POST`` the page as JSON to a URL (the recipient's ``url`` or the default)."""

from __future__ import annotations

import json
from typing import Any

from treq.client import HTTPClient
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from appservices.channels.base import AttemptRecorder, BaseChannel, DeliveryError, PageMessage, Recipient


class WebhookChannel(BaseChannel):
    """Body: ``{"incident_id", "summary", "priority", "tier" (1-based), "purpose", "room_id", "event_id", "link",
    "recipient"}``. A 2xx reply is delivery; the provider ID is the reply's ``id`` field if any. ``headers`` are
    added to every request (e.g. an ``Authorization`` token)."""

    name = "webhook"

    def __init__(self, clock: IReactorTime, url: str | None = None, headers: dict[str, str] | None = None,
                 recorder: AttemptRecorder | None = None, max_attempts: int = 3, backoff_s: float = 2.0,
                 timeout_s: float = 10.0, http_client: Any = None) -> None:
        super().__init__(clock, recorder, max_attempts, backoff_s)
        self.url = url
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        # Pages are rare: a fresh connection each time keeps no idle sockets to a provider around.
        self.http = http_client or HTTPClient(Agent(clock, pool=HTTPConnectionPool(clock, persistent=False)))

    def address_of(self, recipient: Recipient) -> str:
        """The URL this page is posted to: the recipient's, else the channel's (their user ID when neither is set)."""
        return recipient.url or self.url or recipient.user_id

    @defer.inlineCallbacks
    def attempt(self, recipient: Recipient, message: PageMessage) -> Any:
        """POST the page as JSON (incident, summary, priority, 1-based ``tier``, purpose, room/event, link, recipient).

        Fires with the ``id`` of a JSON reply object, else None. Raises :class:`DeliveryError` on a non-2xx answer
        (permanent for 4xx other than 429) and a permanent one when no URL is configured.
        """
        url = recipient.url or self.url
        if not url:
            raise DeliveryError("no webhook URL", permanent=True)
        payload = {"incident_id": message.incident_id, "summary": message.summary, "priority": message.priority,
                   "tier": message.tier + 1, "purpose": message.purpose, "room_id": message.room_id,
                   "event_id": message.event_id, "link": message.link, "recipient": recipient.user_id}
        headers = {"Content-Type": ["application/json"], **{k: [v] for k, v in self.headers.items()}}
        response = yield self.http.post(url, data=json.dumps(payload).encode(), headers=headers,
                                        timeout=self.timeout_s)
        body = yield response.content()
        if not 200 <= response.code < 300:
            raise DeliveryError(f"HTTP {response.code}", permanent=400 <= response.code < 500 and response.code != 429)
        try:
            reply = json.loads(body) if body else {}
        except ValueError:
            reply = {}
        return str(reply["id"]) if isinstance(reply, dict) and "id" in reply else None
