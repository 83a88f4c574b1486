//! Retention on PostgreSQL (see [`crate::store::Store::sweep`] for what goes and what never
//! does).
//!
//! A batch is one transaction that first takes a transaction-scoped advisory lock without
//! waiting: when another replica (or a `store compact`) is sweeping, this batch does
//! nothing and says so (`more` stays false: the next interval tries again). The deletes
//! carry their own conditions, so they are also right without the lock: a dead letter put
//! back in the queue between the look and the delete is not deleted (its row no longer
//! matches), and an event keeps its row while any outbox row refers to it.
//!
//! Each class is found by an index without scanning what stays: events by log sequence
//! after the cursor, dropped events by log sequence, deleted applications by
//! `snapshots_deleted` (their deletion time).

use std::collections::BTreeMap;

use super::{PgStore, to_i64, to_u64};
use crate::ats::Timestamp;
use crate::diff::Snapshot;
use crate::diff::snapshot::Header;
use crate::store::{RetentionPolicy, StoreError, SweepCursor, SweepReport};

/// The advisory lock one sweeper holds at a time ("hhretain" in ASCII).
const SWEEP_LOCK: i64 = 0x6868_7265_7461_696e;

impl PgStore {
    /// One batch of retention (see [`crate::store::Store::sweep`]).
    pub async fn sweep(
        &self,
        policy: &RetentionPolicy,
        now: Timestamp,
        limit: usize,
        cursor: &mut SweepCursor,
    ) -> Result<SweepReport, StoreError> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let mut report = SweepReport::default();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.io(&e))?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SWEEP_LOCK])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.io(&e))?;
        if !locked {
            tracing::debug!("retention: another replica is sweeping; this batch is skipped");
            return Ok(report);
        }
        if let Some(horizon) = policy.events_horizon(now) {
            self.sweep_events(&tx, horizon, limit, cursor, &mut report)
                .await?;
            self.sweep_dropped(&tx, horizon, limit, &mut report).await?;
        }
        if let Some(horizon) = policy.deleted_horizon(now) {
            self.sweep_snapshots(&tx, horizon, limit, &mut report)
                .await?;
        }
        tx.commit().await.map_err(|e| self.io(&e))?;
        Ok(report)
    }

    /// Looks at up to `limit` events after the cursor, stopping at the first detected at
    /// or after `horizon`, and removes those whose every delivery was settled before it,
    /// with their outbox rows (their ids go with their rows).
    async fn sweep_events(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        horizon: Timestamp,
        limit: i64,
        cursor: &mut SweepCursor,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let io = |e: tokio_postgres::Error| self.io(&e);
        let after = to_i64(cursor.after_log_seq, "log sequence")?;
        let stmt = tx
            .prepare_cached(
                "SELECT log_seq, id, detected_at FROM events WHERE log_seq > $1 \
                 ORDER BY log_seq LIMIT $2",
            )
            .await
            .map_err(io)?;
        let rows = tx.query(&stmt, &[&after, &limit]).await.map_err(io)?;
        let mut seqs: Vec<i64> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        let mut young = false;
        for row in &rows {
            let detected_at: Timestamp = row.try_get(2).map_err(io)?;
            if detected_at >= horizon {
                young = true;
                break;
            }
            seqs.push(row.try_get(0).map_err(io)?);
            ids.push(row.try_get(1).map_err(io)?);
        }
        if let Some(&last) = seqs.last() {
            cursor.after_log_seq = to_u64(last, "log sequence")?;
        }
        report.more |= !young && seqs.len() as i64 >= limit;
        if seqs.is_empty() {
            return Ok(());
        }
        // The settled deliveries of events none of whose deliveries is pending or settled
        // since the horizon; the row's own condition is checked again as it is deleted.
        let stmt = tx
            .prepare_cached(
                "DELETE FROM outbox WHERE event_id = ANY($1) AND state <> 'pending' \
                 AND updated_at < $2 AND event_id NOT IN (SELECT event_id FROM outbox \
                 WHERE event_id = ANY($1) AND (state = 'pending' OR updated_at >= $2)) \
                 RETURNING jsonb_array_length(recent_attempts)",
            )
            .await
            .map_err(io)?;
        let deleted = tx.query(&stmt, &[&ids, &horizon]).await.map_err(io)?;
        report.deliveries += deleted.len() as u64;
        for row in &deleted {
            let n: i32 = row.try_get(0).map_err(io)?;
            report.attempts += u64::try_from(n).unwrap_or(0);
        }
        let stmt = tx
            .prepare_cached(
                "DELETE FROM events e WHERE log_seq = ANY($1) \
                 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.event_id = e.id)",
            )
            .await
            .map_err(io)?;
        let gone = tx.execute(&stmt, &[&seqs]).await.map_err(io)?;
        // Each removed event's id leaves `events.id`'s index with it: what sled counts as
        // an entry of its id index removed.
        report.events += gone;
        report.event_ids += gone;
        Ok(())
    }

    /// Forgets the ids of up to `limit` dropped held events detected before `horizon`.
    async fn sweep_dropped(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        horizon: Timestamp,
        limit: i64,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let io = |e: tokio_postgres::Error| self.io(&e);
        let stmt = tx
            .prepare_cached(
                "DELETE FROM dropped_events WHERE log_seq IN (SELECT log_seq FROM dropped_events \
                 WHERE detected_at < $1 ORDER BY log_seq LIMIT $2)",
            )
            .await
            .map_err(io)?;
        let n = tx.execute(&stmt, &[&horizon, &limit]).await.map_err(io)?;
        report.more |= n >= limit.unsigned_abs();
        // Their ids are no longer known (the id check of a page commit reads the markers).
        report.event_ids += n;
        Ok(())
    }

    /// Replaces by their tombstones the snapshots of up to `limit` applications deleted
    /// upstream before `horizon` (oldest deletion first; rows a page commit is writing are
    /// skipped), and lowers their integrations' application counts.
    async fn sweep_snapshots(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        horizon: Timestamp,
        limit: i64,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let io = |e: tokio_postgres::Error| self.io(&e);
        let stmt = tx
            .prepare_cached(
                "DELETE FROM snapshots s WHERE (integration_id, application_id) IN \
                 (SELECT integration_id, application_id FROM snapshots WHERE deleted_at < $1 \
                 ORDER BY deleted_at LIMIT $2 FOR UPDATE SKIP LOCKED) AND s.deleted_at < $1 \
                 RETURNING integration_id, application_id, substring(bytes FROM 1 FOR 24)",
            )
            .await
            .map_err(io)?;
        let rows = tx.query(&stmt, &[&horizon, &limit]).await.map_err(io)?;
        report.more |= rows.len() as i64 >= limit;
        if rows.is_empty() {
            return Ok(());
        }
        let (mut integrations, mut applications, mut tombstones) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut per_integration: BTreeMap<String, i64> = BTreeMap::new();
        for row in &rows {
            let integration: String = row.try_get(0).map_err(io)?;
            let application: String = row.try_get(1).map_err(io)?;
            let head: Vec<u8> = row.try_get(2).map_err(io)?;
            *per_integration.entry(integration.clone()).or_default() += 1;
            // The column says deleted; a header that does not (not this codec's version)
            // still leaves a tombstone, at sequence 0.
            let header = Header::read(&head);
            let sequence = header.map_or(0, |h| h.sequence);
            let deleted_at = header.and_then(|h| h.deleted_at).unwrap_or(horizon);
            integrations.push(integration);
            applications.push(application);
            tombstones.push(Snapshot::tombstone(sequence, deleted_at).encode());
        }
        let stmt = tx
            .prepare_cached(
                "INSERT INTO purged_applications (integration_id, application_id, bytes) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[]) \
                 ON CONFLICT (integration_id, application_id) DO UPDATE SET bytes = excluded.bytes",
            )
            .await
            .map_err(io)?;
        tx.execute(&stmt, &[&integrations, &applications, &tombstones])
            .await
            .map_err(io)?;
        let (names, counts): (Vec<String>, Vec<i64>) = per_integration.into_iter().unzip();
        let stmt = tx
            .prepare_cached(
                "UPDATE sync_state s SET state = jsonb_set(s.state, '{applications}', \
                 to_jsonb(GREATEST(COALESCE((s.state->>'applications')::bigint, 0) - u.n, 0))) \
                 FROM unnest($1::text[], $2::bigint[]) AS u(i, n) WHERE s.integration_id = u.i",
            )
            .await
            .map_err(io)?;
        tx.execute(&stmt, &[&names, &counts]).await.map_err(io)?;
        report.snapshots += rows.len() as u64;
        Ok(())
    }

    /// When the oldest event in the log was detected.
    pub async fn oldest_event_at(&self) -> Result<Option<Timestamp>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT min(detected_at) FROM events")
            .await
            .map_err(|e| self.io(&e))?;
        client
            .query_one(&stmt, &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.io(&e))
    }
}
