-- Statistics without scanning the log: transfers counted per hour of their
-- last change (`updated_at`), per poller, agent and status, with the bytes
-- of the complete ones. Triggers keep the counts right on every write to
-- `transfers`; a deleted transfer (retention) stays counted, so the
-- statistics outlive the log they were made from.
CREATE TABLE transfer_rollups (
    hour INTEGER NOT NULL,                -- updated_at / 3600000
    poller TEXT NOT NULL,
    agent TEXT NOT NULL,
    status TEXT NOT NULL,
    transfers INTEGER NOT NULL,
    bytes INTEGER NOT NULL,               -- sent: COALESCE(size, bytes_done) of the Complete ones
    PRIMARY KEY (hour, poller, agent, status)
) WITHOUT ROWID;

INSERT INTO transfer_rollups (hour, poller, agent, status, transfers, bytes)
SELECT updated_at / 3600000, poller, agent, status, COUNT(*),
       COALESCE(SUM(CASE WHEN status = 'Complete' THEN COALESCE(size, bytes_done) ELSE 0 END), 0)
FROM transfers GROUP BY 1, 2, 3, 4;

CREATE TRIGGER transfers_rollup_ai AFTER INSERT ON transfers BEGIN
    INSERT INTO transfer_rollups (hour, poller, agent, status, transfers, bytes)
    VALUES (new.updated_at / 3600000, new.poller, new.agent, new.status, 1,
            CASE WHEN new.status = 'Complete' THEN COALESCE(new.size, new.bytes_done) ELSE 0 END)
    ON CONFLICT (hour, poller, agent, status) DO UPDATE SET
        transfers = transfers + 1, bytes = bytes + excluded.bytes;
END;

-- Only a change of what is counted moves a transfer between cells: most
-- updates (progress, a status already held) change nothing here.
CREATE TRIGGER transfers_rollup_au AFTER UPDATE OF status, updated_at, poller, agent, size, bytes_done ON transfers
WHEN old.status IS NOT new.status
  OR old.updated_at / 3600000 IS NOT new.updated_at / 3600000
  OR old.poller IS NOT new.poller
  OR old.agent IS NOT new.agent
  OR (new.status = 'Complete' AND COALESCE(new.size, new.bytes_done) IS NOT COALESCE(old.size, old.bytes_done))
BEGIN
    UPDATE transfer_rollups SET
        transfers = transfers - 1,
        bytes = bytes - CASE WHEN old.status = 'Complete' THEN COALESCE(old.size, old.bytes_done) ELSE 0 END
    WHERE hour = old.updated_at / 3600000 AND poller = old.poller AND agent = old.agent AND status = old.status;
    INSERT INTO transfer_rollups (hour, poller, agent, status, transfers, bytes)
    VALUES (new.updated_at / 3600000, new.poller, new.agent, new.status, 1,
            CASE WHEN new.status = 'Complete' THEN COALESCE(new.size, new.bytes_done) ELSE 0 END)
    ON CONFLICT (hour, poller, agent, status) DO UPDATE SET
        transfers = transfers + 1, bytes = bytes + excluded.bytes;
END;
