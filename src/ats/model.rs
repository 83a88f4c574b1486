//! Kombo's `Application` record, field for field.
//!
//! Source of truth: `shared/kombo/README.md`, the SDK 1.4.0 models and the OpenAPI subset.
//! Where the two disagree the model accepts both: every field the SDK marks as required but
//! the published example omits (`candidate.remote_url`, `interview.canceled`, ...) defaults
//! to `None` instead of failing the record.
//!
//! The same types serialize back to Kombo's wire shape, which is how the built-in simulator
//! answers: one model, two directions, so they cannot drift apart. Serializing writes every
//! key the SDK requires (`null` for a `None`) and leaves out only the SDK's omittable ones
//! (`?` in the README), because the official SDKs reject a record that omits a required
//! key. A few required keys must not even be `null` for the SDK (`candidate.remote_id`,
//! `job.remote_id`, the `interviews` and `offers` lists): the simulator always fills them.
//! `tests/it/sim.rs` checks the simulator's pages with the SDK itself.
//!
//! Open enums ([`Outcome`], [`OfferStatus`], [`StageStatus`], [`IntegrationFieldType`]) keep
//! a value they do not know as `Unknown(String)`: the API grows, and a new outcome must not
//! fail a page.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::open_enum;
pub use crate::domain::{OfferStatus, Outcome, Timestamp};

open_enum!(
    /// Whether a stage is in use in the ATS.
    StageStatus {
        Active => "ACTIVE",
        Inactive => "INACTIVE",
    }
);

open_enum!(
    /// Kind of a pass-through integration field.
    IntegrationFieldType {
        Default => "DEFAULT",
        Custom => "CUSTOM",
    }
);

/// One record of `GET /ats/applications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    /// Kombo's stable id; with the integration id, the snapshot key.
    pub id: String,
    /// The ATS's own id; may be composite, never used as a key.
    #[serde(default)]
    pub remote_id: Option<String>,
    /// Computed per ATS; may be null.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(default)]
    pub rejection_reason_name: Option<String>,
    #[serde(default)]
    pub rejected_at: Option<Timestamp>,
    #[serde(default)]
    pub current_stage_id: Option<String>,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(default)]
    pub candidate_id: Option<String>,
    #[serde(default)]
    pub custom_fields: Option<Map<String, Value>>,
    #[serde(default)]
    pub remote_url: Option<String>,
    /// When Kombo last saw the record itself change. Always present.
    pub changed_at: Timestamp,
    /// Set while the record is deleted in the ATS (deletion can be temporary).
    #[serde(default)]
    pub remote_deleted_at: Option<Timestamp>,
    #[serde(default)]
    pub remote_created_at: Option<Timestamp>,
    #[serde(default)]
    pub remote_updated_at: Option<Timestamp>,
    /// Pass-through fields (OpenAPI only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_fields: Option<Vec<IntegrationField>>,
    /// Raw data from the ATS (OpenAPI only, plan-dependent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_data: Option<Value>,
    #[serde(default)]
    pub candidate: Option<Candidate>,
    #[serde(default)]
    pub current_stage: Option<Stage>,
    #[serde(default)]
    pub job: Option<Job>,
    /// Required by the SDK. `None` means the field was absent or null: the diff then knows
    /// nothing about interviews (it must not read it as "all interviews disappeared").
    #[serde(default)]
    pub interviews: Option<Vec<Interview>>,
    /// As `interviews`: `None` is "unknown", not "no offers".
    #[serde(default)]
    pub offers: Option<Vec<Offer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screening_question_answers: Option<Vec<ScreeningQuestionAnswer>>,
}

/// The candidate behind an application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub id: String,
    #[serde(default)]
    pub remote_id: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    /// Hiring source: what referral fees are paid on.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub remote_url: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_addresses: Option<Vec<EmailAddress>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_numbers: Option<Vec<PhoneNumber>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub social_media: Option<Vec<SocialMedia>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tag {
    pub id: String,
    #[serde(default)]
    pub remote_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `type` is a free string (`PRIVATE`, `WORK`, ...), not an enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailAddress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneNumber {
    pub phone_number: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocialMedia {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// A job-specific application stage. `name` and `index` may be null.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub id: String,
    #[serde(default)]
    pub remote_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Required by the SDK (written as null when unknown), tolerated when absent.
    #[serde(default)]
    pub status: Option<StageStatus>,
    /// Required by the SDK (written as null when unknown), tolerated when absent.
    #[serde(default)]
    pub custom_fields: Option<Map<String, Value>>,
    #[serde(default)]
    pub index: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    #[serde(default)]
    pub remote_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interview {
    pub id: String,
    #[serde(default)]
    pub remote_id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub starting_at: Option<Timestamp>,
    #[serde(default)]
    pub ending_at: Option<Timestamp>,
    /// Required by the SDK (written as null when unknown); `None` reads as "not
    /// canceled". Omitted in Kombo's published example, so tolerated when absent.
    #[serde(default)]
    pub canceled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// ISO2 code where Kombo could parse it, else the original value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: String,
    #[serde(default)]
    pub remote_id: Option<String>,
    #[serde(default)]
    pub status: Option<OfferStatus>,
}

/// A pass-through field selected in Kombo's scope config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationField {
    pub id: String,
    pub key: String,
    #[serde(rename = "type")]
    pub kind: IntegrationFieldType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(default)]
    pub label: Option<String>,
}

/// The question an answer belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScreeningQuestion {
    #[serde(default)]
    pub remote_id: Option<String>,
    pub title: String,
}

/// One answer to a screening question; the answer's shape follows the question's type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawScreeningAnswer", into = "RawScreeningAnswer")]
pub struct ScreeningQuestionAnswer {
    pub question: ScreeningQuestion,
    pub answer: Answer,
}

