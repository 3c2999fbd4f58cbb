-- Templates (TemplateService): every version of each, a tenant's name
-- shared by its versions. `spec` is JSON; `owned_image` the image a build
-- or a snapshot made for that version, removed with the template. Times
-- are milliseconds since the Unix epoch.
CREATE TABLE templates (
    id          TEXT NOT NULL,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    spec        TEXT NOT NULL,
    source      TEXT NOT NULL,
    owned_image TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, name, version)
);
CREATE INDEX templates_id ON templates (id);

-- The template a sandbox was made from, to refuse deleting a template in
-- use.
ALTER TABLE sandboxes ADD COLUMN template_id TEXT;
CREATE INDEX sandboxes_template ON sandboxes (template_id) WHERE template_id IS NOT NULL;
