//! `POST /kombo/webhook`: Kombo's own `data-changed` webhook triggers an immediate poll of
//! the integration it names (coalesced with any poll already asked for). Polling on the
//! interval stays the safety net.
//!
//! Authenticated by `X-Kombo-Signature` = base64url (no padding) of
//! HMAC-SHA256(`kombo.webhook_secret` as raw UTF-8 bytes, raw body), not by the admin
//! token. A bad or missing signature is a 401 and triggers nothing.
//!
//! The signature has no timestamp, so a captured webhook stays valid forever: the ids of
//! the last [`REMEMBERED_WEBHOOK_IDS`] signed webhooks are remembered, and one seen again
//! (a replay, or Kombo's own retry) is acknowledged without acting.

use std::collections::{HashSet, VecDeque};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit as _, Mac as _};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::AdminState;
use super::error::ApiError;

/// The header Kombo signs with.
pub const SIGNATURE_HEADER: &str = "x-kombo-signature";

/// Models whose change can change what `GET /ats/applications` returns.
pub const WATCHED_MODELS: [&str; 4] = [
    "ats_applications",
    "ats_interviews",
    "ats_offers",
    "ats_candidates",
];

/// How many Kombo webhook ids are remembered to recognise a replay.
pub const REMEMBERED_WEBHOOK_IDS: usize = 10_000;

/// base64url; Kombo sends no padding, padding is tolerated.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Whether `signature` is Kombo's signature of `body` under `secret` (compared in constant
/// time).
pub fn verify_signature(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(tag) = BASE64URL.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

/// The signature Kombo would send for `body` (for tests and tools).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The ids of the last `capacity` webhooks, oldest forgotten first.
///
/// Kept as SHA-256 digests: 32 bytes each however long an id is, so the whole set stays
/// under a megabyte.
#[derive(Debug)]
pub struct RecentIds {
    /// Oldest first: what is forgotten next.
    order: VecDeque<[u8; 32]>,
    seen: HashSet<[u8; 32]>,
    capacity: usize,
}

impl RecentIds {
    /// Remembers up to `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
            capacity,
        }
    }

    /// Remembers `id`; false when it is remembered already.
    pub fn insert(&mut self, id: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        if !self.seen.insert(digest) {
            return false;
        }
        self.order.push_back(digest);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        true
    }
}

impl Default for RecentIds {
    fn default() -> Self {
        Self::new(REMEMBERED_WEBHOOK_IDS)
    }
}

#[derive(Deserialize)]
struct Payload {
    /// Kombo's id of this webhook; a body without one (or with a non-string one) is
    /// handled without the replay check.
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    integration_id: Option<String>,
    #[serde(default)]
    changed_models: Vec<Model>,
}

#[derive(Deserialize)]
struct Model {
    name: String,
}

