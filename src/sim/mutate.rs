//! The mutation engine: realistic changes to a world, each recorded in the truth log.
//!
//! Every [`Mutation`] makes exactly one change and yields exactly one [`TruthChange`].
//! Everything the diff looks at (stage id, outcome, offers, interviews, deletion) changes
//! only here, so the truth log is complete: a consumer can replay it to know what really
//! happened. Timestamps move as Kombo's do: a change to the application's own fields sets
//! `changed_at` and `remote_updated_at`; a change to interviews, offers or the candidate
//! sets the application's nested-change time (which `updated_after` matches on) and leaves
//! `changed_at` alone; a stage rename touches no application at all.
//!
//! Deleted applications are not mutated, except by [`Mutation::Restore`].

use serde::{Deserialize, Serialize};

use super::clock::SimClock;
use super::ids::IdKind;
use super::names;
use super::rng::Rng;
use super::world::{Ms, RejectionReason, SimOutcome, World, ts};
use crate::ats::model::{OfferStatus, Outcome, Timestamp};

const DAY_MS: i64 = 86_400_000;

/// One targeted change to one application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mutation {
    /// Move to another stage of the same job (forward, back, or skipping stages).
    MoveStage { to_stage_id: String },
    /// Outcome becomes HIRED.
    Hire,
    /// Outcome becomes DECLINED with a reason (a listed one when `None`) and `rejected_at`.
    Reject {
        #[serde(default)]
        reason: Option<String>,
    },
    /// A HIRED or DECLINED outcome goes back to PENDING, or to null with `to_null`.
    Revert {
        #[serde(default)]
        to_null: bool,
    },
    /// A new offer with this status.
    CreateOffer {
        #[serde(default)]
        status: Option<OfferStatus>,
    },
    /// A known offer's status changes (any step, including skips and null).
    SetOfferStatus {
        offer_id: String,
        #[serde(default)]
        status: Option<OfferStatus>,
    },
    /// A new, not canceled interview in the coming days.
    ScheduleInterview,
    /// A known, not canceled interview gets new times.
    Reschedule {
        interview_id: String,
        #[serde(default)]
        starting_at: Option<Timestamp>,
        #[serde(default)]
        ending_at: Option<Timestamp>,
    },
    /// `canceled` becomes true.
    CancelInterview { interview_id: String },
    /// The interview disappears from the list (without being canceled first, or after).
    RemoveInterview { interview_id: String },
    /// `remote_deleted_at` is set.
    Delete,
    /// `remote_deleted_at` goes back to null.
    Restore,
    /// The application's current stage record is renamed: visible in `current_stage.name`
    /// of every application in that stage, but no application's change time moves.
    RenameStage {
        #[serde(default)]
        name: Option<String>,
    },
    /// The candidate's email address changes (a nested change).
    EditCandidate,
}

/// What changed; the payload of a [`TruthEntry`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TruthChange {
    /// A new application appeared.
    ApplicationCreated {
        job_id: String,
        stage_id: Option<String>,
        outcome: Option<Outcome>,
    },
    StageMoved {
        from_stage_id: Option<String>,
        to_stage_id: Option<String>,
    },
    /// `rejection_reason_name` is set when `to` is DECLINED.
    OutcomeChanged {
        from: Option<Outcome>,
        to: Option<Outcome>,
        rejection_reason_name: Option<String>,
    },
    OfferCreated {
        offer_id: String,
        status: Option<OfferStatus>,
    },
    OfferStatusChanged {
        offer_id: String,
        from: Option<OfferStatus>,
        to: Option<OfferStatus>,
    },
    InterviewScheduled {
        interview_id: String,
        starting_at: Option<Timestamp>,
        ending_at: Option<Timestamp>,
    },
    InterviewRescheduled {
        interview_id: String,
        from_starting_at: Option<Timestamp>,
        from_ending_at: Option<Timestamp>,
        to_starting_at: Option<Timestamp>,
        to_ending_at: Option<Timestamp>,
    },
    InterviewCanceled {
        interview_id: String,
    },
    /// The interview vanished; `was_canceled` tells whether it had been canceled before.
    InterviewRemoved {
        interview_id: String,
        was_canceled: bool,
    },
    Deleted,
    Restored,
    /// A stage record was renamed. Concerns every application in the stage, so the
    /// entry's `application_id` is `None`. Yields no application change time.
    StageRenamed {
        stage_id: String,
        job_id: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// Candidate data changed (`field` says which).
    CandidateEdited {
        candidate_id: String,
        field: String,
    },
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruthEntry {
    /// 1, 2, 3, ... across all integrations, in the order changes were made.
    pub seq: u64,
    /// The change's timestamp (the one written into the record).
    pub at: Timestamp,
    pub integration_id: String,
    /// The application concerned; `None` for a stage rename.
    pub application_id: Option<String>,
    pub change: TruthChange,
}

/// Why a mutation could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("unknown integration {0:?}")]
    UnknownIntegration(String),
    #[error("unknown application {0:?}")]
    UnknownApplication(String),
    #[error("application {0:?} is deleted: only Restore applies")]
    Deleted(String),
    /// The mutation does not apply to the application's current state.
    #[error("{0}")]
    NotApplicable(String),
}

