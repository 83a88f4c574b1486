//! A hostile or broken Kombo against the real daemon (`hirehook run` as its own process):
//! an endless body, a page with more records than asked for, a cursor that loops, a cursor
//! too long to send, a byte that is not UTF-8, an oversized record, an error body holding a
//! secret, and an integration whose only record is unreadable — all at once, beside a
//! healthy integration that must not notice.
//!
//! Each is checked where an operator looks: `/v1/status`, `/readyz`, the log; and the
//! daemon's peak memory is read from `/proc/PID/status`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "hostile-upstream-admin-token-0123";
/// The documented ceiling for the daemon's peak RSS under these inputs.
const RSS_LIMIT_KB: u64 = 200 * 1024;
/// `[kombo] page_size` of the test config.
const PAGE_SIZE: usize = 5;

fn record(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","changed_at":"2024-01-02T03:04:05.678Z","interviews":[],"offers":[],"candidate":{{"id":"c-{id}","first_name":"Jane","last_name":"Roe"}}}}"#
    )
}

fn page(next: Option<&str>, records: &[String]) -> String {
    let next = match next {
        Some(c) => format!("\"{c}\""),
        None => "null".to_owned(),
    };
    format!(
        r#"{{"status":"success","data":{{"next":{next},"results":[{}]}}}}"#,
        records.join(",")
    )
}

/// Requests per integration.
type Counts = Arc<Mutex<HashMap<String, usize>>>;

