//! Deliveries: the outbox, claims, attempts, dead letters, disabled subscribers.
//!
//! A pending delivery can be claimed when it is due, not claimed (or its claim expired),
//! and no earlier delivery of its (subscriber, application) is pending: so one
//! application's events reach a subscriber in log order, across replicas, while other
//! applications flow freely. A claim ends when its attempt is recorded.

use std::time::Duration;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::attempts::AttemptRow;
use super::log::{micros, notify};
use super::{PgStore, RELAXED, to_i64, to_u64};
use crate::ats::Timestamp;
use crate::store::{
    AttemptRecord, AttemptResult, DeliveryState, DueDelivery, OutboxEntry, QueueSummary,
    StoreError, SubscriberBacklog,
};

/// The columns of `outbox`, in the order [`PgStore::outbox_row`] reads them.
const OUTBOX_COLUMNS: &str = "subscriber, log_seq, event_id, integration_id, application_id, \
     sequence, state, attempts, round_start, due_at, last_error, updated_at, recent_attempts";

/// The same, qualified with the table name (for statements that join).
const OUTBOX_COLUMNS_QUALIFIED: &str = "outbox.subscriber, outbox.log_seq, outbox.event_id, \
     outbox.integration_id, outbox.application_id, outbox.sequence, outbox.state, \
     outbox.attempts, outbox.round_start, outbox.due_at, outbox.last_error, \
     outbox.updated_at, outbox.recent_attempts";

/// The deliveries a claim takes (`$1` subscriber, `$2` now, `$3` limit, after `($6, $7)`
/// in due order): none while the subscriber is disabled; else pending, due, not claimed,
/// and the head of its application's queue — the oldest pending delivery of its
/// (subscriber, application).
///
/// The head check is a correlated scalar subquery with `LIMIT 1`, which PostgreSQL never
/// flattens into a join: whatever the statistics say, it is one probe of the
/// per-application index per candidate, and the candidates come from the due index in
/// claim order, so a claim reads about `limit` rows however long the backlog. (Schema 1's
/// `hirehook_is_head` function did the same through PL/pgSQL at ~10x the cost per row.)
///
/// The head check says `<=`, which for a pending row means `=` (no pending row of its
/// application is older than the oldest one), because of how the planner guesses: an
/// equality with a subquery's result counts as matching 0.5 % of rows, which makes a
/// sequential scan and a sort of the whole backlog look cheaper than reading the due
/// index in order (`a_claim_after_a_backfill_probes_the_application_index` caught it);
/// an inequality counts as a third, and the index is read in order and stops at `limit`.
///
/// The disabled check is part of the statement, not a read before it: a 410 recorded by
/// another replica and committed before the claim's statement began is always seen (a
/// separate read would leave a window between it and the claim). It depends on `$1` only,
/// so the planner makes it a one-time filter: a disabled subscriber's claim scans nothing.
pub(super) const CLAIMABLE: &str = "SELECT o.subscriber, o.log_seq FROM outbox o \
     WHERE o.subscriber = $1 AND o.state = 'pending' AND o.due_at <= $2 \
     AND (o.claimed_until IS NULL OR o.claimed_until <= $2) \
     AND NOT EXISTS (SELECT 1 FROM disabled_subscribers d WHERE d.subscriber = $1) \
     AND o.log_seq <= (SELECT p.log_seq FROM outbox p WHERE p.subscriber = o.subscriber \
       AND p.integration_id = o.integration_id AND p.application_id = o.application_id \
       AND p.state = 'pending' \
       ORDER BY p.subscriber, p.integration_id, p.application_id, p.log_seq LIMIT 1) \
     AND (o.due_at, o.log_seq) > ($6, $7) \
     ORDER BY o.due_at, o.log_seq LIMIT $3 FOR UPDATE OF o SKIP LOCKED";

/// Where a claim without a cursor starts: before every due time.
pub(super) fn scan_from_start() -> (Timestamp, i64) {
    (Timestamp::UNIX_EPOCH, i64::MIN)
}

/// Every this many claims of a subscriber, one starts from the beginning of the due
/// index instead of the cursor (see [`ClaimCursors`]).
const FULL_SCAN_EVERY: u32 = 16;

