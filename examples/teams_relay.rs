//! Relays hirehook's webhooks into a Microsoft Teams channel, one Adaptive Card per event.
//!
//! Run it:
//!
//! ```sh
//! HIREHOOK_WEBHOOK_SECRET=whsec_… \
//! TEAMS_WEBHOOK_URL='https://….logic.azure.com/workflows/…' \
//! RELAY_EVENT_TYPES=outcome_hired,rejected \
//!     cargo run --example teams_relay
//! ```
//!
//! and point a hirehook subscriber at `http://127.0.0.1:8081/` (any path; set
//! `allow_private_networks = true` in `[delivery]` for a loopback relay).
//!
//! `TEAMS_WEBHOOK_URL` is the URL of a Teams Workflows flow "Post to a channel when a webhook
//! request is received" (or a legacy incoming-webhook connector): both take a `message`
//! with an Adaptive Card attachment. It is a credential: it is never logged.
//!
//! The other variables are the Slack relay's: `HIREHOOK_WEBHOOK_SECRET` (required),
//! `LISTEN_ADDR` (default `127.0.0.1:8081`), `RELAY_EVENT_TYPES`, `RELAY_INTEGRATIONS`,
//! `RUST_LOG`. Same behaviour too: verify, filter, format with [`teams_message`] (pure),
//! post with retries on 429/5xx honouring `Retry-After`, and answer hirehook 200 only once
//! Teams accepted (a 5xx otherwise, so hirehook redelivers later). The machinery is shared
//! with `slack_relay` in `examples/common/relay.rs`.

use std::process::ExitCode;

use serde_json::{Value, json};

#[path = "common/relay.rs"]
pub mod relay;

use relay::{Summary, Target};

/// Teams, and where its URL comes from.
pub const TEAMS: Target = Target {
    name: "Teams",
    env: "TEAMS_WEBHOOK_URL",
    hint: "give it the URL of a Teams Workflows webhook trigger or incoming webhook",
};

/// The `contentType` of an Adaptive Card attachment.
pub const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// The Teams message for one hirehook body: `{"type": "message", "attachments": [one
/// Adaptive Card]}`. The card shows the headline, a fact set (candidate, job, the change),
/// the event type and integration in small print, and an "Open in ATS" action when the body
/// has a `remote_url`; `fallbackText` is the one-line text. Never fails: odd bodies get a
/// generic card.
pub fn teams_message(event: &Value) -> Value {
    let summary = Summary::of(event);

    let mut facts = vec![fact("Candidate", &summary.candidate)];
    if let Some(job) = &summary.job {
        facts.push(fact("Job", job));
    }
    for (label, value) in &summary.facts {
        facts.push(fact(label, value));
    }

    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "fallbackText": summary.text(),
        "msteams": {"width": "Full"},
        "body": [
            {
                "type": "TextBlock",
                "text": format!("{} {}", summary.emoji, summary.headline),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": true,
            },
            {"type": "FactSet", "facts": facts},
            {
                "type": "TextBlock",
                "text": summary.context(),
                "isSubtle": true,
                "size": "Small",
                "wrap": true,
            },
        ],
    });
    if let Some(link) = &summary.link {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open in ATS", "url": link}]);
    }

    json!({
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": null, "content": card}],
    })
}

fn fact(title: &str, value: &str) -> Value {
    json!({"title": title, "value": value})
}

#[tokio::main]
async fn main() -> ExitCode {
    relay::main_for(TEAMS, teams_message).await
}
