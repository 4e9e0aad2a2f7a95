-- Device-list changes in /sync and GET /keys/changes read the membership events of the syncing user's rooms in a
-- stream range: one index range per room instead of the server-wide range of room_memberships_stream.
CREATE INDEX room_memberships_room_stream ON room_memberships (room_id, stream_ordering);
