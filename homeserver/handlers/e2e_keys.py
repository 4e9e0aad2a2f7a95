"""End-to-end encryption key management: device keys, one-time/fallback keys, cross-signing, device lists.

Spec: Client-Server API, "End-to-End Encryption": "Key management API" (``/keys/upload``, ``/keys/query``,
``/keys/claim``, ``/keys/changes``), "Cross-signing" (``/keys/device_signing/upload``, ``/keys/signatures/upload``),
"Tracking the device list for a user" and the E2E extensions of ``/sync`` (``device_lists``,
``device_one_time_keys_count``, ``device_unused_fallback_key_types``, ``to_device``).

The server never sees private keys. It checks that every key it hands out carries a valid signature of its
owner, hands each one-time key out at most once, and tells the users who share a room with someone when that
someone's devices change, so their clients re-query the keys.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.http.errors import BadJsonError, Codes, ForbiddenError, InvalidParamError, MatrixError
from homeserver.storage.database import Txn
from homeserver.storage.device_lists import DeviceListStore
from homeserver.storage.e2e_keys import E2EKeyStore
from homeserver.storage.to_device import ToDeviceStore
from homeserver.streams import StreamToken
from homeserver.types import is_valid_user_id, server_name_of

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
# The one algorithm clients use today; its count is always reported, as zero when none are left.
SIGNED_CURVE25519 = "signed_curve25519"
CROSS_SIGNING_TYPES = {"master_key": "master", "self_signing_key": "self_signing", "user_signing_key": "user_signing"}
# Bounds one /keys/upload and one /keys/query or /keys/claim (the body cap bounds bytes; these bound work).
MAX_KEYS_PER_UPLOAD = 1000
MAX_QUERY_ENTRIES = 10000
# To-device messages in one /sync reply; the rest follow in the next (a device back from a week offline may have
# thousands of room keys waiting, and one reply must stay small enough for a phone to take).
MAX_TO_DEVICE_PER_SYNC = 100


class InvalidSignatureError(MatrixError):
    """400 ``M_INVALID_SIGNATURE``: a key's signature is missing or does not verify."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, msg, INVALID_SIGNATURE)


def signed_by(obj: JsonDict, user_id: str, key_id: str, public_key_b64: str) -> bool:
    """True if ``obj`` carries a valid ed25519 signature by ``user_id``'s key ``key_id`` (``"ed25519:..."``)
    whose public key is ``public_key_b64`` (unpadded base64). Malformed keys or signatures count as invalid."""
    if not isinstance(obj.get("signatures"), dict):
        return False
    sigs = obj["signatures"].get(user_id)
    if not isinstance(sigs, dict) or not isinstance(sigs.get(key_id), str):
        return False
    try:
        verify_key = decode_verify_key_bytes(key_id, decode_base64(public_key_b64))
        verify_signed_json(obj, user_id, verify_key)
    except SignatureVerifyException:
        return False
    except Exception:  # noqa: BLE001 - malformed base64, key ID or JSON: the signature cannot be valid
        return False
    return True


