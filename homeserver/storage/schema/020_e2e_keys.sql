-- End-to-end encryption: device keys, one-time and fallback keys, cross-signing keys and signatures, the
-- device-list stream, to-device messages and server-side key backups. Runs on SQLite and PostgreSQL.
-- JSON is TEXT (canonical JSON as uploaded); booleans are SMALLINT 0/1; times are BIGINT milliseconds.

-- The signed device_keys object of each device (spec: POST /keys/upload, "device_keys").
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    ts_added_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Unclaimed one-time keys. upload_seq orders claims by upload (spec: keys from one upload are equivalent).
CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    upload_seq BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);
CREATE INDEX e2e_one_time_keys_claim ON e2e_one_time_keys (user_id, device_id, algorithm, upload_seq);

-- At most one fallback key per device and algorithm; "used" once handed out, until replaced.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- The current cross-signing key of each usage ("master", "self_signing", "user_signing") per user.
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    keytype TEXT NOT NULL,
    key_json TEXT NOT NULL,
    public_key TEXT NOT NULL,              -- the unpadded base64 ed25519 public key (also its key ID part)
    ts_added_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, keytype)
);

-- Signatures uploaded through POST /keys/signatures/upload, merged into /keys/query replies.
-- target_key_id is a device ID or the public key of a cross-signing key.
CREATE TABLE e2e_cross_signing_signatures (
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,           -- e.g. "ed25519:<self-signing public key>"
    target_user_id TEXT NOT NULL,
    target_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The "device_lists" stream: one row per change of a user's devices, keys or cross-signing keys.
CREATE TABLE device_lists_stream (
    stream_id BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    device_id TEXT,                        -- NULL for a cross-signing change
    PRIMARY KEY (stream_id, user_id)
);
CREATE INDEX device_lists_stream_user ON device_lists_stream (user_id, stream_id);

-- The "to_device" stream: pending messages per target device, deleted once the client acknowledged them.
-- One stream position per sendToDevice request; a request has at most one message per device.
CREATE TABLE device_inbox (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    message_json TEXT NOT NULL,            -- {"type", "sender", "content"}
    PRIMARY KEY (user_id, device_id, stream_id)
);
CREATE INDEX device_inbox_stream ON device_inbox (stream_id);

-- PUT /sendToDevice/{eventType}/{txnId} idempotency, per sending device (spec: "Transaction identifiers").
CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,               -- '' for a caller without a device (appservice)
    txn_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    stream_id BIGINT NOT NULL,             -- kept so the to_device stream never restarts below acknowledged tokens
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Server-side key backup versions (spec: "Server-side key backups"). etag changes whenever the keys change.
CREATE TABLE e2e_room_keys_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag BIGINT NOT NULL DEFAULT 0,
    deleted SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE e2e_room_keys (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified SMALLINT NOT NULL,
    session_data TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
