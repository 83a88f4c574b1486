//! Erasure on PostgreSQL (see [`crate::store::Store::erase`] and [`crate::store::erase`]).
//!
//! One transaction: the matched rows are locked (`FOR UPDATE`) as they are read, so a page
//! commit or an attempt's record of the same rows waits for the erasure and then applies
//! on top of it; committed (durable: `synchronous_commit`) before returning. Events are
//! found through `events_by_integration` (by application), a candidate's by a byte search
//! of the integration's bodies for the id, each hit checked by parsing the body.
//!
//! Dead tuples keep the old values until the table is rewritten: [`PgStore::vacuum_full`]
//! does that for the tables an erasure changed.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{PgStore, to_u64};
use crate::store::erase::{
    EraseReport, ErasureSubject, body_candidate, erase_body, erase_entry, erase_snapshot,
    snapshot_candidate,
};
use crate::store::{AttemptRecord, OutboxEntry, StoreError};

impl PgStore {
    /// Erases a subject's personal data in one integration (see
    /// [`crate::store::Store::erase`]).
    pub async fn erase(
        &self,
        integration_id: &str,
        subject: &ErasureSubject,
    ) -> Result<EraseReport, StoreError> {
        let io = |e: tokio_postgres::Error| self.io(&e);
        let mut report = EraseReport::default();
        let mut client = self.client().await?;
        // The applications whose snapshot is the subject's.
        let apps: Vec<String> = match subject {
            ErasureSubject::Application(app) => vec![app.clone()],
            ErasureSubject::Candidate(candidate) => {
                let rows = client
                    .query(
                        "SELECT application_id, bytes FROM snapshots WHERE integration_id = $1",
                        &[&integration_id],
                    )
                    .await
                    .map_err(io)?;
                let mut apps = Vec::new();
                for row in rows {
                    let bytes: Vec<u8> = row.try_get(1).map_err(io)?;
                    if snapshot_candidate(&bytes).as_deref() == Some(candidate.as_str()) {
                        apps.push(row.try_get(0).map_err(io)?);
                    }
                }
                apps
            }
        };
        let candidate: Option<&str> = match subject {
            ErasureSubject::Candidate(c) => Some(c),
            ErasureSubject::Application(_) => None,
        };
        let tx = client.transaction().await.map_err(io)?;
        let rows = tx
            .query(
                "SELECT application_id, bytes FROM snapshots \
                 WHERE integration_id = $1 AND application_id = ANY($2) \
                 ORDER BY application_id FOR UPDATE",
                &[&integration_id, &apps],
            )
            .await
            .map_err(io)?;
        for row in rows {
            let app: String = row.try_get(0).map_err(io)?;
            let bytes: Vec<u8> = row.try_get(1).map_err(io)?;
            if let Some(erased) = erase_snapshot(&bytes) {
                tx.execute(
                    "UPDATE snapshots SET bytes = $3 WHERE integration_id = $1 \
                     AND application_id = $2",
                    &[&integration_id, &app, &erased],
                )
                .await
                .map_err(io)?;
                report.snapshots += 1;
            }
        }
        // Events whose application matched, or (by candidate) whose body holds the id.
        let needle: Option<Vec<u8>> = candidate.map(|c| c.as_bytes().to_vec());
        let mut erased_seqs: BTreeSet<i64> = BTreeSet::new();
        for table in ["events", "held_events"] {
            let rows = tx
                .query(
                    &format!(
                        "SELECT log_seq, application_id, body FROM {table} \
                         WHERE integration_id = $1 AND (application_id = ANY($2) \
                         OR ($3::bytea IS NOT NULL AND position($3::bytea IN body) > 0)) \
                         ORDER BY log_seq FOR UPDATE"
                    ),
                    &[&integration_id, &apps, &needle],
                )
                .await
                .map_err(io)?;
            for row in rows {
                let log_seq: i64 = row.try_get(0).map_err(io)?;
                let app: String = row.try_get(1).map_err(io)?;
                let body: Vec<u8> = row.try_get(2).map_err(io)?;
                let matched = apps.contains(&app)
                    || candidate.is_some_and(|c| body_candidate(&body).as_deref() == Some(c));
                if !matched {
                    continue;
                }
                if table == "events" {
                    erased_seqs.insert(log_seq);
                }
                if let Some(erased) = erase_body(&body) {
                    tx.execute(
                        &format!("UPDATE {table} SET body = $2 WHERE log_seq = $1"),
                        &[&log_seq, &erased],
                    )
                    .await
                    .map_err(io)?;
                    report.events += 1;
                }
            }
        }
        // The delivery records of the matched logged events.
        let seqs: Vec<i64> = erased_seqs.into_iter().collect();
        let rows = tx
            .query(
                "SELECT subscriber, log_seq, last_error, recent_attempts FROM outbox \
                 WHERE log_seq = ANY($1) ORDER BY subscriber, log_seq FOR UPDATE",
                &[&seqs],
            )
            .await
            .map_err(io)?;
        for row in rows {
            let subscriber: String = row.try_get(0).map_err(io)?;
            let log_seq: i64 = row.try_get(1).map_err(io)?;
            let attempts: serde_json::Value = row.try_get(3).map_err(io)?;
            let recent_attempts: Vec<AttemptRecord> =
                serde_json::from_value(attempts).map_err(|e| StoreError::Corrupt {
                    what: format!(
                        "attempts of delivery {} to {subscriber}",
                        to_u64(log_seq, "log sequence").unwrap_or(0)
                    ),
                    message: e.to_string(),
                })?;
            let mut entry = OutboxEntry {
                last_error: row.try_get(2).map_err(io)?,
                recent_attempts,
                ..placeholder_entry()
            };
            if erase_entry(&mut entry) {
                let attempts = serde_json::to_value(&entry.recent_attempts).map_err(|e| {
                    StoreError::Corrupt {
                        what: "attempt records".into(),
                        message: e.to_string(),
                    }
                })?;
                tx.execute(
                    "UPDATE outbox SET last_error = NULL, recent_attempts = $3 \
                     WHERE subscriber = $1 AND log_seq = $2",
                    &[&subscriber, &log_seq, &attempts],
                )
                .await
                .map_err(io)?;
                report.deliveries += 1;
            }
        }
        tx.commit().await.map_err(io)?;
        Ok(report)
    }

