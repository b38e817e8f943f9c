-- Each person has a role: `admin` (people, agents, plugins, targets,
-- settings), `operator` (pollers, retries) or `viewer` (reads). Everyone
-- there before roles was the one administrator.
ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
