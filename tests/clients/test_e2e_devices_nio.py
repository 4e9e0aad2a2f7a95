"""Device changes in an encrypted room, seen by real matrix-nio (vodozemac) clients.

- A second device of a user that logs in later decrypts what is sent after it logged in: the sender learns about
  the device only through ``device_lists.changed`` in its ``/sync`` (the server's device-list tracking), lets nio
  query keys because nio itself asks to, and shares a fresh Megolm session with the new device.
- A device that is deleted (``DELETE /devices/{deviceId}`` with password UIA) gets no more keys: its token is
  revoked, ``/keys/query`` and ``/keys/claim`` no longer hand out its keys, the sender rotates the Megolm session and
  its to-device key shares reach only the remaining device, which decrypts the next message.

Each nio client has its own on-disk store directory, as separate devices do.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from pathlib import Path
from typing import Any, Callable

from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    KeysUploadResponse,
    LoginResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomMessageText,
    SyncResponse,
)

from tests.clients.niolib import ENCRYPTION_STATE, decrypted, send_encrypted, sync_until
from tests.integration.e2e_keys_support import with_password_uia
from tests.support.client import Api, User, q

CS = "/_matrix/client/v3"


class RecordingClient(AsyncClient):
    """An nio client that notes, for every ``m.room.encrypted`` to-device request it makes (room-key shares over
    Olm), which devices it addressed: ``key_shares`` is a list of ``{user_id: {device_id, ...}}``."""

    def __init__(self, base_url: str, user: str, store_path: Path) -> None:
        store_path.mkdir(parents=True, exist_ok=True)
        config = AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False, max_timeouts=0,
                                   request_timeout=30)
        super().__init__(base_url, user, store_path=str(store_path), config=config)
        self.key_shares: list[dict[str, set[str]]] = []

    async def send(self, method: str, path: str, data: Any = None, headers: dict[str, str] | None = None,
                   trace_context: Any = None, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        if method == "PUT" and "/sendToDevice/m.room.encrypted/" in path and isinstance(data, str):
            messages = json.loads(data)["messages"]
            self.key_shares.append({user_id: set(devices) for user_id, devices in messages.items()})
        return await super().send(method, path, data, headers, trace_context, timeout)

    def devices_addressed(self, user_id: str) -> set[str]:
        """Every device of ``user_id`` a recorded key share went to."""
        return set().union(*(share.get(user_id, set()) for share in self.key_shares))


async def _registered(base_url: str, prefix: str, store: Path) -> tuple[RecordingClient, str]:
    localpart = f"{prefix}{secrets.token_hex(4)}"
    password = "Pw-" + secrets.token_urlsafe(10)
    client = RecordingClient(base_url, localpart, store / localpart)
    resp = await client.register(localpart, password, device_name=f"{prefix} laptop")
    assert isinstance(resp, RegisterResponse), resp
    assert isinstance(await client.keys_upload(), KeysUploadResponse)
    return client, password


def _device_list_changed(user_id: str) -> Callable[[SyncResponse], bool]:
    return lambda sync: user_id in sync.device_list.changed


def _megolm_session_of(api: Api, token: str, room_id: str, event_id: str) -> str:
    raw = api.request("GET", f"{CS}/rooms/{q(room_id)}/event/{q(event_id)}", token=token).json
    assert raw["type"] == "m.room.encrypted", raw
    return raw["content"]["session_id"]


def _queried_devices(api: Api, token: str, user_id: str) -> set[str]:
    r = api.request("POST", f"{CS}/keys/query", {"device_keys": {user_id: []}}, token=token)
    assert r.status == 200, r.json
    return set(r.json["device_keys"].get(user_id, {}))


class Scene:
    """Alice's device A and Bob's first device B1 in an encrypted room, then Bob's later device B2."""

    def __init__(self, base_url: str, store: Path) -> None:
        self.base_url = base_url
        self.store = store
        self.api = Api(base_url)
        self.clients: list[AsyncClient] = []

    async def close(self) -> None:
        for c in self.clients:
            await c.close()

    async def encrypted_room(self) -> None:
        self.a, _ = await _registered(self.base_url, "ea", self.store)
        self.clients.append(self.a)
        self.b1, self.b_password = await _registered(self.base_url, "eb", self.store)
        self.clients.append(self.b1)
        a, b1 = self.a, self.b1
        created = await a.room_create(name="encrypted on-call", invite=[b1.user_id], initial_state=[ENCRYPTION_STATE])
        assert isinstance(created, RoomCreateResponse), created
        self.room_id = room_id = created.room_id
        await sync_until(b1, lambda s: room_id in s.rooms.invite, "the invite")
        assert isinstance(await b1.join(room_id), JoinResponse)
        await sync_until(a, lambda s: room_id in a.rooms and b1.user_id in a.rooms[room_id].users, "B1's join")
        assert a.rooms[room_id].encrypted

        before = await send_encrypted(a, room_id, "before the second device")
        self.first_session = _megolm_session_of(self.api, a.access_token, room_id, before)
        ev = await sync_until(b1, decrypted(room_id, before), "the first message at B1")
        assert ev.body == "before the second device"
        assert a.devices_addressed(b1.user_id) == {b1.device_id}
        # Settled: A knows every device it shares a room with, so nothing but the server can make it query again.
        await a.sync(timeout=0)
        assert not a.should_query_keys

    async def second_device_logs_in(self) -> None:
        a, b1 = self.a, self.b1
        self.b2 = b2 = RecordingClient(self.base_url, b1.user_id, self.store / "b2")
        self.clients.append(b2)
        resp = await b2.login(self.b_password, device_name="eb phone")
        assert isinstance(resp, LoginResponse), resp
        assert b2.device_id != b1.device_id
        assert isinstance(await b2.keys_upload(), KeysUploadResponse)
        await b2.sync(timeout=0)
        assert self.room_id in b2.rooms

        # A hears of the new device only through device_lists.changed in its /sync ...
        await sync_until(a, _device_list_changed(b1.user_id), "Bob's new device in A's device_lists.changed")
        assert b1.user_id in a.users_for_key_query
        assert a.should_query_keys
        # ... and nio's own follow-up query (done in send_encrypted) returns both of Bob's devices.
        a.key_shares.clear()
        after = await send_encrypted(a, self.room_id, "db1 failover started")
        assert {d.id for d in a.device_store.active_user_devices(b1.user_id)} == {b1.device_id, b2.device_id}
        assert a.devices_addressed(b1.user_id) == {b1.device_id, b2.device_id}
        self.second_session = _megolm_session_of(self.api, a.access_token, self.room_id, after)
        assert self.second_session != self.first_session

        ev = await sync_until(b2, decrypted(self.room_id, after), "the message at the new device B2")
        assert isinstance(ev, RoomMessageText) and ev.body == "db1 failover started" and ev.decrypted
        ev = await sync_until(b1, decrypted(self.room_id, after), "the message at B1")
        assert ev.body == "db1 failover started"