/// A screening answer by question type.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Text {
        content: Option<String>,
    },
    SingleSelect {
        choice: Option<String>,
    },
    MultiSelect {
        choices: Option<Vec<String>>,
    },
    Boolean {
        checked: Option<bool>,
    },
    Number {
        number: Option<f64>,
    },
    /// Kept as the wire string: an odd date format in an answer must not fail the record.
    Date {
        date: Option<String>,
    },
    /// `UNKNOWN`, or a question type newer than this model: the answer object verbatim.
    Unknown {
        kind: String,
        raw: Option<Value>,
    },
}

impl Answer {
    /// The question type on the wire.
    pub fn kind(&self) -> &str {
        match self {
            Answer::Text { .. } => "TEXT",
            Answer::SingleSelect { .. } => "SINGLE_SELECT",
            Answer::MultiSelect { .. } => "MULTI_SELECT",
            Answer::Boolean { .. } => "BOOLEAN",
            Answer::Number { .. } => "NUMBER",
            Answer::Date { .. } => "DATE",
            Answer::Unknown { kind, .. } => kind,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RawScreeningAnswer {
    question: RawQuestion,
    #[serde(default)]
    answer: Map<String, Value>,
}

#[derive(Serialize, Deserialize)]
struct RawQuestion {
    #[serde(default)]
    remote_id: Option<String>,
    title: String,
    /// Omittable: the SDK defaults it per variant, so it is inferred from the answer.
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

impl TryFrom<RawScreeningAnswer> for ScreeningQuestionAnswer {
    type Error = String;

    fn try_from(raw: RawScreeningAnswer) -> Result<Self, Self::Error> {
        let mut answer = raw.answer;
        let kind = raw
            .question
            .kind
            .unwrap_or_else(|| infer_answer_kind(&answer).to_owned());
        fn field<T: serde::de::DeserializeOwned>(
            answer: &mut Map<String, Value>,
            name: &str,
            kind: &str,
        ) -> Result<Option<T>, String> {
            match answer.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => serde_json::from_value(v)
                    .map(Some)
                    .map_err(|e| format!("answer.{name} of a {kind} question: {e}")),
            }
        }
        let parsed = match kind.as_str() {
            "TEXT" => Answer::Text {
                content: field(&mut answer, "content", &kind)?,
            },
            "SINGLE_SELECT" => Answer::SingleSelect {
                choice: field(&mut answer, "choice", &kind)?,
            },
            "MULTI_SELECT" => Answer::MultiSelect {
                choices: field(&mut answer, "choices", &kind)?,
            },
            "BOOLEAN" => Answer::Boolean {
                checked: field(&mut answer, "checked", &kind)?,
            },
            "NUMBER" => Answer::Number {
                number: field(&mut answer, "number", &kind)?,
            },
            "DATE" => Answer::Date {
                date: field(&mut answer, "date", &kind)?,
            },
            "UNKNOWN" => Answer::Unknown {
                kind,
                raw: answer.remove("raw"),
            },
            _ => Answer::Unknown {
                kind,
                raw: Some(Value::Object(answer)),
            },
        };
        Ok(ScreeningQuestionAnswer {
            question: ScreeningQuestion {
                remote_id: raw.question.remote_id,
                title: raw.question.title,
            },
            answer: parsed,
        })
    }
}

/// When `question.type` is omitted, the answer's only key tells the type.
fn infer_answer_kind(answer: &Map<String, Value>) -> &'static str {
    for (key, kind) in [
        ("content", "TEXT"),
        ("choice", "SINGLE_SELECT"),
        ("choices", "MULTI_SELECT"),
        ("checked", "BOOLEAN"),
        ("number", "NUMBER"),
        ("date", "DATE"),
    ] {
        if answer.contains_key(key) {
            return kind;
        }
    }
    "UNKNOWN"
}

impl From<ScreeningQuestionAnswer> for RawScreeningAnswer {
    fn from(sqa: ScreeningQuestionAnswer) -> Self {
        let kind = sqa.answer.kind().to_owned();
        let mut answer = Map::new();
        let mut put = |k: &str, v: Value| {
            answer.insert(k.to_owned(), v);
        };
        match sqa.answer {
            Answer::Text { content } => put("content", content.into()),
            Answer::SingleSelect { choice } => put("choice", choice.into()),
            Answer::MultiSelect { choices } => put("choices", choices.into()),
            Answer::Boolean { checked } => put("checked", checked.into()),
            Answer::Number { number } => put("number", number.into()),
            Answer::Date { date } => put("date", date.into()),
            Answer::Unknown { kind, raw } => {
                if kind == "UNKNOWN" {
                    if let Some(raw) = raw {
                        put("raw", raw);
                    }
                } else if let Some(Value::Object(map)) = raw {
                    for (k, v) in map {
                        put(&k, v);
                    }
                }
            }
        }
        RawScreeningAnswer {
            question: RawQuestion {
                remote_id: sqa.question.remote_id,
                title: sqa.question.title,
                kind: Some(kind),
            },
            answer,
        }
    }
}

/// The success envelope: `{"status":"success","data":{"next":…,"results":[…]}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageEnvelope<R> {
    #[serde(default)]
    pub status: Option<String>,
    pub data: PageData<R>,
}

/// One page: the cursor of the next page (`None` on the last) and the records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageData<R> {
    #[serde(default)]
    pub next: Option<String>,
    pub results: Vec<R>,
}

/// The error envelope: `{"status":"error","error":{…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    #[serde(default)]
    pub status: Option<String>,
    pub error: ErrorBody,
}

/// Kombo's error object. Branch on `code`, not on the HTTP status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub log_url: Option<String>,
}
