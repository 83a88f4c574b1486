//! Filling an empty PostgreSQL store with another store's contents (`hirehook store copy`
//! from sled), and reading the schema version (`hirehook store migrate`).
//!
//! An [`Import`] is one transaction on a connection of its own: it locks the store's
//! tables against writers (readers go on), checks inside that transaction that the store
//! is empty, and writes batch after batch with binary `COPY`. Nothing is visible, and
//! nothing stays, unless [`Import::commit`] returns: an import that fails or is dropped
//! half-way (its connection closes, the server rolls back) leaves the store empty, so it
//! can simply be run again. Rows keep what they say, log sequences included: the copied
//! log continues where the source's ended.

use std::sync::Arc;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql, Type};

use super::{PgStore, Server, describe, to_i64};
use crate::diff::snapshot::Header;
use crate::store::{EventRecord, OutboxEntry, StoreError, SyncState};

/// The tables an import writes, locked for its whole transaction.
const TABLES: &str = "snapshots, sync_state, log_counter, events, held_events, outbox, disabled_subscribers, purged_applications, dropped_events";

/// How long an import waits for a writer to finish before it gives up.
const LOCK_TIMEOUT: &str = "10s";

/// Reads the schema version of the database at `url` without changing anything: 0 when
/// hirehook never migrated it.
pub async fn schema_version(url: &str) -> Result<u32, StoreError> {
    let server = Server::parse(url)?;
    let client = server.connect_one().await?;
    let err = |e: tokio_postgres::Error| StoreError::Database {
        target: server.target.clone(),
        cause: server.scrub(format!("reading the schema version: {}", describe(&e))),
    };
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('hirehook_schema_version') IS NOT NULL",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    if !exists {
        return Ok(0);
    }
    let version: i32 = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM hirehook_schema_version",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(err)?;
    Ok(u32::try_from(version).unwrap_or(0))
}

/// What a store holds, in words; `None` when it holds nothing an import would collide
/// with (and no replica is running against it).
async fn contents(
    client: &tokio_postgres::Client,
    io: impl Fn(&tokio_postgres::Error) -> StoreError,
) -> Result<Option<String>, StoreError> {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM snapshots), (SELECT count(*) FROM sync_state), \
             (SELECT count(*) FROM events), (SELECT count(*) FROM held_events), \
             (SELECT count(*) FROM outbox), (SELECT count(*) FROM disabled_subscribers), \
             (SELECT COALESCE(max(last), 0) FROM log_counter), \
             (SELECT count(*) FROM replicas WHERE expires_at > now()), \
             (SELECT count(*) FROM purged_applications), (SELECT count(*) FROM dropped_events)",
            &[],
        )
        .await
        .map_err(|e| io(&e))?;
    let mut found = Vec::new();
    for (i, what) in [
        "snapshot(s)",
        "sync state(s)",
        "event(s) in the log",
        "held event(s)",
        "delivery (outbox) row(s)",
        "disabled subscriber(s)",
    ]
    .into_iter()
    .enumerate()
    {
        let n: i64 = row.try_get(i).map_err(|e| io(&e))?;
        if n > 0 {
            found.push(format!("{n} {what}"));
        }
    }
    for (i, what) in [
        (8, "purged application tombstone(s)"),
        (9, "dropped event marker(s)"),
    ] {
        let n: i64 = row.try_get(i).map_err(|e| io(&e))?;
        if n > 0 {
            found.push(format!("{n} {what}"));
        }
    }
    let last: i64 = row.try_get(6).map_err(|e| io(&e))?;
    if last > 0 && found.is_empty() {
        found.push(format!("a log counter at {last}"));
    }
    let live: i64 = row.try_get(7).map_err(|e| io(&e))?;
    if live > 0 {
        found.push(format!(
            "{live} live replica(s) (`hirehook run` is running against it: stop it first)"
        ));
    }
    Ok((!found.is_empty()).then(|| found.join(", ")))
}

impl PgStore {
    /// `None` when the store is empty: no snapshot, sync state, event (logged or held),
    /// delivery, disabled subscriber, tombstone or dropped event, and no live replica. Otherwise
    /// what is there, in words (for the message that refuses to copy into it).
    pub async fn is_empty(&self) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        contents(&client, |e| self.io(e)).await
    }

    /// Starts an import: a connection of its own, one transaction, the store's tables
    /// locked against writers (waiting up to 10 s for one to finish). Check
    /// [`Import::is_empty`] before writing.
    pub async fn begin_import(&self) -> Result<Import, StoreError> {
        let client = self.server.connect_one().await?;
        let import = Import {
            client,
            server: self.server.clone(),
        };
        import
            .client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; \
                 LOCK TABLE {TABLES} IN EXCLUSIVE MODE"
            ))
            .await
            .map_err(|e| {
                if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) {
                    StoreError::Io(format!(
                        "PostgreSQL at {}: another process kept writing to the store for \
                         {LOCK_TIMEOUT} (is `hirehook run` running against it? stop it first)",
                        import.server.target
                    ))
                } else {
                    import.io(&e)
                }
            })?;
        Ok(import)
    }
}