/// A change applied to a world, before it gets its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// Application position, `None` for a stage rename.
    pub application: Option<u32>,
    pub change: TruthChange,
}

fn not_applicable(msg: impl Into<String>) -> SimError {
    SimError::NotApplicable(msg.into())
}

/// The shared state of the engine: its random stream, its clock and the log.
#[derive(Debug)]
pub struct Engine {
    /// Chooses random mutations and their details; seeded, so runs reproduce.
    pub rng: Rng,
    /// Timestamps of changes.
    pub clock: SimClock,
    /// Every change so far; entry `k` has `seq == k + 1`.
    log: Vec<TruthEntry>,
}

impl Engine {
    pub fn new(seed: u64, clock: SimClock) -> Self {
        Self {
            rng: Rng::new(seed ^ 0x6D75_7461_7465),
            clock,
            log: Vec::new(),
        }
    }

    /// Records a change and returns its entry.
    pub fn record(&mut self, at: Ms, world: &World, applied: Applied) -> TruthEntry {
        let entry = TruthEntry {
            seq: self.log.len() as u64 + 1,
            at: ts(at),
            integration_id: world.id.clone(),
            application_id: applied.application.map(|i| world.app_id(i)),
            change: applied.change,
        };
        self.log.push(entry.clone());
        entry
    }

    /// Entries with `seq > since`.
    pub fn since(&self, since: u64) -> &[TruthEntry] {
        let start = usize::try_from(since)
            .unwrap_or(usize::MAX)
            .min(self.log.len());
        &self.log[start..]
    }

    /// The newest sequence number (0 before any change).
    pub fn last_seq(&self) -> u64 {
        self.log.len() as u64
    }
}

/// Adds a new application to a random job at `now`.
pub fn create_application(
    world: &mut World,
    job: Option<u32>,
    now: Ms,
    rng: &mut Rng,
) -> Result<Applied, SimError> {
    let job = match job {
        Some(j) => j,
        None if world.jobs.is_empty() => return Err(not_applicable("the world has no jobs")),
        None => rng.index(world.jobs.len()) as u32,
    };
    let i = world.add_application(rng, job, now, now, false);
    let app = &world.apps[i as usize];
    Ok(Applied {
        application: Some(i),
        change: TruthChange::ApplicationCreated {
            job_id: world.job_id(job),
            stage_id: app.stage.map(|s| world.stage_id(s)),
            outcome: app.outcome.map(SimOutcome::to_wire),
        },
    })
}

