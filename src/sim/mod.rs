//! The built-in Kombo-compatible simulator: a faithful `GET /ats/applications` server
//! over seeded, evolving worlds, with a truth log of every change and fault injection.
//!
//! # Layout
//!
//! - [`simulator`]: [`Simulator`], the handle everything goes through, and [`SimConfig`].
//! - [`world`]: one integration's jobs, stages, candidates and applications: generation
//!   from a seed, compact storage, rendering to the wire [`Application`](crate::ats::model::Application).
//! - [`mutate`]: the mutation engine: [`Mutation`], the truth log ([`TruthEntry`],
//!   [`TruthChange`]) and the random planner, weighted like a hiring funnel.
//! - [`server`]: the axum routes: the Kombo endpoint and the `/_sim/` control API.
//! - [`running`]: serving on a loopback port in the background ([`spawn`], [`RunningSim`]).
//! - [`query`]: request parameters: validation and filter matching.
//! - [`cursor`]: opaque pagination cursors.
//! - [`faults`]: fault injection ([`FaultConfig`], scripted faults).
//! - [`stats`]: request counters.
//! - [`ids`]: 24-character Kombo-style ids that decode back to table positions.
//! - [`clock`]: the strictly increasing millisecond clock of changes.
//! - [`rng`]: the seeded PRNG (SplitMix64).
//! - [`names`]: the word lists worlds are drawn from.
//!
//! # Where it differs from Kombo (on purpose)
//!
//! - Deleted applications keep their fields; Kombo nulls them 14 days after deletion.
//! - Each application has its own candidate, so a candidate edit touches one application.
//! - `remote_updated_at` moves with `changed_at` (no ATS-to-Kombo sync lag is simulated).
//! - `ignore_unsupported_filters` is accepted and has no effect: every filter is supported.
//! - `updated_after` is compared at millisecond precision (extra fraction digits floor).
//! - `log_url` in error bodies is a fixed placeholder.

pub mod clock;
pub mod cursor;
pub mod faults;
pub mod ids;
pub mod mutate;
pub mod names;
pub mod query;
pub mod rng;
pub mod running;
pub mod server;
pub mod simulator;
pub mod stats;
pub mod world;

pub use faults::{FaultConfig, FaultKind, ScriptedFault};
pub use mutate::{Mutation, SimError, TruthChange, TruthEntry};
pub use running::{RunningSim, spawn};
pub use simulator::{DEFAULT_API_KEY, SimConfig, Simulator};
pub use stats::SimStats;
