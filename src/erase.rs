//! Erasure (GDPR) as the CLI and the admin API run it: erase in the store (durable), then
//! make the old values leave the store's files (see ARCHITECTURE.md § Erasure). The store
//! side is [`crate::store::Store::erase`] and [`crate::store::Store::purge_erased`].

use crate::store::{EraseReport, ErasureSubject, PurgeReport};

/// The one info line an erasure logs: ids and counts, never a name or a body.
pub fn log_erasure(
    integration: &str,
    subject: &ErasureSubject,
    report: &EraseReport,
    purge: &PurgeReport,
    via: &str,
) {
    tracing::info!(
        integration = %integration,
        subject = subject.kind(),
        id = %subject.id(),
        changed = report.changed(),
        snapshots = report.snapshots,
        events = report.events,
        deliveries = report.deliveries,
        files_rewritten_in_ms = purge.took.as_millis() as u64,
        via,
        "personal data erased"
    );
}
