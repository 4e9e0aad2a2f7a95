-- Device-list changes in /sync and GET /keys/changes read the membership events of a stream range
-- (users who started or stopped sharing a room); without this index that is a scan of every membership.
CREATE INDEX room_memberships_stream ON room_memberships (stream_ordering);
