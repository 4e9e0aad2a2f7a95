"""Matrix mention channel: an ``m.room.message`` in the incident room that mentions the paged person.

Uses intentional mentions (``m.mentions``, spec "Client-Server API > User and room mentions", v1.7+) so clients
notify exactly the paged user (or the whole room for room targets with ``"room": true``). Sending is delegated to
``send_message(room_id, content, txn_id) -> Deferred[event_id]`` supplied by the application service that owns
the AS token, so this package has no client-server plumbing of its own. ``txn_id`` is derived from the page ID, so
a retried or (after a crash) resent page is deduplicated by the homeserver (spec: "Transaction identifiers"). The
event ID is the provider ID: read receipts on it count as the person reading the page.
"""

from __future__ import annotations

import html
import uuid
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from appservices.channels.base import AttemptRecorder, BaseChannel, DeliveryError, PageMessage, Recipient

SendMessage = Callable[[str, dict[str, Any], str], "defer.Deferred[str]"]


def mention_content(recipient: Recipient, message: PageMessage) -> dict[str, Any]:
    """The ``m.room.message`` content (``m.text`` with HTML) for a page; a room ID recipient mentions ``@room``."""
    is_room = recipient.user_id.startswith("!")
    who = "@room" if is_room else recipient.user_id
    link = message.link
    body = f"{who}: {message.headline()} (incident {message.incident_id})"
    if link:
        body += f" {link}"
    pill = "@room" if is_room else f'<a href="https://matrix.to/#/{html.escape(recipient.user_id)}">' \
                                     f"{html.escape(recipient.display_name or recipient.user_id)}</a>"
    formatted = f"{pill}: <strong>{html.escape(message.headline())}</strong> (incident {html.escape(message.incident_id)})"
    if link:
        formatted += f' <a href="{html.escape(link)}">view alert</a>'
    return {
        "msgtype": "m.text", "body": body, "format": "org.matrix.custom.html", "formatted_body": formatted,
        "m.mentions": {"room": True} if is_room else {"user_ids": [recipient.user_id]},
    }


class MatrixMentionChannel(BaseChannel):
    """Page by mentioning the recipient in ``recipient.room_id`` (or in the room the recipient *is*)."""

    name = "matrix"

    def __init__(self, clock: IReactorTime, send_message: SendMessage, recorder: AttemptRecorder | None = None,
                 max_attempts: int = 3, backoff_s: float = 2.0) -> None:
        super().__init__(clock, recorder, max_attempts, backoff_s)
        self.send_message = send_message

    @defer.inlineCallbacks
    def attempt(self, recipient: Recipient, message: PageMessage) -> Any:
        """Post the mention message into the recipient's room (a room ID recipient, their ``room_id``, else the
        incident room) with a transaction ID fixed per page and recipient, so a retry sends the event once
        (spec: client-server API "Transaction identifiers"). Fires with the event ID; raises a permanent
        :class:`DeliveryError` when there is no room.
        """
        room = recipient.user_id if recipient.user_id.startswith("!") else (recipient.room_id or message.room_id)
        if not room:
            raise DeliveryError(f"no room to mention {recipient.user_id} in", permanent=True)
        # One transaction ID per page and recipient: retries and resends after a restart post the event once.
        txn_id = f"tocsin-page-{message.page_id or uuid.uuid4().hex}-{recipient.user_id}"
        event_id = yield self.send_message(room, mention_content(recipient, message), txn_id)
        return event_id
