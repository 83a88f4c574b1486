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

-- Retention deletes events whose deliveries it deleted first. The foreign key from `outbox`
-- to `events` made every deleted event scan the outbox for rows still pointing at it (its
-- log sequence is the second column of the outbox's key, so no index serves that lookup):
-- 270 ms for 200 events beside 100,000 outbox rows. The store keeps the rule itself: an
-- outbox row is inserted in the transaction that logs its event, and the sweep deletes an
-- event only when no outbox row refers to it (by `event_id`, which `outbox_by_event`
-- indexes). Dropped rather than served by another index on the outbox's hot path.
ALTER TABLE outbox DROP CONSTRAINT outbox_log_seq_fkey;