def strip_signatures(obj: JsonDict) -> JsonDict:
    """The part of a signed object its signatures cover (without ``signatures`` and ``unsigned``)."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


class E2EKeysHandler:
    """Rules for E2E keys and device lists.

    ``hs`` provides ``db``, ``stream_positions``, ``notifier``, ``hostname``, ``account_store``, and later
    ``room_store`` (device-list fan-out) and ``auth_handler`` (UIA for replacing cross-signing keys).
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store = E2EKeyStore(hs.db)
        self.device_lists = DeviceListStore(hs.db, hs.stream_positions)
        self.to_device_store = ToDeviceStore(hs.db, hs.stream_positions, getattr(hs, "clock", None))

    # -- device-list changes ------------------------------------------------------------------------------------

    async def _with_device_list_change(self, user_id: str, device_id: str | None,
                                       write: Callable[[Callable[[Txn], None]], Any]) -> Any:
        """Run ``write(record)``; if the write calls ``record(txn)`` a device-list change for ``user_id`` is
        written in that transaction and announced once it committed."""
        gen = self.device_lists.generator
        pos = gen.allocate()
        recorded: list[bool] = []

        def record(txn: Txn) -> None:
            DeviceListStore.record_change_txn(txn, user_id, device_id, pos)
            recorded.append(True)

        try:
            result = await write(record)
        finally:
            gen.mark_done(pos)
        if recorded:
            await self._announce_device_change(user_id, pos)
        return result

    async def _announce_device_change(self, user_id: str, pos: int) -> None:
        users = {user_id}
        room_store = getattr(self.hs, "room_store", None)
        if room_store is not None:
            users |= await room_store.get_users_who_share_room_with(user_id)
        self.hs.notifier.notify("device_lists", pos, users=users)

    async def record_device_change(self, user_id: str, device_id: str | None) -> None:
        """Record and announce that ``user_id``'s device list changed (``device_lists.changed`` for everyone
        sharing a room with them)."""
        await self._with_device_list_change(
            user_id, device_id,
            lambda record: self.hs.db.run_interaction("record_device_change", record))

    async def on_device_created(self, user_id: str, device_id: str) -> None:
        """Called by the devices code after login/registration created ``device_id``."""
        await self.record_device_change(user_id, device_id)

    async def on_device_updated(self, user_id: str, device_id: str) -> None:
        """Called after a device was renamed: its display name is part of what ``/keys/query`` returns."""
        await self.record_device_change(user_id, device_id)

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """Called by the devices code after devices were deleted: removes their identity, one-time and fallback
        keys, signatures on them and pending to-device messages, and announces the device-list change."""
        device_ids = list(device_ids)
        if not device_ids:
            return

        def _txn(txn: Txn, record: Callable[[Txn], None]) -> None:
            E2EKeyStore.delete_devices_txn(txn, user_id, device_ids)
            ToDeviceStore.delete_devices_txn(txn, user_id, device_ids)
            record(txn)

        self.store.invalidate_key_counts(user_id, device_ids)
        self.to_device_store.invalidate_inboxes(user_id)
        try:
            await self._with_device_list_change(
                user_id, device_ids[0] if len(device_ids) == 1 else None,
                lambda record: self.hs.db.run_interaction("delete_device_keys", _txn, record))
        finally:
            self.store.invalidate_key_counts(user_id, device_ids)
            self.to_device_store.invalidate_inboxes(user_id)

    # -- POST /keys/upload ------------------------------------------------------------------------------------------

    async def upload_keys(self, user_id: str, device_id: str | None, body: JsonDict) -> JsonDict:
        """Store device keys, one-time keys and fallback keys of the caller's device.

        Returns ``{"one_time_key_counts": {algorithm: int}}`` (``signed_curve25519`` always present). Raises 400
        ``M_BAD_JSON`` for malformed keys, ``M_INVALID_PARAM`` for keys of another user/device or a key ID reused
        with different content (also identity keys differing from those already stored), and
        ``M_INVALID_SIGNATURE`` for a missing or bad signature. Nothing is stored when any part is rejected.
        """
        if device_id is None:
            raise InvalidParamError("Uploading keys requires an access token bound to a device")
        device_keys = body.get("device_keys")
        if device_keys is not None:
            self._check_device_keys(user_id, device_id, device_keys)
            ed25519 = device_keys["keys"][f"ed25519:{device_id}"]
        else:
            stored = await self.store.get_stored_device_keys(user_id, device_id)
            ed25519 = stored.get("keys", {}).get(f"ed25519:{device_id}") if stored else None
        one_time_keys = self._check_key_map(body.get("one_time_keys"), "one_time_keys", user_id, device_id, ed25519)
        fallback_keys = self._check_key_map(body.get("fallback_keys"), "fallback_keys", user_id, device_id, ed25519)
        algorithms = [k.split(":", 1)[0] for k in fallback_keys]
        if len(set(algorithms)) != len(algorithms):
            raise InvalidParamError("At most one fallback key per algorithm may be uploaded")

        async def write(record: Callable[[Txn], None]) -> dict[str, int]:
            return await self.store.upload_keys(user_id, device_id, device_keys, one_time_keys, fallback_keys,
                                                on_device_keys_added=record)

        counts = await self._with_device_list_change(user_id, device_id, write)
        return {"one_time_key_counts": {SIGNED_CURVE25519: 0, **counts}}

    @staticmethod
    def _check_device_keys(user_id: str, device_id: str, dk: Any) -> None:
        if not isinstance(dk, dict):
            raise BadJsonError("device_keys must be an object")
        if dk.get("user_id") != user_id or dk.get("device_id") != device_id:
            raise InvalidParamError("device_keys.user_id and device_keys.device_id must be the caller's")
        algorithms = dk.get("algorithms")
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise BadJsonError("device_keys.algorithms must be a list of strings")
        keys = dk.get("keys")
        if not isinstance(keys, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
            raise BadJsonError("device_keys.keys must map key IDs to strings")
        ed_id = f"ed25519:{device_id}"
        if ed_id not in keys:
            raise BadJsonError(f"device_keys.keys must contain {ed_id}")
        if not signed_by(dk, user_id, ed_id, keys[ed_id]):
            raise InvalidSignatureError("device_keys are not correctly self-signed by the device's ed25519 key")

    @staticmethod
    def _check_key_map(keys: Any, field: str, user_id: str, device_id: str,
                       ed25519: str | None) -> dict[str, JsonDict | str]:
        if keys is None:
            return {}
        if not isinstance(keys, dict):
            raise BadJsonError(f"{field} must be an object")
        if len(keys) > MAX_KEYS_PER_UPLOAD:
            raise InvalidParamError(f"At most {MAX_KEYS_PER_UPLOAD} {field} per upload")
        out: dict[str, JsonDict | str] = {}
        for full_id, key in keys.items():
            algorithm, sep, key_id = full_id.partition(":")
            if not sep or not algorithm or not key_id:
                raise BadJsonError(f"{field}: key ID {full_id!r} is not <algorithm>:<key_id>")
            if isinstance(key, str):
                if algorithm.startswith("signed_"):
                    raise BadJsonError(f"{field}: {full_id} must be a signed key object")
            elif isinstance(key, dict):
                if not isinstance(key.get("key"), str):
                    raise BadJsonError(f"{field}: {full_id} needs a string 'key'")
                if ed25519 is None:
                    raise InvalidSignatureError(f"{field}: upload device_keys first; {full_id} cannot be verified")
                if not signed_by(key, user_id, f"ed25519:{device_id}", ed25519):
                    raise InvalidSignatureError(f"{field}: {full_id} is not correctly signed by the device")
            else:
                raise BadJsonError(f"{field}: {full_id} must be a string or an object")
            out[full_id] = key
        return out

    # -- POST /keys/query -----------------------------------------------------------------------------------------

    async def query_keys(self, requester_user_id: str, body: JsonDict) -> JsonDict:
        """Device keys and cross-signing keys of the listed users (``device_keys: {user_id: [device_id...]}``,
        an empty list meaning all devices). Unknown users or devices are simply absent; users on other servers
        are reported under ``failures`` (this server does not federate)."""
        query = body.get("device_keys")
        if not isinstance(query, dict):
            raise BadJsonError("device_keys must be an object mapping user IDs to lists of device IDs")
        local: dict[str, list[str]] = {}
        failures: JsonDict = {}
        entries = 0
        for user_id, device_ids in query.items():
            if device_ids is None:
                device_ids = []
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise BadJsonError(f"device_keys.{user_id} must be a list of device IDs")
            entries += 1 + len(device_ids)
            if entries > MAX_QUERY_ENTRIES:
                raise InvalidParamError(f"At most {MAX_QUERY_ENTRIES} users and devices per query")
            if not self._is_local_user(user_id, failures):
                continue
            local[user_id] = device_ids
        device_keys = await self.store.get_device_keys(local)
        reply: JsonDict = {"device_keys": {u: device_keys.get(u, {}) for u in local}, "failures": failures,
                           "master_keys": {}, "self_signing_keys": {}, "user_signing_keys": {}}
        cross = await self.store.get_cross_signing_keys(list(local))
        for user_id, keys in cross.items():
            master = keys.get("master")
            if master is not None:
                # Signatures on someone's master key by other users (user-signing) are for the signer's eyes.
                sigs = master.get("signatures", {})
                master["signatures"] = {s: v for s, v in sigs.items() if s in (user_id, requester_user_id)}
                if not master["signatures"]:
                    del master["signatures"]
                reply["master_keys"][user_id] = master
            if "self_signing" in keys:
                reply["self_signing_keys"][user_id] = keys["self_signing"]
            if "user_signing" in keys and user_id == requester_user_id:
                reply["user_signing_keys"][user_id] = keys["user_signing"]
        return reply

    def _is_local_user(self, user_id: str, failures: JsonDict) -> bool:
        """For /keys/query and /keys/claim: True for a user of this server; a user of another server is noted in
        ``failures`` under their server (no federation); a malformed ID is skipped."""
        server = _server_of(user_id)
        if server is None:
            return False
        if server != self.hs.hostname:
            failures[server] = {"errcode": Codes.UNKNOWN, "error": "This server does not federate"}
            return False
        return True

    # -- POST /keys/claim -----------------------------------------------------------------------------------------

    async def claim_keys(self, body: JsonDict) -> JsonDict:
        """Claim one key per requested device (``one_time_keys: {user_id: {device_id: algorithm}}``).

        A one-time key is returned at most once; when a device has none left its fallback key is returned (and
        reported used in its owner's ``/sync``). Devices without keys are absent from the reply; users on other
        servers are reported under ``failures``.
        """
        wanted = body.get("one_time_keys")
        if not isinstance(wanted, dict):
            raise BadJsonError("one_time_keys must be an object")
        requests = []
        failures: JsonDict = {}
        for user_id, devices in wanted.items():
            if not isinstance(devices, dict) or not all(isinstance(a, str) for a in devices.values()):
                raise BadJsonError(f"one_time_keys.{user_id} must map device IDs to algorithm names")
            if not self._is_local_user(user_id, failures):
                continue
            requests.extend((user_id, device_id, algorithm) for device_id, algorithm in devices.items())
            if len(requests) > MAX_QUERY_ENTRIES:
                raise InvalidParamError(f"At most {MAX_QUERY_ENTRIES} devices per claim")
        claimed = await self.store.claim_keys(requests)
        out: JsonDict = {}
        for (user_id, device_id), keys in claimed.items():
            out.setdefault(user_id, {})[device_id] = keys
        return {"one_time_keys": out, "failures": failures}

    # -- GET /keys/changes and /sync --------------------------------------------------------------------------------

    async def get_device_list_changes(self, user_id: str, since: StreamToken, now: StreamToken,
                                      joined_room_ids: set[str] | frozenset[str] | None = None,
                                      newly_joined_room_ids: set[str] | None = None,
                                      newly_left_room_ids: set[str] | None = None) -> JsonDict:
        """``{"changed": [...], "left": [...]}`` between two tokens (spec: ``device_lists`` in ``/sync``).

        changed: users sharing a room with ``user_id`` (or ``user_id`` themself) whose devices changed in
        ``(since.device_lists, now.device_lists]``, the members of rooms ``user_id`` newly joined and users who
        joined a room ``user_id`` is in during ``(since.events, now.events]``. left: users of rooms ``user_id``
        left, or who left a room ``user_id`` is in, and who now share no room with ``user_id``.
        Without room information (``joined_room_ids`` None) it is derived from the user's membership events.
        Membership events are read only for the user's rooms; when there are more than
        :data:`homeserver.storage.device_lists.MAX_MEMBERSHIP_ROWS` in the range, every user sharing a room with
        ``user_id`` is in ``changed`` (a client that re-downloads too many keys still decrypts; one that misses a
        join does not).
        """
        room_store = getattr(self.hs, "room_store", None)
        if (now.device_lists <= since.device_lists and not newly_joined_room_ids and not newly_left_room_ids
                and room_store is not None and room_store.get_last_membership_stream() <= since.events):
            # No device change and no membership event anywhere in the range: nothing can have changed (the
            # usual incremental /sync), so skip computing who shares a room with the user.
            return {"changed": [], "left": []}
        shared: set[str] = {user_id}
        if room_store is not None:
            shared = set(await room_store.get_users_who_share_room_with(user_id))
        changed: set[str] = set()
        device_changes = await self.device_lists.get_users_changed_between(since.device_lists, now.device_lists)
        changed |= device_changes & (shared | {user_id})

        # No membership event anywhere since the token: nothing to look up.
        any_membership = room_store is None or room_store.get_last_membership_stream() > since.events
        if joined_room_ids is None:
            joined_room_ids = set(await room_store.get_rooms_for_user(user_id)) if room_store else set()
            newly_joined_room_ids, newly_left_room_ids = set(), set()
            own = await self.device_lists.get_user_membership_changes(user_id, since.events, now.events) \
                if any_membership else []
            for room_id, membership in own:
                if membership == "join":
                    newly_joined_room_ids.add(room_id)
                    newly_left_room_ids.discard(room_id)
                elif membership in ("leave", "ban"):
                    newly_left_room_ids.add(room_id)
                    newly_joined_room_ids.discard(room_id)
            newly_joined_room_ids &= set(joined_room_ids)
        newly_joined_room_ids = newly_joined_room_ids or set()
        newly_left_room_ids = newly_left_room_ids or set()

        # Only the rooms the user is in: who joined or left them (read per room, not server-wide).
        memberships: list[tuple[str, str, str]] = []
        truncated = False
        if any_membership:
            memberships, truncated = await self.device_lists.get_membership_changes_in_rooms(
                joined_room_ids, since.events, now.events)
        if truncated:
            # Too many membership changes to read them all: a missed join would leave the client unable to
            # decrypt that member's messages, so every user it shares a room with is reported changed.
            changed |= shared
        left_candidates: set[str] = set()
        for room_id, member, membership in memberships:
            if member == user_id:
                continue
            if membership == "join":
                changed.add(member)
            elif membership in ("leave", "ban"):
                left_candidates.add(member)
        if room_store is not None:
            for room_id in newly_joined_room_ids:
                changed |= set(await room_store.get_users_in_room(room_id))
            for room_id in newly_left_room_ids:
                left_candidates |= set(await room_store.get_users_in_room(room_id))
        # Users who left a room but were members of a room only known through the event range.
        left = {u for u in left_candidates if u not in shared and u != user_id}
        changed = {u for u in changed if u in shared or u == user_id}
        return {"changed": sorted(changed - left), "left": sorted(left)}

    async def get_sync_e2e(self, user_id: str, device_id: str | None, since: StreamToken | None,
                           now: StreamToken, joined_room_ids: set[str], newly_joined_room_ids: set[str],
                           newly_left_room_ids: set[str]) -> JsonDict:
        """The E2E parts of a ``/sync`` reply for ``user_id``'s device ``device_id`` between ``since`` (None: an
        initial sync) and ``now``.

        Returns ``{"to_device": {"events": [...]}, "device_lists": {"changed": [...], "left": [...]},
        "device_one_time_keys_count": {algorithm: int} (signed_curve25519 always present),
        "device_unused_fallback_key_types": [algorithm...], "_to_device_upto": int}``.
        To-device messages at positions ``<= since.to_device`` are deleted by this call (the client proved it
        received them by sending that token); the first :data:`MAX_TO_DEVICE_PER_SYNC` of those in
        ``(since.to_device, now.to_device]`` are returned in order and stay until a later ``since`` acknowledges
        them, so a lost response is delivered again. ``_to_device_upto`` is not part of the reply: it is the
        to-device position delivered up to (``now.to_device`` unless messages were left over), which the sync
        handler must put in ``next_batch`` instead of ``now.to_device`` so the rest comes in the next batch.
        ``device_lists`` is empty on an initial sync.
        """
        to_device: list[JsonDict] = []
        to_device_upto = now.to_device
        counts: dict[str, int] = {}
        fallback: list[str] = []
        if device_id is not None:
            acknowledged = since.to_device if since is not None else 0
            to_device, to_device_upto = await self.to_device_store.take_messages(
                user_id, device_id, acknowledged, now.to_device, MAX_TO_DEVICE_PER_SYNC)
            counts, fallback = await self.store.get_key_counts(user_id, device_id)
        device_lists: JsonDict = {"changed": [], "left": []}
        if since is not None:
            device_lists = await self.get_device_list_changes(user_id, since, now, set(joined_room_ids),
                                                              set(newly_joined_room_ids), set(newly_left_room_ids))
        return {
            "to_device": {"events": to_device},
            "device_lists": device_lists,
            "device_one_time_keys_count": {SIGNED_CURVE25519: 0, **counts},
            "device_unused_fallback_key_types": fallback,
            "_to_device_upto": to_device_upto,
        }

    # -- cross-signing ------------------------------------------------------------------------------------------

    async def upload_cross_signing_keys(self, request: Any, requester: Any, body: JsonDict) -> JsonDict:
        """``POST /keys/device_signing/upload``: store master, self-signing and user-signing keys.

        The first upload needs no UIA (MSC3967); re-uploading the same keys needs none either; replacing keys
        requires UIA with ``m.login.password`` (401 with ``flows`` first). Raises 400 ``M_BAD_JSON`` for
        malformed keys, ``M_MISSING_PARAM`` when no master key is known, ``M_INVALID_SIGNATURE`` when the
        self-/user-signing key is not signed by the master key, 403 when a public key equals a device ID.
        """
        user_id = requester.user_id
        new: dict[str, tuple[JsonDict, str]] = {}
        for field, usage in CROSS_SIGNING_TYPES.items():
            key = body.get(field)
            if key is None:
                continue
            new[usage] = (key, self._check_cross_signing_key(user_id, key, usage, field))
        if not new:
            return {}
        existing = (await self.store.get_cross_signing_keys([user_id])).get(user_id, {})
        master_public = new["master"][1] if "master" in new else _public_of(existing.get("master"))
        if master_public is None:
            raise MatrixError(400, "No master key is available", Codes.MISSING_PARAM)
        for usage in ("self_signing", "user_signing"):
            if usage in new and not signed_by(new[usage][0], user_id, f"ed25519:{master_public}", master_public):
                raise InvalidSignatureError(f"The {usage} key is not signed by the master key")
        device_ids = {d["device_id"] for d in await self.hs.account_store.get_devices(user_id)}
        for usage, (_key, public) in new.items():
            if public in device_ids:
                raise ForbiddenError("Key ID in use")
        replacing = "master" in existing and any(
            usage not in existing or strip_signatures(existing[usage]) != strip_signatures(key)
            for usage, (key, _p) in new.items())
        if replacing and getattr(requester, "app_service", None) is None:
            await self._require_password_uia(request, body, user_id)

        async def write(record: Callable[[Txn], None]) -> None:
            await self.store.set_cross_signing_keys(user_id, new, on_changed=record)

        await self._with_device_list_change(user_id, None, write)
        return {}

    async def _require_password_uia(self, request: Any, body: JsonDict, user_id: str) -> None:
        auth_handler = getattr(self.hs, "auth_handler", None)
        if auth_handler is None:
            raise MatrixError(500, "User-interactive authentication is not available")
        await auth_handler.check_ui_auth(request, body, [["m.login.password"]], requester_user_id=user_id)

    @staticmethod
    def _check_cross_signing_key(user_id: str, key: Any, usage: str, field: str) -> str:
        """Validate the shape of a cross-signing key; returns its public key."""
        if not isinstance(key, dict):
            raise BadJsonError(f"{field} must be an object")
        if key.get("user_id") != user_id:
            raise InvalidParamError(f"{field}.user_id must be the caller's user ID")
        usages = key.get("usage")
        if not isinstance(usages, list) or usage not in usages:
            raise BadJsonError(f"{field}.usage must contain {usage!r}")
        public = _public_of(key)
        if public is None:
            raise BadJsonError(f"{field}.keys must hold exactly one ed25519:<public key> entry")
        return public

    async def upload_signatures(self, requester_user_id: str, body: JsonDict) -> JsonDict:
        """``POST /keys/signatures/upload``: ``{user_id: {key_id: signed object}}``.

        Accepted: the caller's self-signing key signing the caller's device keys, the caller's devices signing
        the caller's master key, and the caller's user-signing key signing another user's master key. Each
        signature is verified; failures are reported per key under ``failures`` (``M_INVALID_SIGNATURE`` for a
        bad signature, ``M_NOT_FOUND`` for an unknown key, ``M_INVALID_PARAM`` when the object differs from the
        stored key) and the other signatures are still stored.
        """
        if not all(isinstance(v, dict) for v in body.values()):
            raise BadJsonError("The body must map user IDs to objects of signed keys")
        targets = [u for u in body if _server_of(u) == self.hs.hostname]
        cross = await self.store.get_cross_signing_keys(list({requester_user_id, *targets}))
        own = cross.get(requester_user_id, {})
        rows: list[tuple[str, str, str, str, str]] = []
        failures: JsonDict = {}
        for target_user, keys in body.items():
            for key_id, obj in keys.items():
                try:
                    rows.extend(await self._check_signature_upload(requester_user_id, own, cross.get(target_user, {}),
                                                                   target_user, key_id, obj))
                except _SignatureFailure as f:
                    failures.setdefault(target_user, {})[key_id] = {"errcode": f.errcode, "error": f.msg}
        if rows:
            async def write(record: Callable[[Txn], None]) -> None:
                await self.store.store_signatures(rows, on_changed=record)

            await self._with_device_list_change(requester_user_id, None, write)
        return {"failures": failures}

    async def _check_signature_upload(self, signer: str, own: dict[str, JsonDict], target_keys: dict[str, JsonDict],
                                      target_user: str, key_id: str,
                                      obj: Any) -> list[tuple[str, str, str, str, str]]:
        if not isinstance(obj, dict):
            raise _SignatureFailure(Codes.BAD_JSON, "The signed object must be an object")
        new_sigs = obj.get("signatures", {}).get(signer) if isinstance(obj.get("signatures"), dict) else None
        if not isinstance(new_sigs, dict) or not new_sigs:
            raise _SignatureFailure(INVALID_SIGNATURE, f"No signature by {signer}")
        target_master = target_keys.get("master")
        if target_user == signer and (target_master is None or key_id != _public_of(target_master)):
            # The caller's self-signing key signs one of the caller's devices.
            stored = await self.store.get_stored_device_keys(signer, key_id)
            if stored is None:
                raise _SignatureFailure(Codes.NOT_FOUND, "Unknown device")
            if strip_signatures(stored) != strip_signatures(obj):
                raise _SignatureFailure(Codes.INVALID_PARAM, "The signed object differs from the device's keys")
            ssk_public = _public_of(own.get("self_signing"))
            if ssk_public is None:
                raise _SignatureFailure(INVALID_SIGNATURE, "No self-signing key has been uploaded")
            ssk_id = f"ed25519:{ssk_public}"
            if not signed_by(obj, signer, ssk_id, ssk_public):
                raise _SignatureFailure(INVALID_SIGNATURE, "Invalid signature by the self-signing key")
            return [(signer, ssk_id, signer, key_id, obj["signatures"][signer][ssk_id])]
        if target_master is None:
            raise _SignatureFailure(Codes.NOT_FOUND, "Unknown key")
        master_public = _public_of(target_master)
        if key_id != master_public:
            raise _SignatureFailure(Codes.NOT_FOUND, "Only master keys of other users can be signed")
        if strip_signatures(target_master) != strip_signatures(obj):
            raise _SignatureFailure(Codes.INVALID_PARAM, "The signed object differs from the master key")
        rows = []
        if target_user == signer:
            # The caller's devices sign the caller's master key.
            for sig_key_id, sig in new_sigs.items():
                if sig_key_id == f"ed25519:{master_public}":
                    continue
                device_id = sig_key_id.partition(":")[2]
                device = await self.store.get_stored_device_keys(signer, device_id)
                device_public = device.get("keys", {}).get(sig_key_id) if device else None
                if device_public is None or not signed_by(obj, signer, sig_key_id, device_public):
                    raise _SignatureFailure(INVALID_SIGNATURE, f"Invalid signature by {sig_key_id}")
                rows.append((signer, sig_key_id, signer, master_public, sig))
            if not rows:
                raise _SignatureFailure(INVALID_SIGNATURE, "No device signature on the master key")
            return rows
        usk_public = _public_of(own.get("user_signing"))
        if usk_public is None:
            raise _SignatureFailure(INVALID_SIGNATURE, "No user-signing key has been uploaded")
        usk_id = f"ed25519:{usk_public}"
        if not signed_by(obj, signer, usk_id, usk_public):
            raise _SignatureFailure(INVALID_SIGNATURE, "Invalid signature by the user-signing key")
        return [(signer, usk_id, target_user, master_public, new_sigs[usk_id])]


class _SignatureFailure(Exception):
    def __init__(self, errcode: str, msg: str) -> None:
        super().__init__(msg)
        self.errcode = errcode
        self.msg = msg


def _public_of(key: JsonDict | None) -> str | None:
    """The public key of a cross-signing key (its only ``ed25519:<public>`` entry), or None."""
    if not isinstance(key, dict):
        return None
    keys = key.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    ((key_id, public),) = keys.items()
    if not isinstance(public, str) or key_id != f"ed25519:{public}" or not public:
        return None
    return public


def _server_of(user_id: Any) -> str | None:
    """The server name of a user ID, or None if it is not a user ID."""
    return server_name_of(user_id) if is_valid_user_id(user_id) else None