/// Where each subscriber's next claim starts reading the due index, per process.
///
/// A delivered row leaves the due index only when vacuum removes its dead entry, so under
/// a backlog the front of the index fills with entries of finished deliveries, and a claim
/// that starts at the front reads all of them (a claim took 1.4 ms at 25 rows, against
/// 0.2 ms on a vacuumed index). The cursor starts the next claim after the last row this
/// process claimed. A row behind the cursor can become claimable later (an application's
/// next event once its head is delivered, an expired claim, a row another replica had
/// locked): every [`FULL_SCAN_EVERY`]th claim, and any claim the cursor leaves short,
/// reads from the front, so such a row waits at most that many claims. The cursor decides
/// only where reading starts; which rows may be claimed is the statement's, so order per
/// application and one claimant per delivery hold as without it.
#[derive(Default)]
pub(super) struct ClaimCursors {
    by_subscriber: std::sync::Mutex<std::collections::HashMap<String, Cursor>>,
}

#[derive(Clone, Copy, Default)]
struct Cursor {
    after: Option<(Timestamp, i64)>,
    claims: u32,
}

impl ClaimCursors {
    /// Runs `f` on `subscriber`'s cursor (the name is copied only the first time).
    fn with<T>(&self, subscriber: &str, f: impl FnOnce(&mut Cursor) -> T) -> T {
        let mut map = self.by_subscriber.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cursor) = map.get_mut(subscriber) {
            return f(cursor);
        }
        f(map.entry(subscriber.to_owned()).or_default())
    }

    /// Where the next claim of `subscriber` starts (None: the front).
    fn start(&self, subscriber: &str) -> Option<(Timestamp, i64)> {
        self.with(subscriber, |cursor| {
            cursor.claims = cursor.claims.wrapping_add(1);
            if cursor.claims.is_multiple_of(FULL_SCAN_EVERY) {
                None
            } else {
                cursor.after
            }
        })
    }

    /// After a claim: a full claim moves the cursor past its last row; a short one means
    /// the scan reached the end, so the next starts at the front.
    fn claimed(&self, subscriber: &str, last: Option<(Timestamp, i64)>, full: bool) {
        self.with(subscriber, |cursor| {
            cursor.after = if full { last } else { None };
        });
    }
}

impl PgStore {
    /// `(subscriber, log sequence, entry)` from a row whose first columns are
    /// [`OUTBOX_COLUMNS`].
    fn outbox_row(&self, row: &Row) -> Result<(String, u64, OutboxEntry), StoreError> {
        let io = |e: tokio_postgres::Error| self.io(&e);
        let subscriber: String = row.try_get(0).map_err(io)?;
        let log_seq = to_u64(row.try_get(1).map_err(io)?, "log sequence")?;
        let what = || format!("outbox entry {log_seq} of {subscriber}");
        let state: String = row.try_get(6).map_err(io)?;
        let state = DeliveryState::parse(&state).ok_or_else(|| StoreError::Corrupt {
            what: what(),
            message: format!("unknown state {state}"),
        })?;
        let count = |i: usize| -> Result<u32, StoreError> {
            let n: i32 = row.try_get(i).map_err(io)?;
            u32::try_from(n).map_err(|_| StoreError::Corrupt {
                what: what(),
                message: format!("negative count {n}"),
            })
        };
        let attempts: serde_json::Value = row.try_get(12).map_err(io)?;
        let recent_attempts: Vec<AttemptRecord> =
            serde_json::from_value(attempts).map_err(|e| StoreError::Corrupt {
                what: what(),
                message: e.to_string(),
            })?;
        let entry = OutboxEntry {
            event_id: row.try_get(2).map_err(io)?,
            integration_id: row.try_get(3).map_err(io)?,
            application_id: row.try_get(4).map_err(io)?,
            sequence: to_u64(row.try_get(5).map_err(io)?, "event sequence")?,
            state,
            attempts: count(7)?,
            round_start: count(8)?,
            due_at: row.try_get(9).map_err(io)?,
            last_error: row.try_get(10).map_err(io)?,
            updated_at: row.try_get(11).map_err(io)?,
            recent_attempts,
        };
        Ok((subscriber, log_seq, entry))
    }

    async fn outbox_query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<(String, u64, OutboxEntry)>, StoreError> {
        let client = self.client().await?;
        let stmt = client.prepare_cached(sql).await.map_err(|e| self.io(&e))?;
        let rows = client.query(&stmt, params).await.map_err(|e| self.io(&e))?;
        rows.iter().map(|r| self.outbox_row(r)).collect()
    }

