-- Statistics without scanning the log: transfers counted per hour of their
-- last change (`updated_at`), per poller, agent and status, with the bytes
-- of the complete ones. Triggers keep the counts right on every write to
-- `transfers`; a deleted transfer (retention) stays counted, so the
-- statistics outlive the log they were made from.
CREATE TABLE transfer_rollups (
    hour BIGINT NOT NULL,                 -- updated_at / 3600000
    poller TEXT COLLATE "C" NOT NULL,
    agent TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    transfers BIGINT NOT NULL,
    bytes BIGINT NOT NULL,                -- sent: COALESCE(size, bytes_done) of the Complete ones
    PRIMARY KEY (hour, poller, agent, status)
);

INSERT INTO transfer_rollups (hour, poller, agent, status, transfers, bytes)
SELECT updated_at / 3600000, poller, agent, status, COUNT(*),
       COALESCE(SUM(CASE WHEN status = 'Complete' THEN COALESCE(size, bytes_done) ELSE 0 END), 0)
FROM transfers GROUP BY 1, 2, 3, 4;

-- Counts transfer `t` in its cell.
CREATE FUNCTION transfer_rollups_add(t transfers) RETURNS void LANGUAGE sql AS $$
    INSERT INTO transfer_rollups (hour, poller, agent, status, transfers, bytes)
    VALUES (t.updated_at / 3600000, t.poller, t.agent, t.status, 1,
            CASE WHEN t.status = 'Complete' THEN COALESCE(t.size, t.bytes_done) ELSE 0 END)
    ON CONFLICT (hour, poller, agent, status) DO UPDATE SET
        transfers = transfer_rollups.transfers + 1,
        bytes = transfer_rollups.bytes + excluded.bytes;
$$;

CREATE FUNCTION transfers_rollup_ai() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM transfer_rollups_add(new);
    RETURN NULL;
END $$;

CREATE FUNCTION transfers_rollup_au() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE transfer_rollups SET
        transfers = transfer_rollups.transfers - 1,
        bytes = transfer_rollups.bytes
            - CASE WHEN old.status = 'Complete' THEN COALESCE(old.size, old.bytes_done) ELSE 0 END
    WHERE hour = old.updated_at / 3600000 AND poller = old.poller
      AND agent = old.agent AND status = old.status;
    PERFORM transfer_rollups_add(new);
    RETURN NULL;
END $$;

CREATE TRIGGER transfers_rollup_ai AFTER INSERT ON transfers
FOR EACH ROW EXECUTE FUNCTION transfers_rollup_ai();

-- Only a change of what is counted moves a transfer between cells: most
-- updates (progress, a status already held) change nothing here.
CREATE TRIGGER transfers_rollup_au AFTER UPDATE OF status, updated_at, poller, agent, size, bytes_done ON transfers
FOR EACH ROW WHEN (
    old.status IS DISTINCT FROM new.status
    OR old.updated_at / 3600000 IS DISTINCT FROM new.updated_at / 3600000
    OR old.poller IS DISTINCT FROM new.poller
    OR old.agent IS DISTINCT FROM new.agent
    OR (new.status = 'Complete'
        AND COALESCE(new.size, new.bytes_done) IS DISTINCT FROM COALESCE(old.size, old.bytes_done))
) EXECUTE FUNCTION transfers_rollup_au();
