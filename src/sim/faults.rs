//! Fault injection: which requests fail, and how.
//!
//! Two sources, checked in this order for every `GET /v1/ats/applications` that passed
//! authentication and validation:
//! 1. **Scripted faults**: "the next N requests answer X" (no integration, no page) or
//!    "page P of integration I answers X" (page 1 = the request without a cursor; page P
//!    is the one fetched with the cursor of page P-1). Each matching request uses up one of
//!    the script's `times`; the first matching script wins.
//! 2. **Random faults** at the configured rates, decided by a seeded RNG so runs reproduce.
//!
//! This module only decides; [`super::server`] turns a decision into a response.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rng::Rng;

/// Rates (each in `0..=1`, a share of requests) and parameters of injected faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Share answered 429 `PLATFORM.RATE_LIMIT_EXCEEDED` with `ratelimit-*` headers.
    pub rate_limit: f64,
    /// Share answered 503 with a non-JSON body, like a load balancer would.
    pub unavailable: f64,
    /// Share answered 200 with the JSON body cut in half (Content-Length matches the cut
    /// body, so the client sees a parse error, not a transport error).
    pub truncate: f64,
    /// Share answered normally after `slow_delay`.
    pub slow: f64,
    /// How long a slow response waits.
    #[serde(with = "humantime_serde")]
    pub slow_delay: Duration,
    /// Value of `ratelimit-reset` and `Retry-After` on a 429, in seconds; small keeps tests
    /// fast.
    pub retry_after_secs: u64,
    /// Share of 429s that also carry `Retry-After` (the rest only `ratelimit-reset`).
    pub retry_after_share: f64,
    /// Value of the `ratelimit-limit` header.
    pub ratelimit_limit: u64,
    /// Scripted faults, consumed in order of matching.
    pub script: Vec<ScriptedFault>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            rate_limit: 0.0,
            unavailable: 0.0,
            truncate: 0.0,
            slow: 0.0,
            slow_delay: Duration::from_secs(2),
            retry_after_secs: 1,
            retry_after_share: 0.5,
            ratelimit_limit: 100,
            script: Vec::new(),
        }
    }
}

impl FaultConfig {
    /// Checks that every rate is a number in `0..=1`.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("rate_limit", self.rate_limit),
            ("unavailable", self.unavailable),
            ("truncate", self.truncate),
            ("slow", self.slow),
            ("retry_after_share", self.retry_after_share),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!(
                    "fault rate {name} must be within 0..=1, got {rate}"
                ));
            }
        }
        for s in &self.script {
            if s.page == Some(0) {
                return Err("scripted fault page numbers start at 1".into());
            }
        }
        Ok(())
    }
}

/// How a faulty request is answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 `PLATFORM.RATE_LIMIT_EXCEEDED`; `retry_after` forces the `Retry-After` header
    /// on or off (`None`: decided by `retry_after_share`).
    RateLimit {
        #[serde(default)]
        retry_after: Option<bool>,
    },
    /// 503 with `<html>Service Unavailable</html>`.
    Unavailable,
    /// 200 with the body cut in half.
    Truncate,
    /// The normal answer after `slow_delay`.
    Slow,
    /// Any Kombo error body, e.g. 409 `INTEGRATION.SETUP_SYNC_PENDING` or 503
    /// `REMOTE.SERVICE_UNAVAILABLE`.
    Error {
        status: u16,
        code: String,
        #[serde(default)]
        message: Option<String>,
    },
}

/// A scripted fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    /// Only requests for this integration; any when `None`.
    #[serde(default)]
    pub integration_id: Option<String>,
    /// Only this page number of a listing (1 = no cursor); any when `None`.
    #[serde(default)]
    pub page: Option<u32>,
    pub fault: FaultKind,
    /// How many matching requests it answers before it is used up.
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl ScriptedFault {
    /// "The next `times` requests answer `fault`."
    pub fn next(times: u32, fault: FaultKind) -> Self {
        Self {
            integration_id: None,
            page: None,
            fault,
            times,
        }
    }

    /// "Page `page` of integration `integration_id` answers `fault`, once."
    pub fn page(integration_id: &str, page: u32, fault: FaultKind) -> Self {
        Self {
            integration_id: Some(integration_id.to_owned()),
            page: Some(page),
            fault,
            times: 1,
        }
    }

    fn matches(&self, integration_id: &str, page: u32) -> bool {
        self.times > 0
            && self
                .integration_id
                .as_deref()
                .is_none_or(|i| i == integration_id)
            && self.page.is_none_or(|p| p == page)
    }
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub kind: FaultKind,
    /// For a 429: whether `Retry-After` is sent.
    pub retry_after: bool,
    /// Came from a script (for stats).
    pub scripted: bool,
}

