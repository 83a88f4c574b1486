//! `offer_created`, `offer_status_changed`.
//!
//! - An offer id not seen before → `offer_created`.
//! - A known offer whose status differs (to or from null, steps skipped) →
//!   `offer_status_changed`.
//! - An offer that disappears → nothing; it stays in the snapshot so that its reappearance
//!   is compared with its last status, not "created" again.
//! - `offers` unknown on the record (`None`) → nothing, the kept offers stay.

use crate::domain::Application;
use crate::event::EventDetail;

use super::snapshot::Snapshot;
use super::snapshot::set_opt;
use super::summary::{first_of_id, offer_ref};

/// Applies the offer rules to `next`, in the record's order.
pub(super) fn apply(next: &mut Snapshot, app: &Application, events: &mut Vec<EventDetail>) {
    let Some(list) = &app.offers else {
        return;
    };
    for (i, offer) in list.iter().enumerate() {
        if !first_of_id(list, i, |o| &o.id) {
            continue;
        }
        match next.offers.iter_mut().find(|s| s.id == offer.id) {
            None => {
                let offer = offer_ref(offer);
                next.offers.push(offer.clone());
                events.push(EventDetail::OfferCreated { offer });
            }
            Some(stored) => {
                set_opt(&mut stored.remote_id, offer.remote_id.as_ref());
                if stored.status != offer.status {
                    let previous_status =
                        std::mem::replace(&mut stored.status, offer.status.clone());
                    events.push(EventDetail::OfferStatusChanged {
                        offer: stored.clone(),
                        previous_status,
                        current_status: offer.status.clone(),
                    });
                }
            }
        }
    }
}
