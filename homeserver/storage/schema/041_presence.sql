-- Presence (issue 8): the latest presence of each local user and the "presence" stream position that set it.
-- Only the latest state matters to clients, so one row per user is the whole stream.
CREATE TABLE presence_stream (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL,
    state TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    last_user_sync_ts BIGINT NOT NULL,
    currently_active SMALLINT NOT NULL
);
CREATE INDEX presence_stream_id ON presence_stream (stream_id);
