-- Statistics over days without reading every hour: a 30-day range read
-- 720 hours of `transfer_rollups` (about 37,000 rows for 34 pollers, twice
-- per statistics page); per day it reads 30. Counted exactly as the hourly
-- rollups are (the day of the last change, `updated_at / 86400000`, which
-- is `hour / 24`), per poller and status: no view groups by agent per day.
-- Like the hourly rollups, retention's deletes do not lower them.
CREATE TABLE transfer_rollups_daily (
    day BIGINT NOT NULL,                  -- updated_at / 86400000
    poller TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    transfers BIGINT NOT NULL,
    bytes BIGINT NOT NULL,                -- sent: COALESCE(size, bytes_done) of the Complete ones
    PRIMARY KEY (day, poller, status)
);

INSERT INTO transfer_rollups_daily (day, poller, status, transfers, bytes)
SELECT hour / 24, poller, status, SUM(transfers), SUM(bytes)
FROM transfer_rollups GROUP BY 1, 2, 3;

-- The hourly rollups, the daily ones and the totals, once per statement
-- from its transition tables (as the totals were in 0012) instead of an
-- upsert per row: ingest writes a round of events in one statement, so
-- its moves fold into a few cells first. The three are written from the
-- same moves, so a day is always the sum of its hours.
DROP TRIGGER transfers_rollup_ai ON transfers;
DROP TRIGGER transfers_rollup_au ON transfers;
DROP TRIGGER transfers_totals_ai ON transfers;
DROP TRIGGER transfers_totals_au ON transfers;
DROP FUNCTION transfers_rollup_ai();
DROP FUNCTION transfers_rollup_au();
DROP FUNCTION transfer_rollups_add(transfers);
DROP FUNCTION transfer_totals_inserted();
DROP FUNCTION transfer_totals_updated();

-- Adds `moves` (a row per changed cell: hour, poller, agent, status and
-- how many transfers and bytes it gains, negative when it loses) to the
-- three tables.
CREATE FUNCTION transfer_counts_add(moves jsonb) RETURNS void LANGUAGE sql AS $$
    WITH m AS (
        SELECT * FROM jsonb_to_recordset(moves)
            AS m(hour bigint, poller text, agent text, status text, n bigint, bytes bigint)
    ), hourly AS (
        INSERT INTO transfer_rollups (hour, poller, agent, status, transfers, bytes)
        SELECT hour, poller, agent, status, n, bytes FROM m
        ON CONFLICT (hour, poller, agent, status) DO UPDATE SET
            transfers = transfer_rollups.transfers + excluded.transfers,
            bytes = transfer_rollups.bytes + excluded.bytes
    ), daily AS (
        INSERT INTO transfer_rollups_daily (day, poller, status, transfers, bytes)
        SELECT hour / 24, poller, status, SUM(n), SUM(bytes) FROM m
        GROUP BY 1, 2, 3 HAVING SUM(n) <> 0 OR SUM(bytes) <> 0
        ON CONFLICT (day, poller, status) DO UPDATE SET
            transfers = transfer_rollups_daily.transfers + excluded.transfers,
            bytes = transfer_rollups_daily.bytes + excluded.bytes
    )
    INSERT INTO transfer_totals (status, transfers)
    SELECT status, SUM(n) FROM m GROUP BY status HAVING SUM(n) <> 0
    ON CONFLICT (status) DO UPDATE SET
        transfers = transfer_totals.transfers + excluded.transfers;
$$;

-- What a transfer adds to its cell's bytes: those of the complete ones.
CREATE FUNCTION transfer_counted_bytes(status text, size bigint, bytes_done bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN status = 'Complete' THEN COALESCE(size, bytes_done) ELSE 0 END
$$;

CREATE FUNCTION transfer_counts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM transfer_counts_add((
        SELECT jsonb_agg(m) FROM (
            SELECT updated_at / 3600000 AS hour, poller, agent, status, COUNT(*) AS n,
                   SUM(transfer_counted_bytes(status, size, bytes_done)) AS bytes
            FROM inserted GROUP BY 1, 2, 3, 4
        ) AS m
    ));
    RETURN NULL;
END $$;

-- Each updated row leaves its old cell and enters its new one; most
-- updates (progress, a status already held) net to nothing and are left
-- out.
CREATE FUNCTION transfer_counts_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM transfer_counts_add((
        SELECT jsonb_agg(m) FROM (
            SELECT hour, poller, agent, status, SUM(n) AS n, SUM(bytes) AS bytes FROM (
                SELECT updated_at / 3600000 AS hour, poller, agent, status, 1 AS n,
                       transfer_counted_bytes(status, size, bytes_done) AS bytes
                FROM after_update
                UNION ALL
                SELECT updated_at / 3600000, poller, agent, status, -1,
                       -transfer_counted_bytes(status, size, bytes_done)
                FROM before_update
            ) AS moves GROUP BY 1, 2, 3, 4 HAVING SUM(n) <> 0 OR SUM(bytes) <> 0
        ) AS m
    ));
    RETURN NULL;
END $$;

CREATE TRIGGER transfers_counts_ai AFTER INSERT ON transfers
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION transfer_counts_inserted();

CREATE TRIGGER transfers_counts_au AFTER UPDATE ON transfers
REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update
FOR EACH STATEMENT EXECUTE FUNCTION transfer_counts_updated();
