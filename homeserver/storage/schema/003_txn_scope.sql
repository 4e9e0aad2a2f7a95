-- Spec (Client-Server API, "Transaction identifiers"): a transaction ID is scoped to the device AND the request
-- path. 001 keyed event_txn_ids by (user, device, txn_id) only, so the same txnId in another room, for another
-- event type or on /redact returned the first event and lost the new request. The table is rebuilt with the room
-- and the endpoint ("send/<event type>" or "redact/<event ID>") in its key.
CREATE TABLE event_txn_ids_scoped (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    inserted_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, room_id, scope, txn_id)
);

-- Rows written before this migration keep answering retries: their endpoint is recovered from the event (a
-- redaction that took effect is taken to come from /redact, anything else from /send/<its type>).
INSERT INTO event_txn_ids_scoped (user_id, device_id, room_id, scope, txn_id, event_id, inserted_ts)
SELECT t.user_id, t.device_id, t.room_id,
       CASE WHEN rd.redacts IS NOT NULL THEN 'redact/' || rd.redacts
            ELSE 'send/' || COALESCE(e.type, '') END,
       t.txn_id, t.event_id, t.inserted_ts
FROM event_txn_ids t
LEFT JOIN events e ON e.event_id = t.event_id
LEFT JOIN redactions rd ON rd.event_id = t.event_id;

DROP TABLE event_txn_ids;

ALTER TABLE event_txn_ids_scoped RENAME TO event_txn_ids;

-- Own-echo transaction IDs are looked up by event when events are loaded (was created by 002 on the old table).
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);
