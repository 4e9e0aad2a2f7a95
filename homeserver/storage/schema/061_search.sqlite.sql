-- Server-side search (issue 8) on SQLite: one FTS5 row per searchable event, rowid = the event's stream_ordering
-- (so a redaction deletes it by rowid). key is the searched field: content.body, content.name or content.topic.
CREATE VIRTUAL TABLE event_search USING fts5(value, key UNINDEXED, tokenize = 'porter unicode61');

INSERT INTO event_search (rowid, value, key)
SELECT stream_ordering,
       json_extract(json, CASE type WHEN 'm.room.message' THEN '$.content.body'
                                    WHEN 'm.room.name' THEN '$.content.name' ELSE '$.content.topic' END),
       CASE type WHEN 'm.room.message' THEN 'content.body' WHEN 'm.room.name' THEN 'content.name'
                 ELSE 'content.topic' END
FROM events
WHERE type IN ('m.room.message', 'm.room.name', 'm.room.topic')
  AND json_type(json, CASE type WHEN 'm.room.message' THEN '$.content.body'
                                WHEN 'm.room.name' THEN '$.content.name' ELSE '$.content.topic' END) = 'text'
  AND event_id NOT IN (SELECT redacts FROM redactions);