/// The live fault settings and their random stream.
#[derive(Debug)]
pub struct FaultState {
    /// Current rates, parameters and remaining scripts.
    pub config: FaultConfig,
    /// Decides random faults; seeded from the simulator's seed.
    rng: Rng,
}

impl FaultState {
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Self {
            config,
            rng: Rng::new(seed ^ 0xFA17_5EED),
        }
    }

    /// Whether (and how) the request for `page` of `integration_id` fails.
    pub fn decide(&mut self, integration_id: &str, page: u32) -> Option<Decision> {
        let scripted = self
            .config
            .script
            .iter_mut()
            .find(|s| s.matches(integration_id, page))
            .map(|s| {
                s.times -= 1;
                s.fault.clone()
            });
        self.config.script.retain(|s| s.times > 0);
        let (kind, is_scripted) = match scripted {
            Some(kind) => (kind, true),
            None => {
                let c = &self.config;
                if c.rate_limit + c.unavailable + c.truncate + c.slow <= 0.0 {
                    return None;
                }
                let roll = self.rng.unit();
                let mut edge = 0.0;
                let mut pick = None;
                for (rate, kind) in [
                    (c.rate_limit, FaultKind::RateLimit { retry_after: None }),
                    (c.unavailable, FaultKind::Unavailable),
                    (c.truncate, FaultKind::Truncate),
                    (c.slow, FaultKind::Slow),
                ] {
                    edge += rate;
                    if roll < edge {
                        pick = Some(kind);
                        break;
                    }
                }
                (pick?, false)
            }
        };
        let retry_after = match kind {
            FaultKind::RateLimit {
                retry_after: Some(forced),
            } => forced,
            FaultKind::RateLimit { retry_after: None } => {
                self.rng.chance(self.config.retry_after_share)
            }
            _ => false,
        };
        Some(Decision {
            kind,
            retry_after,
            scripted: is_scripted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_match_by_integration_and_page_and_run_out() {
        let mut s = FaultState::new(FaultConfig::default(), 1);
        s.config.script = vec![
            ScriptedFault::page("a", 2, FaultKind::Unavailable),
            ScriptedFault::next(2, FaultKind::Truncate),
        ];
        // (integration, page) -> expected fault
        let cases = [
            ("b", 2, Some(FaultKind::Truncate)),
            ("a", 2, Some(FaultKind::Unavailable)),
            ("a", 2, Some(FaultKind::Truncate)),
            ("a", 2, None),
            ("a", 1, None),
        ];
        for (integration, page, want) in cases {
            let got = s.decide(integration, page).map(|d| d.kind);
            assert_eq!(got, want, "{integration} page {page}");
        }
        assert!(s.config.script.is_empty());
    }

    #[test]
    fn random_faults_follow_rates_and_reproduce() {
        let config = FaultConfig {
            rate_limit: 0.2,
            unavailable: 0.1,
            truncate: 0.05,
            ..FaultConfig::default()
        };
        let run = || {
            let mut s = FaultState::new(config.clone(), 7);
            (0..10_000)
                .map(|_| s.decide("x", 1).map(|d| d.kind))
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let count = |k: &FaultKind| a.iter().filter(|d| d.as_ref() == Some(k)).count();
        let limited = count(&FaultKind::RateLimit { retry_after: None });
        assert!((1_700..2_300).contains(&limited), "{limited}");
        assert!((800..1_200).contains(&count(&FaultKind::Unavailable)));
        assert!((350..650).contains(&count(&FaultKind::Truncate)));
        assert_eq!(count(&FaultKind::Slow), 0);
    }

    #[test]
    fn validation_rejects_bad_rates() {
        let bad = [
            FaultConfig {
                rate_limit: 1.5,
                ..FaultConfig::default()
            },
            FaultConfig {
                slow: -0.1,
                ..FaultConfig::default()
            },
            FaultConfig {
                truncate: f64::NAN,
                ..FaultConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert!(FaultConfig::default().validate().is_ok());
        let parsed: FaultConfig = serde_json::from_str(
            r#"{"rate_limit":0.5,"slow_delay":"250ms","script":[{"page":2,"fault":{"kind":"unavailable"}}]}"#,
        )
        .unwrap();
        assert_eq!(parsed.slow_delay, Duration::from_millis(250));
        assert_eq!(parsed.script[0].times, 1);
        assert!(serde_json::from_str::<FaultConfig>(r#"{"rate_limitt":0.5}"#).is_err());
    }
}
