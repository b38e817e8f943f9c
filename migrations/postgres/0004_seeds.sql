-- One-time set-ups done on this database (`demo`: the demo target and
-- pollers of `cargo xtask up`). Done once, never again, so nothing a
-- person changed or deleted afterwards comes back.
CREATE TABLE seeds (
    name TEXT PRIMARY KEY,
    done_at BIGINT NOT NULL
);