def _run(coro: Any) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout=150))


def test_device_that_logs_in_later_decrypts_what_is_sent_after(homeserver: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        scene = Scene(homeserver.base_url, tmp_path)
        try:
            await scene.encrypted_room()
            await scene.second_device_logs_in()
        finally:
            await scene.close()

    _run(scenario())


def test_deleted_device_no_longer_receives_keys(homeserver: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        scene = Scene(homeserver.base_url, tmp_path)
        try:
            await scene.encrypted_room()
            await scene.second_device_logs_in()
            a, b1, b2, api = scene.a, scene.b1, scene.b2, scene.api
            bob = User(api, b1.user_id, b1.access_token, b1.device_id, scene.b_password)
            with_password_uia(bob, "DELETE", f"devices/{q(b2.device_id)}", {})

            r = api.request("GET", f"{CS}/sync", token=b2.access_token, params={"timeout": 0})
            assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
            assert _queried_devices(api, a.access_token, b1.user_id) == {b1.device_id}
            r = api.request("POST", f"{CS}/keys/claim",
                            {"one_time_keys": {b1.user_id: {b2.device_id: "signed_curve25519"}}},
                            token=a.access_token)
            assert r.status == 200 and b2.device_id not in r.json["one_time_keys"].get(b1.user_id, {}), r.json

            await sync_until(a, _device_list_changed(b1.user_id), "the deletion in A's device_lists.changed")
            assert a.should_query_keys
            a.key_shares.clear()
            after = await send_encrypted(a, scene.room_id, "db1 is primary again")
            assert {d.id for d in a.device_store.active_user_devices(b1.user_id)} == {b1.device_id}
            assert a.devices_addressed(b1.user_id) == {b1.device_id}
            # The key the deleted device holds does not open what is sent now.
            assert _megolm_session_of(api, a.access_token, scene.room_id, after) != scene.second_session
            ev = await sync_until(b1, decrypted(scene.room_id, after), "the message at the remaining device")
            assert isinstance(ev, RoomMessageText) and ev.body == "db1 is primary again"
        finally:
            await scene.close()

    _run(scenario())
