//! The admin HTTP server of a running daemon: auth, every `/v1` route (happy path and bad
//! input), health, metrics, and Kombo's push trigger.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::Reply;
use crate::common::harness::{Harness, KOMBO_SECRET, LIMIT, Options, TOKEN, assert_error, read};
use hirehook::admin::kombo::sign;
use hirehook::sim::{FaultKind, Mutation, ScriptedFault};
use hirehook::store::{DeliveryState, EventFilter};
use serde_json::{Value, json};

/// A concrete request for every `/v1` route of the route table.
fn concrete(path: &str, harness: &Harness, event_id: &str) -> String {
    format!(
        "/v1{}",
        path.replace(
            "{id}",
            if path.starts_with("/events") {
                event_id
            } else {
                "x"
            }
        )
        .replace("{name}", "crm")
    )
    .replace(
        "/integrations/x/",
        &format!("/integrations/{}/", harness.integration()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_v1_route_requires_the_bearer_token() {
    let harness = Harness::start(Options::default()).await;
    let (_, routes) = hirehook::admin::api::routes();
    assert!(routes.len() >= 9);
    let event = "evt_00000000000000000000000000000000";
    for (method, path) in routes {
        let url = harness.url(&concrete(path, &harness, event));
        let request = |auth: Option<&str>| {
            let mut r = match method {
                "get" => harness.http.get(&url),
                _ => harness.http.post(&url).json(&json!({"all": true})),
            };
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r
        };
        for auth in [
            None,
            Some("Bearer wrong-token"),
            Some("Basic YWRtaW46YWRtaW4="),
            Some(&format!("Bearer {TOKEN}x")[..]),
        ] {
            let response = request(auth).send().await.expect("request");
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer realm=\"hirehook\""),
                "{method} {url}"
            );
            let (status, body) = read(response).await;
            assert_error(status, &body, 401, "unauthorized");
        }
        let response = request(Some(&format!("Bearer {TOKEN}")))
            .send()
            .await
            .expect("request");
        assert_ne!(response.status(), 401, "{method} {url} with the token");
    }
    // Health, readiness and metrics are for orchestrators and scrapers: no token.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let status = harness
            .http
            .get(harness.url(path))
            .send()
            .await
            .expect("get")
            .status();
        assert_ne!(status, 401, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_on_loopback_the_api_is_open() {
    let harness = Harness::start(Options {
        token: None,
        ..Default::default()
    })
    .await;
    let (status, body) = harness.get("/v1/status").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_listener_without_a_token_is_refused() {
    let harness = Harness::start(Options {
        token: None,
        run: false,
        ..Default::default()
    })
    .await;
    let mut daemon = hirehook::daemon::Daemon::new(harness.config.clone(), harness.store().clone())
        .expect("daemon");
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let err = daemon
        .set_admin_listener(listener)
        .expect_err("refused without a token");
    let text = err.to_string();
    assert!(
        text.contains("admin.token") && text.contains("0.0.0.0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_methods_and_long_queries_get_json_errors() {
    let harness = Harness::start(Options::default()).await;
    let (status, body) = harness.get("/v1/nope").await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = harness.get("/nope").await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = read(
        harness
            .http
            .delete(harness.url("/v1/events"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("delete"),
    )
    .await;
    assert_error(status, &body, 405, "method_not_allowed");
    let (status, body) = harness
        .get(&format!("/v1/events?application={}", "a".repeat(5000)))
        .await;
    assert_error(status, &body, 414, "query_too_long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_name_the_stale_integration() {
    let harness = Harness::start(Options {
        unknown_integrations: vec!["greenhouse:doesnotexist".into()],
        ..Default::default()
    })
    .await;
    let (status, body) = read(
        harness
            .http
            .get(harness.url("/healthz"))
            .send()
            .await
            .expect("healthz"),
    )
    .await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));

    // The unknown integration's sync fails; the real one succeeds.
    let known = harness.integration();
    harness
        .wait_store(async |s| {
            s.sync_state("greenhouse:doesnotexist")
                .await
                .is_ok_and(|st| st.last_error.is_some())
                && s.sync_state(&known)
                    .await
                    .is_ok_and(|st| st.last_success_at.is_some())
        })
        .await;
    let (status, body) = read(
        harness
            .http
            .get(harness.url("/readyz"))
            .send()
            .await
            .expect("readyz"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    let stale = body["stale"].as_array().expect("stale list");
    assert_eq!(stale.len(), 1, "{body}");
    assert_eq!(stale[0]["integration"], "greenhouse:doesnotexist");
    let reason = stale[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("never synced successfully"), "{reason}");
    assert!(reason.contains("last error"), "{reason}");
    assert_eq!(body["integrations"][0]["integration"], known.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_once_every_integration_synced() {
    let harness = Harness::start(Options::default()).await;
    let known = harness.integration();
    let baseline_at = harness
        .store()
        .sync_state(&known)
        .await
        .expect("state")
        .last_success_at;
    assert!(baseline_at.is_some());
    let (status, body) = read(
        harness
            .http
            .get(harness.url("/readyz"))
            .send()
            .await
            .expect("readyz"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
}

/// Replaces one stored value with bytes no decoder accepts, with the store closed (sled
/// locks its directory); the key is one of `hirehook::store::keys`.
fn corrupt_value(path: &std::path::Path, key: &[u8]) {
    let open = || sled::open(path);
    let deadline = std::time::Instant::now() + LIMIT;
    let db = loop {
        match open() {
            Ok(db) => break db,
            // The last handle's lock is released by a background thread, a moment later.
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => panic!("cannot open the store to corrupt it: {e}"),
        }
    };
    let tree = db.open_tree("hirehook").expect("tree");
    assert!(tree.get(key).expect("get").is_some(), "the value exists");
    tree.insert(key, &b"\xff\xfe not a record"[..])
        .expect("insert");
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_a_store_that_cannot_be_read() {
    // Events waiting for delivery, then the oldest one's record made unreadable: what a
    // corrupt page does (the probe saw /readyz 200 while /v1/status answered 500 and 48
    // deliveries stayed pending).
    let mut harness = Harness::start(Options {
        run: false,
        ..Default::default()
    })
    .await;
    let integration = harness.integration();
    schedule(&harness, 3);
    {
        let store = harness.store().clone();
        let client =
            hirehook::ats::KomboClient::new(harness.config.kombo.client_config()).expect("client");
        let syncer = hirehook::sync::Syncer::new(
            client,
            store.clone(),
            hirehook::sync::SyncSettings::from_config(&harness.config),
        );
        let report = syncer.sync(&integration, |_| {}).await.expect("sync");
        assert_eq!(report.events(), 3);
        store.flush().await.expect("flush");
    }
    let pending = harness
        .store()
        .deliveries(Some("crm"), Some(DeliveryState::Pending), None)
        .await
        .expect("pending");
    assert_eq!(pending.len(), 3);
    let oldest = pending.iter().map(|(_, seq, _)| *seq).min().expect("one");
    let store = harness.store.take().expect("store");
    store.flush().await.expect("flush");
    drop(store);
    let path = harness.config.store.path.clone();
    corrupt_value(&path, &hirehook::store::keys::event(oldest));
    harness.store = Some(std::sync::Arc::new(
        hirehook::store::Store::open_sled(&path, 16 << 20).expect("the store opens"),
    ));
    harness.run();

    let (status, body) = read(
        harness
            .http
            .get(harness.url("/readyz"))
            .send()
            .await
            .expect("readyz"),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready", "{body}");
    let store = body["store"].as_str().expect("the store failure is named");
    assert!(store.contains("corrupt event record"), "{store}");
    assert!(!store.contains("not a record"), "no stored bytes: {store}");
    // The status view fails on the same store: readiness no longer says otherwise.
    let (status, _) = harness.get("/v1/status").await;
    assert_eq!(status, 500);

    // The deliverer's own failures are named too, once its worker has run into them
    // (a fresh answer after the cached one expires).
    let named = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (status, body) = read(
                harness
                    .http
                    .get(harness.url("/readyz"))
                    .send()
                    .await
                    .expect("readyz"),
            )
            .await;
            assert_eq!(status, 503, "{body}");
            if body["store"]
                .as_str()
                .is_some_and(|s| s.contains("deliveries to crm: reading due deliveries"))
            {
                return;
            }
        }
    };
    tokio::time::timeout(LIMIT, named)
        .await
        .expect("the deliverer's store failure reaches /readyz");
}

/// Schedules an interview on the first `n` live applications; returns their ids.
fn schedule(harness: &Harness, n: usize) -> Vec<String> {
    let integration = harness.integration();
    let apps: Vec<String> = harness.live_apps().into_iter().take(n).collect();
    for app in &apps {
        harness
            .sim
            .sim()
            .apply(&integration, app, Mutation::ScheduleInterview)
            .expect("schedule");
    }
    apps
}

/// Triggers a sync through the API and waits until `n` events are delivered.
async fn sync_and_deliver(harness: &Harness, n: usize) {
    let (status, body) = harness
        .post(
            &format!("/v1/integrations/{}/sync", harness.integration()),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    harness
        .wait_store(async |s| {
            s.deliveries(None, Some(DeliveryState::Delivered), None)
                .await
                .is_ok_and(|d| d.len() >= n)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_page_with_an_opaque_cursor_and_filter_like_the_cli() {
    let harness = Harness::start(Options::default()).await;
    let integration = harness.integration();
    let apps = schedule(&harness, 5);
    harness
        .sim
        .sim()
        .apply(&integration, &apps[0], Mutation::Hire)
        .expect("hire");
    sync_and_deliver(&harness, 6).await;
    let logged = harness
        .store()
        .events(&EventFilter::default())
        .await
        .expect("log");
    assert_eq!(logged.len(), 6);

    // Page by two.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/events?limit=2&cursor={c}"),
            None => "/v1/events?limit=2".to_owned(),
        };
        let (status, body) = harness.get(&path).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        for e in body["events"].as_array().expect("events") {
            assert_eq!(
                e["body"]["data"]["event_id"], e["id"],
                "body is the webhook body"
            );
            seen.push(e["id"].as_str().expect("id").to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    let want: Vec<String> = logged.iter().map(|e| e.id.clone()).collect();
    assert_eq!(seen, want, "every event once, in log order");

    // Filters.
    let (_, body) = harness.get("/v1/events?type=outcome_hired").await;
    let hired = body["events"].as_array().expect("events");
    assert_eq!(hired.len(), 1);
    assert_eq!(hired[0]["application_id"], apps[0].as_str());
    let (_, body) = harness
        .get(&format!(
            "/v1/events?application={}&type=interview_scheduled,outcome_hired",
            apps[0]
        ))
        .await;
    assert_eq!(body["events"].as_array().expect("events").len(), 2);
    let (_, body) = harness.get("/v1/events?integration=greenhouse:other").await;
    assert_eq!(body["events"], json!([]));
    let (_, body) = harness
        .get("/v1/events?since=2000-01-01T00:00:00Z&until=1h")
        .await;
    assert_eq!(
        body["events"],
        json!([]),
        "all were detected within the hour"
    );

    // Bad input.
    for (query, what) in [
        ("cursor=bm9wZQ", "cursor"),
        ("cursor=%%%", "cursor"),
        ("type=hired", "type"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("since=tomorrow", "since"),
        ("colour=blue", "colour"),
    ] {
        let (status, body) = harness.get(&format!("/v1/events?{query}")).await;
        assert_error(status, &body, 400, "bad_request");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(what)),
            "{query}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_with_its_deliveries_and_attempts() {
    let harness = Harness::start(Options::default()).await;
    schedule(&harness, 1);
    sync_and_deliver(&harness, 1).await;
    let event = harness
        .store()
        .events(&EventFilter::default())
        .await
        .expect("log")
        .remove(0);
    let (status, body) = harness.get(&format!("/v1/events/{}", event.id)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["id"], event.id.as_str());
    assert_eq!(body["event"]["type"], "interview_scheduled");
    assert_eq!(body["event"]["log_seq"], event.log_seq);
    let expected_body: Value = serde_json::from_slice(&event.body).expect("json");
    assert_eq!(body["event"]["body"], expected_body);
    let deliveries = body["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["subscriber"], "crm");
    assert_eq!(deliveries[0]["state"], "delivered");
    let attempts = deliveries[0]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["status"], 200);
    assert!(attempts[0]["latency_ms"].is_u64());

    let (status, body) = harness
        .get("/v1/events/evt_0123456789abcdef0123456789abcdef")
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = harness.get("/v1/events/not-an-id").await;
    assert_error(status, &body, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_retried_and_subscribers_enabled() {
    let harness = Harness::start(Options {
        retry_schedule: r#"["10ms"]"#,
        ..Default::default()
    })
    .await;
    harness
        .receiver
        .set_behaviour(Box::new(|_, _| Reply::Status(500)));
    schedule(&harness, 1);
    let (status, _) = harness
        .post(
            &format!("/v1/integrations/{}/sync", harness.integration()),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202);
    harness
        .wait_store(async |s| {
            s.deliveries(None, Some(DeliveryState::Dead), None)
                .await
                .is_ok_and(|d| d.len() == 1)
        })
        .await;

    let (status, body) = harness.get("/v1/dead-letters").await;
    assert_eq!(status, 200, "{body}");
    let dead = body["dead_letters"].as_array().expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["subscriber"], "crm");
    assert_eq!(dead[0]["state"], "dead");
    assert_eq!(dead[0]["attempts"], 2);
    assert_eq!(body["truncated"], false);
    let (_, body) = harness.get("/v1/dead-letters?subscriber=other").await;
    assert_eq!(body["dead_letters"], json!([]));
    let (status, body) = harness.get("/v1/dead-letters?limit=none").await;
    assert_error(status, &body, 400, "bad_request");

    let (status, body) = harness.get("/v1/subscribers").await;
    assert_eq!(status, 200, "{body}");
    let crm = &body["subscribers"][0];
    assert_eq!(crm["name"], "crm");
    assert_eq!(crm["enabled"], true);
    assert_eq!(crm["dead"], 1);
    assert_eq!(crm["pending"], 0);
    assert_eq!(crm["last_error"], "HTTP 500");

    // Bad retry requests.
    let (status, body) = harness.post("/v1/dead-letters/retry", &json!({})).await;
    assert_error(status, &body, 400, "bad_request");
    let (status, body) = harness
        .post("/v1/dead-letters/retry", &json!({"bogus": 1}))
        .await;
    assert_error(status, &body, 422, "invalid_body");
    let (status, body) = harness
        .post("/v1/dead-letters/retry", &json!({"subscriber": "nobody"}))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = read(
        harness
            .http
            .post(harness.url("/v1/dead-letters/retry"))
            .bearer_auth(TOKEN)
            .body("{\"all\": true}")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_error(status, &body, 415, "unsupported_media_type");
    let (status, body) = read(
        harness
            .http
            .post(harness.url("/v1/dead-letters/retry"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(format!(
                "{{\"subscriber\": \"crm\", \"pad\": \"{}\"}}",
                "x".repeat(200_000)
            ))
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = read(
        harness
            .http
            .post(harness.url("/v1/dead-letters/retry"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .expect("post"),
    )
    .await;
    assert_error(status, &body, 400, "bad_request");

    // Retry: the receiver now accepts.
    harness.receiver.set_behaviour(Box::new(|_, _| Reply::Ok));
    let (status, body) = harness
        .post("/v1/dead-letters/retry", &json!({"subscriber": "crm"}))
        .await;
    assert_eq!((status, body), (200, json!({"requeued": 1})));
    harness
        .receiver
        .wait_until(LIMIT, |r| r.iter().any(|x| x.answered == 200))
        .await;

    // A 410 disables the subscriber; the API enables it.
    harness
        .receiver
        .set_behaviour(Box::new(|_, _| Reply::Status(410)));
    let app = harness.live_apps()[1].clone();
    harness
        .sim
        .sim()
        .apply(&harness.integration(), &app, Mutation::ScheduleInterview)
        .expect("schedule");
    harness
        .post(
            &format!("/v1/integrations/{}/sync", harness.integration()),
            &json!({}),
        )
        .await;
    harness
        .wait_store(async |s| s.disabled_reason("crm").await.is_ok_and(|r| r.is_some()))
        .await;
    let (_, body) = harness.get("/v1/subscribers").await;
    assert_eq!(body["subscribers"][0]["enabled"], false);
    assert_eq!(body["subscribers"][0]["pending"], 1);
    assert!(
        body["subscribers"][0]["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("410"))
    );
    harness.receiver.set_behaviour(Box::new(|_, _| Reply::Ok));
    let (status, body) = harness.post("/v1/subscribers/crm/enable", &json!({})).await;
    assert_eq!(
        (status, body),
        (200, json!({"subscriber": "crm", "was_disabled": true}))
    );
    harness
        .wait_store(async |s| {
            s.deliveries(Some("crm"), Some(DeliveryState::Pending), None)
                .await
                .is_ok_and(|d| d.is_empty())
        })
        .await;
    let (status, body) = harness
        .post("/v1/subscribers/nobody/enable", &json!({}))
        .await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_events_are_listed_and_released_through_the_api() {
    let mut harness = Harness::start(Options {
        applications: 200,
        run: false,
        ..Default::default()
    })
    .await;
    let integration = harness.integration();
    let held_path = format!("/v1/integrations/{integration}/held");

    // Nothing held: exact answers.
    harness.run();
    first_sync_done(&harness).await;
    let (status, body) = harness.get(&held_path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"integration": integration, "held": 0, "undecided": 0, "events": [], "truncated": false})
    );
    let (status, body) = harness
        .post(&format!("{held_path}/release"), &json!({}))
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"integration": integration, "released": 0, "undecided": 0})
        )
    );
    let (status, body) = harness.post(&format!("{held_path}/drop"), &json!({})).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"integration": integration, "dropped": 0, "undecided": 0})
        )
    );
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=x",
        "color=red",
        "limit=1&limit=2",
    ] {
        let (status, body) = harness.get(&format!("{held_path}?{bad}")).await;
        assert_error(status, &body, 400, "bad_request");
    }

    // A mass deletion is held; the list pages it, the release queues and wakes.
    let live = harness.live_apps();
    for app in &live {
        harness
            .sim
            .sim()
            .apply(&integration, app, Mutation::Delete)
            .expect("delete");
    }
    let (status, _) = harness
        .post(&format!("/v1/integrations/{integration}/sync"), &json!({}))
        .await;
    assert_eq!(status, 202);
    harness
        .wait_store(async |s| {
            hirehook::held::held(s, &integration)
                .await
                .is_ok_and(|h| h.decided.len() == live.len() && h.undecided.is_empty())
        })
        .await;
    let (status, body) = harness.get(&format!("{held_path}?limit=3")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["held"], live.len());
    assert_eq!(body["truncated"], true);
    let events = body["events"].as_array().expect("events");
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["type"] == "application_deleted"));
    assert!(events[0]["log_seq"].as_u64() < events[1]["log_seq"].as_u64());

    let (status, body) = harness
        .post(&format!("{held_path}/release"), &json!({}))
        .await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"integration": integration, "released": live.len(), "undecided": 0})
        )
    );
    harness
        .receiver
        .wait_until(LIMIT, |r| {
            r.iter().filter(|x| x.answered == 200).count() >= live.len()
        })
        .await;
    let (_, body) = harness.get(&held_path).await;
    assert_eq!(body["held"], 0, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_openapi_routes() {
    let harness = Harness::start(Options::default()).await;
    let (status, body) = harness.get("/v1/status").await;
    assert_eq!(status, 200, "{body}");
    let integration = &body["integrations"][0];
    assert_eq!(integration["id"], harness.integration().as_str());
    assert_eq!(integration["baseline_done"], true);
    assert!(integration["applications"].as_u64().is_some_and(|n| n > 0));
    assert!(integration["watermark"].is_string());
    assert_eq!(body["subscribers"][0]["name"], "crm");

    let (status, body) = harness.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::from_str::<Value>(hirehook::admin::api::OPENAPI).expect("json")
    );

    let (status, body) = harness
        .post("/v1/integrations/greenhouse:nope/sync", &json!({}))
        .await;
    assert_error(status, &body, 404, "not_found");
}

// ---------------------------------------------------------------------------------------
// Kombo's push trigger
// ---------------------------------------------------------------------------------------

/// A signed-to-be `data-changed` body with an id of its own.
fn data_changed(integration: &str, models: &[&str]) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    data_changed_with_id(&format!("evt_kombo_{n}"), integration, models)
}

fn data_changed_with_id(id: &str, integration: &str, models: &[&str]) -> Vec<u8> {
    let models: Vec<Value> = models.iter().map(|m| json!({"name": m})).collect();
    serde_json::to_vec(&json!({
        "id": id,
        "type": "data-changed",
        "data": {
            "integration_id": integration,
            "integration_tool": "greenhouse",
            "integration_category": "ATS",
            "changed_models": models,
        }
    }))
    .expect("json")
}

async fn post_kombo(harness: &Harness, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
    let mut request = harness
        .http
        .post(harness.url("/kombo/webhook"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(s) = signature {
        request = request.header("x-kombo-signature", s);
    }
    read(request.send().await.expect("post")).await
}

/// Waits until the simulator served more than `before` requests; panics after `limit`.
async fn served_more_than(harness: &Harness, before: u64, limit: Duration) {
    let wait = async {
        while harness.sim.sim().requests_served() <= before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(limit, wait)
        .await
        .expect("a sync within the limit");
}

/// Waits until the daemon's first sync (at start) is over: only triggers cause syncs then
/// (poll_interval is 1h).
async fn first_sync_done(harness: &Harness) {
    let integration = harness.integration();
    let baseline = harness.baseline_at;
    harness
        .wait_store(async |s| {
            s.sync_state(&integration)
                .await
                .is_ok_and(|st| st.last_success_at != baseline)
        })
        .await;
    // The sync's state is written before its metrics count it: wait for both, so a test
    // that compares counts afterwards starts from a settled number.
    let counted = async {
        while sync_count(&harness.metrics().await) < 1.0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), counted)
        .await
        .expect("the first sync is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_data_changed_webhook_polls_within_a_second() {
    let harness = Harness::start(Options::default()).await;
    first_sync_done(&harness).await;
    let integration = harness.integration();
    let app = harness.live_apps()[0].clone();
    harness
        .sim
        .sim()
        .apply(&integration, &app, Mutation::ScheduleInterview)
        .expect("schedule");
    let before = harness.sim.sim().requests_served();
    let body = data_changed(&integration, &["ats_jobs", "ats_applications"]);
    let signature = sign(KOMBO_SECRET, &body);
    let (status, reply) = post_kombo(&harness, body, Some(signature)).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["triggered"], true);
    served_more_than(&harness, before, Duration::from_secs(1)).await;
    // And the change it announced is delivered.
    harness
        .receiver
        .wait_until(LIMIT, |r| r.iter().any(|x| x.application() == app))
        .await;

    // A model that does not affect applications, or an unknown integration: 200, ignored.
    for body in [
        data_changed(&integration, &["ats_jobs"]),
        data_changed("greenhouse:unknown", &["ats_applications"]),
    ] {
        let signature = sign(KOMBO_SECRET, &body);
        let (status, reply) = post_kombo(&harness, body, Some(signature)).await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["triggered"], false);
    }
    // Signed but not JSON: 400.
    let body = b"not json".to_vec();
    let signature = sign(KOMBO_SECRET, &body);
    let (status, reply) = post_kombo(&harness, body, Some(signature)).await;
    assert_error(status, &reply, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_kombo_webhook_is_refused_and_triggers_nothing() {
    let harness = Harness::start(Options::default()).await;
    first_sync_done(&harness).await;
    let integration = harness.integration();
    let syncs_before = sync_count(&harness.metrics().await);
    let served_before = harness.sim.sim().requests_served();
    let body = data_changed(&integration, &["ats_applications"]);
    for signature in [
        None,
        Some(sign("whsec_wrong", &body)),
        Some(sign(KOMBO_SECRET, b"another body")),
        Some("!!".into()),
    ] {
        // The bearer token does not stand in for the signature.
        let mut request = harness
            .http
            .post(harness.url("/kombo/webhook"))
            .bearer_auth(TOKEN)
            .body(body.clone());
        if let Some(s) = signature {
            request = request.header("x-kombo-signature", s);
        }
        let (status, reply) = read(request.send().await.expect("post")).await;
        assert_error(status, &reply, 401, "unauthorized");
    }
    let metrics = harness.metrics().await;
    let samples = parse_openmetrics(&metrics);
    assert_eq!(
        samples.get(&key(
            "hirehook_kombo_webhooks_total",
            &[("result", "unauthorized")]
        )),
        Some(&4.0)
    );
    assert_eq!(
        samples.get(&key(
            "hirehook_kombo_webhooks_total",
            &[("result", "triggered")]
        )),
        None
    );
    assert_eq!(sync_count(&metrics), syncs_before);
    assert_eq!(harness.sim.sim().requests_served(), served_before);
}

/// Posts each body, signed, `concurrency` at a time; the answers in any order.
async fn post_kombo_all(
    harness: &Harness,
    bodies: Vec<Vec<u8>>,
    concurrency: usize,
) -> Vec<(u16, Value)> {
    use futures::StreamExt as _;
    futures::stream::iter(bodies)
        .map(|body| {
            let signature = sign(KOMBO_SECRET, &body);
            post_kombo(harness, body, Some(signature))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Waits until `hirehook_syncs_total` reaches `n`.
async fn syncs_reach(harness: &Harness, n: f64) {
    let wait = async {
        while sync_count(&harness.metrics().await) < n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(LIMIT, wait)
        .await
        .expect("the syncs are counted within the limit");
}

fn webhooks_counted(metrics: &str, result: &str) -> Option<f64> {
    parse_openmetrics(metrics)
        .get(&key("hirehook_kombo_webhooks_total", &[("result", result)]))
        .copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_kombo_webhook_is_acted_on_once() {
    let harness = Harness::start(Options::default()).await;
    first_sync_done(&harness).await;
    let integration = harness.integration();
    let syncs_before = sync_count(&harness.metrics().await);

    // What the probe did: the same signed body 300 times, 50 at a time.
    let body = data_changed_with_id("evt_replayed", &integration, &["ats_applications"]);
    let answers = post_kombo_all(&harness, vec![body; 300], 50).await;
    let acted: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 202)
        .collect();
    assert_eq!(
        acted.len(),
        1,
        "exactly one acted on, e.g. {:?}",
        acted.iter().take(2).collect::<Vec<_>>()
    );
    assert_eq!(acted[0].1["triggered"], true);
    for (status, reply) in answers.iter().filter(|(status, _)| *status != 202) {
        assert_eq!(*status, 200, "{reply}");
        assert_eq!(reply["triggered"], false, "{reply}");
        let reason = reply["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("duplicate webhook id evt_replayed"),
            "{reason}"
        );
    }
    let metrics = harness.metrics().await;
    assert_eq!(webhooks_counted(&metrics, "triggered"), Some(1.0));
    assert_eq!(webhooks_counted(&metrics, "duplicate"), Some(299.0));
    assert_eq!(webhooks_counted(&metrics, "coalesced"), None);

    // The one trigger polls once, and leaves nothing queued behind it: the next trigger
    // queues a poll of its own.
    syncs_reach(&harness, syncs_before + 1.0).await;
    let (status, reply) = harness
        .post(&format!("/v1/integrations/{integration}/sync"), &json!({}))
        .await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["coalesced"], false, "{reply}");
    syncs_reach(&harness, syncs_before + 2.0).await;

    // A new id is acted on; a body without an id is handled as before (no replay check).
    let (status, reply) = post_kombo_all(
        &harness,
        vec![data_changed(&integration, &["ats_offers"])],
        1,
    )
    .await
    .remove(0);
    assert_eq!(
        (status, &reply["triggered"]),
        (202, &json!(true)),
        "{reply}"
    );
    let no_id = serde_json::to_vec(&json!({
        "type": "data-changed",
        "data": {"integration_id": integration, "changed_models": [{"name": "ats_jobs"}]}
    }))
    .expect("json");
    for (status, reply) in post_kombo_all(&harness, vec![no_id.clone(), no_id], 1).await {
        assert_eq!(status, 200, "{reply}");
        assert!(
            reply["reason"]
                .as_str()
                .is_some_and(|r| r.contains("none of")),
            "ignored for its models, not as a duplicate: {reply}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_during_a_running_sync_queue_exactly_one_more_sync() {
    let harness = Harness::start(Options::default()).await;
    first_sync_done(&harness).await;
    let integration = harness.integration();
    let sim = harness.sim.sim();
    // Hold the next sync on its first page for 3 s (under the client's 5 s timeout).
    let mut faults = sim.faults();
    faults.slow_delay = Duration::from_secs(3);
    sim.set_faults(faults).expect("faults");
    sim.script_fault(ScriptedFault::page(&integration, 1, FaultKind::Slow));
    let syncs_before = sync_count(&harness.metrics().await);
    let served_before = sim.requests_served();

    let sync_path = format!("/v1/integrations/{integration}/sync");
    let (status, reply) = harness.post(&sync_path, &json!({})).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["coalesced"], false, "nothing was queued: {reply}");
    served_more_than(&harness, served_before, LIMIT).await;

    // While it runs: 50 webhooks with distinct ids, and operators asking too.
    let bodies = (0..50)
        .map(|_| data_changed(&integration, &["ats_applications"]))
        .collect();
    let answers = post_kombo_all(&harness, bodies, 50).await;
    let mut api_answers = Vec::new();
    for _ in 0..5 {
        api_answers.push(harness.post(&sync_path, &json!({})).await);
    }
    assert_eq!(
        sync_count(&harness.metrics().await),
        syncs_before,
        "the held sync is still running (if this fails, the machine took longer than 3 s \
         for 55 local requests)"
    );
    for (status, reply) in answers.iter().chain(&api_answers) {
        assert_eq!(*status, 202, "{reply}");
        assert_eq!(reply["triggered"], true, "{reply}");
    }
    let queued = answers
        .iter()
        .chain(&api_answers)
        .filter(|(_, reply)| reply["coalesced"] == false)
        .count();
    let coalesced = answers
        .iter()
        .chain(&api_answers)
        .filter(|(_, reply)| reply["coalesced"] == true)
        .count();
    assert_eq!(
        (queued, coalesced),
        (1, 54),
        "one follow-up, the rest coalesced"
    );
    let metrics = harness.metrics().await;
    let counted = |result| webhooks_counted(&metrics, result).unwrap_or(0.0);
    assert_eq!(counted("triggered") + counted("coalesced"), 50.0);
    assert!(counted("triggered") <= 1.0);

    // The held sync, then exactly one follow-up: once it has run, nothing is queued.
    syncs_reach(&harness, syncs_before + 2.0).await;
    let (status, reply) = harness.post(&sync_path, &json!({})).await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(
        reply["coalesced"], false,
        "no second follow-up was queued: {reply}"
    );
    syncs_reach(&harness, syncs_before + 3.0).await;
}

// ---------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------

type SampleKey = (String, Vec<(String, String)>);

fn key(name: &str, labels: &[(&str, &str)]) -> SampleKey {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

fn sync_count(metrics: &str) -> f64 {
    parse_openmetrics(metrics)
        .iter()
        .filter(|((name, _), _)| name == "hirehook_syncs_total")
        .map(|(_, v)| v)
        .sum()
}

/// A strict reader of the OpenMetrics text format (what Prometheus scrapes): every line is
/// a `# HELP`/`# TYPE`/`# UNIT` descriptor or a sample of a declared family, `# EOF` ends
/// it, label values are quoted and escaped, values are numbers. Panics on anything else.
fn parse_openmetrics(text: &str) -> BTreeMap<SampleKey, f64> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().expect("descriptor kind");
            let name = parts.next().expect("descriptor name");
            let value = parts.next().expect("descriptor value");
            assert!(name_ok(name), "bad metric name in {line:?}");
            match kind {
                "TYPE" => {
                    assert!(
                        [
                            "counter",
                            "gauge",
                            "histogram",
                            "summary",
                            "unknown",
                            "info",
                            "stateset",
                            "gaugehistogram"
                        ]
                        .contains(&value),
                        "bad type in {line:?}"
                    );
                    assert!(
                        families.insert(name.to_owned(), value.to_owned()).is_none(),
                        "family declared twice: {line:?}"
                    );
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown descriptor {line:?}"),
            }
            continue;
        }
        // name{labels} value
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name, parse_labels(body, line))
            }
        };
        assert!(name_ok(name), "bad sample name in {line:?}");
        let family = families
            .iter()
            .find(|(f, t)| {
                let suffixes: &[&str] = match t.as_str() {
                    "counter" => &["_total", "_created"],
                    "histogram" => &["_bucket", "_count", "_sum", "_created"],
                    _ => &[""],
                };
                suffixes.iter().any(|s| name == format!("{f}{s}"))
            })
            .unwrap_or_else(|| panic!("sample of an undeclared family: {line:?}"));
        assert!(name.starts_with("hirehook_"), "prefixed: {line:?}");
        let _ = family;
        let mut labels = labels;
        labels.sort();
        assert!(
            samples.insert((name.to_owned(), labels), value).is_none(),
            "series twice: {line:?}"
        );
    }
    samples
}

fn parse_labels(body: &str, line: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad label name in {line:?}"
        );
        assert_eq!(chars.next(), Some('"'), "label value is quoted in {line:?}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    other => panic!("bad escape {other:?} in {line:?}"),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated label value in {line:?}"),
            }
        }
        labels.push((name, value));
        match chars.next() {
            Some(',') | None => {}
            other => panic!("unexpected {other:?} after a label in {line:?}"),
        }
    }
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_a_real_sync_and_delivery() {
    let harness = Harness::start(Options::default()).await;
    first_sync_done(&harness).await;
    let integration = harness.integration();
    let before = parse_openmetrics(&harness.metrics().await);
    let ok_syncs = key(
        "hirehook_syncs_total",
        &[("integration", &integration), ("outcome", "ok")],
    );
    assert_eq!(before.get(&ok_syncs), Some(&1.0), "the daemon's first sync");

    schedule(&harness, 3);
    sync_and_deliver(&harness, 3).await;
    // The deliveries can land before the sync that made them has finished and counted
    // itself.
    syncs_reach(&harness, 2.0).await;
    let text = harness.metrics().await;
    let after = parse_openmetrics(&text);
    let get = |name: &str, labels: &[(&str, &str)]| after.get(&key(name, labels)).copied();
    let int = [("integration", integration.as_str())];
    let crm = [("subscriber", "crm")];
    assert_eq!(
        get("hirehook_syncs_total", &[int[0], ("outcome", "ok")]),
        Some(2.0)
    );
    assert_eq!(
        get(
            "hirehook_sync_duration_seconds_count",
            &[int[0], ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert!(get("hirehook_kombo_pages_total", &int).is_some_and(|n| n >= 2.0));
    assert!(get("hirehook_kombo_records_total", &int).is_some_and(|n| n >= 3.0));
    assert_eq!(
        get(
            "hirehook_events_total",
            &[int[0], ("event_type", "interview_scheduled")]
        ),
        Some(3.0)
    );
    assert_eq!(
        get(
            "hirehook_deliveries_total",
            &[crm[0], ("outcome", "delivered")]
        ),
        Some(3.0)
    );
    assert_eq!(
        get(
            "hirehook_delivery_attempts_total",
            &[crm[0], ("outcome", "delivered")]
        ),
        Some(3.0)
    );
    assert_eq!(
        get("hirehook_delivery_latency_seconds_count", &crm),
        Some(3.0)
    );
    assert_eq!(
        get(
            "hirehook_delivery_latency_seconds_bucket",
            &[crm[0], ("le", "+Inf")]
        ),
        Some(3.0)
    );
    assert_eq!(get("hirehook_outbox_pending", &crm), Some(0.0));
    assert_eq!(
        get("hirehook_outbox_oldest_pending_age_seconds", &crm),
        Some(0.0)
    );
    assert_eq!(get("hirehook_dead_letters", &crm), Some(0.0));
    assert_eq!(get("hirehook_subscriber_disabled", &crm), Some(0.0));
    assert!(get("hirehook_integration_last_success_timestamp", &int).is_some_and(|t| t > 0.0));
    assert!(get("hirehook_integration_applications", &int).is_some_and(|n| n > 0.0));

    // Kombo errors by code: Kombo's error code on the next sync's first page.
    harness.sim.sim().script_fault(ScriptedFault::page(
        &integration,
        1,
        FaultKind::Error {
            status: 409,
            code: "INTEGRATION.SETUP_SYNC_PENDING".into(),
            message: None,
        },
    ));
    harness
        .post(&format!("/v1/integrations/{integration}/sync"), &json!({}))
        .await;
    let code = key(
        "hirehook_kombo_errors_total",
        &[int[0], ("code", "INTEGRATION.SETUP_SYNC_PENDING")],
    );
    let counted = async {
        while !parse_openmetrics(&harness.metrics().await).contains_key(&code) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(LIMIT, counted)
        .await
        .expect("the Kombo error is counted by its code");
}

#[test]
fn the_parser_rejects_what_prometheus_would() {
    let ok = "# TYPE hirehook_x counter\nhirehook_x_total{a=\"b\\\"c\"} 1\n# EOF\n";
    assert_eq!(
        parse_openmetrics(ok).get(&key("hirehook_x_total", &[("a", "b\"c")])),
        Some(&1.0)
    );
    for bad in [
        "hirehook_x_total 1\n# EOF\n",
        "# TYPE hirehook_x counter\nhirehook_x_total 1\n",
        "# TYPE hirehook_x counter\nhirehook_x_total{a=b} 1\n# EOF\n",
        "# TYPE hirehook_x counter\nhirehook_x_total one\n# EOF\n",
    ] {
        let result = std::panic::catch_unwind(|| parse_openmetrics(bad));
        assert!(result.is_err(), "{bad:?} is refused");
    }
}
