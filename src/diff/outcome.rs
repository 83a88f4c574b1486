//! `outcome_hired`, `rejected`, `outcome_reverted`.
//!
//! The rules compare the record's outcome with the *last known* one
//! ([`Snapshot::known_outcome`]):
//! - becomes `HIRED` → `outcome_hired`; becomes `DECLINED` → `rejected`;
//! - leaves `HIRED`/`DECLINED` for `PENDING` or null → `outcome_reverted`;
//! - null ↔ `PENDING` → nothing.
//!
//! **Unknown values** (an outcome newer than this build, e.g. `WITHDRAWN`) are stored
//! verbatim (payloads show them) but are transparent to the rules: no event when one
//! appears, none when `HIRED`/`DECLINED` is left for one, and the next known value is
//! compared with the last known one. So `HIRED → WITHDRAWN → PENDING` gives one
//! `outcome_reverted` (previous `HIRED`) at the `PENDING` step, and
//! `HIRED → WITHDRAWN → HIRED` gives nothing. The contract's `outcome_reverted` therefore
//! always has `current_outcome` `PENDING` or null (the body is in `docs/events.md`).

use crate::domain::Application;
use crate::event::{EventDetail, OfferRef};

use super::snapshot::{KnownOutcome, Snapshot};
use super::summary::{first_of_id, offer_ref};

/// Applies the outcome rules to `next`.
pub(super) fn apply(next: &mut Snapshot, app: &Application, events: &mut Vec<EventDetail>) {
    if next.outcome != app.outcome {
        next.outcome.clone_from(&app.outcome);
    }
    let Some(known) = KnownOutcome::of(app.outcome.as_ref()) else {
        return; // unknown value: stored above, transparent to the rules
    };
    let previous = next.known_outcome;
    if known == previous {
        return;
    }
    next.known_outcome = known;
    let previous_outcome = previous.to_outcome();
    match known {
        KnownOutcome::Hired => events.push(EventDetail::OutcomeHired {
            previous_outcome,
            offers: current_offers(next, app),
        }),
        KnownOutcome::Declined => events.push(EventDetail::Rejected {
            previous_outcome,
            rejection_reason_name: app.rejection_reason_name.clone(),
            rejected_at: app.rejected_at,
        }),
        KnownOutcome::Pending | KnownOutcome::Null if previous.is_final() => {
            events.push(EventDetail::OutcomeReverted {
                previous_outcome,
                current_outcome: known.to_outcome(),
            })
        }
        KnownOutcome::Pending | KnownOutcome::Null => {}
    }
}

/// The offers for `outcome_hired`: the record's (duplicates dropped), or the kept ones when
/// the record's are unknown.
fn current_offers(next: &Snapshot, app: &Application) -> Vec<OfferRef> {
    match &app.offers {
        Some(list) => list
            .iter()
            .enumerate()
            .filter(|(i, _)| first_of_id(list, *i, |o| &o.id))
            .map(|(_, o)| offer_ref(o))
            .collect(),
        None => next.offers.clone(),
    }
}
