-- What every replica of the web app must find in the database rather than
-- on its own disk.

-- Module bytes: a replica that never saw an upload still serves it (the
-- data dir's modules/ is a cache by sha256).
CREATE TABLE plugin_modules (
    sha256 TEXT PRIMARY KEY REFERENCES plugin_versions(sha256) ON DELETE CASCADE,
    bytes BYTEA NOT NULL
);

-- A value sealed with the secret key when the database was set up: a
-- replica started with another key cannot open it and refuses to start,
-- instead of failing later on every secret it reads.
CREATE TABLE secret_key_check (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    sealed BYTEA NOT NULL
);
