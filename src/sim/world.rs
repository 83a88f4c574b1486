//! One integration's world: jobs with their stage pipelines, candidates and applications,
//! generated from a seed, stored compactly, rendered to Kombo's wire shape on demand.
//!
//! Records are small structs of integer indices into shared tables ([`super::names`] for
//! words, [`World::jobs`] and [`World::stages`] for jobs and stages). Ids, remote ids,
//! emails, phone numbers, screening answers and custom fields are *derived* from a record's
//! position and the world's key when a page is rendered, so they cost no memory. A million
//! applications take well under 200 MB and generate in linear time.
//!
//! Each application has its own candidate (candidate `i` belongs to application `i`).
//!
//! Deleted applications keep their fields: Kombo nulls a record 14 days after deletion,
//! the simulator does not (the diff must never rely on a deleted record's fields anyway).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::ids::{IdCodec, IdKind};
use super::names;
use super::rng::{Rng, mix64};
use crate::ats::model::{
    Answer, Application, Candidate, EmailAddress, IntegrationField, IntegrationFieldType,
    Interview, Job, Location, Offer, OfferStatus, Outcome, PhoneNumber, ScreeningQuestion,
    ScreeningQuestionAnswer, SocialMedia, Stage, StageStatus, Tag, Timestamp,
};

/// Milliseconds since the Unix epoch, UTC: the simulator's time unit.
pub type Ms = i64;

/// Every generated timestamp lies at or before this instant (2025-06-01T00:00:00Z): a
/// fixed anchor, so the same seed yields the same world whatever the wall clock says.
pub const HISTORY_END_MS: Ms = 1_748_736_000_000;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;
/// Generated applications were created within this many days before [`HISTORY_END_MS`].
const HISTORY_DAYS: i64 = 730;

/// Kombo's outcome, one byte wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SimOutcome {
    Pending,
    Hired,
    Declined,
}

impl SimOutcome {
    /// The wire value.
    pub fn to_wire(self) -> Outcome {
        match self {
            SimOutcome::Pending => Outcome::Pending,
            SimOutcome::Hired => Outcome::Hired,
            SimOutcome::Declined => Outcome::Declined,
        }
    }

    /// Parses a wire string (`PENDING`, `HIRED`, `DECLINED`); anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PENDING" => Some(SimOutcome::Pending),
            "HIRED" => Some(SimOutcome::Hired),
            "DECLINED" => Some(SimOutcome::Declined),
            _ => None,
        }
    }
}

/// Why an application was rejected: usually a listed reason, any text when a test says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectionReason {
    /// Index into [`names::REJECTION_REASONS`].
    Listed(u8),
    /// Free text given to a targeted mutation.
    Custom(Box<str>),
}

impl RejectionReason {
    pub fn as_str(&self) -> &str {
        match self {
            RejectionReason::Listed(i) => names::REJECTION_REASONS
                .get(usize::from(*i))
                .copied()
                .unwrap_or("Other"),
            RejectionReason::Custom(s) => s,
        }
    }
}

/// How an ATS writes its remote ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RemoteStyle {
    /// Plain integers (Greenhouse, Teamtailor, ...).
    Numeric,
    /// UUIDs (Lever, Ashby).
    Uuid,
    /// Prefixed references, composite for applications (Workday).
    Reference,
}

/// A job: a title and its own stage pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRec {
    /// Index into [`names::JOB_TITLES`].
    pub title: u16,
    /// Position of the job's first stage in [`World::stages`]; its stages are contiguous.
    pub first_stage: u32,
    /// Number of stages; the last one is the hiring stage.
    pub stage_count: u8,
}

/// A job-specific stage. Its name can change (a rename) without touching applications.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRec {
    /// The job the stage belongs to.
    pub job: u32,
    /// 0-based position in the job's pipeline (what "forward" means).
    pub position: u8,
    /// Shown as `current_stage.name`; some ATSs give none.
    pub name: Option<String>,
    /// Shown as `current_stage.index`; some ATSs give none.
    pub index: Option<i64>,
    /// Shown as `current_stage.status` where the ATS has it (`true` = ACTIVE).
    pub active: Option<bool>,
}

