-- Sandbox records, their labels (for selection) and their lifecycle events.
-- Times are milliseconds since the Unix epoch.

CREATE TABLE sandboxes (
    id                  TEXT PRIMARY KEY NOT NULL,
    tenant              TEXT NOT NULL,
    name                TEXT,
    provider            TEXT NOT NULL,
    provider_ref        TEXT,
    state               TEXT NOT NULL,
    state_reason        TEXT NOT NULL DEFAULT '',
    spec                TEXT NOT NULL,
    labels              TEXT NOT NULL,
    metadata            TEXT NOT NULL,
    request_id          TEXT,
    request_fingerprint TEXT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    started_at          BIGINT,
    expires_at          BIGINT,
    last_activity_at    BIGINT NOT NULL,
    idle_timeout_ms     BIGINT,
    revision            BIGINT NOT NULL
);

-- A name is unique per tenant among sandboxes that are not deleted.
CREATE UNIQUE INDEX sandboxes_live_name ON sandboxes (tenant, name)
    WHERE name IS NOT NULL AND state <> 'DELETED';
CREATE UNIQUE INDEX sandboxes_request_id ON sandboxes (tenant, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX sandboxes_tenant_id ON sandboxes (tenant, id);
CREATE INDEX sandboxes_state ON sandboxes (state);
CREATE INDEX sandboxes_expires_at ON sandboxes (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE sandbox_labels (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    PRIMARY KEY (sandbox_id, key)
);
CREATE INDEX sandbox_labels_key_value ON sandbox_labels (key, value);

CREATE TABLE sandbox_events (
    revision    INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT NOT NULL,
    sandbox_id  TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    snapshot    TEXT NOT NULL
);
CREATE INDEX sandbox_events_tenant ON sandbox_events (tenant, revision);
CREATE INDEX sandbox_events_sandbox ON sandbox_events (sandbox_id, revision);
