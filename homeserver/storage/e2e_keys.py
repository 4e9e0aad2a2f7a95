"""Device keys, one-time and fallback keys, cross-signing keys and their signatures.

Spec: Client-Server API, "End-to-End Encryption" -> "Key management API" and "Cross-signing". Keys are stored as
canonical JSON exactly as uploaded (their signatures must keep verifying); signatures uploaded later live in their
own table and are merged in when keys are read.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from canonicaljson import encode_canonical_json

from homeserver.http.errors import Codes, MatrixError
from homeserver.storage.database import Database, Txn

JsonDict = dict[str, Any]
# (user_id, device_id, algorithm) asked for in POST /keys/claim
ClaimRequest = tuple[str, str, str]


def _encode(obj: Any) -> str:
    return encode_canonical_json(obj).decode("utf-8")


class KeyConflictError(MatrixError):
    """400 ``M_INVALID_PARAM``: a key ID (or a device's identity keys) already stored with different content."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, msg, Codes.INVALID_PARAM)


class E2EKeyStore:
    """SQL for ``e2e_device_keys``, ``e2e_one_time_keys``, ``e2e_fallback_keys``, ``e2e_cross_signing_keys`` and
    ``e2e_cross_signing_signatures``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # get_key_counts per device (read on every /sync). Dropped around every write that changes a device's
        # keys (upload, claim, device deletion); a read that raced with such a write is not stored. Keyed by user,
        # then device, so dropping one user's entries never walks the whole cache.
        self._counts: dict[str, dict[str, tuple[dict[str, int], list[str]]]] = {}
        self._count_entries = 0
        self._writes = 0

    def invalidate_key_counts(self, user_id: str, device_ids: list[str] | None = None) -> None:
        """Forget cached key counts of ``device_ids`` of ``user_id`` (None: all of the user's devices). Called
        before and after every transaction that changes one-time or fallback keys."""
        self._writes += 1
        devices = self._counts.get(user_id)
        if devices is None:
            return
        if device_ids is None:
            self._count_entries -= len(devices)
            del self._counts[user_id]
            return
        for device_id in device_ids:
            if devices.pop(device_id, None) is not None:
                self._count_entries -= 1
        if not devices:
            del self._counts[user_id]

    # -- upload -------------------------------------------------------------------------------------------------

    async def upload_keys(self, user_id: str, device_id: str, device_keys: JsonDict | None,
                          one_time_keys: dict[str, JsonDict | str], fallback_keys: dict[str, JsonDict | str],
                          on_device_keys_added: Callable[[Txn], None]) -> dict[str, int]:
        """Store everything from one ``POST /keys/upload`` in one transaction (all or nothing).

        ``one_time_keys``/``fallback_keys`` map ``"<algorithm>:<key_id>"`` to the key object (already validated).
        Raises KeyConflictError if the device already has different identity keys or a key ID is reused with
        different content; nothing is stored then. ``on_device_keys_added(txn)`` runs when identity keys are
        stored for the first time (to record the device-list change in the same transaction).
        Returns the one-time key counts per algorithm afterwards.
        """

        def _txn(txn: Txn) -> dict[str, int]:
            if device_keys is not None:
                txn.execute("SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
                            (user_id, device_id))
                row = txn.fetchone()
                if row is None:
                    txn.execute("INSERT INTO e2e_device_keys (user_id, device_id, key_json, ts_added_ms)"
                                " VALUES (?, ?, ?, ?)", (user_id, device_id, _encode(device_keys), _now_ms()))
                    on_device_keys_added(txn)
                else:
                    old = json.loads(row[0])
                    if _unsigned_part(old) != _unsigned_part(device_keys):
                        raise KeyConflictError("This device already has different identity keys; "
                                               "log in as a new device to use new keys")
                    if old != device_keys:  # same keys, new signatures: keep the newest upload
                        txn.execute("UPDATE e2e_device_keys SET key_json = ? WHERE user_id = ? AND device_id = ?",
                                    (_encode(device_keys), user_id, device_id))
            if one_time_keys:
                txn.execute("SELECT COALESCE(MAX(upload_seq), 0) FROM e2e_one_time_keys"
                            " WHERE user_id = ? AND device_id = ?", (user_id, device_id))
                seq = int(txn.fetchone()[0]) + 1
                new_rows = []
                for full_id, key in one_time_keys.items():
                    algorithm, key_id = full_id.split(":", 1)
                    encoded = _encode(key)
                    txn.execute("SELECT key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                                " AND algorithm = ? AND key_id = ?", (user_id, device_id, algorithm, key_id))
                    row = txn.fetchone()
                    if row is not None:
                        if json.loads(row[0]) != key:
                            raise KeyConflictError(f"One-time key {full_id} already exists with different content")
                        continue
                    new_rows.append((user_id, device_id, algorithm, key_id, encoded, seq))
                txn.executemany("INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json,"
                                " upload_seq) VALUES (?, ?, ?, ?, ?, ?)", new_rows)
            for full_id, key in fallback_keys.items():
                algorithm, key_id = full_id.split(":", 1)
                txn.execute("SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?"
                            " AND algorithm = ?", (user_id, device_id, algorithm))
                row = txn.fetchone()
                if row is not None and row[0] == key_id:
                    if json.loads(row[1]) != key:
                        raise KeyConflictError(f"Fallback key {full_id} already exists with different content")
                    continue
                txn.execute("DELETE FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?",
                            (user_id, device_id, algorithm))
                txn.execute("INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
                            " VALUES (?, ?, ?, ?, ?, 0)", (user_id, device_id, algorithm, key_id, _encode(key)))
            return self._count_otks_txn(txn, user_id, device_id)

        self.invalidate_key_counts(user_id, [device_id])
        try:
            return await self.db.run_interaction("upload_keys", _txn)
        finally:
            self.invalidate_key_counts(user_id, [device_id])

    @staticmethod
    def _count_otks_txn(txn: Txn, user_id: str, device_id: str) -> dict[str, int]:
        txn.execute("SELECT algorithm, COUNT(*) FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                    " GROUP BY algorithm", (user_id, device_id))
        return {r[0]: int(r[1]) for r in txn.fetchall()}

    async def get_stored_device_keys(self, user_id: str, device_id: str) -> JsonDict | None:
        """The ``device_keys`` object uploaded for the device (``/keys/upload``), or None."""
        rows = await self.db.execute("get_stored_device_keys",
                                     "SELECT key_json FROM e2e_device_keys WHERE user_id = ? AND device_id = ?",
                                     user_id, device_id)
        return json.loads(rows[0][0]) if rows else None

    async def get_key_counts(self, user_id: str, device_id: str) -> tuple[dict[str, int], list[str]]:
        """``(one-time key counts per algorithm, algorithms with an unused fallback key)`` of one device. The
        caller must not modify the returned objects (they are shared with later calls)."""
        cached = self._counts.get(user_id, {}).get(device_id)
        if cached is not None:
            return cached
        writes = self._writes

        def _txn(txn: Txn) -> tuple[dict[str, int], list[str]]:
            counts = self._count_otks_txn(txn, user_id, device_id)
            txn.execute("SELECT algorithm FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ? AND used = 0"
                        " ORDER BY algorithm", (user_id, device_id))
            return counts, [r[0] for r in txn.fetchall()]

        result = await self.db.run_interaction("get_key_counts", _txn)
        if writes == self._writes:
            if self._count_entries >= 100_000:
                self._counts.clear()
                self._count_entries = 0
            devices = self._counts.setdefault(user_id, {})
            if device_id not in devices:
                self._count_entries += 1
            devices[device_id] = result
        return result

    # -- query --------------------------------------------------------------------------------------------------

    async def get_device_keys(self, query: dict[str, list[str]]) -> dict[str, dict[str, JsonDict]]:
        """Device keys of existing devices: ``query`` maps user ID to device IDs (empty list: all devices).

        Returns ``{user_id: {device_id: device_keys}}`` with uploaded signatures merged into ``signatures`` and
        ``unsigned.device_display_name`` set when the device has a name. Devices without keys are left out.
        """

        def _txn(txn: Txn) -> dict[str, dict[str, JsonDict]]:
            out: dict[str, dict[str, JsonDict]] = {}
            for user_id, device_ids in query.items():
                sql = ("SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k"
                       " JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id = ?")
                params: list[Any] = [user_id]
                if device_ids:
                    clause, extra = txn.in_list("k.device_id", list(device_ids))
                    sql += " AND " + clause
                    params += extra
                txn.execute(sql, params)
                devices = {}
                for device_id, key_json, display_name in txn.fetchall():
                    keys = json.loads(key_json)
                    keys.pop("unsigned", None)
                    if display_name is not None:
                        keys["unsigned"] = {"device_display_name": display_name}
                    devices[device_id] = keys
                if not devices:
                    continue
                clause, extra = txn.in_list("target_key_id", list(devices))
                txn.execute("SELECT target_key_id, signer_user_id, signer_key_id, signature FROM"
                            f" e2e_cross_signing_signatures WHERE target_user_id = ? AND {clause}", [user_id, *extra])
                for target, signer, signer_key_id, sig in txn.fetchall():
                    devices[target].setdefault("signatures", {}).setdefault(signer, {})[signer_key_id] = sig
                out[user_id] = devices
            return out

        return await self.db.run_interaction("get_device_keys", _txn)

    # -- claim --------------------------------------------------------------------------------------------------

    async def claim_keys(self, requests: list[ClaimRequest]) -> dict[tuple[str, str], dict[str, JsonDict]]:
        """Take one key per ``(user_id, device_id, algorithm)``: the oldest one-time key, else the fallback key
        (marked used, not removed). Returns ``{(user_id, device_id): {"<alg>:<key_id>": key}}``.

        Each one-time key is handed out at most once, also under concurrent claims: the row is deleted in the
        claiming transaction and only the transaction whose DELETE removed it returns it. On PostgreSQL candidate
        rows are locked (``FOR UPDATE SKIP LOCKED``) so parallel claims take different keys without waiting.
        """

        def _txn(txn: Txn) -> dict[tuple[str, str], dict[str, JsonDict]]:
            lock = " FOR UPDATE SKIP LOCKED" if txn.is_postgres else ""
            out: dict[tuple[str, str], dict[str, JsonDict]] = {}
            for user_id, device_id, algorithm in requests:
                claimed = None
                for _attempt in range(8):  # bounded: each failed DELETE means a concurrent claim won that row
                    txn.execute("SELECT key_id, key_json FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ?"
                                " AND algorithm = ? ORDER BY upload_seq, key_id LIMIT 1" + lock,
                                (user_id, device_id, algorithm))
                    row = txn.fetchone()
                    if row is None:
                        break
                    txn.execute("DELETE FROM e2e_one_time_keys WHERE user_id = ? AND device_id = ? AND algorithm = ?"
                                " AND key_id = ?", (user_id, device_id, algorithm, row[0]))
                    if txn.rowcount == 1:
                        claimed = (row[0], json.loads(row[1]))
                        break
                if claimed is None:
                    txn.execute("SELECT key_id, key_json FROM e2e_fallback_keys WHERE user_id = ? AND device_id = ?"
                                " AND algorithm = ?", (user_id, device_id, algorithm))
                    row = txn.fetchone()
                    if row is not None:
                        txn.execute("UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = ? AND device_id = ?"
                                    " AND algorithm = ?", (user_id, device_id, algorithm))
                        claimed = (row[0], json.loads(row[1]))
                if claimed is not None:
                    out.setdefault((user_id, device_id), {})[f"{algorithm}:{claimed[0]}"] = claimed[1]
            return out

        # Only the claimed devices' counts change.
        devices: dict[str, list[str]] = {}
        for user_id, device_id, _algorithm in requests:
            devices.setdefault(user_id, []).append(device_id)
        for user_id, device_ids in devices.items():
            self.invalidate_key_counts(user_id, device_ids)
        try:
            return await self.db.run_interaction("claim_keys", _txn)
        finally:
            for user_id, device_ids in devices.items():
                self.invalidate_key_counts(user_id, device_ids)

    # -- devices going away ---------------------------------------------------------------------------------------

    @staticmethod
    def delete_devices_txn(txn: Txn, user_id: str, device_ids: list[str]) -> None:
        """Remove every key of the devices and signatures on them (inside the caller's transaction)."""
        clause, params = txn.in_list("device_id", device_ids)
        for table in ("e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys"):
            txn.execute(f"DELETE FROM {table} WHERE user_id = ? AND {clause}", [user_id, *params])
        clause, params = txn.in_list("target_key_id", device_ids)
        txn.execute(f"DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = ? AND {clause}",
                    [user_id, *params])

    # -- cross-signing ------------------------------------------------------------------------------------------

    async def get_cross_signing_keys(self, user_ids: list[str]) -> dict[str, dict[str, JsonDict]]:
        """``{user_id: {"master"|"self_signing"|"user_signing": key}}`` with uploaded signatures merged in
        (all of them; the handler filters what a requester may see)."""

        def _txn(txn: Txn) -> dict[str, dict[str, JsonDict]]:
            out: dict[str, dict[str, JsonDict]] = {}
            if not user_ids:
                return out
            clause, params = txn.in_list("user_id", list(user_ids))
            txn.execute(f"SELECT user_id, keytype, key_json, public_key FROM e2e_cross_signing_keys WHERE {clause}",
                        params)
            by_public: dict[tuple[str, str], JsonDict] = {}
            for user_id, keytype, key_json, public in txn.fetchall():
                key = json.loads(key_json)
                out.setdefault(user_id, {})[keytype] = key
                by_public[(user_id, public)] = key
            if by_public:
                clause, params = txn.in_list("target_user_id", sorted({u for u, _ in by_public}))
                txn.execute("SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature FROM"
                            f" e2e_cross_signing_signatures WHERE {clause}", params)
                for target_user, target_key, signer, signer_key_id, sig in txn.fetchall():
                    key = by_public.get((target_user, target_key))
                    if key is not None:
                        key.setdefault("signatures", {}).setdefault(signer, {})[signer_key_id] = sig
            return out

        return await self.db.run_interaction("get_cross_signing_keys", _txn)

    async def set_cross_signing_keys(self, user_id: str, keys: dict[str, tuple[JsonDict, str]],
                                     on_changed: Callable[[Txn], None]) -> None:
        """Replace the user's keys of the given usages: ``keys`` maps keytype to ``(key, public_key)``.

        A new master key invalidates signatures made by or on the old keys, so those are dropped.
        ``on_changed(txn)`` records the device-list change in the same transaction.
        """

        def _txn(txn: Txn) -> None:
            txn.execute("SELECT keytype, public_key FROM e2e_cross_signing_keys WHERE user_id = ?", (user_id,))
            old = {r[0]: r[1] for r in txn.fetchall()}
            for keytype, (key, public) in keys.items():
                if old.get(keytype) == public:
                    txn.execute("UPDATE e2e_cross_signing_keys SET key_json = ? WHERE user_id = ? AND keytype = ?",
                                (_encode(key), user_id, keytype))
                    continue
                txn.execute("DELETE FROM e2e_cross_signing_keys WHERE user_id = ? AND keytype = ?", (user_id, keytype))
                txn.execute("INSERT INTO e2e_cross_signing_keys (user_id, keytype, key_json, public_key, ts_added_ms)"
                            " VALUES (?, ?, ?, ?, ?)", (user_id, keytype, _encode(key), public, _now_ms()))
                if keytype in old:
                    txn.execute("DELETE FROM e2e_cross_signing_signatures WHERE (target_user_id = ? AND"
                                " target_key_id = ?) OR (signer_user_id = ? AND signer_key_id = ?)",
                                (user_id, old[keytype], user_id, "ed25519:" + old[keytype]))
            on_changed(txn)

        await self.db.run_interaction("set_cross_signing_keys", _txn)

    async def store_signatures(self, rows: list[tuple[str, str, str, str, str]],
                               on_changed: Callable[[Txn], None]) -> None:
        """Store ``[(signer_user_id, signer_key_id, target_user_id, target_key_id, signature)]`` (replacing an
        earlier signature by the same key on the same target)."""

        def _txn(txn: Txn) -> None:
            for signer, signer_key_id, target_user, target_key, sig in rows:
                txn.execute("DELETE FROM e2e_cross_signing_signatures WHERE target_user_id = ? AND target_key_id = ?"
                            " AND signer_user_id = ? AND signer_key_id = ?", (target_user, target_key, signer,
                                                                            signer_key_id))
                txn.execute("INSERT INTO e2e_cross_signing_signatures (signer_user_id, signer_key_id, target_user_id,"
                            " target_key_id, signature) VALUES (?, ?, ?, ?, ?)",
                            (signer, signer_key_id, target_user, target_key, sig))
            on_changed(txn)

        await self.db.run_interaction("store_signatures", _txn)


def _unsigned_part(obj: JsonDict) -> JsonDict:
    """The parts of a signed object its signatures cover."""
    return {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}


def _now_ms() -> int:
    return int(time.time() * 1000)
