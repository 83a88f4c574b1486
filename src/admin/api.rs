//! The `/v1` JSON API. Every route is added through [`RouteTable`], which records its
//! method and path: the OpenAPI document (`openapi.json`, served at `/v1/openapi.json`) is
//! tested against that list, both ways.

use super::with_store;
use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::handler::Handler;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AdminState;
use super::error::ApiError;
use crate::event::{EventType, is_event_id};
use crate::inspect::{self, DeliveryRow, EventSummary, EventView, StatusView, SubscriberStatus};
use crate::store::erase::check_id;
use crate::store::{DeliveryState, EraseReport, ErasureSubject, EventFilter};

/// The OpenAPI document of `/v1`, kept in the repository beside this file.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Events per page of `GET /v1/events` unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 100;

/// The most `limit` may ask for.
pub const MAX_LIMIT: usize = 1000;

/// A router that remembers the `(method, path)` of every route added.
pub struct RouteTable {
    router: Router<AdminState>,
    routes: Vec<(&'static str, &'static str)>,
}

impl RouteTable {
    fn new() -> Self {
        Self {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    fn get<H, T>(mut self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AdminState>,
        T: 'static,
    {
        self.router = self.router.route(path, axum::routing::get(handler));
        self.routes.push(("get", path));
        self
    }

    fn post<H, T>(mut self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AdminState>,
        T: 'static,
    {
        self.router = self.router.route(path, axum::routing::post(handler));
        self.routes.push(("post", path));
        self
    }
}

/// The `/v1` router (to be nested under `/v1`) and its `(method, path)` list, paths
/// relative to `/v1`.
pub fn routes() -> (Router<AdminState>, Vec<(&'static str, &'static str)>) {
    let table = RouteTable::new()
        .get("/openapi.json", openapi)
        .get("/status", status)
        .get("/events", list_events)
        .get("/events/{id}", show_event)
        .get("/subscribers", list_subscribers)
        .post("/subscribers/{name}/enable", enable_subscriber)
        .get("/dead-letters", list_dead_letters)
        .post("/dead-letters/retry", retry_dead_letters)
        .post("/integrations/{id}/sync", sync_now)
        .get("/integrations/{id}/held", list_held)
        .post("/integrations/{id}/held/release", release_held)
        .post("/integrations/{id}/held/drop", drop_held)
        .post("/erase", erase);
    (table.router, table.routes)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn status(State(state): State<AdminState>) -> Result<Json<StatusView>, ApiError> {
    with_store!(state, |store, config| Ok(inspect::status(
        store,
        config,
        Utc::now()
    )
    .await?))
    .await
    .map(Json)
}

/// A page of `GET /v1/events`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventsPage {
    /// Oldest first.
    pub events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; `null` when this page is the last.
    pub next_cursor: Option<String>,
}

/// The opaque cursor that continues after log position `log_seq`.
pub fn encode_cursor(log_seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("ls:{log_seq}"))
}

/// The log position a cursor continues after.
pub fn decode_cursor(cursor: &str) -> Option<u64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    std::str::from_utf8(&bytes)
        .ok()?
        .strip_prefix("ls:")?
        .parse()
        .ok()
}

/// The query pairs, each key at most once (except those in `repeatable`), every key known.
fn query_pairs(
    query: Option<&str>,
    known: &[&str],
    repeatable: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !known.contains(&key.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter `{key}`; known: {}",
                known.join(", ")
            )));
        }
        if !repeatable.contains(&key.as_ref()) && pairs.iter().any(|(k, _)| *k == key) {
            return Err(ApiError::bad_request(format!(
                "query parameter `{key}` given twice"
            )));
        }
        pairs.push((key.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

fn parse_limit(value: &str) -> Result<usize, ApiError> {
    value
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "`limit` must be an integer from 1 to {MAX_LIMIT}, not {value:?}"
            ))
        })
}

