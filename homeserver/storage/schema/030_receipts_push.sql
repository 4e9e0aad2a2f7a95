-- Receipts, push rules, push actions (unread counts), pushers and pending pushes (migrations 030-039).

-- The latest receipt per (room, type, user, thread): a receipt replaces the previous one only when its event is
-- later in the room's stream order. thread_id '' is an unthreaded receipt. stream_id is the "receipts" stream.
CREATE TABLE receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_stream_ordering BIGINT NOT NULL,
    stream_id BIGINT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_room_stream ON receipts (room_id, stream_id);

-- Where a user has read up to, per room and thread ('' = every thread): the later of their m.read and
-- m.read.private receipts and their own last sent event. Unread counts are the push actions after it.
CREATE TABLE push_read_positions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);

-- The user's own push rules (kind, rule_id) in priority order within a kind (higher priority first).
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    priority BIGINT NOT NULL,
    rule_json TEXT NOT NULL,
    enabled SMALLINT NOT NULL,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- What the user changed on server-default rules: NULL columns keep the default.
CREATE TABLE push_rule_default_overrides (
    user_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled SMALLINT,
    actions_json TEXT,
    PRIMARY KEY (user_id, rule_id)
);

-- Notifying push actions, written in the event's own transaction. thread_id 'main' or the thread root.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    thread_id TEXT NOT NULL,
    highlight SMALLINT NOT NULL,
    actions_json TEXT NOT NULL,
    ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX event_push_actions_user_room ON event_push_actions (user_id, room_id, stream_ordering);
CREATE INDEX event_push_actions_user_stream ON event_push_actions (user_id, stream_ordering);

-- Pushers (spec "Push Notifications": POST /pushers/set), one per (user, app_id, pushkey).
CREATE TABLE pushers (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    kind TEXT NOT NULL,
    app_display_name TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag TEXT,
    lang TEXT NOT NULL,
    data_json TEXT NOT NULL,
    pushkey_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_app_pushkey ON pushers (app_id, pushkey);

-- Pushes not yet accepted by the push gateway. Written with the event, deleted once the gateway answers 200:
-- a restart resends what is left here and nothing else.
CREATE TABLE pending_pushes (
    user_id TEXT NOT NULL,
    app_id TEXT NOT NULL,
    pushkey TEXT NOT NULL,
    event_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    actions_json TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey, event_id)
);
CREATE INDEX pending_pushes_pusher ON pending_pushes (user_id, app_id, pushkey, stream_ordering);
