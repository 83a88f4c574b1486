//! Upstream faults: whatever Kombo (or the network in front of it) does, a sync either
//! derives exactly the events a clean sync derives, or fails without moving the watermark
//! past data it did not process, and the next sync makes up for it; never a panic, never
//! a spurious or doubled event.
//!
//! The oracle of most tests is a **control** hirehook: a second store, baselined at the same
//! moment against the same world, that syncs without faults. Event ids are deterministic,
//! so the faulty side must end up with exactly the control's ids.
//!
//! Faults come from the simulator's scripts (429 with and without `Retry-After`, 503 with an
//! HTML body, truncated bodies, slow responses), a raw TCP proxy that resets connections
//! (before and in the middle of a response), and a small fake Kombo serving the
//! simulator's real records with a malformed record, invalid JSON or schema drift mixed in.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use hirehook::ats::{ClientConfig, KomboClient, Outcome, RetryNotice, RetryPolicy, Timestamp};
use hirehook::diff::FirstSight;
use hirehook::event::EventType;
use hirehook::secret::Secret;
use hirehook::sim::{
    FaultConfig, FaultKind, Mutation, RunningSim, ScriptedFault, SimConfig, Simulator, spawn,
};
use hirehook::store::{EventFilter, EventRecord, Store};
use hirehook::sync::{MassChangeGuard, Route, SyncError, SyncReport, SyncSettings, Syncer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The wait the client is allowed for a server's `Retry-After` (short: tests stay fast,
/// yet far above the backoff, so honouring the server is visible).
const SERVER_WAIT_CAP: Duration = Duration::from_millis(100);

fn settings(page_size: u16) -> SyncSettings {
    SyncSettings {
        overlap: Duration::from_secs(120),
        full_resync_interval: Duration::from_secs(24 * 3600),
        initial_sync: FirstSight::Baseline,
        page_size,
        guard: MassChangeGuard::default(),
        routes: vec![Route {
            subscriber: "crm".into(),
            types: None,
            integrations: None,
        }],
    }
}

type Notices = Arc<Mutex<Vec<RetryNotice>>>;

fn client(base_url: &str, timeout: Duration, notices: &Notices) -> KomboClient {
    let notices = notices.clone();
    KomboClient::new(ClientConfig {
        base_url: base_url.to_owned(),
        api_key: Secret::new(hirehook::sim::DEFAULT_API_KEY),
        request_timeout: timeout,
        limits: Default::default(),
        retry: RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_server_wait: SERVER_WAIT_CAP,
        },
    })
    .expect("client")
    .with_retry_observer(Arc::new(move |n: &RetryNotice| {
        notices.lock().expect("notices").push(n.clone());
    }))
}

/// A store under test and a control store, baselined against the same world.
struct Fixture {
    integration: String,
    _dir: tempfile::TempDir,
    test: Syncer,
    control: Syncer,
    notices: Notices,
}

impl Fixture {
    /// `test_url` is where the store under test fetches (the simulator, a proxy, a fake);
    /// the control always fetches from `control_url`.
    async fn new(integration: &str, test_url: &str, control_url: &str, page_size: u16) -> Self {
        Self::with_timeout(
            integration,
            test_url,
            control_url,
            page_size,
            Duration::from_secs(10),
        )
        .await
    }

    async fn with_timeout(
        integration: &str,
        test_url: &str,
        control_url: &str,
        page_size: u16,
        timeout: Duration,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let notices = Notices::default();
        let open = |name: &str| {
            Arc::new(Store::open_sled(&dir.path().join(name), 16 << 20).expect("store"))
        };
        let test = Syncer::new(
            client(test_url, timeout, &notices),
            open("test"),
            settings(page_size),
        );
        let control = Syncer::new(
            client(control_url, Duration::from_secs(10), &Notices::default()),
            open("control"),
            settings(page_size),
        );
        let fx = Fixture {
            integration: integration.to_owned(),
            _dir: dir,
            test,
            control,
            notices,
        };
        for s in [&fx.test, &fx.control] {
            let report = s.sync(integration, |_| {}).await.expect("baseline");
            assert_eq!(report.events(), 0);
        }
        fx.notices.lock().expect("notices").clear();
        fx
    }

