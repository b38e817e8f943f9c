-- Transfers per status since the log began, for `/metrics`: summing the
-- hourly rollups at every scrape read a table that grows with the hours
-- (141,678 rows for 116 days of the benchmark's log). Kept by triggers
-- like the rollups, and like them not lowered when retention deletes.
CREATE TABLE transfer_totals (
    status TEXT PRIMARY KEY,
    transfers INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO transfer_totals (status, transfers)
SELECT status, SUM(transfers) FROM transfer_rollups GROUP BY status;

CREATE TRIGGER transfers_totals_ai AFTER INSERT ON transfers BEGIN
    INSERT INTO transfer_totals (status, transfers) VALUES (new.status, 1)
    ON CONFLICT (status) DO UPDATE SET transfers = transfers + 1;
END;

CREATE TRIGGER transfers_totals_au AFTER UPDATE OF status ON transfers
WHEN old.status IS NOT new.status
BEGIN
    UPDATE transfer_totals SET transfers = transfers - 1 WHERE status = old.status;
    INSERT INTO transfer_totals (status, transfers) VALUES (new.status, 1)
    ON CONFLICT (status) DO UPDATE SET transfers = transfers + 1;
END;
