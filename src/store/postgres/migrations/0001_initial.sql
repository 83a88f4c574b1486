-- hirehook's PostgreSQL schema, version 1. Applied once, in one transaction, by
-- `PgStore::connect` or `hirehook store migrate` (see src/store/postgres/migrate.rs).
-- Identifiers are compared byte-wise (COLLATE "C"), as the sled backend orders its keys.

-- The last snapshot of each application, in the snapshot codec's bytes.
CREATE TABLE snapshots (
    integration_id text COLLATE "C" NOT NULL,
    application_id text COLLATE "C" NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (integration_id, application_id)
);

-- Per-integration progress (`SyncState` as JSON), written with the page that changes it.
CREATE TABLE sync_state (
    integration_id text COLLATE "C" PRIMARY KEY,
    state jsonb NOT NULL
);

-- The last log sequence handed out. One row: a commit that writes events updates it inside
-- its transaction, so such commits serialize on it and sequences follow commit order with
-- no gap (a SEQUENCE would leave gaps and hand out numbers out of commit order).
CREATE TABLE log_counter (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last bigint NOT NULL CHECK (last >= 0)
);
INSERT INTO log_counter (only_row, last) VALUES (true, 0);

-- Every event id ever written (logged, held, or held and dropped): a re-derived event is
-- recognised and skipped.
CREATE TABLE event_ids (
    id text COLLATE "C" PRIMARY KEY
);

-- The event log.
CREATE TABLE events (
    log_seq bigint PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    event_type text NOT NULL,
    integration_id text COLLATE "C" NOT NULL,
    application_id text COLLATE "C" NOT NULL,
    sequence bigint NOT NULL,
    detected_at timestamptz NOT NULL,
    -- The subscribers that got an outbox row, as a JSON array of names.
    subscribers jsonb NOT NULL,
    body bytea NOT NULL
);
CREATE INDEX events_by_integration ON events (integration_id, log_seq);
CREATE INDEX events_by_detected_at ON events (detected_at);

-- Events held by the mass-change guard: they keep the log sequence they were given and
-- move to `events` (with their outbox rows) when released.
CREATE TABLE held_events (
    log_seq bigint PRIMARY KEY,
    id text COLLATE "C" NOT NULL UNIQUE,
    event_type text NOT NULL,
    integration_id text COLLATE "C" NOT NULL,
    application_id text COLLATE "C" NOT NULL,
    sequence bigint NOT NULL,
    detected_at timestamptz NOT NULL,
    subscribers jsonb NOT NULL,
    body bytea NOT NULL
);
CREATE INDEX held_events_by_integration ON held_events (integration_id, log_seq);

-- One delivery of one event to one subscriber. A claim (claimed_until, claimed_by) gives a
-- pending delivery to one replica until it records an attempt or the claim expires.
CREATE TABLE outbox (
    subscriber text COLLATE "C" NOT NULL,
    log_seq bigint NOT NULL REFERENCES events (log_seq),
    event_id text COLLATE "C" NOT NULL,
    integration_id text COLLATE "C" NOT NULL,
    application_id text COLLATE "C" NOT NULL,
    sequence bigint NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts integer NOT NULL DEFAULT 0,
    round_start integer NOT NULL DEFAULT 0,
    due_at timestamptz NOT NULL,
    last_error text,
    updated_at timestamptz NOT NULL,
    -- The latest attempts (JSON array of `AttemptRecord`, oldest first, at most 32).
    recent_attempts jsonb NOT NULL DEFAULT '[]',
    claimed_until timestamptz,
    claimed_by text,
    PRIMARY KEY (subscriber, log_seq)
) WITH (
    -- Room for a claim's update to stay on its page (a HOT update: no index writes).
    fillfactor = 85,
    -- Every delivery is inserted, claimed and updated: vacuum and analyze early.
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.02
);
-- Claims: the due pending deliveries of a subscriber in due order ...
CREATE INDEX outbox_pending_due ON outbox (subscriber, due_at, log_seq) WHERE state = 'pending';
-- ... each only when no earlier delivery of its application is pending.
CREATE INDEX outbox_pending_by_application
    ON outbox (subscriber, integration_id, application_id, log_seq) WHERE state = 'pending';
-- Pending deliveries in log order (the oldest pending, counts). Its predicate carries
-- `log_seq > 0` (always true) on purpose: the head check above never says it, so the
-- planner cannot pick this index for it — with stale statistics (a fresh table after a
-- backfill) it would, and walk a subscriber's whole backlog per candidate. Queries meant
-- for this index say `log_seq > 0`.
CREATE INDEX outbox_pending_by_seq ON outbox (subscriber, log_seq)
    WHERE state = 'pending' AND log_seq > 0;
CREATE INDEX outbox_dead ON outbox (subscriber, log_seq) WHERE state = 'dead';
CREATE INDEX outbox_by_event ON outbox (event_id);

-- Whether a pending delivery is the head of its (subscriber, application) queue: the
-- oldest pending delivery of that application (one probe of the per-application index).
-- A function, for the planner's sake: it estimates an opaque boolean function to keep a
-- third of the rows, so a claim scans the due index in order and stops at its LIMIT;
-- written as a subquery, the head check was estimated to keep 0.5 % of the rows, and with
-- fresh statistics the planner chose to read and sort the subscriber's whole backlog.
-- PL/pgSQL (never inlined, its query plan cached per session): a third of the cost per
-- call of an SQL function.
CREATE FUNCTION hirehook_is_head(sub text, integration text, application text, seq bigint)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT p.log_seq = seq FROM outbox p
        WHERE p.subscriber = sub AND p.integration_id = integration
          AND p.application_id = application AND p.state = 'pending'
        ORDER BY p.subscriber, p.integration_id, p.application_id, p.log_seq
        LIMIT 1
    );
END
$$;

-- Subscribers disabled by a 410, with the reason.
CREATE TABLE disabled_subscribers (
    subscriber text COLLATE "C" PRIMARY KEY,
    reason text NOT NULL
);

-- Who polls which integration: one holder at a time, until expires_at (the database's
-- clock). Page commits and sync-state writes check it (fencing).
CREATE TABLE leases (
    integration_id text COLLATE "C" PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Live replicas (heartbeats), for spreading leases.
CREATE TABLE replicas (
    replica_id text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