/// Verifies, then triggers a poll when a watched model of a configured integration
/// changed: 202 `{"triggered": true, "coalesced"}` (`coalesced`: a poll already queued
/// covers it); 200 `{"triggered": false, "reason"}` for what is ignored, a webhook id seen
/// before included (so Kombo does not retry it); 401 for a bad signature; 404 when no
/// `kombo.webhook_secret` is configured.
pub async fn webhook(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let metrics = &state.inner.metrics;
    let Some(secret) = &state.config().kombo.webhook_secret else {
        return Err(ApiError::not_found(
            "the Kombo webhook is off: set [kombo] webhook_secret to receive it",
        ));
    };
    let body = body.inspect_err(|_| metrics.kombo_webhook("bad_request"))?;
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let Some(signature) = signature else {
        metrics.kombo_webhook("unauthorized");
        return Err(ApiError::unauthorized("missing X-Kombo-Signature"));
    };
    if !verify_signature(secret.expose(), &body, signature) {
        metrics.kombo_webhook("unauthorized");
        tracing::warn!("Kombo webhook with a bad signature refused");
        return Err(ApiError::unauthorized("bad X-Kombo-Signature"));
    }
    let payload: Payload = serde_json::from_slice(&body).map_err(|e| {
        metrics.kombo_webhook("bad_request");
        ApiError::bad_request(format!("not a Kombo webhook body: {e}"))
    })?;
    if let Some(id) = payload.id.as_ref().and_then(|id| id.as_str())
        && !state.kombo_ids().insert(id)
    {
        metrics.kombo_webhook("duplicate");
        tracing::debug!(webhook_id = %id, "Kombo webhook seen before: not acted on again");
        return Ok((
            StatusCode::OK,
            Json(json!({
                "triggered": false,
                "reason": format!("duplicate webhook id {id}: already handled"),
            })),
        ));
    }
    let ignored = |reason: String| {
        metrics.kombo_webhook("ignored");
        tracing::debug!("Kombo webhook ignored: {reason}");
        Ok((
            StatusCode::OK,
            Json(json!({"triggered": false, "reason": reason})),
        ))
    };
    if payload.kind != "data-changed" {
        return ignored(format!("type {:?} is not data-changed", payload.kind));
    }
    let Some(data) = payload.data else {
        return ignored("no data".into());
    };
    let Some(integration) = data.integration_id else {
        return ignored("no data.integration_id".into());
    };
    if !data
        .changed_models
        .iter()
        .any(|m| WATCHED_MODELS.contains(&m.name.as_str()))
    {
        return ignored(format!("none of {} changed", WATCHED_MODELS.join(", ")));
    }
    let Some(triggered) = state.inner.triggers.trigger(&integration) else {
        return ignored(format!("integration {integration} is not configured"));
    };
    if triggered.coalesced() {
        metrics.kombo_webhook("coalesced");
        tracing::debug!(
            integration = %integration,
            "Kombo reported changes: covered by the poll already queued"
        );
    } else {
        metrics.kombo_webhook("triggered");
        tracing::info!(integration = %integration, "Kombo reported changes: polling now");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "triggered": true,
            "coalesced": triggered.coalesced(),
            "integration_id": integration,
        })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_BODY: &[u8] = br#"{"id":"evt_1","type":"data-changed","data":{}}"#;
    const VECTOR_SIG: &str = "kqY8zv5d-GjlsxnWEjku2SC-76DrHex02UK5OYCwoQI";

    #[test]
    fn kombo_test_vector_verifies() {
        assert!(verify_signature("whsec_test", VECTOR_BODY, VECTOR_SIG));
        assert_eq!(sign("whsec_test", VECTOR_BODY), VECTOR_SIG);
        // Padding is tolerated.
        assert!(verify_signature(
            "whsec_test",
            VECTOR_BODY,
            &format!("{VECTOR_SIG}=")
        ));
    }

    #[test]
    fn recent_ids_forget_the_oldest_first() {
        let mut ids = RecentIds::new(3);
        for id in ["a", "b", "c"] {
            assert!(ids.insert(id), "{id} is new");
        }
        assert!(!ids.insert("a"), "a replay");
        assert!(!ids.insert("c"));
        assert!(ids.insert("d"), "new; a is forgotten");
        assert!(ids.insert("a"), "forgotten, so new again (b goes)");
        assert!(ids.insert("b"));
        assert!(!ids.insert("d"));
        assert_eq!(ids.order.len(), 3);
        assert_eq!(ids.seen.len(), 3);
        // Long ids cost a digest each.
        assert!(ids.insert(&"x".repeat(60_000)));
        assert!(!ids.insert(&"x".repeat(60_000)));
    }

    #[test]
    fn anything_else_fails() {
        assert!(!verify_signature("whsec_tesT", VECTOR_BODY, VECTOR_SIG));
        assert!(!verify_signature(
            "whsec_test",
            br#"{"id":"evt_2","type":"data-changed","data":{}}"#,
            VECTOR_SIG
        ));
        assert!(!verify_signature("whsec_test", VECTOR_BODY, ""));
        assert!(!verify_signature("whsec_test", VECTOR_BODY, "not base64!"));
        assert!(!verify_signature(
            "whsec_test",
            VECTOR_BODY,
            &VECTOR_SIG[..20]
        ));
        // Standard base64 of the same tag is not what Kombo sends.
        let std = VECTOR_SIG.replace('-', "+").replace('_', "/");
        assert!(!verify_signature("whsec_test", VECTOR_BODY, &std));
    }
}
