-- Media repository (issue 8): one row per local media ID. The bytes live on disk under media_store_path,
-- named by their sha256, so identical uploads share one file. sha256 IS NULL while an asynchronous upload
-- (POST /_matrix/media/v1/create) waits for its content.
CREATE TABLE local_media (
    media_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    media_type TEXT,
    upload_name TEXT,
    media_length BIGINT,
    sha256 TEXT,
    created_ts BIGINT NOT NULL,
    unused_expires_ts BIGINT
);
CREATE INDEX local_media_user ON local_media (user_id, created_ts);
CREATE INDEX local_media_sha256 ON local_media (sha256);
