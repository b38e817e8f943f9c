-- PostgreSQL's search index changed here (see its 0011); SQLite's FTS5
-- table is unchanged.

-- The transfer page's poller and agent pickers read the names from the
-- rollups one index probe per name, not a scan of a table that grows
-- with the hours.
CREATE INDEX transfer_rollups_poller ON transfer_rollups (poller);
CREATE INDEX transfer_rollups_agent ON transfer_rollups (agent);
