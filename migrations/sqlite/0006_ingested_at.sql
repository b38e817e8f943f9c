-- When each event id was ingested, so the ids can be forgotten after a
-- while: an agent re-sends only what it has not seen acknowledged (minutes,
-- not weeks), and deletes what was acknowledged.
ALTER TABLE ingested_events ADD COLUMN at INTEGER NOT NULL DEFAULT 0;
