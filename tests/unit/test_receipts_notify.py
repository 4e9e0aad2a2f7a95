"""Who a stored receipt wakes: a private read receipt only its owner, a public one the room too; both move the
owner's read position for unread counts."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import defer

from homeserver.handlers.receipts import ReceiptsHandler

ROOM = "!ops:test"
BOB = "@bob:test"


def _store_receipt(receipt_type: str, thread_id: str | None = None) -> tuple[list[Any], list[Any]]:
    notified: list[Any] = []
    invalidated: list[Any] = []

    async def insert_receipt(*args: Any) -> int:
        return 7

    hs = SimpleNamespace(
        receipts_store=SimpleNamespace(insert_receipt=insert_receipt),
        event_store=None,
        room_store=None,
        notifier=SimpleNamespace(notify=lambda stream, pos, users=(), rooms=(): notified.append(
            (stream, pos, list(users), list(rooms)))),
        push_handler=SimpleNamespace(invalidate_counts=lambda *a: invalidated.append(a)),
        clock=SimpleNamespace(seconds=lambda: 1700000000.0),
    )
    event = SimpleNamespace(event_id="$ack", internal_metadata={"stream_ordering": 42})
    d = defer.ensureDeferred(ReceiptsHandler(hs)._store(BOB, ROOM, receipt_type, event, thread_id))
    out: list[Any] = []
    d.addBoth(out.append)
    assert out == [None]
    return notified, invalidated


def test_private_receipt_wakes_only_its_owner() -> None:
    notified, invalidated = _store_receipt("m.read.private")
    assert notified == [("receipts", 7, [BOB], [])]
    assert invalidated == [(BOB, ROOM, "", 42)]


@pytest.mark.parametrize("thread_id,key", [(None, ""), ("main", "main"), ("$root", "$root")])
def test_public_receipt_wakes_the_room(thread_id: str | None, key: str) -> None:
    notified, invalidated = _store_receipt("m.read", thread_id)
    assert notified == [("receipts", 7, [BOB], [ROOM])]
    assert invalidated == [(BOB, ROOM, key, 42)]