async fn kombo(
    State(counts): State<Counts>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let integration = headers
        .get("x-integration-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    *counts
        .lock()
        .expect("counts")
        .entry(integration.clone())
        .or_default() += 1;
    let cursor = query.get("cursor").map(String::as_str);
    let json = |body: Vec<u8>| {
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("response")
    };
    match integration.as_str() {
        "healthy" => json(page(None, &[record("h1"), record("h2")]).into_bytes()),
        // Never ends: the client must stop reading at kombo.max_response_bytes.
        "endless" => {
            let head = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(
                    br#"{"status":"success","data":{"next":null,"results":["#,
                ))
            });
            let chunk = Bytes::from(format!("{},", record("e")).repeat(200));
            let tail = futures::stream::repeat_with(move || Ok(chunk.clone()));
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures::StreamExt::chain(head, tail)))
                .expect("response")
        }
        "too_many" => {
            let records: Vec<String> = (0..PAGE_SIZE + 1)
                .map(|i| record(&format!("t{i}")))
                .collect();
            json(page(None, &records).into_bytes())
        }
        // Page 1 points to page 2, which points to itself.
        "looping" => match cursor {
            None => json(page(Some("p2"), &[record("l1")]).into_bytes()),
            Some(_) => json(page(Some("p2"), &[record("l2")]).into_bytes()),
        },
        "long_cursor" => {
            let cursor = "c".repeat(10 * 1024 * 1024);
            json(page(Some(&cursor), &[record("c1")]).into_bytes())
        }
        "not_utf8" => {
            let bad = record("u2").replace("Jane", "Ja\u{1}ne");
            let mut body = page(None, &[record("u1"), bad, record("u3")]).into_bytes();
            let at = body.windows(1).position(|w| w == [1]).expect("marker byte");
            body[at] = 0xff;
            json(body)
        }
        "big_record" => {
            let big = record("b2").replace("Jane", &"J".repeat(40 * 1024));
            json(page(None, &[record("b1"), big]).into_bytes())
        }
        "only_bad" => json(
            page(
                None,
                &[r#"{"id":"o1","changed_at":"yesterday"}"#.to_owned()],
            )
            .into_bytes(),
        ),
        "leaky_error" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            "db_password=hunter2",
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

const INTEGRATIONS: [&str; 9] = [
    "healthy",
    "endless",
    "too_many",
    "looping",
    "long_cursor",
    "not_utf8",
    "big_record",
    "only_bad",
    "leaky_error",
];

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

async fn admin_get(http: &reqwest::Client, admin: SocketAddr, path: &str) -> (u16, Value) {
    let response = http
        .get(format!("http://{admin}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_upstream_is_bounded_reported_and_contained() {
    let counts: Counts = Arc::default();
    let app = Router::new()
        .route("/ats/applications", get(kombo))
        .with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let upstream = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().expect("tempdir");
    let admin = free_port();
    let mut config = format!(
        r#"
[store]
path = "{}"

[kombo]
base_url = "http://{upstream}"
api_key = "k"
poll_interval = "1h"
request_timeout = "20s"
page_size = {PAGE_SIZE}
max_record_bytes = "32KiB"

[admin]
listen = "{admin}"
token = "{TOKEN}"
"#,
        dir.path().join("store").display()
    );
    for id in INTEGRATIONS {
        config.push_str(&format!("\n[[integrations]]\nid = \"{id}\"\n"));
    }
    let config_path = dir.path().join("hirehook.toml");
    std::fs::write(&config_path, config).expect("config");

    let mut child = Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(["run", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("hirehook run starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let log = tokio::spawn(async move {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text).await;
        text
    });

    // Every integration's first sync has ended, one way or the other.
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let status = loop {
        if let Ok(response) = http
            .get(format!("http://{admin}/v1/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            let body: Value = response.json().await.expect("status JSON");
            let done = body["integrations"].as_array().is_some_and(|all| {
                all.iter()
                    .all(|i| !i["last_success_at"].is_null() || !i["last_error"].is_null())
            });
            if done {
                break body;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "syncs did not end within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let peak = crate::common::process::peak_rss_kb(child.id().expect("running"));
    eprintln!(
        "peak RSS {peak} kB; requests {:?}",
        counts.lock().expect("counts")
    );
    let by_id: HashMap<&str, &Value> = status["integrations"]
        .as_array()
        .expect("integrations")
        .iter()
        .map(|i| (i["id"].as_str().expect("id"), i))
        .collect();
    let error = |id: &str| by_id[id]["last_error"].as_str().unwrap_or("").to_owned();

    // The healthy integration did not notice.
    let healthy = by_id["healthy"];
    assert!(healthy["last_error"].is_null(), "{healthy}");
    assert_eq!(healthy["applications"], 2, "{healthy}");
    assert!(!healthy["watermark"].is_null(), "{healthy}");

    // 1. An endless body is cut at max_response_bytes: bounded memory, one request.
    assert!(
        error("endless").contains("max_response_bytes"),
        "{}",
        error("endless")
    );
    assert!(peak < RSS_LIMIT_KB, "peak RSS {peak} kB");
    // A page with more records than asked for is refused.
    assert!(
        error("too_many").contains("more than the page_size of 5"),
        "{}",
        error("too_many")
    );
    // 2. A cursor loop ends the sync, naming the integration; the watermark stays.
    assert!(
        error("looping").contains("cursor loop"),
        "{}",
        error("looping")
    );
    assert!(
        error("looping").contains("integration looping"),
        "{}",
        error("looping")
    );
    assert!(by_id["looping"]["watermark"].is_null());
    // 9. A cursor that can never be sent is not retried.
    assert!(
        error("long_cursor").contains("10485760 bytes"),
        "{}",
        error("long_cursor")
    );
    // 7. One byte that is not UTF-8 costs its record only.
    assert_eq!(
        by_id["not_utf8"]["applications"], 2,
        "{}",
        by_id["not_utf8"]
    );
    assert!(
        error("not_utf8").contains("not UTF-8"),
        "{}",
        error("not_utf8")
    );
    assert!(by_id["not_utf8"]["watermark"].is_null());
    // 1. A record above max_record_bytes is rejected alone.
    assert_eq!(by_id["big_record"]["applications"], 1);
    assert!(
        error("big_record").contains("max_record_bytes"),
        "{}",
        error("big_record")
    );
    // 10. A baseline whose only record was unreadable is not done.
    assert_eq!(
        by_id["only_bad"]["baseline_done"], false,
        "{}",
        by_id["only_bad"]
    );
    assert_eq!(by_id["only_bad"]["applications"], 0);

    {
        let counts = counts.lock().expect("counts");
        assert_eq!(
            counts["endless"], 1,
            "an oversized body is not fetched again at once"
        );
        assert!(
            counts["looping"] <= 3,
            "looping: {} requests",
            counts["looping"]
        );
        assert_eq!(counts["long_cursor"], 1, "the long cursor was never sent");
    }

    // 8. /readyz names integration, status and code, never upstream text.
    let (code, ready) = admin_get(&http, admin, "/readyz").await;
    assert_eq!(code, 503, "{ready}");
    let text = ready.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("HTTP 500"), "{text}");
    assert!(text.contains("cursor loop"), "{text}");
    // The authenticated status keeps the detail for operators.
    assert!(
        error("leaky_error").contains("hunter2"),
        "{}",
        error("leaky_error")
    );

    child.start_kill().expect("kill");
    let _ = child.wait().await;
    let log = String::from_utf8_lossy(&log.await.expect("log")).into_owned();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 16 * 1024, "a log line of {longest} bytes");
    for line in log.lines().filter(|l| l.contains(" INFO ")) {
        assert!(!line.contains("hunter2"), "{line}");
    }
    assert!(!log.contains("Jane"), "candidate data in the log");
}