/// An import in progress: one transaction (see the module's documentation). Dropped
/// without [`Import::commit`], it writes nothing.
pub struct Import {
    client: tokio_postgres::Client,
    server: Arc<Server>,
}

impl std::fmt::Debug for Import {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Import")
            .field("target", &self.server.target)
            .finish_non_exhaustive()
    }
}

impl Import {
    fn io(&self, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Io(self.server.scrub(format!(
            "PostgreSQL at {}: {}",
            self.server.target,
            describe(e)
        )))
    }

    /// `host:port/database` of the store (for messages).
    pub fn target(&self) -> &str {
        &self.server.target
    }

    /// As [`PgStore::is_empty`], inside the import's transaction (the tables are locked:
    /// nothing can be written between this check and the import's commit).
    pub async fn is_empty(&self) -> Result<Option<String>, StoreError> {
        contents(&self.client, |e| self.io(e)).await
    }

    /// Streams rows into `COPY ... FROM STDIN BINARY`; `row` gives each row's values, in
    /// the order of `types`.
    async fn copy<T, const N: usize>(
        &self,
        sql: &str,
        types: [Type; N],
        rows: &[T],
        row: impl for<'a> Fn(&'a T) -> [&'a (dyn ToSql + Sync); N],
    ) -> Result<u64, StoreError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let sink = self.client.copy_in(sql).await.map_err(|e| self.io(&e))?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        let mut writer = std::pin::pin!(writer);
        for r in rows {
            writer
                .as_mut()
                .write(&row(r))
                .await
                .map_err(|e| self.io(&e))?;
        }
        writer.as_mut().finish().await.map_err(|e| self.io(&e))
    }

    /// Snapshots: `(integration, application, encoded snapshot)`, each with the deletion
    /// its header holds (what retention walks).
    pub async fn import_snapshots(
        &self,
        rows: &[(String, String, Vec<u8>)],
    ) -> Result<u64, StoreError> {
        let rows: Vec<(&String, &String, &Vec<u8>, Option<crate::ats::Timestamp>)> = rows
            .iter()
            .map(|(i, a, b)| (i, a, b, Header::read(b).and_then(|h| h.deleted_at)))
            .collect();
        self.copy(
            "COPY snapshots (integration_id, application_id, bytes, deleted_at) FROM STDIN BINARY",
            [Type::TEXT, Type::TEXT, Type::BYTEA, Type::TIMESTAMPTZ],
            &rows,
            |(integration, application, bytes, deleted)| {
                [*integration, *application, *bytes, deleted]
            },
        )
        .await
    }

    /// Tombstones of applications whose snapshots retention purged: `(integration,
    /// application, encoded tombstone)`.
    pub async fn import_purged(
        &self,
        rows: &[(String, String, Vec<u8>)],
    ) -> Result<u64, StoreError> {
        self.copy(
            "COPY purged_applications (integration_id, application_id, bytes) FROM STDIN BINARY",
            [Type::TEXT, Type::TEXT, Type::BYTEA],
            rows,
            |(integration, application, bytes)| [integration, application, bytes],
        )
        .await
    }

    /// Held events an operator dropped: `(log sequence, id, detected at)` (their ids stay
    /// known through these markers until retention lets them go).
    pub async fn import_dropped(
        &self,
        rows: &[(u64, String, crate::ats::Timestamp)],
    ) -> Result<u64, StoreError> {
        let rows = rows
            .iter()
            .map(|(seq, id, at)| Ok((to_i64(*seq, "log sequence")?, id, at)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.copy(
            "COPY dropped_events (log_seq, id, detected_at) FROM STDIN BINARY",
            [Type::INT8, Type::TEXT, Type::TIMESTAMPTZ],
            &rows,
            |(seq, id, at)| [seq, *id, *at],
        )
        .await
    }

    /// Sync states, by integration.
    pub async fn import_sync_states(
        &self,
        rows: &[(String, SyncState)],
    ) -> Result<u64, StoreError> {
        let states: Vec<(&String, Json<&SyncState>)> =
            rows.iter().map(|(i, s)| (i, Json(s))).collect();
        self.copy(
            "COPY sync_state (integration_id, state) FROM STDIN BINARY",
            [Type::TEXT, Type::JSONB],
            &states,
            |(integration, state)| [integration, state],
        )
        .await
    }

    /// Logged events, with their log sequences.
    pub async fn import_events(&self, records: &[EventRecord]) -> Result<u64, StoreError> {
        self.import_records("events", records).await
    }

    /// Held events, with their log sequences.
    pub async fn import_held(&self, records: &[EventRecord]) -> Result<u64, StoreError> {
        self.import_records("held_events", records).await
    }

    async fn import_records(
        &self,
        table: &str,
        records: &[EventRecord],
    ) -> Result<u64, StoreError> {
        struct Row<'a> {
            log_seq: i64,
            event_type: &'static str,
            sequence: i64,
            subscribers: Json<&'a Vec<String>>,
            record: &'a EventRecord,
        }
        let rows = records
            .iter()
            .map(|r| {
                Ok(Row {
                    log_seq: to_i64(r.log_seq, "log sequence")?,
                    event_type: r.event_type.as_str(),
                    sequence: to_i64(r.sequence, "event sequence")?,
                    subscribers: Json(&r.subscribers),
                    record: r,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let sql = format!(
            "COPY {table} (log_seq, id, event_type, integration_id, application_id, sequence, \
             detected_at, subscribers, body) FROM STDIN BINARY"
        );
        self.copy(
            &sql,
            [
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TIMESTAMPTZ,
                Type::JSONB,
                Type::BYTEA,
            ],
            &rows,
            |r| {
                [
                    &r.log_seq,
                    &r.record.id,
                    &r.event_type,
                    &r.record.integration_id,
                    &r.record.application_id,
                    &r.sequence,
                    &r.record.detected_at,
                    &r.subscribers,
                    &r.record.body,
                ]
            },
        )
        .await
    }

    /// Deliveries: `(subscriber, log sequence, entry)` with their state, attempts, due
    /// and update times, last error and recent attempts; unclaimed. Their events must be
    /// imported first.
    pub async fn import_outbox(
        &self,
        rows: &[(String, u64, OutboxEntry)],
    ) -> Result<u64, StoreError> {
        struct Row<'a> {
            subscriber: &'a String,
            log_seq: i64,
            sequence: i64,
            state: &'static str,
            attempts: i32,
            round_start: i32,
            recent: Json<&'a Vec<crate::store::AttemptRecord>>,
            entry: &'a OutboxEntry,
        }
        let count = |n: u32, what: &str, seq: u64| {
            i32::try_from(n).map_err(|_| {
                StoreError::Io(format!("{what} {n} of delivery {seq} is beyond integer"))
            })
        };
        let rows = rows
            .iter()
            .map(|(subscriber, seq, entry)| {
                Ok(Row {
                    subscriber,
                    log_seq: to_i64(*seq, "log sequence")?,
                    sequence: to_i64(entry.sequence, "event sequence")?,
                    state: entry.state.as_str(),
                    attempts: count(entry.attempts, "attempt count", *seq)?,
                    round_start: count(entry.round_start, "round start", *seq)?,
                    recent: Json(&entry.recent_attempts),
                    entry,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.copy(
            "COPY outbox (subscriber, log_seq, event_id, integration_id, application_id, \
             sequence, state, attempts, round_start, due_at, last_error, updated_at, \
             recent_attempts) FROM STDIN BINARY",
            [
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::INT4,
                Type::INT4,
                Type::TIMESTAMPTZ,
                Type::TEXT,
                Type::TIMESTAMPTZ,
                Type::JSONB,
            ],
            &rows,
            |r| {
                [
                    r.subscriber,
                    &r.log_seq,
                    &r.entry.event_id,
                    &r.entry.integration_id,
                    &r.entry.application_id,
                    &r.sequence,
                    &r.state,
                    &r.attempts,
                    &r.round_start,
                    &r.entry.due_at,
                    &r.entry.last_error,
                    &r.entry.updated_at,
                    &r.recent,
                ]
            },
        )
        .await
    }

    /// Subscribers disabled by a 410: `(subscriber, reason)`.
    pub async fn import_disabled(&self, rows: &[(String, String)]) -> Result<u64, StoreError> {
        self.copy(
            "COPY disabled_subscribers (subscriber, reason) FROM STDIN BINARY",
            [Type::TEXT, Type::TEXT],
            rows,
            |(subscriber, reason)| [subscriber, reason],
        )
        .await
    }

    /// Sets the last log sequence handed out: the next event logged or held gets
    /// `last + 1`.
    pub async fn set_log_counter(&self, last: u64) -> Result<(), StoreError> {
        let last = to_i64(last, "log sequence")?;
        self.client
            .execute("UPDATE log_counter SET last = $1", &[&last])
            .await
            .map_err(|e| self.io(&e))?;
        Ok(())
    }

    /// Commits the import, then refreshes the planner's statistics of the tables it filled
    /// (best effort: claims on a large copied backlog need them; see
    /// `PgStore::wrote_outbox_rows`).
    pub async fn commit(self) -> Result<(), StoreError> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| self.io(&e))?;
        if let Err(e) = self
            .client
            .batch_execute(&format!("ANALYZE {TABLES}"))
            .await
        {
            tracing::warn!(error = %self.server.scrub(describe(&e)), "store copy: ANALYZE failed (autovacuum will do it)");
        }
        Ok(())
    }
}
