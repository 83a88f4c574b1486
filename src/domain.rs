//! The hiring domain as hirehook reasons about it: an application as the diff reads it
//! (converted once, at the page, from Kombo's wire record in [`crate::ats`]), and the open
//! enums that records and events share.
//!
//! A leaf module: the diff, the events and the Kombo client all depend on it, it on none of
//! them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Every timestamp on the wire is UTC.
pub type Timestamp = DateTime<Utc>;

/// Declares a string enum that keeps unknown values instead of rejecting them.
macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version of hirehook does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The exact wire string.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Unknown(other) => other,
                }
            }

            /// Parses a wire string; never fails.
            pub fn from_wire(s: &str) -> Self {
                match s {
                    $($wire => Self::$variant,)+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::from_wire(&s))
            }
        }
    };
}

open_enum!(
    /// Kombo's computed outcome of an application.
    Outcome {
        /// Still in process.
        Pending => "PENDING",
        /// The candidate was hired.
        Hired => "HIRED",
        /// Rejected, or the candidate withdrew.
        Declined => "DECLINED",
    }
);

open_enum!(
    /// An offer's status. Usual flow: DRAFT → APPROVED → SENT → ACCEPTED | DECLINED.
    OfferStatus {
        Accepted => "ACCEPTED",
        Declined => "DECLINED",
        Sent => "SENT",
        Approved => "APPROVED",
        Draft => "DRAFT",
        Abandoned => "ABANDONED",
    }
);

pub(crate) use open_enum;

/// A time given by an operator: RFC 3339, or a humantime age (`2h`) counted back from
/// `now`.
pub fn parse_time(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(s)
        .map_err(|_| format!("`{s}` is neither an RFC 3339 time nor an age like `2h`"))?;
    let age = chrono::Duration::from_std(age).map_err(|_| format!("`{s}` is too long ago"))?;
    now.checked_sub_signed(age)
        .ok_or_else(|| format!("`{s}` is too long ago"))
}

/// A digest of one record exactly as Kombo sent it (its raw JSON bytes), kept in the
/// snapshot the record produced. A record whose bytes digest to its snapshot's `source` is
/// the very record that snapshot came from: diffing it again would give nothing (the diff's
/// "a record against its own snapshot is quiet" property), so the sync skips its parse and
/// diff. That is most of every incremental poll, which refetches its `overlap` of changes.
///
/// SHA-256, truncated to 128 bits, of [`RecordDigest::RULES`] and the bytes: no accidental
/// or crafted collision hides a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordDigest(pub [u8; 16]);

impl RecordDigest {
    /// Names the rules that turn a record into a snapshot and events (the wire model, the
    /// conversion, the diff). Change it whenever the same record and snapshot would diff
    /// differently: every stored digest then stops matching, and each record is parsed and
    /// diffed once more.
    pub const RULES: &'static [u8] = b"hirehook record rules 1\0";

    /// The digest of a record's raw JSON.
    pub fn of(raw: &[u8]) -> RecordDigest {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        hasher.update(Self::RULES);
        hasher.update(raw);
        let full = hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        RecordDigest(out)
    }
}

/// An application as the diff reads it: what events and payloads are made of, and nothing
/// else of Kombo's record (custom fields, contact details, screening answers stay behind).
#[derive(Debug, Clone, PartialEq)]
pub struct Application {
    /// Kombo's stable id; with the integration id, the snapshot key.
    pub id: String,
    /// The ATS's own id.
    pub remote_id: Option<String>,
    /// Kombo's computed outcome; may be null or a value this build does not know.
    pub outcome: Option<Outcome>,
    pub rejection_reason_name: Option<String>,
    pub rejected_at: Option<Timestamp>,
    pub remote_url: Option<String>,
    /// Set while the record is deleted in the ATS (deletion can be temporary).
    pub remote_deleted_at: Option<Timestamp>,
    pub remote_updated_at: Option<Timestamp>,
    /// The job: `job_id`, with details from `job` when its id matches.
    pub job_id: Option<String>,
    pub job: Option<Job>,
    /// The candidate: `candidate_id`, with names from `candidate` when its id matches.
    pub candidate_id: Option<String>,
    pub candidate: Option<Candidate>,
    /// The stage: `current_stage_id`, with details from `current_stage`.
    pub current_stage_id: Option<String>,
    pub current_stage: Option<Stage>,
    /// `None` means unknown (the field was absent or null), not "no interviews".
    pub interviews: Option<Vec<Interview>>,
    /// As `interviews`: `None` is "unknown", not "no offers".
    pub offers: Option<Vec<Offer>>,
}

/// The candidate behind an application: the names payloads carry, never contact details.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub remote_id: Option<String>,
    pub name: Option<String>,
}

/// A job-specific stage; `index` orders the pipeline when the ATS says.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub id: String,
    pub remote_id: Option<String>,
    pub name: Option<String>,
    pub index: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interview {
    pub id: String,
    pub remote_id: Option<String>,
    pub title: Option<String>,
    pub starting_at: Option<Timestamp>,
    pub ending_at: Option<Timestamp>,
    /// `None` reads as "not canceled".
    pub canceled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub id: String,
    pub remote_id: Option<String>,
    pub status: Option<OfferStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_time_reads_rfc3339_and_ages() {
        let now = DateTime::from_timestamp(1_795_910_400, 0).unwrap_or_default();
        let cases: [(&str, Result<i64, &str>); 5] = [
            ("2026-11-29T00:00:00Z", Ok(1_795_910_400)),
            ("2026-11-29T01:00:00+01:00", Ok(1_795_910_400)),
            ("2h", Ok(1_795_910_400 - 7200)),
            ("90s", Ok(1_795_910_400 - 90)),
            ("yesterday", Err("neither an RFC 3339 time nor an age")),
        ];
        for (input, want) in cases {
            match (parse_time(input, now), want) {
                (Ok(t), Ok(secs)) => assert_eq!(t.timestamp(), secs, "{input}"),
                (Err(e), Err(part)) => assert!(e.contains(part), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }
}
