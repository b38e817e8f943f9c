-- The size of each agent's journal on disk, from its heartbeats.
ALTER TABLE agents ADD COLUMN journal_bytes BIGINT;