    /// Syncs the control (no faults) and returns the ids it derived.
    async fn control_ids(&self) -> BTreeSet<String> {
        let mut ids = BTreeSet::new();
        let report = self
            .control
            .sync(&self.integration, |events| {
                ids.extend(events.iter().map(|e| e.id.clone()));
            })
            .await
            .expect("control sync");
        assert!(report.watermark_advanced && report.held == 0);
        assert!(!ids.is_empty(), "the change derived events");
        ids
    }

    async fn sync(&self) -> (Result<SyncReport, SyncError>, Vec<EventRecord>) {
        let mut got = Vec::new();
        let result = self
            .test
            .sync(&self.integration, |events| got.extend_from_slice(events))
            .await;
        (result, got)
    }

    async fn watermark(&self) -> Option<Timestamp> {
        self.test
            .store()
            .sync_state(&self.integration)
            .await
            .expect("state")
            .watermark
    }

    /// Every id in the test store's log, asserting none is logged twice.
    async fn logged_ids(&self) -> BTreeSet<String> {
        let log = self
            .test
            .store()
            .events(&EventFilter::default())
            .await
            .expect("log");
        let ids: BTreeSet<String> = log.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), log.len(), "no event logged twice");
        ids
    }

    fn notices(&self) -> Vec<RetryNotice> {
        self.notices.lock().expect("notices").clone()
    }
}

fn ids(events: &[EventRecord]) -> BTreeSet<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