/// A candidate, as indices into the word lists.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRec {
    /// Index into [`names::FIRST_NAMES`].
    pub first: u16,
    /// Index into [`names::LAST_NAMES`].
    pub last: u16,
    /// Index into [`names::SOURCES`]; `None` when the ATS does not know.
    pub source: Option<u8>,
    /// Bit `b` set = tag [`names::TAGS`]`[b]`.
    pub tags: u8,
    /// Index into [`names::EMAIL_DOMAINS`]; `None` = the candidate left no email.
    pub email_domain: Option<u8>,
    /// Index into [`names::EMAIL_KINDS`].
    pub email_kind: u8,
    /// Number of edits so far: part of the rendered email, so an edit is visible.
    pub edits: u16,
}

/// An interview of one application.
#[derive(Debug, Clone, PartialEq)]
pub struct InterviewRec {
    /// Position for [`IdKind::Interview`] ids (a per-world counter).
    pub n: u32,
    /// Index into [`names::INTERVIEW_TITLES`].
    pub title: u8,
    pub starting_at: Option<Ms>,
    pub ending_at: Option<Ms>,
    /// `None` = the ATS omits the field.
    pub canceled: Option<bool>,
    /// Index into [`names::LOCATIONS`]; `None` = no location (a video call).
    pub location: Option<u8>,
}

/// An offer of one application.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRec {
    /// Position for [`IdKind::Offer`] ids (a per-world counter).
    pub n: u32,
    pub status: Option<OfferStatus>,
}

/// The nested lists of an application, boxed because most applications have none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Nested {
    pub interviews: Vec<InterviewRec>,
    pub offers: Vec<OfferRec>,
}

/// One application, compact. Candidate `i` belongs to application `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRec {
    /// Index into [`World::jobs`].
    pub job: u32,
    /// Index into [`World::stages`]; always a stage of `job`.
    pub stage: Option<u32>,
    pub outcome: Option<SimOutcome>,
    /// Set while the outcome is DECLINED.
    pub rejection: Option<RejectionReason>,
    /// `remote_created_at`.
    pub created_at: Ms,
    /// Kombo's `changed_at`: the record's own fields changed.
    pub changed_at: Ms,
    /// The ATS's own update time; moves with `changed_at`.
    pub remote_updated_at: Ms,
    /// Last change of nested data (interviews, offers, candidate). Not on the wire, but
    /// `updated_after` matches on it, as Kombo does.
    pub nested_changed_at: Ms,
    pub rejected_at: Option<Ms>,
    /// `remote_deleted_at`: set while deleted.
    pub deleted_at: Option<Ms>,
    /// Interviews and offers; `None` while there are none (saves memory).
    pub nested: Option<Box<Nested>>,
}

impl AppRec {
    pub fn interviews(&self) -> &[InterviewRec] {
        self.nested.as_deref().map_or(&[], |n| &n.interviews)
    }

    pub fn offers(&self) -> &[OfferRec] {
        self.nested.as_deref().map_or(&[], |n| &n.offers)
    }

    /// The nested lists, created on first use.
    pub fn nested_mut(&mut self) -> &mut Nested {
        self.nested.get_or_insert_with(Box::default)
    }

    /// The latest change time `updated_after` looks at.
    pub fn updated_at(&self) -> Ms {
        self.changed_at.max(self.nested_changed_at)
    }
}

/// One integration's data.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    /// `tool:<kombo id>`, e.g. `greenhouse:CBNMt7dSNCzBdnRTx87dev4E`.
    pub id: String,
    /// The ATS this world imitates (shapes remote ids and URLs).
    pub tool: &'static str,
    /// Encodes and decodes this world's ids.
    pub codec: IdCodec,
    /// Per-world key for derived values (phones, answers).
    key: u64,
    remote_style: RemoteStyle,
    pub jobs: Vec<JobRec>,
    pub stages: Vec<StageRec>,
    /// Parallel to `apps`.
    pub candidates: Vec<CandidateRec>,
    /// In creation order: the stable order of listings.
    pub apps: Vec<AppRec>,
    /// Next interview id position.
    pub next_interview: u32,
    /// Next offer id position.
    pub next_offer: u32,
}