/// The filter of `GET /v1/events`: the CLI's filters, `limit` and `cursor`.
pub fn events_filter(query: Option<&str>) -> Result<EventFilter, ApiError> {
    let known = [
        "since",
        "until",
        "type",
        "integration",
        "application",
        "limit",
        "cursor",
    ];
    let mut filter = EventFilter {
        limit: Some(DEFAULT_LIMIT),
        ..Default::default()
    };
    for (key, value) in query_pairs(query, &known, &["type"])? {
        let time = |v: &str| {
            crate::domain::parse_time(v, chrono::Utc::now())
                .map_err(|e| ApiError::bad_request(format!("`{key}`: {e}")))
        };
        match key.as_str() {
            "since" => filter.since = Some(time(&value)?),
            "until" => filter.until = Some(time(&value)?),
            "type" => {
                for name in value.split(',').filter(|s| !s.is_empty()) {
                    let t = EventType::parse(name).ok_or_else(|| {
                        ApiError::bad_request(format!("unknown event type `{name}`"))
                    })?;
                    filter.types.push(t);
                }
            }
            "integration" => filter.integration_id = Some(value),
            "application" => filter.application_id = Some(value),
            "limit" => filter.limit = Some(parse_limit(&value)?),
            "cursor" => {
                filter.after_log_seq = Some(decode_cursor(&value).ok_or_else(|| {
                    ApiError::bad_request("bad `cursor`: pass back a `next_cursor` unchanged")
                })?)
            }
            _ => {}
        }
    }
    Ok(filter)
}

async fn list_events(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<EventsPage>, ApiError> {
    let filter = events_filter(query.as_deref())?;
    with_store!(state, |store, _| {
        let records = store.events(&filter).await?;
        let full = filter.limit.is_some_and(|l| records.len() >= l);
        let next_cursor = records
            .last()
            .filter(|_| full)
            .map(|r| encode_cursor(r.log_seq));
        let events = records
            .into_iter()
            .map(EventSummary::from_record)
            .collect::<Result<_, _>>()?;
        Ok(EventsPage {
            events,
            next_cursor,
        })
    })
    .await
    .map(Json)
}

async fn show_event(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<EventView>, ApiError> {
    let Path(id) = id?;
    if !is_event_id(&id) {
        return Err(ApiError::bad_request(format!(
            "`{id}` is not an event id (`evt_` + 32 lowercase hex digits)"
        )));
    }
    with_store!(state, |store, _| {
        inspect::event(store, &id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no event {id}")))
    })
    .await
    .map(Json)
}

/// `GET /v1/subscribers`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubscribersList {
    pub subscribers: Vec<SubscriberStatus>,
}

async fn list_subscribers(
    State(state): State<AdminState>,
) -> Result<Json<SubscribersList>, ApiError> {
    with_store!(state, |store, config| {
        Ok(SubscribersList {
            subscribers: inspect::subscribers(store, config, Utc::now()).await?,
        })
    })
    .await
    .map(Json)
}

/// `POST /v1/subscribers/{name}/enable`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Enabled {
    pub subscriber: String,
    /// Whether it was disabled (by a 410) before this call.
    pub was_disabled: bool,
}

async fn enable_subscriber(
    State(state): State<AdminState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Enabled>, ApiError> {
    let Path(name) = name?;
    let enabled = with_store!(state, |store, config| {
        if config.subscriber(&name).is_none() {
            return Err(ApiError::not_found(format!("no subscriber named `{name}`")));
        }
        let was = store.enable_subscriber(&name).await?;
        store.flush().await?;
        if was {
            tracing::info!(subscriber = %name, "subscriber enabled through the admin API");
        }
        Ok(Enabled {
            subscriber: name,
            was_disabled: was,
        })
    })
    .await?;
    state.inner.waker.wake();
    Ok(Json(enabled))
}

/// `GET /v1/dead-letters`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeadLetters {
    /// Oldest first within each subscriber.
    pub dead_letters: Vec<DeliveryRow>,
    /// More dead letters match than `limit` allowed.
    pub truncated: bool,
}

async fn list_dead_letters(
    State(state): State<AdminState>,
    RawQuery(query): RawQuery,
) -> Result<Json<DeadLetters>, ApiError> {
    let mut subscriber = None;
    let mut event = None;
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in query_pairs(query.as_deref(), &["subscriber", "event", "limit"], &[])? {
        match key.as_str() {
            "subscriber" => subscriber = Some(value),
            "event" => event = Some(value),
            "limit" => limit = parse_limit(&value)?,
            _ => {}
        }
    }
    with_store!(state, |store, _| {
        let rows = store
            .deliveries(
                subscriber.as_deref(),
                Some(DeliveryState::Dead),
                event.as_deref(),
            )
            .await?;
        let truncated = rows.len() > limit;
        Ok(DeadLetters {
            dead_letters: rows
                .into_iter()
                .take(limit)
                .map(|(subscriber, log_seq, entry)| DeliveryRow::new(subscriber, log_seq, entry))
                .collect(),
            truncated,
        })
    })
    .await
    .map(Json)
}

/// Which dead letters `POST /v1/dead-letters/retry` requeues: by subscriber, by event,
/// both, or `all: true`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriber: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

impl RetryRequest {
    /// Refuses a request that selects nothing (nothing is requeued by accident) or
    /// combines `all` with a selection.
    pub fn validate(&self) -> Result<(), ApiError> {
        match (&self.subscriber, &self.event, self.all) {
            (None, None, false) => Err(ApiError::bad_request(
                "say which dead letters: `subscriber`, `event`, or `\"all\": true`",
            )),
            (Some(_), _, true) | (_, Some(_), true) => Err(ApiError::bad_request(
                "`all` cannot be combined with `subscriber` or `event`",
            )),
            _ => Ok(()),
        }
    }
}

/// The answer of `POST /v1/dead-letters/retry`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Requeued {
    pub requeued: usize,
}

