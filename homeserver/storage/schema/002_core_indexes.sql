-- Own-echo transaction IDs are looked up by event when events are loaded.
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);
CREATE INDEX events_sender ON events (sender, stream_ordering);
