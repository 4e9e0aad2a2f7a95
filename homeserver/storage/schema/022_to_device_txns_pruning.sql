-- Send-to-device transaction IDs older than 24 h are deleted on insert (ToDeviceStore.prune_txns_txn);
-- this index keeps that delete from scanning every row.
CREATE INDEX to_device_txns_inserted ON to_device_txns (inserted_ts);
