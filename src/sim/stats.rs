//! Counters of what the simulator served, for `GET /_sim/stats` and tests.

use std::collections::BTreeMap;

use serde::Serialize;

use super::faults::FaultKind;

/// Everything counted since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SimStats {
    /// Every `GET /v1/ats/applications`, whatever its answer.
    pub requests: u64,
    /// Per integration id (requests naming an unknown integration are not listed).
    pub integrations: BTreeMap<String, IntegrationStats>,
    /// 401 answers.
    pub unauthorized: u64,
    /// 404 answers for an unknown integration.
    pub unknown_integration: u64,
    /// 400 answers.
    pub invalid_input: u64,
    /// Injected faults by kind.
    pub faults: FaultStats,
    /// Changes made so far (the last truth sequence number).
    pub truth_seq: u64,
}

/// Counters of one integration.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IntegrationStats {
    /// Requests that passed authentication and named this integration.
    pub requests: u64,
    /// Pages answered 200 with a whole body.
    pub pages: u64,
    /// Records in those pages.
    pub records: u64,
    /// Applications in the world now (deleted included).
    pub applications: u64,
}

/// Injected faults by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultStats {
    pub rate_limited: u64,
    pub unavailable: u64,
    pub truncated: u64,
    pub slowed: u64,
    /// Scripted Kombo error bodies.
    pub errors: u64,
    /// How many of the above came from scripts.
    pub scripted: u64,
}

impl FaultStats {
    /// Counts one injected fault.
    pub fn count(&mut self, kind: &FaultKind, scripted: bool) {
        let counter = match kind {
            FaultKind::RateLimit { .. } => &mut self.rate_limited,
            FaultKind::Unavailable => &mut self.unavailable,
            FaultKind::Truncate => &mut self.truncated,
            FaultKind::Slow => &mut self.slowed,
            FaultKind::Error { .. } => &mut self.errors,
        };
        *counter += 1;
        self.scripted += u64::from(scripted);
    }
}
