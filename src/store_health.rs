//! What the daemon's own reads and writes of the store ran into lately, for `/readyz`.
//!
//! Readiness reads only a few keys itself; a corrupt page elsewhere (an outbox entry, an
//! event body) can fail every delivery while those keys read fine. So each part of the
//! daemon that touches the store reports here under a name of its own ("sync of
//! greenhouse:…", "deliveries to crm: reading due deliveries"): a failure stays until the
//! same operation next succeeds, so one part's success never hides another's failure,
//! and a part that keeps failing keeps the daemon not ready.
//!
//! Every reporter runs again on its own (a sync every poll interval, a delivery worker at
//! least every 30 s while deliveries are due, readiness on each probe), so a cleared
//! problem clears here too. A sync that fails on Kombo says nothing about the store and
//! leaves its entry as it was.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::Utc;

use crate::ats::Timestamp;
use crate::store::StoreError;

/// The latest failure of one operation on the store.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreFailure {
    /// Which operation failed, e.g. "deliveries to crm: reading due deliveries".
    pub operation: String,
    /// What went wrong, without stored content (see [`describe`]).
    pub error: String,
    /// When it last failed.
    pub at: Timestamp,
}

/// Store failures by operation, shared by the pollers, the deliverer and the admin
/// server. Cheap to clone: clones share one map.
#[derive(Debug, Clone, Default)]
pub struct StoreHealth {
    failures: Arc<Mutex<BTreeMap<String, StoreFailure>>>,
}

impl StoreHealth {
    fn failures_map(&self) -> MutexGuard<'_, BTreeMap<String, StoreFailure>> {
        // Poisoned: a panic mid-update of one entry; the map itself is still usable.
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `operation` failed with `err` now.
    pub fn failed(&self, operation: &str, err: &StoreError) {
        let failure = StoreFailure {
            operation: operation.to_owned(),
            error: describe(err),
            at: Utc::now(),
        };
        self.failures_map().insert(operation.to_owned(), failure);
    }

    /// `operation` succeeded: its earlier failure, if any, is over.
    pub fn succeeded(&self, operation: &str) {
        let mut failures = self.failures_map();
        if !failures.is_empty() {
            failures.remove(operation);
        }
    }

    /// Records the outcome of `operation`.
    pub fn record<T>(&self, operation: &str, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.succeeded(operation),
            Err(err) => self.failed(operation, err),
        }
    }

    /// The operations failing now, by name.
    pub fn failures(&self) -> Vec<StoreFailure> {
        self.failures_map().values().cloned().collect()
    }
}

/// A store error as readiness shows it, to anyone who asks (`/readyz` needs no token):
/// what failed and where, never stored content. A decoder's message about a corrupt
/// record can quote the record (a candidate's name), so it is left out.
pub fn describe(err: &StoreError) -> String {
    match err {
        StoreError::Corrupt { what, .. } => format!("corrupt {what} in the store"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corrupt(message: &str) -> StoreError {
        StoreError::Corrupt {
            what: "outbox entry 7 of crm".into(),
            message: message.into(),
        }
    }

    #[test]
    fn a_failure_lasts_until_the_same_operation_succeeds() {
        let health = StoreHealth::default();
        assert!(health.failures().is_empty());
        health.failed("deliveries to crm: reading due deliveries", &corrupt("x"));
        health.failed("sync of a", &corrupt("y"));
        health.succeeded("readiness probe");
        health.succeeded("sync of b");
        assert_eq!(health.failures().len(), 2, "other operations' success");
        health.record("sync of a", &Ok::<(), StoreError>(()));
        let failures = health.failures();
        assert_eq!(failures.len(), 1);
        assert_eq!(
            failures[0].operation,
            "deliveries to crm: reading due deliveries"
        );
        // Failing again keeps one entry, with the latest time.
        let first = failures[0].at;
        health.record(
            "deliveries to crm: reading due deliveries",
            &Err::<(), _>(corrupt("z")),
        );
        let failures = health.failures();
        assert_eq!(failures.len(), 1);
        assert!(failures[0].at >= first);
        health.succeeded("deliveries to crm: reading due deliveries");
        assert!(health.failures().is_empty());
    }

    #[test]
    fn descriptions_leave_stored_content_out() {
        let err = corrupt("invalid type: string \"Jane Doe\", expected u64");
        assert_eq!(describe(&err), "corrupt outbox entry 7 of crm in the store");
        let health = StoreHealth::default();
        health.failed("probe", &err);
        assert!(!format!("{:?}", health.failures()).contains("Jane"));
    }
}
