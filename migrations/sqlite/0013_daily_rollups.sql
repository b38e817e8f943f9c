-- Statistics over days without reading every hour: a 30-day range read
-- 720 hours of `transfer_rollups` (about 37,000 rows for 34 pollers, twice
-- per statistics page); per day it reads 30. Counted exactly as the hourly
-- rollups are (the day of the last change, `updated_at / 86400000`, which
-- is `hour / 24`), per poller and status: no view groups by agent per day.
-- Like the hourly rollups, retention's deletes do not lower them.
CREATE TABLE transfer_rollups_daily (
    day INTEGER NOT NULL,                 -- updated_at / 86400000
    poller TEXT NOT NULL,
    status TEXT NOT NULL,
    transfers INTEGER NOT NULL,
    bytes INTEGER NOT NULL,               -- sent: COALESCE(size, bytes_done) of the Complete ones
    PRIMARY KEY (day, poller, status)
) WITHOUT ROWID;

INSERT INTO transfer_rollups_daily (day, poller, status, transfers, bytes)
SELECT hour / 24, poller, status, SUM(transfers), SUM(bytes)
FROM transfer_rollups GROUP BY 1, 2, 3;

CREATE TRIGGER transfers_rollup_daily_ai AFTER INSERT ON transfers BEGIN
    INSERT INTO transfer_rollups_daily (day, poller, status, transfers, bytes)
    VALUES (new.updated_at / 86400000, new.poller, new.status, 1,
            CASE WHEN new.status = 'Complete' THEN COALESCE(new.size, new.bytes_done) ELSE 0 END)
    ON CONFLICT (day, poller, status) DO UPDATE SET
        transfers = transfers + 1, bytes = bytes + excluded.bytes;
END;

-- As the hourly trigger, without the agent: a transfer moving between
-- hours of one day, or between agents, stays in its daily cell.
CREATE TRIGGER transfers_rollup_daily_au AFTER UPDATE OF status, updated_at, poller, size, bytes_done ON transfers
WHEN old.status IS NOT new.status
  OR old.updated_at / 86400000 IS NOT new.updated_at / 86400000
  OR old.poller IS NOT new.poller
  OR (new.status = 'Complete' AND COALESCE(new.size, new.bytes_done) IS NOT COALESCE(old.size, old.bytes_done))
BEGIN
    UPDATE transfer_rollups_daily SET
        transfers = transfers - 1,
        bytes = bytes - CASE WHEN old.status = 'Complete' THEN COALESCE(old.size, old.bytes_done) ELSE 0 END
    WHERE day = old.updated_at / 86400000 AND poller = old.poller AND status = old.status;
    INSERT INTO transfer_rollups_daily (day, poller, status, transfers, bytes)
    VALUES (new.updated_at / 86400000, new.poller, new.status, 1,
            CASE WHEN new.status = 'Complete' THEN COALESCE(new.size, new.bytes_done) ELSE 0 END)
    ON CONFLICT (day, poller, status) DO UPDATE SET
        transfers = transfers + 1, bytes = bytes + excluded.bytes;
END;