/// Applies `m` to application `i` at `now`.
pub fn apply(
    world: &mut World,
    i: u32,
    m: Mutation,
    now: Ms,
    rng: &mut Rng,
) -> Result<Applied, SimError> {
    let idx = i as usize;
    let app_id = || world.app_id(i);
    let Some(app) = world.apps.get(idx) else {
        return Err(SimError::UnknownApplication(app_id()));
    };
    if app.deleted_at.is_some() && m != Mutation::Restore {
        return Err(SimError::Deleted(app_id()));
    }
    let own = |world: &mut World| {
        let app = &mut world.apps[idx];
        app.changed_at = now;
        app.remote_updated_at = now;
    };
    let nested = |world: &mut World| world.apps[idx].nested_changed_at = now;
    let change = match m {
        Mutation::MoveStage { to_stage_id } => {
            let to = world
                .stage_index(&to_stage_id)
                .filter(|&s| world.stages[s as usize].job == app.job)
                .ok_or_else(|| {
                    not_applicable(format!(
                        "stage {to_stage_id:?} is not a stage of the application's job"
                    ))
                })?;
            if app.stage == Some(to) {
                return Err(not_applicable("the application is already in that stage"));
            }
            let from = app.stage.map(|s| world.stage_id(s));
            world.apps[idx].stage = Some(to);
            own(world);
            TruthChange::StageMoved {
                from_stage_id: from,
                to_stage_id: Some(to_stage_id),
            }
        }
        Mutation::Hire => set_outcome(world, idx, Some(SimOutcome::Hired), None, now)?,
        Mutation::Reject { reason } => {
            let reason = match reason {
                Some(r) => RejectionReason::Custom(r.into_boxed_str()),
                None => RejectionReason::Listed(
                    rng.weighted(&names::REJECTION_REASON_WEIGHTS).unwrap_or(0) as u8,
                ),
            };
            set_outcome(world, idx, Some(SimOutcome::Declined), Some(reason), now)?
        }
        Mutation::Revert { to_null } => {
            if !matches!(app.outcome, Some(SimOutcome::Hired | SimOutcome::Declined)) {
                return Err(not_applicable(
                    "only a HIRED or DECLINED outcome can be reverted",
                ));
            }
            let to = (!to_null).then_some(SimOutcome::Pending);
            set_outcome(world, idx, to, None, now)?
        }
        Mutation::CreateOffer { status } => {
            let n = world.next_offer;
            world.next_offer += 1;
            world.apps[idx]
                .nested_mut()
                .offers
                .push(super::world::OfferRec {
                    n,
                    status: status.clone(),
                });
            nested(world);
            TruthChange::OfferCreated {
                offer_id: world.offer_id(n),
                status,
            }
        }
        Mutation::SetOfferStatus { offer_id, status } => {
            let n = world.codec.decode(IdKind::Offer, &offer_id);
            let offer = world.apps[idx]
                .nested
                .as_deref_mut()
                .and_then(|nd| nd.offers.iter_mut().find(|o| Some(o.n) == n))
                .ok_or_else(|| {
                    not_applicable(format!("no offer {offer_id:?} on the application"))
                })?;
            if offer.status == status {
                return Err(not_applicable("the offer already has that status"));
            }
            let from = std::mem::replace(&mut offer.status, status.clone());
            nested(world);
            TruthChange::OfferStatusChanged {
                offer_id,
                from,
                to: status,
            }
        }
        Mutation::ScheduleInterview => {
            let start = now + rng.range_i64(DAY_MS, 14 * DAY_MS);
            let start = start - start.rem_euclid(15 * 60_000);
            let mut interview = world.new_interview(rng, start);
            if interview.canceled == Some(true) {
                interview.canceled = Some(false);
            }
            let change = TruthChange::InterviewScheduled {
                interview_id: world.interview_id(interview.n),
                starting_at: interview.starting_at.map(ts),
                ending_at: interview.ending_at.map(ts),
            };
            world.apps[idx].nested_mut().interviews.push(interview);
            nested(world);
            change
        }
        Mutation::Reschedule {
            interview_id,
            starting_at,
            ending_at,
        } => {
            let iv = find_interview(world, idx, &interview_id)?;
            if iv.canceled == Some(true) {
                return Err(not_applicable("a canceled interview cannot be rescheduled"));
            }
            let to_start = starting_at.map(|t| t.timestamp_millis());
            let to_end = ending_at.map(|t| t.timestamp_millis());
            if iv.starting_at == to_start && iv.ending_at == to_end {
                return Err(not_applicable("the interview already has those times"));
            }
            let from_start = std::mem::replace(&mut iv.starting_at, to_start);
            let from_end = std::mem::replace(&mut iv.ending_at, to_end);
            nested(world);
            TruthChange::InterviewRescheduled {
                interview_id,
                from_starting_at: from_start.map(ts),
                from_ending_at: from_end.map(ts),
                to_starting_at: to_start.map(ts),
                to_ending_at: to_end.map(ts),
            }
        }
        Mutation::CancelInterview { interview_id } => {
            let iv = find_interview(world, idx, &interview_id)?;
            if iv.canceled == Some(true) {
                return Err(not_applicable("the interview is already canceled"));
            }
            iv.canceled = Some(true);
            nested(world);
            TruthChange::InterviewCanceled { interview_id }
        }
        Mutation::RemoveInterview { interview_id } => {
            let was_canceled = find_interview(world, idx, &interview_id)?.canceled == Some(true);
            let n = world.codec.decode(IdKind::Interview, &interview_id);
            if let Some(nd) = world.apps[idx].nested.as_deref_mut() {
                nd.interviews.retain(|iv| Some(iv.n) != n);
            }
            nested(world);
            TruthChange::InterviewRemoved {
                interview_id,
                was_canceled,
            }
        }
        Mutation::Delete => {
            world.apps[idx].deleted_at = Some(now);
            own(world);
            TruthChange::Deleted
        }
        Mutation::Restore => {
            if app.deleted_at.is_none() {
                return Err(not_applicable("the application is not deleted"));
            }
            world.apps[idx].deleted_at = None;
            own(world);
            TruthChange::Restored
        }
        Mutation::RenameStage { name } => {
            let s = app
                .stage
                .ok_or_else(|| not_applicable("the application has no current stage"))?;
            let stage = &mut world.stages[s as usize];
            if stage.name == name {
                return Err(not_applicable("the stage already has that name"));
            }
            let from = std::mem::replace(&mut stage.name, name.clone());
            let job = stage.job;
            return Ok(Applied {
                application: None,
                change: TruthChange::StageRenamed {
                    stage_id: world.stage_id(s),
                    job_id: world.job_id(job),
                    from,
                    to: name,
                },
            });
        }
        Mutation::EditCandidate => {
            let c = &mut world.candidates[idx];
            c.edits = c.edits.wrapping_add(1);
            c.email_domain = Some(rng.index(names::EMAIL_DOMAINS.len()) as u8);
            nested(world);
            TruthChange::CandidateEdited {
                candidate_id: world.candidate_id(i),
                field: "email_addresses".into(),
            }
        }
    };
    Ok(Applied {
        application: Some(i),
        change,
    })
}

