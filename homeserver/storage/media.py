"""Media metadata (the ``local_media`` table). The bytes themselves are files handled by
:mod:`homeserver.handlers.media`; this module only holds the SQL."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """One local media ID. ``sha256`` (hex) is None while an asynchronous upload has no content yet;
    ``media_length`` is in bytes, timestamps in milliseconds."""

    media_id: str
    user_id: str
    media_type: str | None
    upload_name: str | None
    media_length: int | None
    sha256: str | None
    created_ts: int
    unused_expires_ts: int | None

    @property
    def uploaded(self) -> bool:
        return self.sha256 is not None


_COLUMNS = "media_id, user_id, media_type, upload_name, media_length, sha256, created_ts, unused_expires_ts"


class MediaStore:
    """SQL for ``local_media``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def store_local_media(self, media_id: str, user_id: str, media_type: str, upload_name: str | None,
                                media_length: int, sha256: str, created_ts: int) -> None:
        """Record a completed upload (``POST /upload``)."""
        await self.db.execute(
            "store_local_media",
            f"INSERT INTO local_media ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            media_id, user_id, media_type, upload_name, media_length, sha256, created_ts)

    async def create_pending_media(self, media_id: str, user_id: str, created_ts: int, expires_ts: int,
                                   max_pending: int) -> bool:
        """Reserve ``media_id`` for a later ``PUT /upload/{serverName}/{mediaId}``. Returns False (and reserves
        nothing) if ``user_id`` already has ``max_pending`` unexpired reservations without content."""

        def _txn(txn: Txn) -> bool:
            txn.execute("SELECT COUNT(*) FROM local_media WHERE user_id = ? AND sha256 IS NULL "
                        "AND unused_expires_ts > ?", (user_id, created_ts))
            row = txn.fetchone()
            if row is not None and row[0] >= max_pending:
                return False
            txn.execute(f"INSERT INTO local_media ({_COLUMNS}) VALUES (?, ?, NULL, NULL, NULL, NULL, ?, ?)",
                        (media_id, user_id, created_ts, expires_ts))
            return True

        return await self.db.run_interaction("create_pending_media", _txn)

    async def complete_pending_media(self, media_id: str, media_type: str, upload_name: str | None,
                                     media_length: int, sha256: str) -> bool:
        """Attach content to a reservation. Returns False if it already has content (a concurrent upload won)."""

        def _txn(txn: Txn) -> bool:
            txn.execute("UPDATE local_media SET media_type = ?, upload_name = ?, media_length = ?, sha256 = ?, "
                        "unused_expires_ts = NULL WHERE media_id = ? AND sha256 IS NULL",
                        (media_type, upload_name, media_length, sha256, media_id))
            return txn.rowcount == 1

        return await self.db.run_interaction("complete_pending_media", _txn)

    async def get_local_media(self, media_id: str) -> LocalMedia | None:
        """The :class:`LocalMedia` row of ``media_id``, or None."""
        rows = await self.db.execute("get_local_media", f"SELECT {_COLUMNS} FROM local_media WHERE media_id = ?",
                                     media_id)
        if not rows:
            return None
        r = rows[0]
        return LocalMedia(r[0], r[1], r[2], r[3], None if r[4] is None else int(r[4]), r[5], int(r[6]),
                          None if r[7] is None else int(r[7]))
