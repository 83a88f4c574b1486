//! Snapshots, sync state, page commits, the event log and held events.

use std::collections::{HashMap, HashSet};

use chrono::SubsecRound as _;
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{PgStore, WAKE_CHANNEL, to_i64, to_u64};
use crate::ats::Timestamp;
use crate::diff::snapshot::Header;
use crate::event::EventType;
use crate::store::{EventFilter, EventRecord, PageCommit, StoreError, SyncState};

/// The columns of `events` and `held_events`, in the order [`PgStore::record`] reads them.
pub(super) const EVENT_COLUMNS: &str = "log_seq, id, event_type, integration_id, application_id, sequence, detected_at, subscribers, body";

/// A timestamp as PostgreSQL keeps it (microseconds), so that what a commit returns equals
/// what a later read gives.
pub(super) fn micros(t: Timestamp) -> Timestamp {
    t.trunc_subsecs(6)
}

impl PgStore {
    /// Fencing: inside `tx`, checks that this replica holds an unexpired lease on
    /// `integration_id` and locks the lease row until `tx` ends, so the lease cannot move
    /// before the commit. A store made [`PgStore::without_fencing`] skips the check.
    async fn fence(&self, tx: &Transaction<'_>, integration_id: &str) -> Result<(), StoreError> {
        if !self.fenced {
            return Ok(());
        }
        let stmt = tx
            .prepare_cached(
                "SELECT 1 FROM leases WHERE integration_id = $1 AND holder = $2 \
                 AND expires_at > now() FOR SHARE",
            )
            .await
            .map_err(|e| self.io(&e))?;
        let rows = tx
            .query(&stmt, &[&integration_id, &self.replica_id])
            .await
            .map_err(|e| self.io(&e))?;
        if rows.is_empty() {
            return Err(StoreError::LeaseLost {
                integration: integration_id.to_owned(),
            });
        }
        Ok(())
    }

