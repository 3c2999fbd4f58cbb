-- API keys. Each belongs to a tenant; the key itself is shown once when it is
-- made and only its SHA-256 is kept. Times are milliseconds since the Unix
-- epoch; a revoked key keeps its row (and its revocation time) for audit.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant        TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    description   TEXT NOT NULL DEFAULT '',
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE INDEX api_keys_tenant ON api_keys (tenant);
