-- Accounts area (migrations 010-019).
-- User IDs are unique case-insensitively (spec: "User Identifiers"; Synapse behaves the same), enforced by the
-- database so that two concurrent registrations of "Alice" and "alice" cannot both succeed.
CREATE UNIQUE INDEX users_lower_name ON users (LOWER(name));

-- Expired user-interactive auth sessions are swept by creation time.
CREATE INDEX ui_auth_sessions_creation ON ui_auth_sessions (creation_ts);