/// The key of integration `index`'s world for `seed`.
fn world_key(seed: u64, index: usize) -> u64 {
    mix64(seed ^ mix64(index as u64 + 1))
}

/// The id of integration `index` for `seed`, e.g. `lever:8mXq…`.
pub fn integration_id(seed: u64, index: usize) -> String {
    let tool = names::TOOLS[index % names::TOOLS.len()];
    let codec = IdCodec::new(mix64(seed ^ 0x1D_1D_1D));
    format!("{tool}:{}", codec.encode(IdKind::Integration, index as u32))
}

/// Converts milliseconds to a wire timestamp (out-of-range values clamp to the epoch).
pub fn ts(ms: Ms) -> Timestamp {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

impl World {
    /// Generates integration `index`'s world with `applications` applications. Same
    /// arguments, same world.
    pub fn generate(seed: u64, index: usize, applications: usize) -> World {
        let key = world_key(seed, index);
        let tool = names::TOOLS[index % names::TOOLS.len()];
        let remote_style = match tool {
            "lever" | "ashby" => RemoteStyle::Uuid,
            "workday" | "smartrecruiters" => RemoteStyle::Reference,
            _ => RemoteStyle::Numeric,
        };
        let mut rng = Rng::new(key);
        let mut world = World {
            id: integration_id(seed, index),
            tool,
            codec: IdCodec::new(key),
            key,
            remote_style,
            jobs: Vec::new(),
            stages: Vec::new(),
            candidates: Vec::with_capacity(applications),
            apps: Vec::with_capacity(applications),
            next_interview: 0,
            next_offer: 0,
        };
        let job_count = (applications / 150).clamp(3, 20_000);
        for _ in 0..job_count {
            world.add_job(&mut rng);
        }
        for _ in 0..applications {
            let job = rng.index(world.jobs.len()) as u32;
            let created = HISTORY_END_MS - rng.range_i64(DAY_MS, HISTORY_DAYS * DAY_MS);
            world.add_application(&mut rng, job, created, HISTORY_END_MS, true);
        }
        world
    }

    fn add_job(&mut self, rng: &mut Rng) {
        let job = self.jobs.len() as u32;
        let template = *rng
            .pick(names::STAGE_TEMPLATES)
            .unwrap_or(&names::STAGE_TEMPLATES[0]);
        // Some ATSs do not expose the stage order; a few stages come without a name.
        let indexed = !rng.chance(0.08);
        let has_status = self.tool != "lever";
        let first_stage = self.stages.len() as u32;
        for (position, name) in template.iter().enumerate() {
            self.stages.push(StageRec {
                job,
                position: position as u8,
                name: (!rng.chance(0.03)).then(|| (*name).to_owned()),
                index: indexed.then_some(position as i64),
                active: has_status.then_some(true),
            });
        }
        self.jobs.push(JobRec {
            title: rng.index(names::JOB_TITLES.len()) as u16,
            first_stage,
            stage_count: template.len() as u8,
        });
    }

    /// Adds an application (and its candidate) created at `created`, with history up to
    /// `horizon`. `history` gives it a realistic past (stage, outcome, interviews, offers);
    /// without it the application is brand new at its first stage.
    pub fn add_application(
        &mut self,
        rng: &mut Rng,
        job: u32,
        created: Ms,
        horizon: Ms,
        history: bool,
    ) -> u32 {
        let index = self.apps.len() as u32;
        self.candidates.push(CandidateRec {
            first: rng.index(names::FIRST_NAMES.len()) as u16,
            last: rng.index(names::LAST_NAMES.len()) as u16,
            source: (!rng.chance(0.1)).then(|| rng.index(names::SOURCES.len()) as u8),
            tags: if rng.chance(0.3) {
                (rng.next_u64() as u8) & ((1u8 << names::TAGS.len()) - 1)
            } else {
                0
            },
            email_domain: (!rng.chance(0.02)).then(|| rng.index(names::EMAIL_DOMAINS.len()) as u8),
            email_kind: rng.index(names::EMAIL_KINDS.len()) as u8,
            edits: 0,
        });
        let Some(job_rec) = self.jobs.get(job as usize).cloned() else {
            // Callers pass an existing job; an empty app keeps the tables parallel anyway.
            self.apps.push(AppRec::new(job, None, created));
            return index;
        };
        let count = u32::from(job_rec.stage_count);
        if !history {
            let mut app = AppRec::new(job, Some(job_rec.first_stage), created);
            app.outcome = Some(SimOutcome::Pending);
            self.apps.push(app);
            return index;
        }

        const POSITION_WEIGHTS: [u32; 8] = [30, 22, 16, 12, 8, 6, 6, 4];
        let weights = &POSITION_WEIGHTS[..count.min(8) as usize];
        let position = rng.weighted(weights).unwrap_or(0) as u32;
        let last = count.saturating_sub(1);
        let stage = (!rng.chance(0.005)).then_some(job_rec.first_stage + position);
        let span = (horizon - created).max(1);
        let changed = created + rng.range_i64(0, span.min(60 * DAY_MS));
        let mut app = AppRec::new(job, stage, created);
        app.changed_at = changed;
        app.remote_updated_at = changed;
        app.nested_changed_at = changed;
        app.outcome = if stage.is_some() && position == last {
            Some(SimOutcome::Hired)
        } else if rng.chance(0.25) {
            app.rejection = Some(RejectionReason::Listed(
                rng.index(names::REJECTION_REASONS.len()) as u8,
            ));
            app.rejected_at = Some(changed);
            Some(SimOutcome::Declined)
        } else if rng.chance(0.03) {
            None
        } else {
            Some(SimOutcome::Pending)
        };

        let interview_count = if position >= 2 && rng.chance(0.8) {
            rng.range_i64(1, i64::from(position.min(3)) + 1) as u32
        } else {
            0
        };
        for i in 0..interview_count {
            let start = created + (i64::from(i) + 1) * rng.range_i64(2 * DAY_MS, 10 * DAY_MS);
            let interview = self.new_interview(rng, start);
            app.nested_mut().interviews.push(interview);
        }
        if stage.is_some() && position + 2 >= count && count >= 2 {
            let status = match app.outcome {
                Some(SimOutcome::Hired) => Some(OfferStatus::Accepted),
                Some(SimOutcome::Declined) => Some(if rng.chance(0.5) {
                    OfferStatus::Declined
                } else {
                    OfferStatus::Abandoned
                }),
                _ => match rng.below(10) {
                    0..=3 => Some(OfferStatus::Draft),
                    4..=7 => Some(OfferStatus::Sent),
                    8 => Some(OfferStatus::Approved),
                    _ => None,
                },
            };
            let offer = OfferRec {
                n: self.next_offer,
                status,
            };
            self.next_offer += 1;
            app.nested_mut().offers.push(offer);
        }
        if rng.chance(0.01) {
            let deleted = (changed + rng.range_i64(0, 30 * DAY_MS)).min(horizon);
            app.deleted_at = Some(deleted);
            app.changed_at = deleted;
            app.remote_updated_at = deleted;
        }
        self.apps.push(app);
        index
    }

    /// A fresh interview starting at `start` (sometimes unknown), with a position counter.
    pub fn new_interview(&mut self, rng: &mut Rng, start: Ms) -> InterviewRec {
        let n = self.next_interview;
        self.next_interview += 1;
        let start = (!rng.chance(0.03)).then_some(start);
        let duration = rng.range_i64(2, 7) * 15 * MINUTE_MS;
        InterviewRec {
            n,
            title: rng.index(names::INTERVIEW_TITLES.len()) as u8,
            starting_at: start,
            ending_at: start.map(|s| s + duration),
            canceled: match rng.below(10) {
                0 => Some(true),
                1..=3 => None,
                _ => Some(false),
            },
            location: rng
                .chance(0.6)
                .then(|| rng.index(names::LOCATIONS.len()) as u8),
        }
    }

    // ----- ids -----

    pub fn app_id(&self, i: u32) -> String {
        self.codec.encode(IdKind::Application, i)
    }

    pub fn job_id(&self, j: u32) -> String {
        self.codec.encode(IdKind::Job, j)
    }

    pub fn stage_id(&self, s: u32) -> String {
        self.codec.encode(IdKind::Stage, s)
    }

    pub fn candidate_id(&self, c: u32) -> String {
        self.codec.encode(IdKind::Candidate, c)
    }

    pub fn interview_id(&self, n: u32) -> String {
        self.codec.encode(IdKind::Interview, n)
    }

    pub fn offer_id(&self, n: u32) -> String {
        self.codec.encode(IdKind::Offer, n)
    }

    /// The application with Kombo id `id`, if it exists in this world.
    pub fn app_index(&self, id: &str) -> Option<u32> {
        self.codec
            .decode(IdKind::Application, id)
            .filter(|&i| (i as usize) < self.apps.len())
    }

    pub fn job_index(&self, id: &str) -> Option<u32> {
        self.codec
            .decode(IdKind::Job, id)
            .filter(|&i| (i as usize) < self.jobs.len())
    }

    pub fn stage_index(&self, id: &str) -> Option<u32> {
        self.codec
            .decode(IdKind::Stage, id)
            .filter(|&i| (i as usize) < self.stages.len())
    }

    /// The ATS's id of record `n` of `kind`, in this ATS's style.
    fn remote_id(&self, kind: IdKind, n: u32) -> String {
        match self.remote_style {
            RemoteStyle::Numeric => {
                let base: u64 = match kind {
                    IdKind::Job => 4_000_000,
                    IdKind::Stage => 7_000_000,
                    IdKind::Candidate => 50_000_000,
                    IdKind::Application => 90_000_000,
                    _ => 1_000,
                };
                (base + u64::from(n)).to_string()
            }
            RemoteStyle::Uuid => {
                let a = mix64(self.key ^ ((kind as u64) << 40) ^ u64::from(n));
                let b = mix64(a);
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xfff,
                    0x8000 | ((b >> 48) & 0x3fff),
                    b & 0xffff_ffff_ffff
                )
            }
            RemoteStyle::Reference => match kind {
                IdKind::Job => format!("JR-{:05}", n + 1),
                IdKind::Stage => format!("STG_{}", n + 1),
                IdKind::Candidate => format!("C{:07}", n + 1),
                IdKind::Application => {
                    // Composite, as some ATSs' application ids are.
                    let job = self.apps.get(n as usize).map_or(0, |a| a.job);
                    format!("C{:07}|JR-{:05}", n + 1, job + 1)
                }
                _ => format!("REF-{}", n + 1),
            },
        }
    }

    pub fn app_remote_id(&self, i: u32) -> String {
        self.remote_id(IdKind::Application, i)
    }

    pub fn job_remote_id(&self, j: u32) -> String {
        self.remote_id(IdKind::Job, j)
    }

    // ----- rendering -----

    /// The wire view of stage `s`.
    pub fn render_stage(&self, s: u32) -> Option<Stage> {
        let stage = self.stages.get(s as usize)?;
        Some(Stage {
            id: self.stage_id(s),
            remote_id: Some(self.remote_id(IdKind::Stage, s)),
            name: stage.name.clone(),
            status: stage.active.map(|a| {
                if a {
                    StageStatus::Active
                } else {
                    StageStatus::Inactive
                }
            }),
            custom_fields: None,
            index: stage.index,
        })
    }

    /// The wire view of application `i`, built from the compact records.
    pub fn render(&self, i: u32) -> Option<Application> {
        let app = self.apps.get(i as usize)?;
        let job = self.jobs.get(app.job as usize);
        let h = mix64(self.key ^ 0xA5A5 ^ u64::from(i));
        let remote_id = self.app_remote_id(i);
        let candidate = self.render_candidate(i);
        Some(Application {
            id: self.app_id(i),
            remote_url: Some(self.remote_url(i, &remote_id)),
            remote_id: Some(remote_id),
            outcome: app.outcome.map(SimOutcome::to_wire),
            rejection_reason_name: app.rejection.as_ref().map(|r| r.as_str().to_owned()),
            rejected_at: app.rejected_at.map(ts),
            current_stage_id: app.stage.map(|s| self.stage_id(s)),
            job_id: job.map(|_| self.job_id(app.job)),
            candidate_id: candidate.as_ref().map(|c| c.id.clone()),
            custom_fields: self.custom_fields(app.job, h),
            changed_at: ts(app.changed_at),
            remote_deleted_at: app.deleted_at.map(ts),
            remote_created_at: Some(ts(app.created_at)),
            remote_updated_at: Some(ts(app.remote_updated_at)),
            integration_fields: self.integration_fields(h),
            remote_data: None,
            candidate,
            current_stage: app.stage.and_then(|s| self.render_stage(s)),
            job: job.map(|j| Job {
                id: self.job_id(app.job),
                remote_id: Some(self.job_remote_id(app.job)),
                name: names::JOB_TITLES
                    .get(usize::from(j.title))
                    .map(|t| (*t).to_owned()),
            }),
            interviews: Some(
                app.interviews()
                    .iter()
                    .map(|iv| self.render_interview(iv))
                    .collect(),
            ),
            offers: Some(
                app.offers()
                    .iter()
                    .map(|o| Offer {
                        id: self.offer_id(o.n),
                        remote_id: Some((1000 + o.n).to_string()),
                        status: o.status.clone(),
                    })
                    .collect(),
            ),
            screening_question_answers: self.screening_answers(h),
        })
    }

    fn remote_url(&self, i: u32, remote_id: &str) -> String {
        let cand = self.remote_id(IdKind::Candidate, i);
        match self.tool {
            "greenhouse" => {
                format!("https://app.greenhouse.io/people/{cand}?application_id={remote_id}")
            }
            "lever" => format!("https://hire.lever.co/candidates/{cand}"),
            "workday" => format!("https://wd3.myworkday.com/acme/d/inst/{remote_id}.htmld"),
            tool => format!("https://{tool}.example.com/applications/{remote_id}"),
        }
    }

    fn render_candidate(&self, i: u32) -> Option<Candidate> {
        let c = self.candidates.get(i as usize)?;
        let first = names::FIRST_NAMES.get(usize::from(c.first)).copied();
        let last = names::LAST_NAMES.get(usize::from(c.last)).copied();
        let h = mix64(self.key ^ 0xC0FFEE ^ u64::from(i));
        let email_addresses = c.email_domain.map(|d| {
            let mut local = String::new();
            for part in [first.unwrap_or("x"), ".", last.unwrap_or("x")] {
                local.extend(
                    part.chars()
                        .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '.')
                        .map(|ch| ch.to_ascii_lowercase()),
                );
            }
            if c.edits > 0 {
                local.push_str(&c.edits.to_string());
            }
            let domain = names::EMAIL_DOMAINS
                .get(usize::from(d))
                .copied()
                .unwrap_or("example.com");
            vec![EmailAddress {
                email_address: Some(format!("{local}{}@{domain}", i % 1000)),
                kind: names::EMAIL_KINDS
                    .get(usize::from(c.email_kind))
                    .copied()
                    .flatten()
                    .map(str::to_owned),
            }]
        });
        let phone_numbers = (!h.is_multiple_of(5)).then(|| {
            vec![PhoneNumber {
                phone_number: format!("+49 30 {:07}", (h >> 8) % 10_000_000),
                kind: names::PHONE_KINDS[((h >> 40) % names::PHONE_KINDS.len() as u64) as usize]
                    .map(str::to_owned),
            }]
        });
        let social_media = h.is_multiple_of(7).then(|| {
            let handle = format!(
                "{}-{}",
                first.unwrap_or("x").to_lowercase(),
                (h >> 20) % 10_000
            );
            vec![SocialMedia {
                link: Some(format!("https://www.linkedin.com/in/{handle}")),
                kind: Some("LINKEDIN".to_owned()),
                username: Some(handle),
            }]
        });
        let tags = (0..names::TAGS.len())
            .filter(|b| c.tags & (1 << b) != 0)
            .map(|b| Tag {
                id: self.codec.encode(IdKind::Tag, b as u32),
                remote_id: Some((b + 1).to_string()),
                name: Some(names::TAGS[b].to_owned()),
            })
            .collect();
        let remote_id = self.remote_id(IdKind::Candidate, i);
        Some(Candidate {
            id: self.candidate_id(i),
            remote_url: Some(format!(
                "https://{}.example.com/candidates/{remote_id}",
                self.tool
            )),
            remote_id: Some(remote_id),
            first_name: first.map(str::to_owned),
            last_name: last.map(str::to_owned),
            source: c
                .source
                .and_then(|s| names::SOURCES.get(usize::from(s)))
                .map(|s| (*s).to_owned()),
            tags,
            email_addresses,
            phone_numbers,
            social_media,
        })
    }

    fn render_interview(&self, iv: &InterviewRec) -> Interview {
        Interview {
            id: self.interview_id(iv.n),
            remote_id: Some(format!("iv-{}", iv.n + 1)),
            title: names::INTERVIEW_TITLES
                .get(usize::from(iv.title))
                .map(|t| (*t).to_owned()),
            starting_at: iv.starting_at.map(ts),
            ending_at: iv.ending_at.map(ts),
            canceled: iv.canceled,
            location: iv.location.and_then(|l| {
                let (city, country, state, street, zip) =
                    names::LOCATIONS.get(usize::from(l)).copied()?;
                Some(Location {
                    city: Some(city.to_owned()),
                    country: Some(country.to_owned()),
                    raw: Some(format!("{street}, {zip} {city}")),
                    state: Some(state.to_owned()),
                    street_1: Some(street.to_owned()),
                    street_2: None,
                    zip_code: Some(zip.to_owned()),
                })
            }),
        }
    }

    fn custom_fields(&self, job: u32, h: u64) -> Option<Map<String, Value>> {
        match h % 10 {
            0 => None,
            1 | 2 => Some(Map::new()),
            _ => {
                let mut m = Map::new();
                m.insert(
                    "requisition_id".into(),
                    Value::String(format!("REQ-{}", job + 100)),
                );
                m.insert(
                    "referral_bonus_eligible".into(),
                    Value::Bool((h >> 8).is_multiple_of(2)),
                );
                m.insert("salary_band".into(), Value::from((h >> 12) % 6 + 1));
                Some(m)
            }
        }
    }

    fn integration_fields(&self, h: u64) -> Option<Vec<IntegrationField>> {
        match self.tool {
            "greenhouse" => Some(vec![IntegrationField {
                id: self.codec.encode(IdKind::IntegrationField, 0),
                key: "prospect".into(),
                kind: IntegrationFieldType::Default,
                value: Some(Value::Bool((h >> 3).is_multiple_of(9))),
                label: Some("Prospect".into()),
            }]),
            "lever" => Some(Vec::new()),
            _ => None,
        }
    }

    /// 0..=3 answers derived from `h`, covering every answer type across records.
    fn screening_answers(&self, h: u64) -> Option<Vec<ScreeningQuestionAnswer>> {
        if self.tool == "workday" {
            return None;
        }
        let count = (h >> 16) % 4;
        let first = (h >> 24) as usize;
        let answers = (0..count as usize)
            .map(|k| {
                let q = (first + k * 3) % names::QUESTIONS.len();
                let (title, kind) = names::QUESTIONS[q];
                let v = mix64(h ^ q as u64);
                let answer = match kind {
                    "SINGLE_SELECT" => Answer::SingleSelect {
                        choice: Some(pick(names::LANGUAGES, v).to_owned()),
                    },
                    "BOOLEAN" => Answer::Boolean {
                        checked: Some(v.is_multiple_of(3)),
                    },
                    "NUMBER" => Answer::Number {
                        number: Some((v % 20) as f64),
                    },
                    "DATE" => Answer::Date {
                        date: Some(
                            ts(HISTORY_END_MS + (v % 120) as i64 * DAY_MS)
                                .format("%Y-%m-%dT00:00:00.000Z")
                                .to_string(),
                        ),
                    },
                    "TEXT" => Answer::Text {
                        content: Some(pick(names::MOTIVATIONS, v).to_owned()),
                    },
                    "MULTI_SELECT" => Answer::MultiSelect {
                        choices: Some(
                            names::LOCATIONS
                                .iter()
                                .enumerate()
                                .filter(|(b, _)| (v >> b) & 1 == 1)
                                .map(|(_, l)| l.0.to_owned())
                                .collect(),
                        ),
                    },
                    _ => Answer::Unknown {
                        kind: "UNKNOWN".into(),
                        raw: Some(serde_json::json!({ "url": "https://portfolio.example.com" })),
                    },
                };
                ScreeningQuestionAnswer {
                    question: ScreeningQuestion {
                        remote_id: Some(format!("q-{}", q + 1)),
                        title: title.to_owned(),
                    },
                    answer,
                }
            })
            .collect();
        Some(answers)
    }
}