    /// The sync state of an integration (default when never synced).
    pub async fn sync_state(&self, integration_id: &str) -> Result<SyncState, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT state FROM sync_state WHERE integration_id = $1")
            .await
            .map_err(|e| self.io(&e))?;
        let Some(row) = client
            .query_opt(&stmt, &[&integration_id])
            .await
            .map_err(|e| self.io(&e))?
        else {
            return Ok(SyncState::default());
        };
        let value: serde_json::Value = row.try_get(0).map_err(|e| self.io(&e))?;
        serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
            what: format!("sync state of {integration_id}"),
            message: e.to_string(),
        })
    }

    /// Writes the sync state (e.g. the watermark after the last page); a stored state keeps
    /// its application count (commits raise it, retention lowers it). Fenced.
    pub async fn put_sync_state(
        &self,
        integration_id: &str,
        state: &SyncState,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_value(state).map_err(|e| StoreError::Corrupt {
            what: format!("sync state of {integration_id}"),
            message: e.to_string(),
        })?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.io(&e))?;
        self.fence(&tx, integration_id).await?;
        let stmt = tx
            .prepare_cached(
                "INSERT INTO sync_state (integration_id, state) VALUES ($1, $2) \
                 ON CONFLICT (integration_id) DO UPDATE SET state = jsonb_set(excluded.state, \
                 '{applications}', COALESCE(sync_state.state->'applications', excluded.state->'applications'))",
            )
            .await
            .map_err(|e| self.io(&e))?;
        tx.execute(&stmt, &[&integration_id, &value])
            .await
            .map_err(|e| self.io(&e))?;
        tx.commit().await.map_err(|e| self.io(&e))
    }

    /// Commits one page in one transaction: snapshots, events (logged or held), outbox
    /// rows, and the integration's application count. An event whose id is already known
    /// (logged, held, or held and dropped) is skipped. Returns the records newly logged or
    /// held. Fenced.
    pub async fn commit_page(
        &self,
        integration_id: &str,
        page: PageCommit,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.io(&e))?;
        self.fence(&tx, integration_id).await?;

        // The sequences of the stored snapshots of the applications with events, read
        // before this page overwrites them: an event at or below its application's is a
        // re-derivation, even once retention removed its id (see `commit_page` on the
        // seam). Only the header is read.
        let mut stored_seqs: HashMap<String, u64> = HashMap::new();
        if !page.events.is_empty() {
            let apps: Vec<&str> = page
                .events
                .iter()
                .map(|e| e.application_id.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let stmt = tx
                .prepare_cached(
                    "SELECT application_id, substring(bytes FROM 1 FOR 24) FROM snapshots \
                     WHERE integration_id = $1 AND application_id = ANY($2)",
                )
                .await
                .map_err(|e| self.io(&e))?;
            for row in tx
                .query(&stmt, &[&integration_id, &apps])
                .await
                .map_err(|e| self.io(&e))?
            {
                let app: String = row.try_get(0).map_err(|e| self.io(&e))?;
                let head: Vec<u8> = row.try_get(1).map_err(|e| self.io(&e))?;
                if let Some(h) = Header::read(&head) {
                    stored_seqs.insert(app, h.sequence);
                }
            }
        }

        let mut restored: Vec<&str> = Vec::new();
        if !page.snapshots.is_empty() {
            // One row per application (the last write wins, as in a batch of inserts): an
            // upsert may not touch the same row twice.
            let mut at: HashMap<&str, usize> = HashMap::with_capacity(page.snapshots.len());
            let mut apps: Vec<&str> = Vec::with_capacity(page.snapshots.len());
            let mut bytes: Vec<&[u8]> = Vec::with_capacity(page.snapshots.len());
            let mut deleted: Vec<Option<Timestamp>> = Vec::with_capacity(page.snapshots.len());
            for snap in &page.snapshots {
                let deleted_at = Header::read(&snap.bytes).and_then(|h| h.deleted_at);
                if snap.previous_deleted_at.is_some() && deleted_at.is_none() && !snap.is_new {
                    restored.push(&snap.application_id);
                }
                match at.get(snap.application_id.as_str()) {
                    Some(&i) => {
                        bytes[i] = &snap.bytes;
                        deleted[i] = deleted_at;
                    }
                    None => {
                        at.insert(&snap.application_id, apps.len());
                        apps.push(&snap.application_id);
                        bytes.push(&snap.bytes);
                        deleted.push(deleted_at);
                    }
                }
            }
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO snapshots (integration_id, application_id, bytes, deleted_at) \
                     SELECT $1, a, b, d FROM unnest($2::text[], $3::bytea[], $4::timestamptz[]) AS u(a, b, d) \
                     ON CONFLICT (integration_id, application_id) DO UPDATE \
                     SET bytes = excluded.bytes, deleted_at = excluded.deleted_at",
                )
                .await
                .map_err(|e| self.io(&e))?;
            tx.execute(&stmt, &[&integration_id, &apps, &bytes, &deleted])
                .await
                .map_err(|e| self.io(&e))?;
        }

        let mut new_apps = page.snapshots.iter().filter(|s| s.is_new).count() as i64;
        if !restored.is_empty() {
            // Restores of applications retention purged (after the upsert: a purge that
            // committed meanwhile has its tombstone visible now): they count again.
            let stmt = tx
                .prepare_cached(
                    "DELETE FROM purged_applications WHERE integration_id = $1 \
                     AND application_id = ANY($2)",
                )
                .await
                .map_err(|e| self.io(&e))?;
            let n = tx
                .execute(&stmt, &[&integration_id, &restored])
                .await
                .map_err(|e| self.io(&e))?;
            new_apps += i64::try_from(n).unwrap_or(0);
        }
        if new_apps > 0 {
            let fresh = SyncState {
                applications: new_apps as u64,
                ..SyncState::default()
            };
            let fresh = serde_json::to_value(&fresh).map_err(|e| StoreError::Corrupt {
                what: format!("sync state of {integration_id}"),
                message: e.to_string(),
            })?;
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO sync_state (integration_id, state) VALUES ($1, $2) \
                     ON CONFLICT (integration_id) DO UPDATE SET state = jsonb_set(sync_state.state, \
                     '{applications}', to_jsonb(COALESCE((sync_state.state->>'applications')::bigint, 0) + $3))",
                )
                .await
                .map_err(|e| self.io(&e))?;
            tx.execute(&stmt, &[&integration_id, &fresh, &new_apps])
                .await
                .map_err(|e| self.io(&e))?;
        }

        let mut written = Vec::new();
        let mut outbox_rows = 0;
        if !page.events.is_empty() {
            // The counter first: commits that write events serialize here, so sequences
            // follow commit order, and the id check below sees every earlier commit.
            let stmt = tx
                .prepare_cached("UPDATE log_counter SET last = last RETURNING last")
                .await
                .map_err(|e| self.io(&e))?;
            let last: i64 = tx
                .query_one(&stmt, &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| self.io(&e))?;
            let events: Vec<crate::store::NewEvent> = page
                .events
                .into_iter()
                .filter(|e| {
                    stored_seqs
                        .get(e.application_id.as_str())
                        .is_none_or(|&stored| e.sequence > stored)
                })
                .collect();
            // The defensive check by id: ids already logged, held, or held and dropped
            // (while retention keeps the marker) are skipped. A read (index probes of
            // `events.id`, `held_events.id` and `dropped_events_by_id`): commits that write
            // events serialize on the counter above, so this sees every commit before it.
            let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
            let stmt = tx
                .prepare_cached(
                    "SELECT id FROM events WHERE id = ANY($1) \
                     UNION ALL SELECT id FROM held_events WHERE id = ANY($1) \
                     UNION ALL SELECT id FROM dropped_events WHERE id = ANY($1)",
                )
                .await
                .map_err(|e| self.io(&e))?;
            // Known ids, and then those of this page's events as they are taken (the
            // first of two with one id wins).
            let mut known: HashSet<String> = tx
                .query(&stmt, &[&ids])
                .await
                .map_err(|e| self.io(&e))?
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<Result<_, _>>()
                .map_err(|e| self.io(&e))?;
            let mut seq = to_u64(last, "log counter")?;
            let mut held = Vec::new();
            for event in events {
                if !known.insert(event.id.clone()) {
                    continue;
                }
                seq += 1;
                let record = EventRecord {
                    log_seq: seq,
                    id: event.id,
                    event_type: event.event_type,
                    integration_id: integration_id.to_owned(),
                    application_id: event.application_id,
                    sequence: event.sequence,
                    detected_at: micros(event.detected_at),
                    subscribers: event.subscribers,
                    body: event.body,
                };
                held.push(event.hold);
                written.push(record);
            }
            if !written.is_empty() {
                let stmt = tx
                    .prepare_cached("UPDATE log_counter SET last = $1")
                    .await
                    .map_err(|e| self.io(&e))?;
                tx.execute(&stmt, &[&to_i64(seq, "log sequence")?])
                    .await
                    .map_err(|e| self.io(&e))?;
                let (to_hold, to_log): (Vec<_>, Vec<_>) =
                    written.iter().zip(held).partition(|(_, hold)| *hold);
                let to_hold: Vec<&EventRecord> = to_hold.into_iter().map(|(r, _)| r).collect();
                let to_log: Vec<&EventRecord> = to_log.into_iter().map(|(r, _)| r).collect();
                self.insert_records(&tx, "held_events", &to_hold).await?;
                self.insert_records(&tx, "events", &to_log).await?;
                outbox_rows = self.insert_outbox(&tx, &to_log).await?;
                if outbox_rows > 0 {
                    notify(self, &tx).await?;
                }
            }
        }
        tx.commit().await.map_err(|e| self.io(&e))?;
        if outbox_rows > 0 {
            self.wrote_outbox_rows(&client, outbox_rows).await;
        }
        Ok(written)
    }

    /// Inserts records into `events` or `held_events` (one statement).
    async fn insert_records(
        &self,
        tx: &Transaction<'_>,
        table: &'static str,
        records: &[&EventRecord],
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut seqs = Vec::with_capacity(records.len());
        let mut ids = Vec::with_capacity(records.len());
        let mut types = Vec::with_capacity(records.len());
        let mut integrations = Vec::with_capacity(records.len());
        let mut apps = Vec::with_capacity(records.len());
        let mut sequences = Vec::with_capacity(records.len());
        let mut detected = Vec::with_capacity(records.len());
        let mut subscribers = Vec::with_capacity(records.len());
        let mut bodies = Vec::with_capacity(records.len());
        for r in records {
            seqs.push(to_i64(r.log_seq, "log sequence")?);
            ids.push(r.id.as_str());
            types.push(r.event_type.as_str());
            integrations.push(r.integration_id.as_str());
            apps.push(r.application_id.as_str());
            sequences.push(to_i64(r.sequence, "event sequence")?);
            detected.push(r.detected_at);
            subscribers.push(serde_json::Value::from(r.subscribers.clone()));
            bodies.push(r.body.as_slice());
        }
        let sql = format!(
            "INSERT INTO {table} ({EVENT_COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[], \
             $3::text[], $4::text[], $5::text[], $6::bigint[], $7::timestamptz[], $8::jsonb[], $9::bytea[])"
        );
        let stmt = tx.prepare_cached(&sql).await.map_err(|e| self.io(&e))?;
        tx.execute(
            &stmt,
            &[
                &seqs,
                &ids,
                &types,
                &integrations,
                &apps,
                &sequences,
                &detected,
                &subscribers,
                &bodies,
            ],
        )
        .await
        .map_err(|e| self.io(&e))?;
        Ok(())
    }

    /// One pending outbox row per (logged record, subscriber), due when detected. Returns
    /// how many.
    async fn insert_outbox(
        &self,
        tx: &Transaction<'_>,
        records: &[&EventRecord],
    ) -> Result<usize, StoreError> {
        let mut subs = Vec::new();
        let mut seqs = Vec::new();
        let mut ids = Vec::new();
        let mut integrations = Vec::new();
        let mut apps = Vec::new();
        let mut sequences = Vec::new();
        let mut due = Vec::new();
        for r in records {
            for s in &r.subscribers {
                subs.push(s.as_str());
                seqs.push(to_i64(r.log_seq, "log sequence")?);
                ids.push(r.id.as_str());
                integrations.push(r.integration_id.as_str());
                apps.push(r.application_id.as_str());
                sequences.push(to_i64(r.sequence, "event sequence")?);
                due.push(r.detected_at);
            }
        }
        if subs.is_empty() {
            return Ok(0);
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO outbox (subscriber, log_seq, event_id, integration_id, application_id, \
                 sequence, state, due_at, updated_at) \
                 SELECT s, q, i, g, a, n, 'pending', d, d FROM unnest($1::text[], $2::bigint[], \
                 $3::text[], $4::text[], $5::text[], $6::bigint[], $7::timestamptz[]) \
                 AS u(s, q, i, g, a, n, d)",
            )
            .await
            .map_err(|e| self.io(&e))?;
        tx.execute(
            &stmt,
            &[&subs, &seqs, &ids, &integrations, &apps, &sequences, &due],
        )
        .await
        .map_err(|e| self.io(&e))?;
        Ok(subs.len())
    }

    /// An event record from a row selected with [`EVENT_COLUMNS`].
    pub(super) fn record(&self, row: &Row) -> Result<EventRecord, StoreError> {
        let io = |e: tokio_postgres::Error| self.io(&e);
        let log_seq = to_u64(row.try_get(0).map_err(io)?, "log sequence")?;
        let id: String = row.try_get(1).map_err(io)?;
        let type_name: String = row.try_get(2).map_err(io)?;
        let event_type = EventType::parse(&type_name).ok_or_else(|| StoreError::Corrupt {
            what: format!("event {id}"),
            message: format!("unknown event type {type_name}"),
        })?;
        let subscribers: serde_json::Value = row.try_get(7).map_err(io)?;
        let subscribers: Vec<String> =
            serde_json::from_value(subscribers).map_err(|e| StoreError::Corrupt {
                what: format!("subscribers of event {id}"),
                message: e.to_string(),
            })?;
        Ok(EventRecord {
            log_seq,
            event_type,
            integration_id: row.try_get(3).map_err(io)?,
            application_id: row.try_get(4).map_err(io)?,
            sequence: to_u64(row.try_get(5).map_err(io)?, "event sequence")?,
            detected_at: row.try_get(6).map_err(io)?,
            subscribers,
            body: row.try_get(8).map_err(io)?,
            id,
        })
    }

    /// Events of the log matching `filter`, oldest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE log_seq > $1 \
             AND ($2::timestamptz IS NULL OR detected_at >= $2) \
             AND ($3::timestamptz IS NULL OR detected_at < $3) \
             AND (cardinality($4::text[]) = 0 OR event_type = ANY($4)) \
             AND ($5::text IS NULL OR integration_id = $5) \
             AND ($6::text IS NULL OR application_id = $6) \
             ORDER BY log_seq LIMIT $7"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(|e| self.io(&e))?;
        let after = to_i64(filter.after_log_seq.unwrap_or(0), "log sequence")?;
        let types: Vec<&str> = filter.types.iter().map(|t| t.as_str()).collect();
        let limit: Option<i64> = filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
        let rows = client
            .query(
                &stmt,
                &[
                    &after,
                    &filter.since,
                    &filter.until,
                    &types,
                    &filter.integration_id,
                    &filter.application_id,
                    &limit,
                ],
            )
            .await
            .map_err(|e| self.io(&e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = self.record(row)?;
            // The SQL already selected these; the one rule stays the filter's own.
            if filter.selects(
                record.detected_at,
                record.event_type,
                &record.integration_id,
                &record.application_id,
            ) {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// One logged or held event by id.
    pub async fn event_by_id(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 \
             UNION ALL SELECT {EVENT_COLUMNS} FROM held_events WHERE id = $1 LIMIT 1"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(|e| self.io(&e))?;
        let row = client
            .query_opt(&stmt, &[&id])
            .await
            .map_err(|e| self.io(&e))?;
        row.map(|r| self.record(&r)).transpose()
    }

    /// Events held by the mass-change guard for an integration, oldest first.
    pub async fn held_events(&self, integration_id: &str) -> Result<Vec<EventRecord>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM held_events WHERE integration_id = $1 ORDER BY log_seq"
        );
        let stmt = client.prepare_cached(&sql).await.map_err(|e| self.io(&e))?;
        let rows = client
            .query(&stmt, &[&integration_id])
            .await
            .map_err(|e| self.io(&e))?;
        rows.iter().map(|r| self.record(r)).collect()
    }

    /// Moves held events of an integration into the log and the outbox, keeping their log
    /// sequences: all of them (`only` = None) or those with the given log sequences.
    /// Returns them, oldest first. Not fenced (an operator's action).
    pub async fn release_held(
        &self,
        integration_id: &str,
        only: Option<&[u64]>,
    ) -> Result<Vec<EventRecord>, StoreError> {
        let only: Option<Vec<i64>> = only
            .map(|seqs| {
                seqs.iter()
                    .map(|&s| to_i64(s, "log sequence"))
                    .collect::<Result<_, _>>()
            })
            .transpose()?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.io(&e))?;
        let sql = format!(
            "DELETE FROM held_events WHERE integration_id = $1 \
             AND ($2::bigint[] IS NULL OR log_seq = ANY($2)) RETURNING {EVENT_COLUMNS}"
        );
        let stmt = tx.prepare_cached(&sql).await.map_err(|e| self.io(&e))?;
        let rows = tx
            .query(&stmt, &[&integration_id, &only])
            .await
            .map_err(|e| self.io(&e))?;
        let mut released = rows
            .iter()
            .map(|r| self.record(r))
            .collect::<Result<Vec<_>, _>>()?;
        released.sort_by_key(|r| r.log_seq);
        let refs: Vec<&EventRecord> = released.iter().collect();
        self.insert_records(&tx, "events", &refs).await?;
        let outbox_rows = self.insert_outbox(&tx, &refs).await?;
        if outbox_rows > 0 {
            notify(self, &tx).await?;
        }
        tx.commit().await.map_err(|e| self.io(&e))?;
        if outbox_rows > 0 {
            self.wrote_outbox_rows(&client, outbox_rows).await;
        }
        Ok(released)
    }

    /// Discards the given held events (by log sequence): an operator decided they are
    /// noise. Their ids stay known, so a re-derivation does not bring them back; those no
    /// longer held are skipped. Returns how many were discarded.
    pub async fn drop_held(
        &self,
        integration_id: &str,
        log_seqs: &[u64],
    ) -> Result<usize, StoreError> {
        let seqs: Vec<i64> = log_seqs
            .iter()
            .map(|&s| to_i64(s, "log sequence"))
            .collect::<Result<_, _>>()?;
        let client = self.client().await?;
        // The markers keep the ids known (the id check of `commit_page` reads them) until
        // retention forgets them.
        let stmt = client
            .prepare_cached(
                "WITH d AS (DELETE FROM held_events WHERE integration_id = $1 \
                 AND log_seq = ANY($2) RETURNING log_seq, id, detected_at) \
                 INSERT INTO dropped_events (log_seq, id, detected_at) SELECT * FROM d",
            )
            .await
            .map_err(|e| self.io(&e))?;
        let n = client
            .execute(&stmt, &[&integration_id, &seqs])
            .await
            .map_err(|e| self.io(&e))?;
        Ok(n as usize)
    }

    /// Whether any snapshot (or tombstone of a purged one) is stored for an integration.
    pub async fn has_snapshots(&self, integration_id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM snapshots WHERE integration_id = $1) \
                 OR EXISTS (SELECT 1 FROM purged_applications WHERE integration_id = $1)",
            )
            .await
            .map_err(|e| self.io(&e))?;
        client
            .query_one(&stmt, &[&integration_id])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.io(&e))
    }

    /// Snapshots stored for an integration.
    pub async fn snapshot_count(&self, integration_id: &str) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT count(*) FROM snapshots WHERE integration_id = $1")
            .await
            .map_err(|e| self.io(&e))?;
        let n: i64 = client
            .query_one(&stmt, &[&integration_id])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.io(&e))?;
        to_u64(n, "snapshot count")
    }
}

/// Wakes listeners when `tx` commits (a notification sent inside a transaction is
/// delivered at commit, and not at all on rollback).
pub(super) async fn notify(store: &PgStore, tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.batch_execute(&format!("NOTIFY {WAKE_CHANNEL}"))
        .await
        .map_err(|e| store.io(&e))
}
