//! The pure diff: `(previous snapshot or none, fetched application, context) -> (new
//! snapshot, events)`. No I/O, no clock, no randomness: the caller passes `detected_at`.
//!
//! # Rules, and where each lives
//!
//! | rule | where |
//! |---|---|
//! | first sight: `Baseline` stores silently; `Emit` gives one `application_created` (sequence 1) with stage, outcome, offers and interviews. A record first seen **already deleted** is stored and gives nothing in either mode: there is no live state to announce, and if it is restored later the usual restore rule applies (`application_restored`, then the differences against what the tombstone showed) | `mod.rs`, [`diff`] |
//! | deletion: `remote_deleted_at` becomes non-null → only `application_deleted`; the pre-deletion state is kept. While deleted nothing changes and nothing is emitted. Back to null → `application_restored`, then the differences against the kept state | `mod.rs` |
//! | order of one record's events: deleted/restored, stage, outcome, offers, interviews; sequences `prev + 1, + 2, …` | `mod.rs` |
//! | `stage_changed` on a new stage id; a rename refreshes silently | `stage.rs` |
//! | `outcome_hired`, `rejected`, `outcome_reverted`; unknown outcomes are stored but transparent | `outcome.rs` |
//! | `offer_created`, `offer_status_changed`; disappeared offers are kept | `offers.rs` |
//! | `interview_scheduled`, `interview_rescheduled`, `interview_canceled`; canceled once; an un-cancel schedules again | `interviews.rs` |
//! | remote id, URL, job, candidate: refreshed silently for payloads | `summary.rs` |
//! | `None` offers or interviews mean *unknown*: no events, the kept ones stay | `offers.rs`, `interviews.rs` |
//! | the same record twice gives nothing and `changed == false` (the poll overlap) | every rule compares before it writes |
//!
//! The snapshot and its encoding are in [`snapshot`].

mod interviews;
mod offers;
mod outcome;
pub mod snapshot;
mod stage;
mod summary;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use snapshot::{KnownOutcome, SNAPSHOT_VERSION, Snapshot, SnapshotError};

use crate::domain::Application;
use crate::domain::Timestamp;
use crate::event::{Event, EventDetail};

use snapshot::to_millis;

/// What to do with an application that has no snapshot yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstSight {
    /// The integration's first sync with `initial_sync = "baseline"`: store, emit nothing.
    Baseline,
    /// After the baseline (or with `initial_sync = "emit"`): emit `application_created`.
    Emit,
}

/// What the diff needs besides the two states.
#[derive(Debug, Clone, Copy)]
pub struct DiffContext<'a> {
    /// Goes into every event and its id.
    pub integration_id: &'a str,
    /// When the poll saw the record; the diff has no clock.
    pub detected_at: Timestamp,
    /// Baseline or emit for applications without a snapshot.
    pub first_sight: FirstSight,
}

/// The result of one diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffOutcome {
    /// The state to store (its `sequence` is the last event's).
    pub snapshot: Snapshot,
    /// The derived events, in order, sequences consecutive.
    pub events: Vec<Event>,
    /// Whether `snapshot` differs from the previous one: when false (always so when there
    /// are no events and nothing else moved) the store may skip the write.
    pub changed: bool,
}

/// Diffs a fetched application against its stored snapshot (see the module docs for the
/// rules). Never panics.
pub fn diff(prev: Option<&Snapshot>, app: &Application, ctx: &DiffContext) -> DiffOutcome {
    let Some(prev) = prev else {
        return first_sight(app, ctx);
    };
    let deleted_at = app.remote_deleted_at.map(to_millis);
    let mut details = Vec::new();
    let mut next = prev.clone();
    match (prev.deleted_at, deleted_at) {
        // Still deleted: the kept state is frozen, nothing is emitted.
        (Some(_), Some(_)) => {}
        (None, Some(remote_deleted_at)) => {
            next.deleted_at = Some(remote_deleted_at);
            details.push(EventDetail::ApplicationDeleted { remote_deleted_at });
        }
        (Some(_), None) => {
            next.deleted_at = None;
            details.push(EventDetail::ApplicationRestored);
            apply_rules(&mut next, app, &mut details);
        }
        (None, None) => apply_rules(&mut next, app, &mut details),
    }
    finish(prev, next, details, app, ctx)
}

/// The record-level rules, in event order.
fn apply_rules(next: &mut Snapshot, app: &Application, details: &mut Vec<EventDetail>) {
    summary::refresh(next, app);
    stage::apply(next, app, details);
    outcome::apply(next, app, details);
    offers::apply(next, app, details);
    interviews::apply(next, app, details);
}

/// No snapshot yet: baseline, created, or (already deleted) silent.
fn first_sight(app: &Application, ctx: &DiffContext) -> DiffOutcome {
    let mut snapshot = summary::snapshot_of(app);
    let emit = ctx.first_sight == FirstSight::Emit && snapshot.deleted_at.is_none();
    let events = if emit {
        snapshot.sequence = 1;
        let detail = EventDetail::ApplicationCreated {
            offers: snapshot.offers.clone(),
            interviews: snapshot.interviews.clone(),
        };
        vec![Event::new(
            ctx.integration_id,
            &app.id,
            1,
            ctx.detected_at,
            app.remote_updated_at,
            summary::summary(&app.id, &snapshot),
            detail,
        )]
    } else {
        Vec::new()
    };
    DiffOutcome {
        snapshot,
        events,
        changed: true,
    }
}

/// Numbers the events, wraps them with the summary of the new state.
fn finish(
    prev: &Snapshot,
    mut next: Snapshot,
    details: Vec<EventDetail>,
    app: &Application,
    ctx: &DiffContext,
) -> DiffOutcome {
    let mut events = Vec::with_capacity(details.len());
    if !details.is_empty() {
        let summary = summary::summary(&app.id, &next);
        for (i, detail) in details.into_iter().enumerate() {
            let sequence = prev.sequence.saturating_add(i as u64 + 1);
            events.push(Event::new(
                ctx.integration_id,
                &app.id,
                sequence,
                ctx.detected_at,
                app.remote_updated_at,
                summary.clone(),
                detail,
            ));
        }
        next.sequence = prev.sequence.saturating_add(events.len() as u64);
    }
    let changed = next != *prev;
    DiffOutcome {
        snapshot: next,
        events,
        changed,
    }
}
