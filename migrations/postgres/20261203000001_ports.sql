-- The ports of each sandbox its owner made public (PortService.ExposePort),
-- as a JSON array of numbers.
ALTER TABLE sandboxes ADD COLUMN public_ports TEXT NOT NULL DEFAULT '[]';

-- Secrets shared by the servers of this store, each chosen at random the
-- first time it is asked for (such as the key that signs preview tokens).
CREATE TABLE shared_secrets (
    name   TEXT PRIMARY KEY NOT NULL,
    secret TEXT NOT NULL
);
