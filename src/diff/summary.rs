//! The payload-only part of the snapshot (remote id and URL, job, candidate) and building a
//! whole snapshot from a record seen for the first time.
//!
//! These fields never cause an event; they are refreshed silently so payloads stay current.

use crate::domain::{Application, Interview, Offer};
use crate::event::{ApplicationSummary, CandidateRef, InterviewRef, JobRef, OfferRef};

use super::snapshot::{KnownOutcome, Snapshot, set_opt, to_millis};
use super::stage;

/// The snapshot of a record seen for the first time (sequence 0, no events yet).
///
/// Must equal what the rules would make of the same record against an empty state, so that
/// diffing the record again against this snapshot yields nothing.
pub(super) fn snapshot_of(app: &Application) -> Snapshot {
    let mut offers = Vec::new();
    if let Some(list) = &app.offers {
        offers.reserve(list.len());
        for (i, offer) in list.iter().enumerate() {
            if !first_of_id(list, i, |o| &o.id) {
                continue;
            }
            offers.push(offer_ref(offer));
        }
    }
    let mut interviews = Vec::new();
    if let Some(list) = &app.interviews {
        interviews.reserve(list.len());
        for (i, iv) in list.iter().enumerate() {
            if !first_of_id(list, i, |v| &v.id) {
                continue;
            }
            interviews.push(interview_ref(iv));
        }
    }
    Snapshot {
        sequence: 0,
        deleted_at: app.remote_deleted_at.map(to_millis),
        remote_id: app.remote_id.clone(),
        remote_url: app.remote_url.clone(),
        job: job_ref(app),
        candidate: candidate_ref(app),
        stage: stage::stage_ref(app),
        outcome: app.outcome.clone(),
        known_outcome: KnownOutcome::of(app.outcome.as_ref()).unwrap_or_default(),
        offers,
        interviews,
        source: None,
    }
}

/// Refreshes remote id, URL, job and candidate from the record (never an event).
pub(super) fn refresh(next: &mut Snapshot, app: &Application) {
    set_opt(&mut next.remote_id, app.remote_id.as_ref());
    set_opt(&mut next.remote_url, app.remote_url.as_ref());

    let job_id = app
        .job_id
        .as_deref()
        .or(app.job.as_ref().map(|j| j.id.as_str()));
    match (job_id, &mut next.job) {
        (None, slot) => *slot = None,
        (Some(id), Some(stored)) if stored.id == id => {
            let obj = app.job.as_ref().filter(|j| j.id == id);
            set_opt(
                &mut stored.remote_id,
                obj.and_then(|j| j.remote_id.as_ref()),
            );
            set_opt(&mut stored.name, obj.and_then(|j| j.name.as_ref()));
        }
        (Some(_), slot) => *slot = job_ref(app),
    }

    let candidate_id = app
        .candidate_id
        .as_deref()
        .or(app.candidate.as_ref().map(|c| c.id.as_str()));
    match (candidate_id, &mut next.candidate) {
        (None, slot) => *slot = None,
        (Some(id), Some(stored)) if stored.id == id => {
            let obj = app.candidate.as_ref().filter(|c| c.id == id);
            set_opt(
                &mut stored.first_name,
                obj.and_then(|c| c.first_name.as_ref()),
            );
            set_opt(
                &mut stored.last_name,
                obj.and_then(|c| c.last_name.as_ref()),
            );
        }
        (Some(_), slot) => *slot = candidate_ref(app),
    }
}

/// The `data.application` summary of a snapshot.
pub(super) fn summary(application_id: &str, s: &Snapshot) -> ApplicationSummary {
    ApplicationSummary {
        id: application_id.to_owned(),
        remote_id: s.remote_id.clone(),
        outcome: s.outcome.clone(),
        job: s.job.clone(),
        candidate: s.candidate.clone(),
        current_stage: s.stage.clone(),
        remote_url: s.remote_url.clone(),
    }
}

/// The job: `job_id` (falling back to the job object's id); the object's details only when
/// its id is that id.
fn job_ref(app: &Application) -> Option<JobRef> {
    let id = app
        .job_id
        .as_deref()
        .or(app.job.as_ref().map(|j| j.id.as_str()))?;
    let obj = app.job.as_ref().filter(|j| j.id == id);
    Some(JobRef {
        id: id.to_owned(),
        remote_id: obj.and_then(|j| j.remote_id.clone()),
        name: obj.and_then(|j| j.name.clone()),
    })
}

/// The candidate, as [`job_ref`]; never any contact detail.
fn candidate_ref(app: &Application) -> Option<CandidateRef> {
    let id = app
        .candidate_id
        .as_deref()
        .or(app.candidate.as_ref().map(|c| c.id.as_str()))?;
    let obj = app.candidate.as_ref().filter(|c| c.id == id);
    Some(CandidateRef {
        id: id.to_owned(),
        first_name: obj.and_then(|c| c.first_name.clone()),
        last_name: obj.and_then(|c| c.last_name.clone()),
    })
}

/// An offer as payloads and the snapshot show it.
pub(super) fn offer_ref(offer: &Offer) -> OfferRef {
    OfferRef {
        id: offer.id.clone(),
        remote_id: offer.remote_id.clone(),
        status: offer.status.clone(),
    }
}

/// An interview as payloads and the snapshot show it (times in whole milliseconds).
pub(super) fn interview_ref(iv: &Interview) -> InterviewRef {
    InterviewRef {
        id: iv.id.clone(),
        remote_id: iv.remote_id.clone(),
        title: iv.title.clone(),
        starting_at: iv.starting_at.map(to_millis),
        ending_at: iv.ending_at.map(to_millis),
        canceled: iv.canceled == Some(true),
    }
}

/// Whether `list[i]` is the first item with its id: later duplicates of an id in one record
/// are ignored (otherwise they would flap against each other on every poll).
pub(super) fn first_of_id<T>(list: &[T], i: usize, id: impl Fn(&T) -> &String) -> bool {
    let Some(item) = list.get(i) else {
        return false;
    };
    let key = id(item);
    !list.iter().take(i).any(|other| id(other) == key)
}