fn pick<'a>(items: &[&'a str], v: u64) -> &'a str {
    items
        .get((v % items.len().max(1) as u64) as usize)
        .copied()
        .unwrap_or("")
}

impl AppRec {
    fn new(job: u32, stage: Option<u32>, created: Ms) -> AppRec {
        AppRec {
            job,
            stage,
            outcome: None,
            rejection: None,
            created_at: created,
            changed_at: created,
            remote_updated_at: created,
            nested_changed_at: created,
            rejected_at: None,
            deleted_at: None,
            nested: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialize_all(w: &World) -> String {
        let apps: Vec<Application> = (0..w.apps.len() as u32)
            .filter_map(|i| w.render(i))
            .collect();
        serde_json::to_string(&apps).unwrap()
    }

    #[test]
    fn same_seed_same_world_byte_for_byte() {
        let a = World::generate(9, 0, 500);
        let b = World::generate(9, 0, 500);
        assert_eq!(a, b);
        assert_eq!(serialize_all(&a), serialize_all(&b));
        let c = World::generate(10, 0, 500);
        assert_ne!(serialize_all(&a), serialize_all(&c));
        let d = World::generate(9, 1, 500);
        assert_ne!(a.id, d.id);
    }

    #[test]
    fn integration_ids_name_the_tool() {
        for i in 0..names::TOOLS.len() {
            let id = integration_id(1, i);
            let (tool, kombo) = id.split_once(':').unwrap();
            assert_eq!(tool, names::TOOLS[i]);
            assert_eq!(kombo.len(), 24);
        }
    }

    #[test]
    fn generated_records_are_consistent() {
        for index in 0..4 {
            let w = World::generate(3, index, 2_000);
            let mut seen_kinds = std::collections::HashSet::new();
            for (i, app) in w.apps.iter().enumerate() {
                if let Some(s) = app.stage {
                    assert_eq!(w.stages[s as usize].job, app.job, "stage of another job");
                }
                assert!(app.created_at <= app.changed_at);
                assert!(app.updated_at() <= HISTORY_END_MS);
                assert_eq!(
                    app.rejection.is_some(),
                    app.outcome == Some(SimOutcome::Declined)
                );
                let wire = w.render(i as u32).unwrap();
                assert_eq!(w.app_index(&wire.id), Some(i as u32));
                for sqa in wire.screening_question_answers.iter().flatten() {
                    seen_kinds.insert(sqa.answer.kind().to_owned());
                }
            }
            if w.tool != "workday" {
                assert_eq!(seen_kinds.len(), 7, "{seen_kinds:?}");
            }
            assert!(w.apps.iter().any(|a| a.deleted_at.is_some()));
            assert!(w.apps.iter().any(|a| a.outcome == Some(SimOutcome::Hired)));
        }
    }

    #[test]
    fn generates_a_hundred_thousand() {
        let w = World::generate(1, 0, 100_000);
        assert_eq!(w.apps.len(), 100_000);
        assert_eq!(w.candidates.len(), 100_000);
        assert!(w.render(99_999).is_some());
    }
}
