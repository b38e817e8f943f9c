-- The web app's database (SQLite). Times are milliseconds since the epoch.

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,          -- argon2id, PHC string
    created_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,          -- sha256 of the cookie value
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE plugins (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,            -- from describe()
    created_at INTEGER NOT NULL
);

CREATE TABLE plugin_versions (
    id INTEGER PRIMARY KEY,
    plugin_id INTEGER NOT NULL REFERENCES plugins(id) ON DELETE CASCADE,
    version TEXT NOT NULL,                -- semver, from describe()
    sha256 TEXT NOT NULL UNIQUE,          -- the module is stored as modules/<sha256>.wasm
    size INTEGER NOT NULL,
    wit_version TEXT NOT NULL,
    description TEXT NOT NULL,
    params_json TEXT NOT NULL,            -- the parameter schema
    uploaded_at INTEGER NOT NULL,
    uploaded_by TEXT NOT NULL,
    UNIQUE (plugin_id, version)
);

CREATE TABLE agents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,      -- sha256 of the bearer token
    host_name TEXT,
    version TEXT,
    last_seen INTEGER,
    poller_states TEXT,                   -- JSON, from the last heartbeat
    created_at INTEGER NOT NULL
);

CREATE TABLE pollers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    plugin_id INTEGER NOT NULL REFERENCES plugins(id),
    plugin_version_id INTEGER REFERENCES plugin_versions(id),  -- NULL: follow the latest
    params_json TEXT NOT NULL DEFAULT '{}',
    transfer_kind TEXT NOT NULL DEFAULT 'aspera',
    host TEXT NOT NULL DEFAULT '',
    username TEXT NOT NULL DEFAULT '',
    password_enc BLOB,                    -- AEAD (XChaCha20-Poly1305) ciphertexts
    ssh_key_enc BLOB,
    passphrase_enc BLOB,
    port INTEGER NOT NULL DEFAULT 22,
    destination TEXT NOT NULL DEFAULT '',
    speed_mbps REAL NOT NULL DEFAULT 150,
    excludes TEXT NOT NULL DEFAULT '',
    encrypt INTEGER NOT NULL DEFAULT 0,
    max_transfers INTEGER NOT NULL DEFAULT 3,
    stability_secs REAL NOT NULL DEFAULT 10,
    enabled INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    consecutive_errors INTEGER NOT NULL DEFAULT 0,
    disabled_at INTEGER,
    disabled_by_agent TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE poller_agents (
    poller_id INTEGER NOT NULL REFERENCES pollers(id) ON DELETE CASCADE,
    agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    PRIMARY KEY (poller_id, agent_id)
);

-- The central transfer log, one row per transfer of an agent.
CREATE TABLE transfers (
    id INTEGER PRIMARY KEY,
    agent_id INTEGER NOT NULL,            -- no foreign key: the log outlives agents
    agent TEXT NOT NULL,
    transfer_id TEXT NOT NULL,            -- chosen by the agent
    poller TEXT NOT NULL,
    path TEXT NOT NULL,
    file_name TEXT NOT NULL,
    size INTEGER,
    bytes_done INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,                 -- Queued, Transferring, Complete, Error, Cancelled
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER,
    ended_at INTEGER,
    error TEXT,
    host TEXT,
    updated_at INTEGER NOT NULL,
    UNIQUE (agent_id, transfer_id)
);
CREATE INDEX transfers_time ON transfers (updated_at DESC);
CREATE INDEX transfers_poller_time ON transfers (poller, updated_at DESC);
CREATE INDEX transfers_status_time ON transfers (status, updated_at DESC);
CREATE INDEX transfers_agent_time ON transfers (agent, updated_at DESC);

-- File-name substring search: a trigram index.
CREATE VIRTUAL TABLE transfers_fts USING fts5 (file_name, content = 'transfers', content_rowid = 'id', tokenize = 'trigram');
CREATE TRIGGER transfers_ai AFTER INSERT ON transfers BEGIN
    INSERT INTO transfers_fts (rowid, file_name) VALUES (new.id, new.file_name);
END;
CREATE TRIGGER transfers_ad AFTER DELETE ON transfers BEGIN
    INSERT INTO transfers_fts (transfers_fts, rowid, file_name) VALUES ('delete', old.id, old.file_name);
END;

-- Event ids already ingested, per agent: a replayed batch changes nothing.
CREATE TABLE ingested_events (
    agent_id INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (agent_id, event_id)
) WITHOUT ROWID;

-- Bumped on every change an agent's config depends on (ETag, long poll).
CREATE TABLE config_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);