async fn retry_dead_letters(
    State(state): State<AdminState>,
    body: Result<Json<RetryRequest>, JsonRejection>,
) -> Result<Json<Requeued>, ApiError> {
    let Json(request) = body?;
    request.validate()?;
    let requeued = with_store!(state, |store, config| {
        if let Some(name) = &request.subscriber
            && config.subscriber(name).is_none()
        {
            return Err(ApiError::not_found(format!("no subscriber named `{name}`")));
        }
        let n = store
            .retry_dead(
                request.subscriber.as_deref(),
                request.event.as_deref(),
                Utc::now(),
            )
            .await?;
        store.flush().await?;
        Ok(n)
    })
    .await?;
    if requeued > 0 {
        tracing::info!(requeued, "dead letters requeued through the admin API");
        state.inner.waker.wake();
    }
    Ok(Json(Requeued { requeued }))
}

async fn sync_now(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Path(id) = id?;
    let Some(triggered) = state.inner.triggers.trigger(&id) else {
        return Err(ApiError::not_found(format!(
            "no integration `{id}` in the config"
        )));
    };
    tracing::info!(
        integration = %id,
        coalesced = triggered.coalesced(),
        "poll requested through the admin API"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "integration_id": id,
            "triggered": true,
            "coalesced": triggered.coalesced(),
        })),
    ))
}

/// 404 unless `id` is an integration of the config.
fn require_integration(config: &crate::config::Config, id: &str) -> Result<(), ApiError> {
    match config.integration(id) {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!(
            "no integration `{id}` in the config"
        ))),
    }
}

/// `GET /v1/integrations/{id}/held`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HeldList {
    pub integration: String,
    /// How many events are held.
    pub held: usize,
    /// Of those, how many a sync has held but not judged yet (it is running, or it was cut
    /// short and the next sync judges them): release and drop leave these.
    pub undecided: usize,
    /// Every held event, oldest first, at most `limit`.
    pub events: Vec<EventSummary>,
    /// More are held than `limit` allowed.
    pub truncated: bool,
}

