-- Retention (issue #14): what the sweep needs to find old data without scanning what stays.
-- Applied by migrate.rs, which then fills `snapshots.deleted_at` for the rows already there
-- (the snapshot codec is Rust's, not SQL's).

-- Kombo's `remote_deleted_at` of a deleted application (NULL while live), as its snapshot
-- holds it; written with every snapshot. The sweep walks the deleted ones oldest first.
ALTER TABLE snapshots ADD COLUMN deleted_at timestamptz;
CREATE INDEX snapshots_deleted ON snapshots (deleted_at) WHERE deleted_at IS NOT NULL;

-- What is kept of an application whose snapshot retention removed: a tombstone (an encoded
-- snapshot with only its last sequence and deletion), read in place of the snapshot so the
-- application's sequence continues if Kombo ever shows it again.
CREATE TABLE purged_applications (
    integration_id text COLLATE "C" NOT NULL,
    application_id text COLLATE "C" NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (integration_id, application_id)
);

-- Held events an operator dropped: their ids stay in `event_ids` (a re-derivation stays
-- dropped) until retention lets them go after `[retention] events`.
CREATE TABLE dropped_events (
    log_seq bigint PRIMARY KEY,
    id text COLLATE "C" NOT NULL,
    detected_at timestamptz NOT NULL
);