    /// Rewrites the tables an erasure changed (`VACUUM FULL`), so the old row versions
    /// leave the database's files. Each takes an `ACCESS EXCLUSIVE` lock for its duration:
    /// syncs and deliveries of every replica wait. Returns the tables and how long it took.
    pub async fn vacuum_full(
        &self,
        report: &EraseReport,
    ) -> Result<(Vec<&'static str>, Duration), StoreError> {
        let mut tables = Vec::new();
        if report.snapshots > 0 {
            tables.push("snapshots");
        }
        if report.events > 0 {
            tables.extend(["events", "held_events"]);
        }
        if report.deliveries > 0 {
            tables.push("outbox");
        }
        let started = Instant::now();
        let client = self.client().await?;
        for table in &tables {
            client
                .batch_execute(&format!("VACUUM (FULL) {table}"))
                .await
                .map_err(|e| self.io(&e))?;
        }
        Ok((tables, started.elapsed()))
    }
}

/// An entry to carry the erasable fields of an outbox row through
/// [`erase_entry`]; the other fields are not written back.
fn placeholder_entry() -> OutboxEntry {
    OutboxEntry {
        event_id: String::new(),
        integration_id: String::new(),
        application_id: String::new(),
        sequence: 0,
        state: crate::store::DeliveryState::Pending,
        attempts: 0,
        round_start: 0,
        due_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        last_error: None,
        updated_at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        recent_attempts: Vec::new(),
    }
}
