-- Named volumes (VolumeService), each owned by a tenant and held by one
-- provider, whose object is named after the volume's id. Times are
-- milliseconds since the Unix epoch.
CREATE TABLE volumes (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant     TEXT NOT NULL,
    name       TEXT NOT NULL,
    provider   TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX volumes_tenant_name ON volumes (tenant, name);

-- Which sandboxes mount which volumes, written with the sandbox's record: a
-- volume that a sandbox not DELETED mounts cannot be deleted.
CREATE TABLE sandbox_volumes (
    sandbox_id TEXT NOT NULL REFERENCES sandboxes (id),
    volume_id  TEXT NOT NULL REFERENCES volumes (id),
    PRIMARY KEY (sandbox_id, volume_id)
);
CREATE INDEX sandbox_volumes_volume ON sandbox_volumes (volume_id);