/// `POST /v1/integrations/{id}/held/release`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HeldReleased {
    pub integration: String,
    /// Events moved into the log and queued for delivery.
    pub released: usize,
    /// Held events left for a sync's guard.
    pub undecided: usize,
}

/// `POST /v1/integrations/{id}/held/drop`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HeldDropped {
    pub integration: String,
    /// Events discarded.
    pub dropped: usize,
    /// Held events left for a sync's guard.
    pub undecided: usize,
}

async fn list_held(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Json<HeldList>, ApiError> {
    let Path(id) = id?;
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in query_pairs(query.as_deref(), &["limit"], &[])? {
        if key == "limit" {
            limit = parse_limit(&value)?;
        }
    }
    with_store!(state, |store, config| {
        require_integration(config, &id)?;
        let held = crate::held::held(store, &id).await?;
        let undecided = held.undecided.len();
        // The decided ones come first in the log: oldest first overall.
        let mut records = held.decided;
        records.extend(held.undecided);
        let total = records.len();
        let events = records
            .into_iter()
            .take(limit)
            .map(EventSummary::from_record)
            .collect::<Result<_, _>>()?;
        Ok(HeldList {
            integration: id,
            held: total,
            undecided,
            events,
            truncated: total > limit,
        })
    })
    .await
    .map(Json)
}

async fn release_held(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<HeldReleased>, ApiError> {
    let Path(id) = id?;
    let answer = with_store!(state, |store, config| {
        require_integration(config, &id)?;
        // Flushed inside: on disk, and in the delivery queues, before the wake below.
        let decision = crate::held::release(store, &id).await?;
        Ok(HeldReleased {
            integration: id,
            released: decision.decided,
            undecided: decision.undecided,
        })
    })
    .await?;
    tracing::info!(
        integration = %answer.integration,
        released = answer.released,
        undecided = answer.undecided,
        "held events released through the admin API"
    );
    if answer.released > 0 {
        state.inner.waker.wake();
    }
    Ok(Json(answer))
}

async fn drop_held(
    State(state): State<AdminState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<HeldDropped>, ApiError> {
    let Path(id) = id?;
    let answer = with_store!(state, |store, config| {
        require_integration(config, &id)?;
        let decision = crate::held::drop(store, &id).await?;
        Ok(HeldDropped {
            integration: id,
            dropped: decision.decided,
            undecided: decision.undecided,
        })
    })
    .await?;
    tracing::info!(
        integration = %answer.integration,
        dropped = answer.dropped,
        undecided = answer.undecided,
        "held events dropped through the admin API"
    );
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        for seq in [0, 1, 42, u64::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(seq)), Some(seq));
        }
        for bad in ["", "42", "bHM6", "bHM6eA", "!!!", "ls:42"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_filter_parses_the_cli_filters() {
        let f = events_filter(Some(
            "type=stage_changed,rejected&type=outcome_hired&integration=gh%3A1&limit=5",
        ))
        .expect("parses");
        assert_eq!(
            f.types,
            vec![
                EventType::StageChanged,
                EventType::Rejected,
                EventType::OutcomeHired
            ]
        );
        assert_eq!(f.integration_id.as_deref(), Some("gh:1"));
        assert_eq!(f.limit, Some(5));
        assert_eq!(
            events_filter(None).expect("empty").limit,
            Some(DEFAULT_LIMIT)
        );
        for bad in [
            "type=nope",
            "limit=0",
            "limit=1001",
            "limit=x",
            "cursor=zz",
            "since=yesterday",
            "color=red",
            "integration=a&integration=b",
        ] {
            let err = events_filter(Some(bad)).expect_err(bad);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn a_retry_request_selects_something_and_never_all_with_a_selection() {
        let parse = |body: &str| serde_json::from_str::<RetryRequest>(body);
        for ok in [
            r#"{"subscriber": "crm"}"#,
            r#"{"event": "evt_0"}"#,
            r#"{"subscriber": "crm", "event": "evt_0"}"#,
            r#"{"all": true}"#,
        ] {
            parse(ok).expect(ok).validate().expect(ok);
        }
        for bad in [
            "{}",
            r#"{"all": false}"#,
            r#"{"all": true, "subscriber": "crm"}"#,
            r#"{"all": true, "event": "evt_0"}"#,
        ] {
            let err = parse(bad).expect(bad).validate().expect_err(bad);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(parse(r#"{"subscribers": "crm"}"#).is_err(), "unknown keys");
        // What the CLI sends is what the API reads.
        let all = RetryRequest {
            all: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&all).expect("json"),
            r#"{"all":true}"#
        );
        let one = RetryRequest {
            subscriber: Some("crm".into()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&one).expect("json"),
            r#"{"subscriber":"crm"}"#
        );
    }

    /// Every route of the router is in the OpenAPI document, and every operation of the
    /// document is a route.
    #[test]
    fn openapi_document_matches_the_routes() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if ["get", "post", "put", "patch", "delete", "head", "options"]
                    .contains(&method.as_str())
                {
                    documented.insert((method.clone(), path.clone()));
                }
            }
        }
        let (_, routes) = routes();
        let served: BTreeSet<(String, String)> = routes
            .iter()
            .map(|(m, p)| (m.to_string(), format!("/v1{p}")))
            .collect();
        assert_eq!(served.len(), routes.len(), "no route twice");
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from openapi.json: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "openapi.json documents routes that do not exist: {unserved:?}"
        );
        // Every $ref resolves.
        let text = OPENAPI;
        for (i, _) in text.match_indices("\"$ref\": \"#/components/schemas/") {
            let rest = &text[i + "\"$ref\": \"#/components/schemas/".len()..];
            let name = &rest[..rest.find('"').expect("closing quote")];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "unresolved $ref {name}"
            );
        }
    }
}

/// `POST /v1/erase`: whose data to erase.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    #[serde(default, alias = "integration_id")]
    pub integration: Option<String>,
    #[serde(
        default,
        alias = "application_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub application: Option<String>,
    #[serde(
        default,
        alias = "candidate_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub candidate: Option<String>,
}