async fn sim(applications: usize) -> RunningSim {
    spawn(SimConfig {
        integrations: 1,
        applications,
        seed: 21,
        ..Default::default()
    })
    .await
    .expect("sim")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_storms_with_and_without_retry_after_are_waited_out() {
    let sim = sim(200).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let fx = Fixture::new(&integration, &sim.base_url(), &sim.base_url(), 250).await;
    sim.sim().mutate(30);
    let expected = fx.control_ids().await;

    let s = sim.sim();
    s.script_fault(ScriptedFault::next(
        3,
        FaultKind::RateLimit {
            retry_after: Some(true),
        },
    ));
    s.script_fault(ScriptedFault::next(
        2,
        FaultKind::RateLimit {
            retry_after: Some(false),
        },
    ));
    let before = fx.watermark().await;
    let (result, events) = fx.sync().await;
    let report = result.expect("the storm is waited out");
    assert!(report.watermark_advanced && fx.watermark().await > before);
    assert_eq!(ids(&events), expected);
    assert_eq!(s.stats().faults.rate_limited, 5);

    // Five 429s in a row, within max_attempts (6).
    let notices = fx.notices();
    assert_eq!(notices.len(), 5, "{notices:#?}");
    for n in &notices {
        assert!(n.reason.contains("PLATFORM.RATE_LIMIT_EXCEEDED"), "{n:?}");
        // `Retry-After` (first three) or `ratelimit-reset` alone (last two): both say 1 s,
        // and the wait honours it up to the configured cap, well above the 20 ms backoff.
        assert_eq!(n.server_hint, Some(Duration::from_secs(1)), "{n:?}");
        assert!(n.wait >= SERVER_WAIT_CAP, "{n:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_longer_than_the_retries_fails_the_sync_and_the_next_one_makes_up_for_it() {
    let sim = sim(200).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let fx = Fixture::new(&integration, &sim.base_url(), &sim.base_url(), 10).await;
    let s = sim.sim();
    // A deletion on the first page of the next listing: its event is held by the
    // mass-change guard until the end of the sync, which this sync never reaches.
    let first_live = s
        .application_ids(&integration)
        .into_iter()
        .find(|id| {
            s.application(&integration, id)
                .is_some_and(|a| a.remote_deleted_at.is_none())
        })
        .expect("a live application");
    s.apply(&integration, &first_live, Mutation::Delete)
        .expect("delete");
    s.mutate(40);
    let expected = fx.control_ids().await;

    s.script_fault(ScriptedFault {
        integration_id: Some(integration.clone()),
        page: Some(2),
        fault: FaultKind::RateLimit { retry_after: None },
        times: 1_000,
    });
    let before = fx.watermark().await;
    let (result, first) = fx.sync().await;
    let err = result.expect_err("page 2 never answers");
    let text = err.to_string();
    assert!(
        text.contains(&integration) && text.contains("page 2") && text.contains("RATE_LIMIT"),
        "{text}"
    );
    assert_eq!(fx.watermark().await, before, "the watermark stays");
    assert!(
        fx.test
            .store()
            .sync_state(&integration)
            .await
            .expect("state")
            .last_error
            .is_some_and(|e| e.contains("page 2"))
    );
    assert!(!first.is_empty(), "page 1 was committed");
    assert_eq!(fx.notices().len(), 5, "max_attempts 6: five retries");

    s.set_faults(FaultConfig::default()).expect("faults");
    let (result, rest) = fx.sync().await;
    assert!(result.expect("recovers").watermark_advanced);
    let all: BTreeSet<String> = ids(&first).union(&ids(&rest)).cloned().collect();
    assert_eq!(ids(&first).intersection(&ids(&rest)).count(), 0);
    assert_eq!(
        all, expected,
        "the two syncs together derived exactly the control's events"
    );
    assert_eq!(fx.logged_ids().await, expected);
    let held = fx
        .test
        .store()
        .held_events(&integration)
        .await
        .expect("held");
    assert!(held.is_empty(), "nothing left held: {held:?}");
    let deletion = fx
        .test
        .store()
        .events(&EventFilter {
            application_id: Some(first_live.clone()),
            types: vec![EventType::ApplicationDeleted],
            ..Default::default()
        })
        .await
        .expect("log");
    assert_eq!(deletion.len(), 1, "the held deletion was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_with_html_bodies_and_truncated_bodies_are_retried() {
    let sim = sim(200).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let fx = Fixture::new(&integration, &sim.base_url(), &sim.base_url(), 10).await;
    let s = sim.sim();
    s.mutate(40);
    let expected = fx.control_ids().await;
    s.script_fault(ScriptedFault {
        integration_id: None,
        page: Some(1),
        fault: FaultKind::Unavailable,
        times: 2,
    });
    s.script_fault(ScriptedFault {
        integration_id: None,
        page: Some(2),
        fault: FaultKind::Truncate,
        times: 2,
    });
    let (result, events) = fx.sync().await;
    assert!(result.expect("retried").watermark_advanced);
    assert_eq!(ids(&events), expected);
    let notices = fx.notices();
    assert_eq!(notices.len(), 4, "{notices:#?}");
    for n in &notices[..2] {
        assert_eq!(n.at.page, 1);
        assert!(
            n.reason.contains("503") && n.reason.contains("Service Unavailable"),
            "{n:?}"
        );
    }
    for n in &notices[2..] {
        assert_eq!(n.at.page, 2);
        assert!(n.reason.contains("truncated"), "{n:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_responses_within_the_timeout_wait_and_beyond_it_are_retried() {
    let sim = sim(200).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let fx = Fixture::with_timeout(
        &integration,
        &sim.base_url(),
        &sim.base_url(),
        10,
        Duration::from_millis(500),
    )
    .await;
    let s = sim.sim();
    s.mutate(40);
    let expected = fx.control_ids().await;
    // Page 1 answers after 1.5 s (past the 500 ms timeout) once; then every page is slow
    // but within the timeout.
    s.set_faults(FaultConfig {
        slow_delay: Duration::from_millis(1_500),
        script: vec![ScriptedFault::page(&integration, 1, FaultKind::Slow)],
        ..FaultConfig::default()
    })
    .expect("faults");
    let (result, events) = fx.sync().await;
    assert!(result.expect("retried").watermark_advanced);
    assert_eq!(ids(&events), expected);
    let notices = fx.notices();
    assert_eq!(notices.len(), 1, "{notices:#?}");
    assert_eq!(notices[0].at.page, 1);

    s.mutate(20);
    let expected = fx.control_ids().await;
    s.set_faults(FaultConfig {
        slow: 1.0,
        slow_delay: Duration::from_millis(100),
        ..FaultConfig::default()
    })
    .expect("faults");
    let (result, events) = fx.sync().await;
    assert!(result.expect("slow is fine").watermark_advanced);
    assert_eq!(ids(&events), expected);
    assert_eq!(
        fx.notices().len(),
        1,
        "no retry for a slow answer within the timeout"
    );
}

/// A TCP proxy in front of the simulator that cuts its first connections: the first right
/// after reading the request, the second after relaying the first bytes of the response.
struct ResettingProxy {
    url: String,
    cut: Arc<AtomicUsize>,
}

async fn start_proxy(upstream: SocketAddr, cuts: usize) -> ResettingProxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let cut = Arc::new(AtomicUsize::new(0));
    let counter = cut.clone();
    tokio::spawn(async move {
        let mut n = 0usize;
        while let Ok((mut client, _)) = listener.accept().await {
            n += 1;
            let nth = n;
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                if nth > cuts {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let mut buf = vec![0u8; 8192];
                let Ok(read) = client.read(&mut buf).await else {
                    return;
                };
                if nth.is_multiple_of(2) {
                    // Mid-response: forward the request, relay a prefix of the answer.
                    if server.write_all(&buf[..read]).await.is_err() {
                        return;
                    }
                    let mut answer = vec![0u8; 300];
                    if let Ok(got) = server.read(&mut answer).await {
                        let _ = client.write_all(&answer[..got.min(300)]).await;
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                // RST instead of FIN: the connection is reset, not closed.
                let _ = client.set_zero_linger();
                drop(client);
            });
        }
    });
    ResettingProxy { url, cut }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_before_and_during_a_response_are_retried() {
    let sim = sim(200).await;
    let integration = sim.sim().integration_ids()[0].clone();
    // The first two connections are the baseline's: let them through.
    let fx = Fixture::new(&integration, &sim.base_url(), &sim.base_url(), 10).await;
    let s = sim.sim();
    s.mutate(40);
    let expected = fx.control_ids().await;
    let proxy = start_proxy(sim.addr(), 4).await;
    let via_proxy = Fixture {
        integration: integration.clone(),
        _dir: tempfile::tempdir().expect("tempdir"),
        test: Syncer::new(
            client(&proxy.url, Duration::from_secs(5), &fx.notices),
            fx.test.store().clone(),
            settings(10),
        ),
        control: fx.control.clone(),
        notices: fx.notices.clone(),
    };
    let (result, events) = via_proxy.sync().await;
    assert!(result.expect("retried").watermark_advanced);
    assert_eq!(ids(&events), expected);
    assert_eq!(
        proxy.cut.load(Ordering::SeqCst),
        4,
        "four connections were cut"
    );
    let notices = fx.notices();
    assert!(!notices.is_empty(), "the resets were seen as failures");
    assert!(
        notices
            .iter()
            .all(|n| n.reason.contains("request to Kombo failed")),
        "{notices:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// A fake Kombo serving the simulator's records, page by page, as the test writes them.
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct FakeState {
    /// Raw bodies; page `n` is fetched with `cursor=n` (page 0 without a cursor).
    pages: Vec<String>,
    requests: usize,
}

struct FakeKombo {
    url: String,
    state: Arc<Mutex<FakeState>>,
}

async fn fake_page(State(state): State<Arc<Mutex<FakeState>>>, RawQuery(q): RawQuery) -> Response {
    let cursor = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "cursor")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut state = state.lock().expect("fake state");
    state.requests += 1;
    match state.pages.get(cursor) {
        Some(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

impl FakeKombo {
    async fn start() -> FakeKombo {
        let state = Arc::new(Mutex::new(FakeState::default()));
        let app = axum::Router::new()
            .route("/v1/ats/applications", axum::routing::get(fake_page))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeKombo { url, state }
    }

    /// Serves `records` in pages of `per_page`.
    fn serve(&self, records: &[Value], per_page: usize) {
        let chunks: Vec<&[Value]> = records.chunks(per_page).collect();
        let pages = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let next = (i + 1 < chunks.len()).then(|| (i + 1).to_string());
                json!({"status": "success", "data": {"next": next, "results": chunk}}).to_string()
            })
            .collect();
        self.state.lock().expect("fake state").pages = pages;
    }

    fn set_page(&self, index: usize, body: &str) {
        self.state.lock().expect("fake state").pages[index] = body.to_owned();
    }

    fn requests(&self) -> usize {
        self.state.lock().expect("fake state").requests
    }
}

/// The simulator's current records, as JSON.
fn records(sim: &Simulator, integration: &str) -> Vec<Value> {
    sim.application_ids(integration)
        .iter()
        .filter_map(|id| sim.application(integration, id))
        .map(|a| serde_json::to_value(a).expect("record"))
        .collect()
}

fn world(applications: usize) -> (Simulator, String) {
    let sim = Simulator::new(SimConfig {
        integrations: 1,
        applications,
        seed: 33,
        ..Default::default()
    });
    let integration = sim.integration_ids()[0].clone();
    (sim, integration)
}

fn live(sim: &Simulator, integration: &str, pred: impl Fn(&Value) -> bool) -> Vec<String> {
    records(sim, integration)
        .into_iter()
        .filter(|r| r["remote_deleted_at"].is_null() && pred(r))
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_record_is_reported_the_rest_processed_and_the_watermark_kept() {
    let (sim, integration) = world(60);
    let fake = FakeKombo::start().await;
    fake.serve(&records(&sim, &integration), 25);
    let fx = Fixture::new(&integration, &fake.url, &fake.url, 25).await;

    let bad = live(&sim, &integration, |_| true)[3].clone();
    sim.apply(&integration, &bad, Mutation::ScheduleInterview)
        .expect("schedule");
    sim.mutate(15);
    let clean = records(&sim, &integration);
    fake.serve(&clean, 25);
    let expected = fx.control_ids().await;
    let control_log = fx
        .control
        .store()
        .events(&EventFilter::default())
        .await
        .expect("control log");
    let of_bad: BTreeSet<String> = control_log
        .iter()
        .filter(|e| e.application_id == bad)
        .map(|e| e.id.clone())
        .collect();
    assert!(!of_bad.is_empty());

    let mut broken = clean.clone();
    let record = broken
        .iter_mut()
        .find(|r| r["id"] == bad.as_str())
        .expect("the record");
    record["interviews"][0]["starting_at"] = json!("next tuesday");
    fake.serve(&broken, 25);

    let before = fx.watermark().await;
    assert!(before.is_some());
    for round in 0..2 {
        let (result, events) = fx.sync().await;
        let report = result.expect("the page is still processed");
        assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
        let line = &report.rejected[0];
        assert!(
            line.contains(&bad) && line.contains("interviews[0].starting_at"),
            "{line}"
        );
        assert!(
            line.contains(&integration) && line.contains("page 1"),
            "{line}"
        );
        assert!(!report.watermark_advanced);
        assert_eq!(
            fx.watermark().await,
            before,
            "the watermark stays before the bad record"
        );
        let state = fx
            .test
            .store()
            .sync_state(&integration)
            .await
            .expect("state");
        assert!(state.last_error.is_some_and(|e| e.contains(&bad)));
        if round == 0 {
            let want: BTreeSet<String> = expected.difference(&of_bad).cloned().collect();
            assert_eq!(ids(&events), want, "every other record was processed");
        } else {
            assert!(events.is_empty(), "nothing twice: {events:?}");
        }
    }

    fake.serve(&clean, 25);
    let (result, events) = fx.sync().await;
    let report = result.expect("sync");
    assert!(report.rejected.is_empty() && report.watermark_advanced);
    assert_eq!(ids(&events), of_bad, "the record's events, once readable");
    assert_eq!(fx.logged_ids().await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_fails_the_sync_at_once_and_keeps_the_watermark() {
    let (sim, integration) = world(60);
    let fake = FakeKombo::start().await;
    fake.serve(&records(&sim, &integration), 25);
    let fx = Fixture::new(&integration, &fake.url, &fake.url, 25).await;
    sim.mutate(30);
    let clean = records(&sim, &integration);
    fake.serve(&clean, 25);
    let expected = fx.control_ids().await;

    let garbage = r#"{"status":"success","data":{"next":null,"results":[}]}}"#;
    fake.set_page(1, garbage);
    let before = fx.watermark().await;
    let requests = fake.requests();
    let (result, first) = fx.sync().await;
    let err = result.expect_err("invalid JSON");
    let text = err.to_string();
    assert!(
        text.contains("malformed page") && text.contains("page 2") && !text.contains("truncated"),
        "{text}"
    );
    assert_eq!(
        fake.requests() - requests,
        2,
        "not retried: the same bytes would come back"
    );
    assert!(fx.notices().is_empty());
    assert_eq!(fx.watermark().await, before);

    fake.serve(&clean, 25);
    let (result, rest) = fx.sync().await;
    assert!(result.expect("recovers").watermark_advanced);
    let all: BTreeSet<String> = ids(&first).union(&ids(&rest)).cloned().collect();
    assert_eq!(all, expected);
    assert_eq!(fx.logged_ids().await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_drift_is_read_without_spurious_events() {
    let (sim, integration) = world(60);
    let fake = FakeKombo::start().await;
    let clean = records(&sim, &integration);
    fake.serve(&clean, 25);
    let fx = Fixture::new(&integration, &fake.url, &fake.url, 25).await;

    let with_offer = live(&sim, &integration, |r| {
        r["offers"].as_array().is_some_and(|o| !o.is_empty())
    });
    let countered = with_offer
        .first()
        .expect("an application with an offer")
        .clone();
    let withdrawn = live(&sim, &integration, |r| r["outcome"] == "PENDING")
        .into_iter()
        .find(|id| *id != countered)
        .expect("a pending application");

    let mut drifted = clean.clone();
    for (i, r) in drifted.iter_mut().enumerate() {
        let obj = r.as_object_mut().expect("record object");
        // Unknown fields, at the top and nested.
        obj.insert("talent_pool".into(), json!({"id": "tp1", "tags": [1, 2]}));
        if let Some(candidate) = obj.get_mut("candidate").and_then(Value::as_object_mut) {
            candidate.insert("pronouns".into(), json!("they/them"));
        }
        if let Some(stage) = obj.get_mut("current_stage").and_then(Value::as_object_mut) {
            stage.insert("status".into(), json!("ARCHIVED"));
            stage.insert("sla_days".into(), json!(3));
        }
        // Omittable fields left out.
        for key in [
            "remote_url",
            "custom_fields",
            "remote_created_at",
            "rejected_at",
        ] {
            obj.remove(key);
        }
        if i.is_multiple_of(3) && obj["id"] != countered.as_str() {
            obj.remove("interviews");
            obj.remove("offers");
        }
    }
    let find = |records: &[Value], id: &str| -> usize {
        records
            .iter()
            .position(|r| r["id"] == id)
            .expect("record present")
    };
    let i = find(&drifted, &withdrawn);
    drifted[i]["outcome"] = json!("WITHDRAWN");
    let i = find(&drifted, &countered);
    let previous_status = drifted[i]["offers"][0]["status"].clone();
    drifted[i]["offers"][0]["status"] = json!("COUNTERED");
    drifted[i]["offers"][0]["negotiation_round"] = json!(2);
    fake.serve(&drifted, 25);

    let (result, events) = fx.sync().await;
    let report = result.expect("drift is read");
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert!(report.watermark_advanced);
    // The one real change: an offer moved to a status this build does not know.
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e.event_type, EventType::OfferStatusChanged);
    assert_eq!(e.application_id, countered);
    let body: Value = serde_json::from_slice(&e.body).expect("body");
    assert_eq!(body["data"]["current_status"], "COUNTERED");
    assert_eq!(body["data"]["previous_status"], previous_status);

    let (result, events) = fx.sync().await;
    assert!(result.expect("again").watermark_advanced);
    assert!(
        events.is_empty(),
        "the same drift again: nothing: {events:#?}"
    );

    // Back to the known shape: the offer's status moves back; WITHDRAWN → PENDING is no
    // change of the known outcome; the interviews and offers that were missing are all
    // still there (missing meant "unknown", not "gone").
    fake.serve(&clean, 25);
    let (result, events) = fx.sync().await;
    assert!(result.expect("clean again").watermark_advanced);
    let types: Vec<(EventType, &str)> = events
        .iter()
        .map(|e| (e.event_type, e.application_id.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![(EventType::OfferStatusChanged, countered.as_str())],
        "{events:#?}"
    );
    let pending = sim
        .application(&integration, &withdrawn)
        .expect("application");
    assert_eq!(pending.outcome, Some(Outcome::Pending));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_unreadable_during_the_baseline_is_not_announced_as_created_later() {
    let (sim, integration) = world(60);
    let fake = FakeKombo::start().await;
    let clean = records(&sim, &integration);
    let bad = live(&sim, &integration, |_| true)[7].clone();
    let mut broken = clean.clone();
    let record = broken
        .iter_mut()
        .find(|r| r["id"] == bad.as_str())
        .expect("the record");
    record["changed_at"] = json!("yesterday");
    fake.serve(&broken, 25);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open_sled(&dir.path().join("db"), 16 << 20).expect("store"));
    let syncer = Syncer::new(
        client(&fake.url, Duration::from_secs(5), &Notices::default()),
        store.clone(),
        settings(25),
    );
    let report = syncer.sync(&integration, |_| {}).await.expect("baseline");
    assert_eq!(report.rejected.len(), 1);
    assert!(report.rejected[0].contains(&bad) && report.rejected[0].contains("changed_at"));
    assert!(!report.watermark_advanced);
    assert_eq!(report.events(), 0);

    // The record becomes readable: it existed at the baseline, it is not new.
    fake.serve(&clean, 25);
    let mut events = Vec::new();
    let report = syncer
        .sync(&integration, |e| events.extend_from_slice(e))
        .await
        .expect("sync");
    assert!(report.rejected.is_empty() && report.watermark_advanced);
    assert!(events.is_empty(), "{events:#?}");

    // A genuinely new application after the baseline is still announced.
    let created = sim.create_application(&integration).expect("create");
    fake.serve(&records(&sim, &integration), 25);
    let mut events = Vec::new();
    syncer
        .sync(&integration, |e| events.extend_from_slice(e))
        .await
        .expect("sync");
    let types: Vec<(EventType, &str)> = events
        .iter()
        .map(|e| (e.event_type, e.application_id.as_str()))
        .collect();
    assert_eq!(
        types,
        vec![(
            EventType::ApplicationCreated,
            created.application_id.as_deref().expect("id")
        )]
    );
}