    /// Every delivery of one subscriber, oldest first.
    pub async fn outbox(&self, subscriber: &str) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let sql =
            format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE subscriber = $1 ORDER BY log_seq");
        Ok(self
            .outbox_query(&sql, &[&subscriber])
            .await?
            .into_iter()
            .map(|(_, seq, entry)| (seq, entry))
            .collect())
    }

    /// Deliveries across subscribers, filtered; `(subscriber, log sequence, entry)` by
    /// subscriber, then log sequence.
    pub async fn deliveries(
        &self,
        subscriber: Option<&str>,
        state: Option<DeliveryState>,
        event_id: Option<&str>,
    ) -> Result<Vec<(String, u64, OutboxEntry)>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE ($1::text IS NULL OR subscriber = $1) \
             AND ($2::text IS NULL OR state = $2) AND ($3::text IS NULL OR event_id = $3) \
             ORDER BY subscriber, log_seq"
        );
        let state = state.map(DeliveryState::as_str);
        self.outbox_query(&sql, &[&subscriber, &state, &event_id])
            .await
    }

    /// The delivery of the event at `log_seq` to `subscriber`, if there is one.
    pub async fn delivery(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Option<OutboxEntry>, StoreError> {
        let sql =
            format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE subscriber = $1 AND log_seq = $2");
        let seq = to_i64(log_seq, "log sequence")?;
        Ok(self
            .outbox_query(&sql, &[&subscriber, &seq])
            .await?
            .into_iter()
            .next()
            .map(|(_, _, entry)| entry))
    }

    /// Claims up to `limit` deliveries of `subscriber` due at `now`: none while the
    /// subscriber is disabled (by a 410 on any replica); else pending, due, not claimed (or
    /// the claim expired), and the oldest pending delivery of its application.
    /// Each is claimed by this replica until `now + hold`. Ordered by (due time, log
    /// sequence). Rows are locked `FOR UPDATE SKIP LOCKED` while claimed, so two replicas
    /// never claim the same delivery. Committed without waiting for the disk (see
    /// [`RELAXED`]).
    pub async fn claim_due(
        &self,
        subscriber: &str,
        now: Timestamp,
        limit: usize,
        hold: Duration,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let until = now
            + chrono::TimeDelta::from_std(hold)
                .map_err(|e| StoreError::Io(format!("claim hold {hold:?}: {e}")))?;
        let start = self.claim_cursors.start(subscriber);
        let mut out = self
            .claim_from(
                subscriber,
                now,
                limit,
                until,
                start.unwrap_or_else(scan_from_start),
            )
            .await?;
        if start.is_some() && out.len() < limit {
            // The cursor reached the end: what is left may be behind it.
            let more = self
                .claim_from(subscriber, now, limit - out.len(), until, scan_from_start())
                .await?;
            out.extend(more);
        }
        out.sort_by_key(|d| (d.entry.due_at, d.log_seq));
        let last = out
            .last()
            .map(|d| (d.entry.due_at, i64::try_from(d.log_seq).unwrap_or(i64::MAX)));
        self.claim_cursors
            .claimed(subscriber, last, out.len() == limit);
        Ok(out)
    }

    /// One claim statement: up to `limit` claimable rows after `after` in due order.
    async fn claim_from(
        &self,
        subscriber: &str,
        now: Timestamp,
        limit: usize,
        until: Timestamp,
        after: (Timestamp, i64),
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = format!(
            "WITH due AS ({CLAIMABLE}) \
             UPDATE outbox SET claimed_until = $4, claimed_by = $5 FROM due, events e, {RELAXED} \
             WHERE outbox.subscriber = due.subscriber AND outbox.log_seq = due.log_seq \
             AND e.log_seq = outbox.log_seq \
             RETURNING {OUTBOX_COLUMNS_QUALIFIED}, e.body, e.detected_at"
        );
        let client = self.client().await?;
        let stmt = client.prepare_cached(&sql).await.map_err(|e| self.io(&e))?;
        let rows = client
            .query(
                &stmt,
                &[
                    &subscriber,
                    &now,
                    &limit,
                    &until,
                    &self.replica_id,
                    &after.0,
                    &after.1,
                ],
            )
            .await
            .map_err(|e| self.io(&e))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (_, log_seq, entry) = self.outbox_row(row)?;
            out.push(DueDelivery {
                log_seq,
                entry,
                body: row.try_get(13).map_err(|e| self.io(&e))?,
                detected_at: row.try_get(14).map_err(|e| self.io(&e))?,
                subscriber: subscriber.to_owned(),
            });
        }
        out.sort_by_key(|d| (d.entry.due_at, d.log_seq));
        Ok(out)
    }

    /// The earliest time a delivery of `subscriber` becomes claimable: the due time of an
    /// application's oldest pending delivery, or the expiry of its claim. None when nothing
    /// is pending.
    pub async fn next_due_at(&self, subscriber: &str) -> Result<Option<Timestamp>, StoreError> {
        // One pass over the per-application index: each application's head, then the
        // earliest time one of them can be claimed.
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT min(GREATEST(h.due_at, COALESCE(h.claimed_until, h.due_at))) FROM \
                 (SELECT DISTINCT ON (integration_id, application_id) due_at, claimed_until \
                  FROM outbox WHERE subscriber = $1 AND state = 'pending' \
                  ORDER BY integration_id, application_id, log_seq) h",
            )
            .await
            .map_err(|e| self.io(&e))?;
        client
            .query_one(&stmt, &[&subscriber])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.io(&e))
    }

    /// A subscriber's pending and dead deliveries and its oldest pending event.
    pub async fn queue_summary(&self, subscriber: &str) -> Result<QueueSummary, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT (SELECT count(*) FROM outbox WHERE subscriber = $1 AND state = 'pending' \
                  AND log_seq > 0), \
                 (SELECT count(*) FROM outbox WHERE subscriber = $1 AND state = 'dead'), \
                 (SELECT e.detected_at FROM outbox o JOIN events e ON e.log_seq = o.log_seq \
                  WHERE o.subscriber = $1 AND o.state = 'pending' AND o.log_seq > 0 \
                  ORDER BY o.log_seq LIMIT 1)",
            )
            .await
            .map_err(|e| self.io(&e))?;
        let row = client
            .query_one(&stmt, &[&subscriber])
            .await
            .map_err(|e| self.io(&e))?;
        let io = |e: tokio_postgres::Error| self.io(&e);
        Ok(QueueSummary {
            pending: to_u64(row.try_get(0).map_err(io)?, "count")?,
            dead: to_u64(row.try_get(1).map_err(io)?, "count")?,
            oldest_pending: row.try_get(2).map_err(io)?,
        })
    }

    /// Counts one subscriber's deliveries by state, finds its oldest pending delivery and
    /// its latest error (among pending and dead deliveries).
    pub async fn subscriber_backlog(
        &self,
        subscriber: &str,
    ) -> Result<SubscriberBacklog, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT count(*) FILTER (WHERE state = 'pending'), \
                 count(*) FILTER (WHERE state = 'delivered'), \
                 count(*) FILTER (WHERE state = 'dead'), \
                 (SELECT e.detected_at FROM outbox o JOIN events e ON e.log_seq = o.log_seq \
                  WHERE o.subscriber = $1 AND o.state = 'pending' AND o.log_seq > 0 \
                  ORDER BY o.log_seq LIMIT 1) \
                 FROM outbox WHERE subscriber = $1",
            )
            .await
            .map_err(|e| self.io(&e))?;
        let row = client
            .query_one(&stmt, &[&subscriber])
            .await
            .map_err(|e| self.io(&e))?;
        let io = |e: tokio_postgres::Error| self.io(&e);
        let mut backlog = SubscriberBacklog {
            pending: to_u64(row.try_get(0).map_err(io)?, "count")?,
            delivered: to_u64(row.try_get(1).map_err(io)?, "count")?,
            dead: to_u64(row.try_get(2).map_err(io)?, "count")?,
            oldest_pending: row.try_get(3).map_err(io)?,
            last_error: None,
        };
        let stmt = client
            .prepare_cached(
                "SELECT updated_at, last_error FROM outbox \
                 WHERE subscriber = $1 AND state <> 'delivered' AND last_error IS NOT NULL \
                 ORDER BY updated_at DESC, log_seq DESC LIMIT 1",
            )
            .await
            .map_err(|e| self.io(&e))?;
        if let Some(row) = client
            .query_opt(&stmt, &[&subscriber])
            .await
            .map_err(|e| self.io(&e))?
        {
            backlog.last_error = Some((row.try_get(0).map_err(io)?, row.try_get(1).map_err(io)?));
        }
        Ok(backlog)
    }

    /// Records one attempt and its consequence atomically (in one statement, with the
    /// attempts recorded at the same moment: see [`super::attempts`]), and ends this
    /// replica's claim on the delivery: the attempt count (the highest attempt number seen), the
    /// update time, the last error (the attempt's error, or `HTTP <status>` for a non-2xx,
    /// else none), the latest [`ATTEMPTS_KEPT`](crate::store::ATTEMPTS_KEPT) attempts; then Delivered or Dead change
    /// the state, Retry moves the due time, Disable disables the subscriber with the
    /// reason (the delivery stays pending). Committed without waiting for the disk (see
    /// [`RELAXED`]).
    pub async fn record_attempt(
        &self,
        subscriber: &str,
        delivery: &DueDelivery,
        attempt: &AttemptRecord,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        let log_seq = to_i64(delivery.log_seq, "log sequence")?;
        let number = i32::try_from(attempt.attempt).unwrap_or(i32::MAX);
        let last_error = match (&attempt.error, attempt.status) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(s)) if !(200..300).contains(&s) => Some(format!("HTTP {s}")),
            _ => None,
        };
        let appended = serde_json::to_value([attempt]).map_err(|e| StoreError::Corrupt {
            what: format!("attempt of {} to {subscriber}", delivery.log_seq),
            message: e.to_string(),
        })?;
        let (state, due_at, reason): (Option<&'static str>, Option<Timestamp>, Option<&str>) =
            match &result {
                AttemptResult::Delivered => (Some("delivered"), None, None),
                AttemptResult::Dead => (Some("dead"), None, None),
                AttemptResult::Retry { due_at } => (None, Some(micros(*due_at)), None),
                AttemptResult::Disable { reason } => (None, None, Some(reason.as_str())),
            };
        self.record_grouped(AttemptRow {
            subscriber: subscriber.to_owned(),
            log_seq,
            attempt: number,
            at: attempt.at,
            last_error,
            appended,
            state,
            due_at,
            reason: reason.map(str::to_owned),
        })
        .await
    }

    /// The attempts of one delivery that its row keeps, in order.
    pub async fn attempts(
        &self,
        subscriber: &str,
        log_seq: u64,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        Ok(self
            .delivery(subscriber, log_seq)
            .await?
            .map(|entry| entry.recent_attempts)
            .unwrap_or_default())
    }

    /// Why a subscriber is disabled, if it is.
    pub async fn disabled_reason(&self, subscriber: &str) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached("SELECT reason FROM disabled_subscribers WHERE subscriber = $1")
            .await
            .map_err(|e| self.io(&e))?;
        client
            .query_opt(&stmt, &[&subscriber])
            .await
            .and_then(|r| r.map(|r| r.try_get(0)).transpose())
            .map_err(|e| self.io(&e))
    }

    /// Re-enables a subscriber disabled by a 410; its backlog resumes (on whichever
    /// replica delivers to it: the change is notified). Returns whether it was disabled.
    pub async fn enable_subscriber(&self, subscriber: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.io(&e))?;
        let n = tx
            .execute(
                "DELETE FROM disabled_subscribers WHERE subscriber = $1",
                &[&subscriber],
            )
            .await
            .map_err(|e| self.io(&e))?;
        if n > 0 {
            notify(self, &tx).await?;
        }
        tx.commit().await.map_err(|e| self.io(&e))?;
        Ok(n > 0)
    }

    /// Puts dead letters back in the queue, due `now`, starting a new round of the retry
    /// schedule. Returns how many.
    pub async fn retry_dead(
        &self,
        subscriber: Option<&str>,
        event_id: Option<&str>,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.io(&e))?;
        let n = tx
            .execute(
                "UPDATE outbox SET state = 'pending', round_start = attempts, due_at = $3, \
                 updated_at = $3, claimed_until = NULL, claimed_by = NULL \
                 WHERE state = 'dead' AND ($1::text IS NULL OR subscriber = $1) \
                 AND ($2::text IS NULL OR event_id = $2)",
                &[&subscriber, &event_id, &now],
            )
            .await
            .map_err(|e| self.io(&e))?;
        if n > 0 {
            notify(self, &tx).await?;
        }
        tx.commit().await.map_err(|e| self.io(&e))?;
        Ok(n as usize)
    }
}
