-- Server-side search (issue 8) on PostgreSQL: one tsvector row per searchable event (GIN-indexed), keyed by the
-- event's stream_ordering. key is the searched field: content.body, content.name or content.topic.
CREATE TABLE event_search (
    stream_ordering BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    key TEXT NOT NULL,
    vector TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);

INSERT INTO event_search (stream_ordering, room_id, key, vector)
SELECT stream_ordering, room_id, f.key, to_tsvector('english', (json::jsonb) #>> f.path)
FROM events
JOIN (VALUES ('m.room.message', 'content.body', '{content,body}'::text[]),
             ('m.room.name', 'content.name', '{content,name}'::text[]),
             ('m.room.topic', 'content.topic', '{content,topic}'::text[])) AS f (etype, key, path)
  ON f.etype = events.type
WHERE jsonb_typeof((json::jsonb) #> f.path) = 'string'
  AND NOT EXISTS (SELECT 1 FROM redactions r WHERE r.redacts = events.event_id);
