"""Server-side key backups (``/room_keys/version`` and ``/room_keys/keys``).

Spec: Client-Server API, "Server-side key backups". The server stores opaque encrypted session keys; it only
compares their metadata to keep the better copy of a session:
a verified key beats an unverified one; then the lower ``first_message_index`` wins; then the lower
``forwarded_count``.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import BadJsonError, InvalidParamError, MatrixError, NotFoundError
from homeserver.storage.key_backup import KeyBackupStore

JsonDict = dict[str, Any]

WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
_MAX_INT = 2**53 - 1


def is_better_session(new: JsonDict, old: JsonDict) -> bool:
    """True if backup data ``new`` should replace ``old`` for the same session (the spec's ordering)."""
    if new["is_verified"] != old["is_verified"]:
        return bool(new["is_verified"])
    if new["first_message_index"] != old["first_message_index"]:
        return new["first_message_index"] < old["first_message_index"]
    return new["forwarded_count"] < old["forwarded_count"]


def _version_number(version: str | None) -> int | None:
    """A backup version string as stored (positive integer), or None if it cannot name any version."""
    if version is None or not version.isdigit() or len(version) > 15:
        return None
    return int(version)


def check_key_backup_data(data: Any, where: str) -> JsonDict:
    """Validate a ``KeyBackupData`` object; raises BadJsonError (400 ``M_BAD_JSON``)."""
    if not isinstance(data, dict):
        raise BadJsonError(f"{where} must be an object")
    for field in ("first_message_index", "forwarded_count"):
        value = data.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_INT:
            raise BadJsonError(f"{where}.{field} must be a non-negative integer")
    if not isinstance(data.get("is_verified"), bool):
        raise BadJsonError(f"{where}.is_verified must be a boolean")
    if not isinstance(data.get("session_data"), dict):
        raise BadJsonError(f"{where}.session_data must be an object")
    return {k: data[k] for k in ("first_message_index", "forwarded_count", "is_verified", "session_data")}


class KeyBackupHandler:
    """Rules for key backups. ``hs`` provides ``db``."""

    def __init__(self, hs: Any) -> None:
        self.store = KeyBackupStore(hs.db)

    # -- versions -----------------------------------------------------------------------------------------------

    async def create_version(self, user_id: str, body: JsonDict) -> JsonDict:
        """``POST /room_keys/version``: ``{"algorithm": str, "auth_data": object}`` -> ``{"version": str}``."""
        algorithm, auth_data = self._check_version_body(body)
        version = await self.store.create_version(user_id, algorithm, auth_data)
        return {"version": str(version)}

    @staticmethod
    def _check_version_body(body: JsonDict) -> tuple[str, JsonDict]:
        algorithm = body.get("algorithm")
        if not isinstance(algorithm, str) or not algorithm:
            raise BadJsonError("algorithm must be a non-empty string")
        auth_data = body.get("auth_data")
        if not isinstance(auth_data, dict):
            raise BadJsonError("auth_data must be an object")
        return algorithm, auth_data

    async def get_version(self, user_id: str, version: str | None) -> JsonDict:
        """``GET /room_keys/version[/{version}]``: ``{"algorithm", "auth_data", "version", "count", "etag"}``.
        Raises NotFoundError (404) when there is no (such) backup."""
        number = None
        if version is not None:
            number = _version_number(version)
            if number is None:
                raise NotFoundError("Unknown backup version")
        info = await self.store.get_version(user_id, number)
        if info is None:
            raise NotFoundError("No current backup version" if version is None else "Unknown backup version")
        return {"algorithm": info["algorithm"], "auth_data": info["auth_data"], "version": str(info["version"]),
                "count": info["count"], "etag": str(info["etag"])}

    async def update_version(self, user_id: str, version: str, body: JsonDict) -> JsonDict:
        """``PUT /room_keys/version/{version}``: replace ``auth_data``. 400 ``M_INVALID_PARAM`` if ``algorithm``
        or the body's ``version`` differ; 404 for an unknown version."""
        algorithm, auth_data = self._check_version_body(body)
        number = _version_number(version)
        info = await self.store.get_version(user_id, number) if number is not None else None
        if info is None:
            raise NotFoundError("Unknown backup version")
        if "version" in body and body["version"] != version:
            raise InvalidParamError("The version in the body does not match the version in the path")
        if algorithm != info["algorithm"]:
            raise InvalidParamError("Algorithm does not match")
        await self.store.update_auth_data(user_id, info["version"], auth_data)
        return {}

    async def delete_version(self, user_id: str, version: str) -> JsonDict:
        """``DELETE /room_keys/version/{version}``: delete the backup and its keys; succeeds again for an already
        deleted version, 404 for one that never existed."""
        number = _version_number(version)
        if number is None or not await self.store.version_existed(user_id, number):
            raise NotFoundError("Unknown backup version")
        await self.store.delete_version(user_id, number)
        return {}

    # -- keys ---------------------------------------------------------------------------------------------------

    async def _live_version(self, user_id: str, version: str | None) -> int:
        number = _version_number(version) if version is not None else None
        if number is None:
            raise NotFoundError("Unknown backup version")
        if await self.store.get_version(user_id, number) is None:
            raise NotFoundError("Unknown backup version")
        return number

    async def put_keys(self, user_id: str, version: str, room_id: str | None, session_id: str | None,
                       body: JsonDict) -> JsonDict:
        """``PUT /room_keys/keys[/{roomId}[/{sessionId}]]``: store keys; ``{"etag": str, "count": int}``.

        ``body`` is ``{"rooms": {room_id: {"sessions": {...}}}}``, ``{"sessions": {...}}`` or one
        ``KeyBackupData`` depending on the path. 404 for an unknown backup version, 403
        ``M_WRONG_ROOM_KEYS_VERSION`` (with ``current_version``) if ``version`` is not the current backup.
        """
        sessions: list[tuple[str, str, JsonDict]] = []
        if room_id is None:
            rooms = body.get("rooms")
            if not isinstance(rooms, dict):
                raise BadJsonError("rooms must be an object")
            for r_id, room in rooms.items():
                sessions.extend(self._room_sessions(r_id, room, f"rooms.{r_id}"))
        elif session_id is None:
            sessions.extend(self._room_sessions(room_id, body, "body"))
        else:
            sessions.append((room_id, session_id, check_key_backup_data(body, "body")))
        number = _version_number(version)
        result = await self.store.put_keys(user_id, number, sessions, is_better_session) if number else None
        if result is None:
            current = await self.store.get_version(user_id, None)
            if number is None or await self.store.get_version(user_id, number) is None:
                raise NotFoundError("Unknown backup version")
            raise MatrixError(403, "Wrong backup version.", WRONG_ROOM_KEYS_VERSION,
                              current_version=str(current["version"]) if current else None)
        etag, count = result
        return {"etag": str(etag), "count": count}

    @staticmethod
    def _room_sessions(room_id: str, room: Any, where: str) -> list[tuple[str, str, JsonDict]]:
        if not isinstance(room, dict) or not isinstance(room.get("sessions"), dict):
            raise BadJsonError(f"{where}.sessions must be an object")
        return [(room_id, s_id, check_key_backup_data(data, f"{where}.sessions.{s_id}"))
                for s_id, data in room["sessions"].items()]

    async def get_keys(self, user_id: str, version: str | None, room_id: str | None,
                       session_id: str | None) -> JsonDict:
        """``GET /room_keys/keys[/{roomId}[/{sessionId}]]``: ``{"rooms": {...}}``, ``{"sessions": {...}}``
        (empty when none) or one ``KeyBackupData`` (404 if absent). 404 for an unknown backup version."""
        number = await self._live_version(user_id, version)
        keys = await self.store.get_keys(user_id, number, room_id, session_id)
        if room_id is None:
            return {"rooms": {r: {"sessions": s} for r, s in keys.items()}}
        if session_id is None:
            return {"sessions": keys.get(room_id, {})}
        data = keys.get(room_id, {}).get(session_id)
        if data is None:
            raise NotFoundError("Key not found.")
        return data

    async def delete_keys(self, user_id: str, version: str | None, room_id: str | None,
                          session_id: str | None) -> JsonDict:
        """``DELETE /room_keys/keys[/{roomId}[/{sessionId}]]``: ``{"etag": str, "count": int}``."""
        number = await self._live_version(user_id, version)
        etag, count = await self.store.delete_keys(user_id, number, room_id, session_id)
        return {"etag": str(etag), "count": count}
