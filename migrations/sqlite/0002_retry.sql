-- A person asked from the web page that a failed transfer be tried again
-- now; handed to its agent in the config until the agent reports it again.
ALTER TABLE transfers ADD COLUMN retry_requested_at INTEGER;
