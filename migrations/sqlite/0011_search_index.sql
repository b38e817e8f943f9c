-- PostgreSQL's search index changed here (see its 0011); SQLite's FTS5
-- table is unchanged. Kept so that a version means the same schema on
-- either backend.
SELECT 1;
