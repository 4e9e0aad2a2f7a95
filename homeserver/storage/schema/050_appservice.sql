-- Application service transaction queue (issue 5). Rows are written in the event's own transaction, so an
-- event that is persisted is never missing from an interested appservice's queue, even after a crash.
CREATE TABLE appservice_queue (
    appservice_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,      -- the event's position on the events stream
    event_id TEXT NOT NULL,
    PRIMARY KEY (appservice_id, stream_ordering)
);

-- A transaction is written (with its exact event list) before the first attempt to send it and deleted when
-- the appservice answers 200; every retry, also after a restart, sends the same txn_id and the same events.
CREATE TABLE appservice_txns (
    appservice_id TEXT NOT NULL,
    txn_id BIGINT NOT NULL,
    event_ids TEXT NOT NULL,              -- JSON list, in stream order
    ephemeral TEXT NOT NULL,              -- JSON list of ephemeral events (m.typing, m.receipt)
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (appservice_id, txn_id)
);

-- The last txn_id used per appservice: IDs must never repeat, even after their rows are deleted.
CREATE TABLE appservice_state (
    appservice_id TEXT PRIMARY KEY,
    last_txn_id BIGINT NOT NULL
);
