-- What each poller's plugin said is not ready on each agent, and why: a
-- JSON array of `item: reason` lines (from heartbeats), bounded by the agent.
ALTER TABLE agent_poller_states ADD COLUMN not_ready TEXT;
