//! Relays hirehook's webhooks into a Slack channel, one Block Kit message per event.
//!
//! Run it:
//!
//! ```sh
//! HIREHOOK_WEBHOOK_SECRET=whsec_… \
//! SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T…/B…/… \
//! RELAY_EVENT_TYPES=outcome_hired,rejected,stage_changed \
//!     cargo run --example slack_relay
//! ```
//!
//! and point a hirehook subscriber at `http://127.0.0.1:8081/` (any path; set
//! `allow_private_networks = true` in `[delivery]` for a loopback relay).
//!
//! Environment:
//! - `HIREHOOK_WEBHOOK_SECRET` (required): the subscriber's `whsec_…` secret, or several
//!   separated by spaces while rotating.
//! - `SLACK_WEBHOOK_URL` (required): a Slack incoming-webhook URL. It is a credential: it is
//!   never logged.
//! - `LISTEN_ADDR` (default `127.0.0.1:8081`).
//! - `RELAY_EVENT_TYPES` (default: every type): comma-separated event types to relay.
//! - `RELAY_INTEGRATIONS` (default: every integration): comma-separated integration ids.
//! - `RUST_LOG` (default `info`): log filter; logs go to stderr.
//!
//! Each event is verified, filtered, formatted by [`slack_message`] (pure) and posted to
//! Slack, retrying 429 and 5xx with backoff and `Retry-After`. hirehook gets its 200 only
//! once Slack accepted the message; if Slack keeps failing it gets a 5xx and redelivers
//! later, so a Slack outage loses nothing. The machinery is shared with `teams_relay` in
//! `examples/common/relay.rs`.

use std::process::ExitCode;

use serde_json::{Value, json};

#[path = "common/relay.rs"]
pub mod relay;

use relay::{Summary, Target};

/// Slack, and where its URL comes from.
pub const SLACK: Target = Target {
    name: "Slack",
    env: "SLACK_WEBHOOK_URL",
    hint: "give it a Slack incoming-webhook URL (https://hooks.slack.com/services/…)",
};

/// Slack's limit on a section field's text.
const FIELD_LIMIT: usize = 2000;
/// Slack's limit on a section's text.
const SECTION_LIMIT: usize = 3000;
/// Slack's limit on a button's URL; a longer one is left out rather than cut.
const URL_LIMIT: usize = 3000;

/// The Slack message for one hirehook body: `text` (the one-line fallback that
/// notifications show) and `blocks` (headline with an "Open in ATS" button when the body
/// has a `remote_url`, then candidate, job and the change as fields, then the event type
/// and integration in small print). Never fails: odd bodies get a generic message.
pub fn slack_message(event: &Value) -> Value {
    let summary = Summary::of(event);

    let mut headline = json!({
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": clip(&format!("{} *{}*", summary.emoji, escape(&summary.headline)), SECTION_LIMIT),
        },
    });
    if let Some(link) = summary.link.as_ref().filter(|l| l.len() <= URL_LIMIT) {
        headline["accessory"] = json!({
            "type": "button",
            "text": {"type": "plain_text", "text": "Open in ATS"},
            "url": link,
            "action_id": "open_in_ats",
        });
    }

    let mut fields = vec![field("Candidate", &summary.candidate)];
    if let Some(job) = &summary.job {
        fields.push(field("Job", job));
    }
    for (label, value) in &summary.facts {
        fields.push(field(label, value));
    }
    // Slack allows at most ten fields per section.
    fields.truncate(10);

    json!({
        "text": escape(&summary.text()),
        "blocks": [
            headline,
            {"type": "section", "fields": fields},
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": clip(&escape(&summary.context()), SECTION_LIMIT)}],
            },
        ],
    })
}

/// A labelled section field: "*Job*\nBackend Engineer".
fn field(label: &str, value: &str) -> Value {
    json!({
        "type": "mrkdwn",
        "text": clip(&format!("*{label}*\n{}", escape(value)), FIELD_LIMIT),
    })
}

/// Escapes the three characters Slack's text formatting reserves.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `limit` characters, ending in "…" when cut.
fn clip(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[tokio::main]
async fn main() -> ExitCode {
    relay::main_for(SLACK, slack_message).await
}
