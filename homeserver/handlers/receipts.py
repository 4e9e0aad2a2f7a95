"""Receipts and read markers: who has read what, for /sync and for unread counts.

Spec: Client-Server API, "Receipts" (``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}``, ``m.read``,
``m.read.private``, threaded receipts) and "Fully read markers" (``POST /rooms/{roomId}/read_markers``,
``m.fully_read`` room account data).
"""

from __future__ import annotations

from typing import Any

from homeserver.events import Event
from homeserver.handlers.push import MAIN_THREAD, thread_id_in_room
from homeserver.http.errors import ForbiddenError, InvalidParamError, NotFoundError
from homeserver.storage.receipts import ReceiptsStore
from homeserver.streams import StreamToken

JsonDict = dict[str, Any]
RECEIPT_TYPES = ("m.read", "m.read.private")
FULLY_READ = "m.fully_read"


class ReceiptsHandler:
    """Uses ``hs.receipts_store``, ``hs.event_store``, ``hs.room_store``, ``hs.visibility_handler``,
    ``hs.account_data_store``, ``hs.notifier`` and ``hs.push_handler`` (unread counts) when present."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store: ReceiptsStore = hs.receipts_store
        self.event_store = hs.event_store
        self.room_store = hs.room_store
        self.notifier = hs.notifier

    async def _check_event(self, user_id: str, room_id: str, event_id: str) -> Event:
        """The event a receipt or marker points at, checked.

        Raises:
            ForbiddenError: 403 when the user is not joined to the room.
            NotFoundError: 404 for an unknown event, one of another room, or one the user may not see: the same
                answer for each, so a member cannot probe which event IDs exist in rooms they cannot read.
        """
        if await self.room_store.get_membership(room_id, user_id) != "join":
            raise ForbiddenError("You are not joined to this room")
        event = await self.event_store.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise NotFoundError("Unknown event")
        if not await self.hs.visibility_handler.filter_events_for_user(user_id, [event]):
            raise NotFoundError("Unknown event")
        return event

    async def _check_thread(self, event: Event, thread_id: str | None) -> None:
        """A threaded receipt's event must be the thread root or in that thread (400 ``M_INVALID_PARAM``).

        The event's thread is the one unread counts use (:func:`thread_id_in_room`): an ``m.thread`` relation
        naming another room's event puts it in the main timeline, not in a thread of that ID.
        """
        if thread_id is None:
            return
        in_thread = await thread_id_in_room(self.event_store, event)
        if thread_id == MAIN_THREAD:
            if in_thread != MAIN_THREAD:
                raise InvalidParamError("The event is in a thread, not in the main timeline")
            return
        if event.event_id == thread_id or in_thread == thread_id:
            return
        raise InvalidParamError("The event is not related to the thread_id")

    async def send_receipt(self, user_id: str, room_id: str, receipt_type: str, event_id: str,
                           thread_id: Any = None) -> None:
        """Store a receipt of ``receipt_type`` (``m.read``/``m.read.private``; ``m.fully_read`` sets the marker).

        A receipt for an event earlier in the room than the user's current one of that type and thread is
        accepted and ignored (never backwards).

        Raises:
            InvalidParamError: 400 unknown receipt type, bad ``thread_id`` (not a non-empty string, given with
                ``m.fully_read``, or the event not in that thread).
            ForbiddenError: 403 not joined. NotFoundError: 404 unknown or invisible event, or one of another room.
        """
        if receipt_type not in RECEIPT_TYPES and receipt_type != FULLY_READ:
            raise InvalidParamError(f"Unknown receipt type {receipt_type!r}")
        if thread_id is not None:
            if not isinstance(thread_id, str) or not thread_id:
                raise InvalidParamError("thread_id field must be a non-empty string")
            if receipt_type == FULLY_READ:
                raise InvalidParamError("thread_id is not allowed for m.fully_read")
        if receipt_type == FULLY_READ:
            await self.set_read_markers(user_id, room_id, {FULLY_READ: event_id})
            return
        event = await self._check_event(user_id, room_id, event_id)
        await self._check_thread(event, thread_id)
        await self._store(user_id, room_id, receipt_type, event, thread_id)

    async def _store(self, user_id: str, room_id: str, receipt_type: str, event: Event,
                     thread_id: str | None) -> None:
        ts = int(self.hs.clock.seconds() * 1000)
        pos = await self.store.insert_receipt(room_id, receipt_type, user_id, thread_id, event.event_id,
                                              event.internal_metadata["stream_ordering"], ts)
        if pos is None:
            return
        push = getattr(self.hs, "push_handler", None)
        if push is not None:
            push.invalidate_counts(user_id, room_id, thread_id or "", event.internal_metadata["stream_ordering"])
        if receipt_type == "m.read.private":
            # Only its owner ever sees a private receipt: waking every member's /sync would send them nothing.
            self.notifier.notify("receipts", pos, users=[user_id])
        else:
            self.notifier.notify("receipts", pos, users=[user_id], rooms=[room_id])

    async def set_read_markers(self, user_id: str, room_id: str, body: JsonDict) -> None:
        """``POST /rooms/{roomId}/read_markers``: ``m.fully_read`` (room account data ``{"event_id": ...}``),
        ``m.read`` and ``m.read.private`` (receipts). Every given event is checked before anything is stored.

        Raises:
            InvalidParamError: 400 for a value that is not an event ID.
            ForbiddenError / NotFoundError: as for :meth:`send_receipt`.
        """
        checked: dict[str, Event] = {}
        for key in (FULLY_READ, *RECEIPT_TYPES):
            value = body.get(key)
            if value is None:
                continue
            if not isinstance(value, str) or not value.startswith("$"):
                raise InvalidParamError(f"{key} must be an event ID")
            checked[key] = await self._check_event(user_id, room_id, value)
        if FULLY_READ in checked:
            await self.hs.account_data_store.add_account_data(user_id, room_id, FULLY_READ,
                                                              {"event_id": checked[FULLY_READ].event_id})
        for receipt_type in RECEIPT_TYPES:
            if receipt_type in checked:
                await self._store(user_id, room_id, receipt_type, checked[receipt_type], None)

    async def get_sync_receipts(self, user_id: str, room_id: str, since: StreamToken | None,
                                now: StreamToken) -> JsonDict | None:
        """The room's ``m.receipt`` event for /sync, or None when there is nothing to send.

        Incremental (``since`` given): receipts changed in ``(since.receipts, now.receipts]``; no query at all when
        the room's receipts did not change. Initial: the latest receipt of each user. ``m.read.private`` receipts
        are only returned to their owner. Content: ``{event_id: {receipt_type: {user_id: {"ts": ms,
        "thread_id"?: str}}}}``.
        """
        from_pos = since.receipts if since is not None else 0
        if self.store.room_last_position(room_id) <= from_pos or now.receipts <= from_pos:
            return None
        receipts = await self.store.get_room_receipts(room_id, from_pos, now.receipts)
        content: JsonDict = {}
        for r in receipts:
            if r.receipt_type == "m.read.private" and r.user_id != user_id:
                continue
            data: JsonDict = {"ts": r.ts}
            if r.thread_id is not None:
                data["thread_id"] = r.thread_id
            content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
        if not content:
            return None
        return {"type": "m.receipt", "content": content}
