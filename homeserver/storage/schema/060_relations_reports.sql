-- Relations (issue 8): /threads lists a room's thread roots by latest activity; reports of events, rooms, users.

CREATE INDEX event_relations_room_type ON event_relations (room_id, relation_type, stream_ordering);

-- Content reports (spec: "Reporting content"). event_id is NULL for a room report, room_id NULL for a user report.
CREATE TABLE content_reports (
    report_id TEXT PRIMARY KEY,
    received_ts BIGINT NOT NULL,           -- ms
    reporter TEXT NOT NULL,
    room_id TEXT,
    event_id TEXT,
    target_user_id TEXT,
    reason TEXT,
    score BIGINT
);
CREATE INDEX content_reports_ts ON content_reports (received_ts);
