"""Devices: creation at login/registration, listing, renaming, deletion (which revokes their tokens), last seen.

Spec: Client-Server API, "Device Management" and "Relationship between access tokens and devices".
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

from twisted.internet import defer

from homeserver.handlers.auth import generate_device_id
from homeserver.http.errors import MatrixError, NotFoundError

logger = logging.getLogger(__name__)

# A device's last_seen is written at most this often per access token (ms): /sync polls would otherwise write
# to the database on every request.
LAST_SEEN_INTERVAL_MS = 60_000
MAX_DISPLAY_NAME_LENGTH = 100


class DeviceHandler:
    """Rules for devices. ``hs`` provides ``account_store``, ``clock`` and, optionally, ``e2e_keys_handler``
    (told about deleted devices so their keys go and device-list changes are announced)."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store = hs.account_store
        self._last_seen_written: dict[int, int] = {}

    async def check_device_registered(self, user_id: str, device_id: str | None,
                                      initial_display_name: str | None = None) -> str:
        """Make sure ``device_id`` exists for ``user_id`` (creating it with ``initial_display_name``); with
        ``device_id`` None a new random ID is generated. Returns the device ID."""
        if device_id is not None:
            created = await self.store.store_device(user_id, device_id, initial_display_name)
            if created:
                await self._on_created(user_id, device_id)
            return device_id
        for _ in range(10):
            candidate = generate_device_id()
            if await self.store.store_device(user_id, candidate, initial_display_name):
                await self._on_created(user_id, candidate)
                return candidate
        raise MatrixError(500, "Could not allocate a device ID")

    async def _on_created(self, user_id: str, device_id: str) -> None:
        # Awaited, not left in the background: the login or registration answers only once the device-list change
        # is committed. Otherwise a crash could lose it, and while it is in flight it holds back the device_lists
        # stream's readable position, hiding later changes (the new device's key upload) from other users' /sync.
        e2e = getattr(self.hs, "e2e_keys_handler", None)
        hook = getattr(e2e, "on_device_created", None)
        if hook is not None:
            await hook(user_id, device_id)

    async def get_devices(self, user_id: str) -> list[dict[str, Any]]:
        """The user's devices as the spec's ``Device`` objects: ``device_id``, ``display_name``,
        ``last_seen_ip``, ``last_seen_ts`` (ms); the last three may be None but are always present."""
        return [_device_json(d) for d in await self.store.get_devices(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any]:
        """One ``Device`` object; raises NotFoundError (404) if the user has no such device."""
        device = await self.store.get_device(user_id, device_id)
        if device is None:
            raise NotFoundError("No such device")
        return _device_json(device)

    async def update_device(self, user_id: str, device_id: str, display_name: str | None) -> None:
        """Rename a device. Raises NotFoundError (404) for an unknown device and 400 ``M_INVALID_PARAM`` for a
        display name over 100 characters."""
        if display_name is not None and len(display_name) > MAX_DISPLAY_NAME_LENGTH:
            raise MatrixError(400, f"Device display name is longer than {MAX_DISPLAY_NAME_LENGTH} characters",
                              "M_INVALID_PARAM")
        if not await self.store.update_device_display_name(user_id, device_id, display_name):
            raise NotFoundError("No such device")
        e2e = getattr(self.hs, "e2e_keys_handler", None)
        hook = getattr(e2e, "on_device_updated", None)
        if hook is not None:
            await hook(user_id, device_id)

    async def delete_devices(self, user_id: str, device_ids: Iterable[str]) -> None:
        """Delete devices (unknown IDs are ignored) and revoke their access tokens; tells
        ``hs.e2e_keys_handler.on_devices_deleted(user_id, device_ids)`` when that exists."""
        device_ids = sorted(set(device_ids))
        if not device_ids:
            return
        await self.store.delete_devices(user_id, device_ids)
        e2e = getattr(self.hs, "e2e_keys_handler", None)
        hook = getattr(e2e, "on_devices_deleted", None)
        if hook is not None:
            await hook(user_id, device_ids)

    async def delete_all_devices(self, user_id: str, except_device_id: str | None = None) -> None:
        """Delete every device of ``user_id`` except ``except_device_id``; their tokens go with them."""
        devices = [d["device_id"] for d in await self.store.get_devices(user_id)
                   if d["device_id"] != except_device_id]
        await self.delete_devices(user_id, devices)

    def note_seen(self, requester: Any, ip: str, user_agent: str | None) -> None:
        """Record that ``requester`` (a :class:`homeserver.http.auth.Requester`) made a request from ``ip``.

        Plain function for the auth layer to call on every authenticated request: it returns at once and writes
        in the background, at most once a minute per access token. Requests without a device are ignored.
        """
        if requester.device_id is None or requester.access_token_id is None:
            return
        now = int(self.hs.clock.seconds() * 1000)
        last = self._last_seen_written.get(requester.access_token_id)
        if last is not None and now - last < LAST_SEEN_INTERVAL_MS:
            return
        if len(self._last_seen_written) > 100_000:
            self._last_seen_written.clear()
        self._last_seen_written[requester.access_token_id] = now
        _run_in_background(
            self.store.record_last_seen(requester.user_id, requester.device_id, ip, user_agent, now),
            "record_last_seen")


def _device_json(device: dict[str, Any]) -> dict[str, Any]:
    return {"device_id": device["device_id"], "display_name": device["display_name"],
            "last_seen_ip": device["last_seen_ip"], "last_seen_ts": device["last_seen_ts"]}


def _run_in_background(coro: Any, what: str) -> None:
    d = defer.ensureDeferred(coro)
    d.addErrback(lambda f: logger.error("%s failed: %s", what, f.getTraceback()))
