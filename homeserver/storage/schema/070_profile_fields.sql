-- Extended profile fields (issue 9; spec v1.16 "Profiles": custom keys, m.tz). displayname and avatar_url stay in
-- `profiles`; every other key is one row here. value_json is the canonical JSON of the value; search_text is the
-- lower-cased plain text of a string value (NULL otherwise), so the company directory can match departments and
-- titles without parsing JSON in SQL.
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field_name TEXT NOT NULL,
    value_json TEXT NOT NULL,
    search_text TEXT,
    PRIMARY KEY (user_id, field_name)
);
CREATE INDEX profile_fields_field ON profile_fields (field_name, user_id);
