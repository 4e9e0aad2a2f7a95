"""Send-to-device messaging: queue messages for devices, delivered through ``/sync`` ``to_device``.

Spec: Client-Server API, "Send-to-Device messaging" (``PUT /sendToDevice/{eventType}/{txnId}``). Delivery and
acknowledgement happen in :meth:`homeserver.handlers.e2e_keys.E2EKeysHandler.get_sync_e2e`.
"""

from __future__ import annotations

from typing import Any

from canonicaljson import encode_canonical_json

from homeserver.http.errors import BadJsonError, InvalidParamError, TooLargeError
from homeserver.types import is_valid_user_id

JsonDict = dict[str, Any]

# One message's content is capped like an event (65536 bytes of canonical JSON) ...
MAX_MESSAGE_BYTES = 65536
# ... and one request reaches at most this many (user, device) entries ("*" counts once).
MAX_MESSAGES_PER_REQUEST = 10000


class ToDeviceHandler:
    """Rules for sending to-device messages. ``hs`` provides ``e2e_keys_handler`` (whose ``to_device_store``
    owns the stream), ``notifier`` and ``hostname``."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store = hs.e2e_keys_handler.to_device_store

    async def send(self, sender: str, sender_device_id: str | None, event_type: str, txn_id: str,
                   body: JsonDict) -> None:
        """Queue ``body["messages"]`` (``{user_id: {device_id | "*": content}}``).

        Idempotent per sending device and ``txn_id``: a repeat does nothing. Messages for users of other
        servers are dropped (no federation); unknown local devices are skipped. Raises 400 ``M_BAD_JSON`` for a
        malformed body, 400 ``M_INVALID_PARAM`` for a bad user ID and 413 ``M_TOO_LARGE`` for an oversized
        message or batch; nothing is queued then.
        """
        messages = body.get("messages")
        if not isinstance(messages, dict):
            raise BadJsonError("messages must be an object mapping user IDs to devices")
        local: dict[str, dict[str, Any]] = {}
        total = 0
        for user_id, by_device in messages.items():
            if not is_valid_user_id(user_id):
                raise InvalidParamError(f"Invalid user ID {user_id!r} in messages")
            if not isinstance(by_device, dict):
                raise BadJsonError(f"messages.{user_id} must map device IDs to message contents")
            total += len(by_device)
            if total > MAX_MESSAGES_PER_REQUEST:
                raise TooLargeError(f"At most {MAX_MESSAGES_PER_REQUEST} messages per request")
            for device_id, content in by_device.items():
                if not isinstance(content, dict):
                    raise BadJsonError(f"messages.{user_id}.{device_id} must be an object")
                try:
                    size = len(encode_canonical_json(content))
                except (ValueError, TypeError) as e:
                    raise BadJsonError(f"messages.{user_id}.{device_id}: {e}") from e
                if size > MAX_MESSAGE_BYTES:
                    raise TooLargeError(f"A to-device message is over {MAX_MESSAGE_BYTES} bytes")
            if user_id.split(":", 1)[1] == self.hs.hostname and by_device:
                local[user_id] = by_device
        gen = self.store.generator
        pos = gen.allocate()
        try:
            recipients = await self.store.add_messages(sender, sender_device_id, txn_id, event_type, local, pos)
        finally:
            gen.mark_done(pos)
        if recipients:
            self.hs.notifier.notify("to_device", pos, users=sorted(recipients))