fn set_outcome(
    world: &mut World,
    idx: usize,
    to: Option<SimOutcome>,
    reason: Option<RejectionReason>,
    now: Ms,
) -> Result<TruthChange, SimError> {
    let app = &mut world.apps[idx];
    if app.outcome == to {
        return Err(not_applicable("the application already has that outcome"));
    }
    let from = app.outcome;
    app.outcome = to;
    app.rejected_at = reason.is_some().then_some(now);
    let reason_name = reason.as_ref().map(|r| r.as_str().to_owned());
    app.rejection = reason;
    app.changed_at = now;
    app.remote_updated_at = now;
    Ok(TruthChange::OutcomeChanged {
        from: from.map(SimOutcome::to_wire),
        to: to.map(SimOutcome::to_wire),
        rejection_reason_name: reason_name,
    })
}

fn find_interview<'w>(
    world: &'w mut World,
    idx: usize,
    interview_id: &str,
) -> Result<&'w mut super::world::InterviewRec, SimError> {
    let n = world.codec.decode(IdKind::Interview, interview_id);
    world.apps[idx]
        .nested
        .as_deref_mut()
        .and_then(|nd| nd.interviews.iter_mut().find(|iv| Some(iv.n) == n))
        .ok_or_else(|| not_applicable(format!("no interview {interview_id:?} on the application")))
}

/// Picks a realistic next change for application `i` given its state, weighted like a
/// hiring funnel: an open application mostly moves one stage forward, gets an interview or
/// is rejected; near the end it gets an offer, which follows DRAFT → (APPROVED) → SENT →
/// ACCEPTED | DECLINED, and an accepted offer leads to the hiring stage and HIRED. Backward
/// moves, candidate edits and stage renames are rare; a deletion is one change in a hundred
/// (`DELETION`) whatever else could happen. `None` when nothing fits.
pub fn plan(world: &World, i: u32, now: Ms, rng: &mut Rng) -> Option<Mutation> {
    let app = world.apps.get(i as usize)?;
    if app.deleted_at.is_some() {
        return Some(Mutation::Restore);
    }
    if rng.chance(DELETION) {
        return Some(Mutation::Delete);
    }
    let mut options: Vec<(u32, Mutation)> = Vec::new();
    let mut add = |w: u32, m: Mutation| options.push((w, m));
    let job = world.jobs.get(app.job as usize)?;
    let count = u32::from(job.stage_count);
    let stage_at = |p: u32| world.stage_id(job.first_stage + p);
    let position = app
        .stage
        .map(|s| u32::from(world.stages[s as usize].position));
    let hiring_stage = count.saturating_sub(1);
    let open = !matches!(app.outcome, Some(SimOutcome::Hired | SimOutcome::Declined));
    let offers = app.offers();
    let accepted = offers
        .iter()
        .any(|o| o.status == Some(OfferStatus::Accepted));
    let live_offer = offers.iter().any(|o| {
        !matches!(
            o.status,
            Some(OfferStatus::Declined | OfferStatus::Abandoned)
        )
    });

    if open {
        match position {
            None => add(
                10,
                Mutation::MoveStage {
                    to_stage_id: stage_at(0),
                },
            ),
            Some(p) => {
                if p + 1 < hiring_stage {
                    add(
                        40,
                        Mutation::MoveStage {
                            to_stage_id: stage_at(p + 1),
                        },
                    );
                }
                if p + 2 < hiring_stage {
                    add(
                        4,
                        Mutation::MoveStage {
                            to_stage_id: stage_at(p + 2),
                        },
                    );
                }
                if p > 0 && p < hiring_stage {
                    add(
                        3,
                        Mutation::MoveStage {
                            to_stage_id: stage_at(p - 1),
                        },
                    );
                }
                if accepted && p != hiring_stage {
                    add(
                        40,
                        Mutation::MoveStage {
                            to_stage_id: stage_at(hiring_stage),
                        },
                    );
                }
                if accepted && p == hiring_stage {
                    add(50, Mutation::Hire);
                }
                if p + 2 >= count && !live_offer {
                    let status = match rng.below(10) {
                        0..=6 => Some(OfferStatus::Draft),
                        7 | 8 => Some(OfferStatus::Sent),
                        _ => None,
                    };
                    add(20, Mutation::CreateOffer { status });
                }
            }
        }
        // With an offer out, the process mostly waits for the candidate's answer.
        let (reject, interview) = if live_offer { (4, 2) } else { (16, 18) };
        add(reject, Mutation::Reject { reason: None });
        add(interview, Mutation::ScheduleInterview);
    } else {
        add(
            2,
            Mutation::Revert {
                to_null: rng.chance(0.2),
            },
        );
    }
    for o in offers {
        let next: &[(u32, Option<OfferStatus>)] = match o.status {
            Some(OfferStatus::Draft) => &[
                (2, Some(OfferStatus::Approved)),
                (8, Some(OfferStatus::Sent)),
                (1, Some(OfferStatus::Abandoned)),
                (1, None),
            ],
            Some(OfferStatus::Approved) => &[(8, Some(OfferStatus::Sent)), (1, None)],
            Some(OfferStatus::Sent) => &[
                (8, Some(OfferStatus::Accepted)),
                (3, Some(OfferStatus::Declined)),
            ],
            None => &[(3, Some(OfferStatus::Sent)), (1, Some(OfferStatus::Draft))],
            _ => &[],
        };
        if open {
            for (w, status) in next {
                add(
                    *w,
                    Mutation::SetOfferStatus {
                        offer_id: world.offer_id(o.n),
                        status: status.clone(),
                    },
                );
            }
        }
    }
    for iv in app.interviews() {
        let id = world.interview_id(iv.n);
        // A closed application's interviews are only called off.
        if iv.canceled == Some(true) || !open {
            if iv.canceled != Some(true) {
                add(
                    2,
                    Mutation::CancelInterview {
                        interview_id: id.clone(),
                    },
                );
            }
            add(1, Mutation::RemoveInterview { interview_id: id });
            continue;
        }
        let shift = rng.range_i64(1, 8) * DAY_MS / 2;
        let base = iv.starting_at.unwrap_or(now);
        let len = iv
            .ending_at
            .zip(iv.starting_at)
            .map_or(3_600_000, |(e, s)| e - s);
        add(
            3,
            Mutation::Reschedule {
                interview_id: id.clone(),
                starting_at: Some(ts(base + shift)),
                ending_at: Some(ts(base + shift + len)),
            },
        );
        add(
            2,
            Mutation::CancelInterview {
                interview_id: id.clone(),
            },
        );
        add(1, Mutation::RemoveInterview { interview_id: id });
    }
    add(4, Mutation::EditCandidate);
    if let Some(s) = app.stage {
        let current = world.stages[s as usize].name.as_deref();
        let renamed = rng
            .pick(names::STAGE_RENAMES)
            .copied()
            .filter(|n| Some(*n) != current);
        if renamed.is_some() || current.is_some() {
            add(
                1,
                Mutation::RenameStage {
                    name: renamed.map(str::to_owned),
                },
            );
        }
    }
    let weights: Vec<u32> = options.iter().map(|(w, _)| *w).collect();
    let pick = rng.weighted(&weights)?;
    options.into_iter().nth(pick).map(|(_, m)| m)
}

