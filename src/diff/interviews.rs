//! `interview_scheduled`, `interview_rescheduled`, `interview_canceled`.
//!
//! - An interview id not seen before and not canceled → `interview_scheduled`; one already
//!   canceled is stored without an event.
//! - A known, non-canceled interview whose `starting_at` or `ending_at` differs (compared at
//!   millisecond precision) → `interview_rescheduled`.
//! - `canceled` becomes true → `interview_canceled`, and only that even if the time moved
//!   in the same poll.
//! - A known, non-canceled interview that disappears → `interview_canceled`; it stays in the
//!   snapshot marked canceled.
//! - Canceled once: a canceled interview that changes or disappears gives nothing more.
//! - **Un-cancel**: a canceled interview that comes back with `canceled` false or null gives
//!   `interview_scheduled` again (it is on the calendar again; receivers that removed it
//!   need to add it back). A disappeared one that reappears counts the same way.
//! - `interviews` unknown on the record (`None`) → nothing, the kept interviews stay.

use crate::domain::Application;
use crate::event::EventDetail;

use super::snapshot::set_opt;
use super::snapshot::{Snapshot, to_millis};
use super::summary::{first_of_id, interview_ref};

/// Applies the interview rules to `next`: the record's interviews in its order, then the
/// disappeared ones in stored order.
pub(super) fn apply(next: &mut Snapshot, app: &Application, events: &mut Vec<EventDetail>) {
    let Some(list) = &app.interviews else {
        return;
    };
    for (i, iv) in list.iter().enumerate() {
        if !first_of_id(list, i, |v| &v.id) {
            continue;
        }
        let Some(stored) = next.interviews.iter_mut().find(|s| s.id == iv.id) else {
            let interview = interview_ref(iv);
            let canceled = interview.canceled;
            next.interviews.push(interview.clone());
            if !canceled {
                events.push(EventDetail::InterviewScheduled { interview });
            }
            continue;
        };
        let canceled = iv.canceled == Some(true);
        let starting_at = iv.starting_at.map(to_millis);
        let ending_at = iv.ending_at.map(to_millis);
        let was_canceled = stored.canceled;
        let previous_starting_at = stored.starting_at;
        let previous_ending_at = stored.ending_at;
        let moved = previous_starting_at != starting_at || previous_ending_at != ending_at;
        set_opt(&mut stored.remote_id, iv.remote_id.as_ref());
        set_opt(&mut stored.title, iv.title.as_ref());
        stored.starting_at = starting_at;
        stored.ending_at = ending_at;
        stored.canceled = canceled;
        match (was_canceled, canceled) {
            (false, true) => events.push(EventDetail::InterviewCanceled {
                interview: stored.clone(),
            }),
            (true, false) => events.push(EventDetail::InterviewScheduled {
                interview: stored.clone(),
            }),
            (false, false) if moved => events.push(EventDetail::InterviewRescheduled {
                interview: stored.clone(),
                previous_starting_at,
                previous_ending_at,
            }),
            _ => {}
        }
    }
    for stored in next.interviews.iter_mut() {
        if !stored.canceled && !list.iter().any(|iv| iv.id == stored.id) {
            stored.canceled = true;
            events.push(EventDetail::InterviewCanceled {
                interview: stored.clone(),
            });
        }
    }
}
