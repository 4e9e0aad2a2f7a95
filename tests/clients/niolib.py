"""matrix-nio helpers shared by the encrypted-conversation client tests.

Both E2E tests drive real nio clients (vodozemac Olm/Megolm) against a real homeserver; the waiting, decrypting
and sending steps are the same there, so they live here once.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from nio import AsyncClient, KeysQueryResponse, MegolmEvent, RoomSendResponse, SyncResponse

# Initial state that makes a room Megolm-encrypted (spec: "m.room.encryption").
ENCRYPTION_STATE = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}


async def sync_until(client: AsyncClient, pred: Callable[[SyncResponse], Any], what: str,
                     deadline_s: float = 20.0) -> Any:
    """Long-poll ``/sync`` (1000 ms each) until ``pred`` returns something truthy and return that value.

    Raises ``AssertionError`` naming ``what`` when ``deadline_s`` seconds pass without it.
    """
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        resp = await client.sync(timeout=1000)
        assert isinstance(resp, SyncResponse), resp
        value = pred(resp)
        if value:
            return value
    raise AssertionError(f"{what}: not seen in /sync within {deadline_s}s")


def decrypted(room_id: str, event_id: str) -> Callable[[SyncResponse], Any]:
    """A ``sync_until`` predicate: the event ``event_id`` of ``room_id`` once it is in a joined timeline, asserting
    that nio decrypted it (an undecryptable ``MegolmEvent`` fails the test)."""
    def find(sync: SyncResponse) -> Any:
        info = sync.rooms.join.get(room_id)
        for ev in info.timeline.events if info else []:
            if ev.event_id == event_id:
                assert not isinstance(ev, MegolmEvent), f"received but not decryptable (session {ev.session_id})"
                return ev
        return None

    return find


async def send_encrypted(client: AsyncClient, room_id: str, body: str) -> str:
    """Send an ``m.text`` like an nio app does (query keys first only if nio's device tracking says some are
    outdated) and return the new event ID."""
    if client.should_query_keys:
        assert isinstance(await client.keys_query(), KeysQueryResponse)
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body},
                                  ignore_unverified_devices=True)
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id