/// Share of an application's changes that delete it: deletions are rare in an ATS.
const DELETION: f64 = 0.01;
/// Share of random changes that are a new application whatever the world's state.
const NEW_APPLICATION: f64 = 0.02;
/// When a random pick lands on a closed (hired or declined) application: the chance that
/// it changes anyway. Little happens to a closed application in an ATS.
const CLOSED_CHANGES: f64 = 0.03;
/// ... and the chance that a new application arrives instead. New applications then come
/// about as fast as others close, so the open share (and with it the mix of changes) holds
/// steady however long the simulator runs, instead of every application ending closed.
const CLOSED_MAKES_ROOM: f64 = 0.06;
/// When a random pick lands on a deleted application: the chance that it is restored.
const DELETED_RESTORED: f64 = 0.05;

/// One random change somewhere in `world`: mostly a planned change to an application
/// still in process (see [`plan`] for the weights), sometimes a new application, rarely a
/// change to a closed or deleted one.
pub fn random(world: &mut World, now: Ms, rng: &mut Rng) -> Option<Applied> {
    if world.apps.is_empty() || rng.chance(NEW_APPLICATION) {
        return create_application(world, None, now, rng).ok();
    }
    for _ in 0..20 {
        let i = rng.index(world.apps.len()) as u32;
        let app = &world.apps[i as usize];
        if app.deleted_at.is_some() {
            if !rng.chance(DELETED_RESTORED) {
                continue;
            }
        } else if matches!(app.outcome, Some(SimOutcome::Hired | SimOutcome::Declined)) {
            let roll = rng.unit();
            if roll >= CLOSED_CHANGES + CLOSED_MAKES_ROOM {
                continue;
            }
            if roll >= CLOSED_CHANGES {
                return create_application(world, None, now, rng).ok();
            }
        }
        let Some(m) = plan(world, i, now, rng) else {
            continue;
        };
        if let Ok(applied) = apply(world, i, m, now, rng) {
            return Some(applied);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ats::model::Application;
    use std::collections::{BTreeMap, BTreeSet};

    /// What the diff looks at, per application.
    #[derive(Debug, PartialEq)]
    struct Watched {
        stage: Option<String>,
        outcome: Option<Outcome>,
        offers: BTreeMap<String, Option<OfferStatus>>,
        interviews: BTreeMap<String, (Option<Timestamp>, Option<Timestamp>, bool)>,
        deleted: bool,
    }

    fn watched(a: &Application) -> Watched {
        Watched {
            stage: a.current_stage_id.clone(),
            outcome: a.outcome.clone(),
            offers: a
                .offers
                .iter()
                .flatten()
                .map(|o| (o.id.clone(), o.status.clone()))
                .collect(),
            interviews: a
                .interviews
                .iter()
                .flatten()
                .map(|i| {
                    (
                        i.id.clone(),
                        (i.starting_at, i.ending_at, i.canceled == Some(true)),
                    )
                })
                .collect(),
            deleted: a.remote_deleted_at.is_some(),
        }
    }

    /// Applies a truth entry to a snapshot: the snapshot must then equal the world.
    fn replay(w: &mut Watched, change: &TruthChange) {
        match change.clone() {
            TruthChange::StageMoved { to_stage_id, .. } => w.stage = to_stage_id,
            TruthChange::OutcomeChanged { to, .. } => w.outcome = to,
            TruthChange::OfferCreated { offer_id, status } => {
                w.offers.insert(offer_id, status);
            }
            TruthChange::OfferStatusChanged { offer_id, to, .. } => {
                w.offers.insert(offer_id, to);
            }
            TruthChange::InterviewScheduled {
                interview_id,
                starting_at,
                ending_at,
            } => {
                w.interviews
                    .insert(interview_id, (starting_at, ending_at, false));
            }
            TruthChange::InterviewRescheduled {
                interview_id,
                to_starting_at,
                to_ending_at,
                ..
            } => {
                let e = w.interviews.get_mut(&interview_id).unwrap();
                e.0 = to_starting_at;
                e.1 = to_ending_at;
            }
            TruthChange::InterviewCanceled { interview_id } => {
                w.interviews.get_mut(&interview_id).unwrap().2 = true;
            }
            TruthChange::InterviewRemoved { interview_id, .. } => {
                w.interviews.remove(&interview_id);
            }
            TruthChange::Deleted => w.deleted = true,
            TruthChange::Restored => w.deleted = false,
            TruthChange::ApplicationCreated { .. }
            | TruthChange::StageRenamed { .. }
            | TruthChange::CandidateEdited { .. } => {}
        }
    }

    fn run(seed: u64, n: usize) -> (World, World, Vec<TruthEntry>) {
        run_sized(seed, 300, n)
    }

    fn run_sized(seed: u64, apps: usize, n: usize) -> (World, World, Vec<TruthEntry>) {
        let before = World::generate(seed, 0, apps);
        let mut world = before.clone();
        let mut engine = Engine::new(
            seed,
            SimClock::starting_after(0, crate::clock::Clock::System),
        );
        let mut log = Vec::new();
        for _ in 0..n {
            let now = engine.clock.tick();
            let applied = random(&mut world, now, &mut engine.rng);
            if let Some(applied) = applied {
                log.push(engine.record(now, &world, applied));
            }
        }
        (before, world, log)
    }

    #[test]
    fn the_truth_log_explains_every_watched_change() {
        let (before, after, log) = run(11, 5_000);
        assert!(log.len() > 4_900, "{}", log.len());
        let mut kinds = BTreeSet::new();
        let mut snapshots: BTreeMap<String, Watched> = (0..before.apps.len() as u32)
            .map(|i| {
                let a = before.render(i).unwrap();
                (a.id.clone(), watched(&a))
            })
            .collect();
        for e in &log {
            let kind = serde_json::to_value(&e.change).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_owned();
            kinds.insert(kind);
            let Some(app) = &e.application_id else {
                continue;
            };
            if let TruthChange::ApplicationCreated { .. } = e.change {
                let i = after.app_index(app).unwrap();
                let a = before.render(i).map(|a| watched(&a));
                assert!(a.is_none(), "created twice");
                let created = after.render(i).unwrap();
                snapshots.insert(
                    app.clone(),
                    Watched {
                        stage: created.current_stage_id.clone(),
                        outcome: created.outcome.clone(),
                        offers: BTreeMap::new(),
                        interviews: BTreeMap::new(),
                        deleted: false,
                    },
                );
                continue;
            }
            replay(snapshots.get_mut(app).unwrap(), &e.change);
        }
        for i in 0..after.apps.len() as u32 {
            let a = after.render(i).unwrap();
            assert_eq!(snapshots[&a.id], watched(&a), "application {}", a.id);
        }
        for kind in [
            "application_created",
            "stage_moved",
            "outcome_changed",
            "offer_created",
            "offer_status_changed",
            "interview_scheduled",
            "interview_rescheduled",
            "interview_canceled",
            "interview_removed",
            "deleted",
            "restored",
            "stage_renamed",
            "candidate_edited",
        ] {
            assert!(kinds.contains(kind), "{kind} never happened: {kinds:?}");
        }
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
        assert!(
            log.windows(2).all(|w| w[0].at < w[1].at),
            "timestamps repeat"
        );
    }

    #[test]
    fn same_seed_same_changes() {
        // Timestamps come from the wall clock; everything else must reproduce.
        let shape = |log: Vec<TruthEntry>| -> Vec<(Option<String>, String)> {
            log.into_iter()
                .map(|e| {
                    let kind = serde_json::to_value(&e.change).unwrap()["kind"].to_string();
                    (e.application_id, kind)
                })
                .collect()
        };
        let (_, _, a) = run(3, 500);
        let (_, _, b) = run(3, 500);
        let (_, _, c) = run(4, 500);
        assert_eq!(shape(a.clone()), shape(b));
        assert_ne!(shape(a), shape(c));
    }

    #[test]
    fn timestamps_move_as_kombo_does() {
        let mut w = World::generate(2, 0, 50);
        let mut rng = Rng::new(1);
        let i = (0..50u32)
            .find(|&i| {
                let a = &w.apps[i as usize];
                a.deleted_at.is_none()
                    && a.stage.is_some()
                    && a.outcome == Some(SimOutcome::Pending)
            })
            .unwrap();
        let before = w.apps[i as usize].clone();
        let now = HISTORY_END + 10;
        apply(&mut w, i, Mutation::EditCandidate, now, &mut rng).unwrap();
        let a = &w.apps[i as usize];
        assert_eq!(
            a.changed_at, before.changed_at,
            "nested change moved changed_at"
        );
        assert_eq!(a.nested_changed_at, now);

        let renamed = apply(
            &mut w,
            i,
            Mutation::RenameStage {
                name: Some("Culture Chat".into()),
            },
            now + 1,
            &mut rng,
        )
        .unwrap();
        assert_eq!(renamed.application, None);
        assert_eq!(
            w.apps[i as usize].updated_at(),
            now,
            "rename moved a change time"
        );
        assert_eq!(
            w.render(i).unwrap().current_stage.unwrap().name.as_deref(),
            Some("Culture Chat")
        );

        apply(
            &mut w,
            i,
            Mutation::Reject {
                reason: Some("Too far".into()),
            },
            now + 2,
            &mut rng,
        )
        .unwrap();
        let wire = w.render(i).unwrap();
        assert_eq!(wire.outcome, Some(Outcome::Declined));
        assert_eq!(wire.rejection_reason_name.as_deref(), Some("Too far"));
        assert_eq!(wire.rejected_at, Some(ts(now + 2)));
        assert_eq!(wire.changed_at, ts(now + 2));
        assert_eq!(wire.remote_updated_at, Some(ts(now + 2)));

        apply(&mut w, i, Mutation::Delete, now + 3, &mut rng).unwrap();
        let err = apply(&mut w, i, Mutation::Hire, now + 4, &mut rng).unwrap_err();
        assert!(matches!(err, SimError::Deleted(_)));
        apply(&mut w, i, Mutation::Restore, now + 5, &mut rng).unwrap();
        let wire = w.render(i).unwrap();
        assert_eq!(wire.remote_deleted_at, None);
        assert_eq!(wire.changed_at, ts(now + 5));
    }

    #[test]
    fn preconditions_are_checked() {
        let mut w = World::generate(2, 0, 50);
        let mut rng = Rng::new(1);
        let i = (0..50u32)
            .find(|&i| {
                let a = &w.apps[i as usize];
                a.deleted_at.is_none() && a.outcome == Some(SimOutcome::Pending)
            })
            .unwrap();
        let other_job_stage = (0..w.stages.len() as u32)
            .find(|&s| w.stages[s as usize].job != w.apps[i as usize].job)
            .unwrap();
        let cases = [
            Mutation::MoveStage {
                to_stage_id: w.stage_id(other_job_stage),
            },
            Mutation::MoveStage {
                to_stage_id: "nope".into(),
            },
            Mutation::Revert { to_null: false },
            Mutation::Restore,
            Mutation::SetOfferStatus {
                offer_id: "nope".into(),
                status: None,
            },
            Mutation::CancelInterview {
                interview_id: "nope".into(),
            },
        ];
        for m in cases {
            let err = apply(&mut w, i, m.clone(), 1, &mut rng).unwrap_err();
            assert!(matches!(err, SimError::NotApplicable(_)), "{m:?}: {err}");
        }
        assert!(matches!(
            apply(&mut w, 10_000, Mutation::Hire, 1, &mut rng),
            Err(SimError::UnknownApplication(_))
        ));
    }

    /// The funnel step a change stands for: its truth kind, outcome changes split by
    /// where they lead, and a rejection whose reason is the candidate's own a withdrawal.
    fn step(change: &TruthChange) -> &'static str {
        match change {
            TruthChange::ApplicationCreated { .. } => "created",
            TruthChange::StageMoved { .. } => "stage_moved",
            TruthChange::OutcomeChanged {
                to: Some(Outcome::Hired),
                ..
            } => "hired",
            TruthChange::OutcomeChanged {
                to: Some(Outcome::Declined),
                rejection_reason_name,
                ..
            } => match rejection_reason_name.as_deref() {
                Some(r) if names::WITHDRAWAL_REASONS.contains(&r) => "withdrawn",
                _ => "rejected",
            },
            TruthChange::OutcomeChanged { .. } => "reverted",
            TruthChange::OfferCreated { .. } => "offer_created",
            TruthChange::OfferStatusChanged { .. } => "offer_status_changed",
            TruthChange::InterviewScheduled { .. } => "interview_scheduled",
            TruthChange::InterviewRescheduled { .. } => "interview_rescheduled",
            TruthChange::InterviewCanceled { .. } => "interview_canceled",
            TruthChange::InterviewRemoved { .. } => "interview_removed",
            TruthChange::Deleted => "deleted",
            TruthChange::Restored => "restored",
            TruthChange::StageRenamed { .. } => "stage_renamed",
            TruthChange::CandidateEdited { .. } => "candidate_edited",
        }
    }

    /// Every funnel step [`step`] knows: one per kind of mutation, plus new applications.
    const STEPS: [&str; 16] = [
        "created",
        "stage_moved",
        "hired",
        "rejected",
        "withdrawn",
        "reverted",
        "offer_created",
        "offer_status_changed",
        "interview_scheduled",
        "interview_rescheduled",
        "interview_canceled",
        "interview_removed",
        "deleted",
        "restored",
        "stage_renamed",
        "candidate_edited",
    ];

    /// Random changes are weighted like a hiring funnel, and keep that shape as the world
    /// evolves (the last 2 000 draws too: applications keep arriving as others close).
    /// Measured with seed 7, 1 000 applications, 10 000 draws: stage moves 32.7%, interviews
    /// scheduled 15.1%, rejected 13.1%, new applications 12.8%, candidate edits 7.2%, offer
    /// status changes 3.2%, interviews rescheduled 3.0%, canceled 2.8%, offers created
    /// 2.8%, stage renames 1.9%, interviews removed 1.8%, reverts 1.0%, withdrawals 0.9%,
    /// deletions 0.8%, hires 0.6%, restores 0.3%.
    #[test]
    fn random_changes_look_like_a_hiring_funnel() {
        let (_, _, log) = run_sized(7, 1_000, 10_000);
        assert!(log.len() > 9_900, "{}", log.len());
        const INTERVIEWS: [&str; 4] = [
            "interview_scheduled",
            "interview_rescheduled",
            "interview_canceled",
            "interview_removed",
        ];
        // (what, steps, at least, at most), as shares of all changes.
        let bounds: [(&str, &[&str], f64, f64); 9] = [
            (
                "stage moves, interviews and rejections",
                &[
                    "stage_moved",
                    INTERVIEWS[0],
                    INTERVIEWS[1],
                    INTERVIEWS[2],
                    INTERVIEWS[3],
                    "rejected",
                    "withdrawn",
                ],
                0.5,
                1.0,
            ),
            ("stage moves", &["stage_moved"], 0.25, 0.5),
            ("interviews", &INTERVIEWS, 0.12, 0.35),
            ("rejections", &["rejected"], 0.08, 0.2),
            (
                "offers",
                &["offer_created", "offer_status_changed"],
                0.02,
                0.12,
            ),
            ("hires", &["hired"], 0.0, 0.02),
            ("withdrawals", &["withdrawn"], 0.0, 0.02),
            ("deletions", &["deleted"], 0.0, 0.03),
            ("restores", &["restored"], 0.0, 0.01),
        ];
        for (part, changes) in [("all", &log[..]), ("last 2000", &log[log.len() - 2_000..])] {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for e in changes {
                *counts.entry(step(&e.change)).or_default() += 1;
            }
            let share = |steps: &[&str]| {
                let n: usize = steps.iter().filter_map(|s| counts.get(s)).sum();
                n as f64 / changes.len() as f64
            };
            let mut mix: Vec<(&str, usize)> = counts.iter().map(|(k, n)| (*k, *n)).collect();
            mix.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
            println!("{part}: {mix:?}");
            for (what, steps, least, most) in bounds {
                let got = share(steps);
                assert!(
                    (least..=most).contains(&got),
                    "{part}: {what} are {:.1}% of changes, want {:.0}%..={:.0}%: {mix:?}",
                    got * 100.0,
                    least * 100.0,
                    most * 100.0
                );
            }
            if part == "all" {
                for step in STEPS {
                    assert!(counts.contains_key(step), "{step} never happened: {mix:?}");
                }
            }
        }
    }

    const HISTORY_END: Ms = super::super::world::HISTORY_END_MS;
}