impl EraseRequest {
    /// The integration and the subject; 400 naming the field otherwise.
    pub fn validate(&self) -> Result<(String, ErasureSubject), ApiError> {
        let check = |field: &str, id: &str| {
            check_id(id).map_err(|why| ApiError::bad_request(format!("`{field}` {why}")))
        };
        let Some(integration) = &self.integration else {
            return Err(ApiError::bad_request("`integration` is required"));
        };
        check("integration", integration)?;
        let subject = match (&self.application, &self.candidate) {
            (Some(a), None) => {
                check("application", a)?;
                ErasureSubject::Application(a.clone())
            }
            (None, Some(c)) => {
                check("candidate", c)?;
                ErasureSubject::Candidate(c.clone())
            }
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "give one of `application` and `candidate`, not both",
                ));
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "say whose data: `application` or `candidate`",
                ));
            }
        };
        Ok((integration.clone(), subject))
    }
}

async fn erase(
    State(state): State<AdminState>,
    body: Result<Json<EraseRequest>, JsonRejection>,
) -> Result<Json<EraseReport>, ApiError> {
    let Json(request) = body?;
    let (integration, subject) = request.validate()?;
    let report = with_store!(state, |store, _config| {
        let report = store.erase(&integration, &subject).await?;
        let purge = store.purge_erased(&report).await?;
        crate::erase::log_erasure(&integration, &subject, &report, &purge, "admin API");
        Ok(report)
    })
    .await?;
    Ok(Json(report))
}
