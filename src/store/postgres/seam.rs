//! What the seam asks of every backend beyond the single-row reads: a page's snapshots in
//! one query, and handing a claim back.

use super::PgStore;
use crate::store::{DueDelivery, StoreError};

impl PgStore {
    /// The stored snapshots of the given applications, in the same order (one query); a
    /// purged application's tombstone in place of its snapshot.
    pub async fn snapshots(
        &self,
        integration_id: &str,
        application_ids: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if application_ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        // Tombstones of purged applications second: a snapshot, when there is one, wins.
        let stmt = client
            .prepare_cached(
                "SELECT application_id, bytes, false FROM snapshots \
                 WHERE integration_id = $1 AND application_id = ANY($2) \
                 UNION ALL SELECT application_id, bytes, true FROM purged_applications \
                 WHERE integration_id = $1 AND application_id = ANY($2)",
            )
            .await
            .map_err(|e| self.io(&e))?;
        let rows = client
            .query(&stmt, &[&integration_id, &application_ids])
            .await
            .map_err(|e| self.io(&e))?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0).map_err(|e| self.io(&e))?;
            let bytes: Vec<u8> = row.try_get(1).map_err(|e| self.io(&e))?;
            let tombstone: bool = row.try_get(2).map_err(|e| self.io(&e))?;
            if tombstone {
                found.entry(id).or_insert(bytes);
            } else {
                found.insert(id, bytes);
            }
        }
        Ok(application_ids
            .iter()
            .map(|id| found.get(*id).cloned())
            .collect())
    }

    /// Ends this replica's claim on a delivery without an attempt: claimable again as it
    /// was (a claim another replica took after this one's expired is left alone).
    pub async fn release_claim(&self, delivery: &DueDelivery) -> Result<(), StoreError> {
        let log_seq = i64::try_from(delivery.log_seq).map_err(|_| StoreError::Corrupt {
            what: "log sequence".into(),
            message: format!("{} is out of range", delivery.log_seq),
        })?;
        let client = self.client().await?;
        client
            .execute(
                "UPDATE outbox SET claimed_until = NULL, claimed_by = NULL \
                 WHERE subscriber = $1 AND log_seq = $2 AND claimed_by = $3",
                &[&delivery.subscriber, &log_seq, &self.replica_id],
            )
            .await
            .map_err(|e| self.io(&e))?;
        Ok(())
    }
}
