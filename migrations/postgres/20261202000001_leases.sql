-- Leases: work that one server of many does at a time (the reaper and the
-- engine reconciler). A lease belongs to its holder until expires_at, in
-- milliseconds since the Unix epoch by the database's own clock; a holder
-- renews it before then, and anyone may take it after.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
