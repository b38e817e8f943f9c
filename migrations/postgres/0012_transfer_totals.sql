-- Transfers per status since the log began, for `/metrics`: summing the
-- hourly rollups at every scrape read a table that grows with the hours
-- (141,678 rows for 116 days of the benchmark's log). Kept by triggers
-- like the rollups, and like them not lowered when retention deletes.
CREATE TABLE transfer_totals (
    status TEXT COLLATE "C" PRIMARY KEY,
    transfers BIGINT NOT NULL
);

INSERT INTO transfer_totals (status, transfers)
SELECT status, SUM(transfers) FROM transfer_rollups GROUP BY status;

-- Once per statement, from its transition tables: ingest writes a round
-- of events in one statement, so a few status rows change per statement
-- instead of one upsert per transfer. (Writers take the write lock, so
-- these hot rows see one transaction at a time.)
CREATE FUNCTION transfer_totals_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transfer_totals (status, transfers)
    SELECT status, COUNT(*) FROM inserted GROUP BY status
    ON CONFLICT (status) DO UPDATE SET transfers = transfer_totals.transfers + excluded.transfers;
    RETURN NULL;
END $$;

CREATE FUNCTION transfer_totals_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO transfer_totals (status, transfers)
    SELECT status, SUM(d) FROM (
        SELECT status, 1 AS d FROM after_update
        UNION ALL
        SELECT status, -1 AS d FROM before_update
    ) AS moves GROUP BY status HAVING SUM(d) <> 0
    ON CONFLICT (status) DO UPDATE SET transfers = transfer_totals.transfers + excluded.transfers;
    RETURN NULL;
END $$;

CREATE TRIGGER transfers_totals_ai AFTER INSERT ON transfers
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION transfer_totals_inserted();

CREATE TRIGGER transfers_totals_au AFTER UPDATE ON transfers
REFERENCING OLD TABLE AS before_update NEW TABLE AS after_update
FOR EACH STATEMENT EXECUTE FUNCTION transfer_totals_updated();
