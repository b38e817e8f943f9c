-- Agents run from the web app: targets as records, per-agent settings,
-- per (agent, poller) state, and commands apart from the configuration.

-- A target (the original system's "server"): a kind and its settings.
CREATE TABLE targets (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,                   -- local, aspera, sftp, ftp, webdav, s3
    settings_json TEXT NOT NULL,          -- dispatch_protocol::Target as JSON, secrets left out
    secrets_enc BLOB,                     -- AEAD of a JSON object {field: value}
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Pollers reference a target (the inline target columns are read once, at
-- start, into a target of their own, then no longer used).
ALTER TABLE pollers ADD COLUMN target_id INTEGER REFERENCES targets(id);
-- When a person last enabled the poller: a change resets the agent's breaker.
ALTER TABLE pollers ADD COLUMN enabled_at INTEGER;

-- dispatch_protocol::AgentSettings as JSON (NULL: the defaults), and its
-- secrets (the SMTP password) encrypted apart.
ALTER TABLE agents ADD COLUMN settings_json TEXT;
ALTER TABLE agents ADD COLUMN settings_secrets_enc BLOB;
-- The ETag of the configuration the agent last said it runs, and why it
-- could not apply the newest one in full.
ALTER TABLE agents ADD COLUMN config_etag TEXT;
ALTER TABLE agents ADD COLUMN config_error TEXT;

-- How each poller is doing on each agent (from heartbeats).
CREATE TABLE agent_poller_states (
    agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    poller_id INTEGER NOT NULL REFERENCES pollers(id) ON DELETE CASCADE,
    consecutive_errors INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    disabled_until INTEGER,               -- ms since the epoch
    reason TEXT,
    plugin_version TEXT,
    config_error TEXT,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (agent_id, poller_id)
);

-- Commands for an agent (retry a transfer now, reset a poller's breaker),
-- handed out in heartbeat answers until the agent says they are done.
CREATE TABLE agent_commands (
    id INTEGER PRIMARY KEY,
    agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,                   -- retry, enable
    transfer_id TEXT,
    poller_id INTEGER,
    created_at INTEGER NOT NULL,
    done_at INTEGER
);
CREATE INDEX agent_commands_open ON agent_commands (agent_id, done_at);
