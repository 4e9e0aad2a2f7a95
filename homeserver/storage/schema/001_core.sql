-- Core schema: accounts, devices, access tokens, rooms, events and state, memberships, aliases, account data.
-- Runs on SQLite and PostgreSQL. Booleans are SMALLINT 0/1; JSON is TEXT; times are BIGINT milliseconds.

CREATE TABLE users (
    name TEXT PRIMARY KEY,                 -- the full user ID, @localpart:server
    password_hash TEXT,
    creation_ts BIGINT NOT NULL,
    admin SMALLINT NOT NULL DEFAULT 0,
    deactivated SMALLINT NOT NULL DEFAULT 0,
    appservice_id TEXT,
    user_type TEXT
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    creation_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE access_tokens (
    id BIGINT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    device_id TEXT,
    valid_until_ms BIGINT,
    creation_ts BIGINT NOT NULL
);
CREATE INDEX access_tokens_user ON access_tokens (user_id, device_id);

CREATE TABLE ui_auth_sessions (
    session_id TEXT PRIMARY KEY,
    creation_ts BIGINT NOT NULL,
    user_id TEXT,
    uri TEXT NOT NULL,
    method TEXT NOT NULL,
    clientdict TEXT NOT NULL,
    serverdict TEXT NOT NULL,
    completed TEXT NOT NULL                -- JSON list of completed stage types
);

CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    creator TEXT NOT NULL,
    room_version TEXT NOT NULL,
    is_public SMALLINT NOT NULL DEFAULT 0, -- published in the public room directory
    creation_ts BIGINT NOT NULL
);

-- Every accepted event, in stream order. The room DAG is linear on a single server, so stream order within a
-- room is also its topological order.
CREATE TABLE events (
    stream_ordering BIGINT PRIMARY KEY,
    depth BIGINT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    json TEXT NOT NULL                     -- canonical JSON of the PDU
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
CREATE INDEX events_state ON events (room_id, type, state_key, stream_ordering) WHERE state_key IS NOT NULL;

CREATE TABLE redactions (
    event_id TEXT PRIMARY KEY,             -- the m.room.redaction event
    redacts TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX redactions_redacts ON redactions (redacts);

CREATE TABLE current_state_events (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    membership TEXT,
    PRIMARY KEY (room_id, type, state_key)
);

-- Every membership event, for membership at a point in the stream (history visibility, sync).
CREATE TABLE room_memberships (
    event_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, stream_ordering);
CREATE INDEX room_memberships_room ON room_memberships (room_id, user_id, stream_ordering);

CREATE TABLE local_current_membership (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    forgotten SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX local_current_membership_room ON local_current_membership (room_id, membership);

-- PUT /send/{eventType}/{txnId} idempotency, per device (spec: "Transaction identifiers").
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE event_relations (
    event_id TEXT PRIMARY KEY,
    relates_to_id TEXT NOT NULL,
    relation_type TEXT NOT NULL,
    aggregation_key TEXT,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX event_relations_relates ON event_relations (relates_to_id, relation_type, stream_ordering);

CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,                 -- '' for global account data
    account_data_type TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    content TEXT NOT NULL,
    PRIMARY KEY (user_id, room_id, account_data_type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);

CREATE TABLE user_filters (
    user_id TEXT NOT NULL,
    filter_id BIGINT NOT NULL,
    filter_json TEXT NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

CREATE TABLE profiles (
    user_id TEXT PRIMARY KEY,
    displayname TEXT,
    avatar_url TEXT
);
