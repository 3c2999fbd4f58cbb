-- The store's identity: one row, written once. Providers label what they make
-- with it, so servers sharing this store (replicas) recognise each other's
-- objects, and servers with other stores leave them alone.
CREATE TABLE store_identity (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    store_id TEXT NOT NULL
);
