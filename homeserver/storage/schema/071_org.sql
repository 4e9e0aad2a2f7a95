-- Organisation structure (issue 9): the department spaces and rooms org_sync manages, and the people it manages.
-- path is the department path ("Engineering/Platform/SRE"); active = 0 once no one in the chart uses it (its space
-- is unlinked from the parent but kept with its history).
CREATE TABLE org_departments (
    path TEXT PRIMARY KEY,
    space_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    active SMALLINT NOT NULL DEFAULT 1
);
-- One row per person org_sync created or adopted. left_ts (ms) is set when they left the chart (deactivated).
CREATE TABLE org_people (
    user_id TEXT PRIMARY KEY,
    department TEXT NOT NULL,
    left_ts BIGINT
);
