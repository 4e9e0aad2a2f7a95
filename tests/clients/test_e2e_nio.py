"""Two matrix-nio clients with Olm/Megolm (vodozemac) hold an encrypted conversation through the homeserver.

The server only stores and relays: keys/upload, keys/query, keys/claim, the Olm-encrypted to-device message that
carries the Megolm room key, and m.room.encrypted room events. Each side must decrypt the other's message.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysUploadResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
)
from nio.store import SqliteMemoryStore

from tests.clients.niolib import ENCRYPTION_STATE, decrypted, send_encrypted, sync_until
from tests.support.client import Api, q


def _config() -> AsyncClientConfig:
    return AsyncClientConfig(encryption_enabled=True, store=SqliteMemoryStore, store_sync_tokens=False,
                             max_timeouts=0, request_timeout=30)


async def _e2e_user(base_url: str, prefix: str) -> AsyncClient:
    localpart = f"{prefix}{secrets.token_hex(4)}"
    client = AsyncClient(base_url, localpart, config=_config())
    resp = await client.register(localpart, "Pw-" + secrets.token_urlsafe(10), device_name=f"{prefix} laptop")
    assert isinstance(resp, RegisterResponse), resp
    assert client.should_upload_keys
    assert isinstance(await client.keys_upload(), KeysUploadResponse)
    return client


async def _conversation(base_url: str) -> None:
    a = await _e2e_user(base_url, "ea")
    b = await _e2e_user(base_url, "eb")
    try:
        created = await a.room_create(name="encrypted alerts", invite=[b.user_id], initial_state=[ENCRYPTION_STATE])
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        await sync_until(b, lambda s: room_id in s.rooms.invite, "the invite")
        assert isinstance(await b.join(room_id), JoinResponse)
        await sync_until(a, lambda s: room_id in a.rooms and b.user_id in a.rooms[room_id].users, "B's join")
        assert a.rooms[room_id].encrypted

        secret = "db1 disk 97% - escalating to on-call"
        event_id = await send_encrypted(a, room_id, secret)
        api = Api(base_url)
        raw = api.request("GET", f"/_matrix/client/v3/rooms/{q(room_id)}/event/{q(event_id)}",
                          token=b.access_token).json
        assert raw["type"] == "m.room.encrypted"
        assert raw["content"]["algorithm"] == "m.megolm.v1.aes-sha2"
        assert secret not in str(raw)
        ev = await sync_until(b, decrypted(room_id, event_id), "A's message at B")
        assert isinstance(ev, RoomMessageText) and ev.body == secret and ev.decrypted

        reply = "ack, on it"
        reply_id = await send_encrypted(b, room_id, reply)
        ev = await sync_until(a, decrypted(room_id, reply_id), "B's reply at A")
        assert isinstance(ev, RoomMessageText) and ev.body == reply
    finally:
        await a.close()
        await b.close()


def test_two_nio_clients_exchange_encrypted_messages(homeserver: Any) -> None:
    asyncio.run(asyncio.wait_for(_conversation(homeserver.base_url), timeout=120))
