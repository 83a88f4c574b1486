//! Subscriber faults: a subscriber that answers 5xx, times out, hangs for 30 s, refuses
//! connections, resets them, streams a 50 MB body or answers 410 gets every event once it
//! recovers, in order per application, while a healthy subscriber next to it gets
//! everything without waiting for it.
//!
//! The daemon runs in-process; the healthy subscriber is the shared capturing receiver,
//! the faulty one a raw TCP server whose behaviour the test switches phase by phase. Each
//! phase lasts until the faulty server (or the store) has seen it take effect: progress
//! is awaited, never slept for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{ConfigBuilder, Receiver, SECRET};
use hirehook::config::Config;
use hirehook::daemon::Daemon;
use hirehook::sim::{Mutation, SimConfig, spawn};
use hirehook::store::{DeliveryState, EventFilter, Store};
use hirehook::sync::{SyncSettings, Syncer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A safety net for waits, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(45);
const TOKEN: &str = "subscriber-faults-admin-token-0123";
/// What the faulty subscriber streams in its huge answer.
const HUGE: usize = 50 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Ok,
    Status(u16),
    /// Answers 200 after this long (past the subscriber's 1 s timeout).
    Slow(Duration),
    /// Never answers (a 30 s hang); the connection stays open until the client leaves.
    Hang,
    /// Resets the connection after reading the request.
    Reset,
    /// 500 with a 50 MB body.
    Huge,
}

/// One request the faulty subscriber read.
#[derive(Debug, Clone)]
struct Seen {
    mode: Mode,
    id: String,
    body: Vec<u8>,
    verified: bool,
    /// For a hang: how long until the client closed the connection.
    hung_for: Option<Duration>,
    /// For a huge answer: how many body bytes could be written before the client left.
    huge_written: Option<usize>,
    /// Position in arrival order. A request is recorded only after it was answered, and
    /// under load the client may have read one answer and sent its next request before
    /// the first handler got to record: order is judged by arrival, not by recording.
    arrival: u64,
}

#[derive(Default)]
struct FaultyState {
    mode: Option<Mode>,
    seen: Vec<Seen>,
    /// Requests read so far: numbers them in arrival order.
    arrivals: u64,
}

struct Faulty {
    addr: SocketAddr,
    state: Arc<Mutex<FaultyState>>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Faulty {
    async fn start() -> Faulty {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(FaultyState {
            mode: Some(Mode::Ok),
            ..Default::default()
        }));
        let mut faulty = Faulty {
            addr,
            state,
            accept: None,
        };
        faulty.serve(listener);
        faulty
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        self.accept = Some(tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(handle(conn, state.clone()));
            }
        }));
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn set(&self, mode: Mode) {
        self.state.lock().expect("state").mode = Some(mode);
    }

    /// Closes the listening socket: connections are refused.
    fn refuse(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    async fn listen_again(&mut self) {
        let deadline = Instant::now() + LIMIT;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Every request read, in arrival order.
    fn seen(&self) -> Vec<Seen> {
        let mut seen = self.state.lock().expect("state").seen.clone();
        seen.sort_by_key(|s| s.arrival);
        seen
    }

    fn count(&self, mode: Mode) -> usize {
        self.seen().iter().filter(|s| s.mode == mode).count()
    }

    /// Waits until `done` holds for what was seen.
    async fn wait(&self, what: &str, done: impl Fn(&[Seen]) -> bool) {
        let wait = async {
            while !done(&self.seen()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(LIMIT, wait)
            .await
            .unwrap_or_else(|_| panic!("faulty subscriber: {what} not within {LIMIT:?}"));
    }
}

/// Reads one request: headers, then a body of Content-Length bytes.
async fn read_request(conn: &mut TcpStream) -> Option<(http::HeaderMap, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut headers = http::HeaderMap::new();
    for line in head.lines().skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.trim().as_bytes()),
                http::HeaderValue::from_str(value.trim()),
            )
        {
            headers.append(name, value);
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        410 => "Gone",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Whatever",
    }
}

async fn respond(conn: &mut TcpStream, status: u16, body: &str) {
    let text = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let _ = conn.write_all(text.as_bytes()).await;
    let _ = conn.shutdown().await;
}

async fn handle(mut conn: TcpStream, state: Arc<Mutex<FaultyState>>) {
    let Some((headers, body)) = read_request(&mut conn).await else {
        return;
    };
    let (mode, arrival) = {
        let mut state = state.lock().expect("state");
        state.arrivals += 1;
        (state.mode.unwrap_or(Mode::Ok), state.arrivals)
    };
    let verified = standardwebhooks::Webhook::new(SECRET)
        .map(|wh| wh.verify(&body, &headers).is_ok())
        .unwrap_or(false);
    let mut seen = Seen {
        mode,
        id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned(),
        body,
        verified,
        hung_for: None,
        huge_written: None,
        arrival,
    };
    match mode {
        Mode::Ok => respond(&mut conn, 200, "").await,
        Mode::Status(s) => respond(&mut conn, s, "<html>upstream sad</html>").await,
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            respond(&mut conn, 200, "").await;
        }
        Mode::Hang => {
            // Nothing is ever answered; wait (up to 30 s) for the client to give up.
            let started = Instant::now();
            let mut byte = [0u8; 1];
            let closed = tokio::time::timeout(Duration::from_secs(30), conn.read(&mut byte));
            let _ = closed.await;
            seen.hung_for = Some(started.elapsed());
        }
        Mode::Reset => {
            let _ = conn.set_zero_linger();
            drop(conn);
        }
        Mode::Huge => {
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {HUGE}\r\nconnection: close\r\n\r\n"
            );
            let mut written = 0;
            if conn.write_all(head.as_bytes()).await.is_ok() {
                let chunk = vec![b'x'; 64 * 1024];
                while written < HUGE {
                    match tokio::time::timeout(Duration::from_secs(10), conn.write(&chunk)).await {
                        Ok(Ok(n)) if n > 0 => written += n,
                        _ => break,
                    }
                }
            }
            seen.huge_written = Some(written);
        }
    }
    state.lock().expect("state").seen.push(seen);
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn wait_store(what: &str, store: &Store, done: impl AsyncFn(&Store) -> bool) {
    let wait = async {
        while !done(store).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(LIMIT, wait)
        .await
        .unwrap_or_else(|_| panic!("store: {what} not within {LIMIT:?}"));
}

/// Ids logged for a subscriber (all events: both subscribers want every type).
async fn logged(store: &Store) -> BTreeSet<String> {
    store
        .events(&EventFilter::default())
        .await
        .expect("log")
        .into_iter()
        .map(|e| e.id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_subscriber_gets_everything_once_it_recovers_and_never_slows_the_other() {
    let sim = spawn(SimConfig {
        integrations: 1,
        applications: 120,
        seed: 9,
        ..Default::default()
    })
    .await
    .expect("sim");
    let integration = sim.sim().integration_ids()[0].clone();
    let healthy = Receiver::start().await;
    let mut faulty = Faulty::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("admin");
    let admin_addr = admin.local_addr().expect("addr");
    let mut builder = ConfigBuilder::new(
        &dir.path().join("store"),
        sim.base_url(),
        sim.sim().api_key(),
        vec![integration.clone()],
    );
    // Retries every 100-200 ms, long enough never to dead-letter during the faults.
    let schedule = format!(
        "[{}]",
        vec!["150ms"; 400].join(", ").replace("150ms", "\"150ms\"")
    );
    builder.retry_schedule = Box::leak(schedule.into_boxed_str());
    builder.admin_listen = admin_addr.to_string();
    builder.admin_token = Some(TOKEN.into());
    builder.extra_subscriber_keys = "max_in_flight = 8";
    let builder = builder
        .subscriber("healthy", &healthy.url)
        .subscriber("faulty", &faulty.url());
    let toml = builder
        .toml()
        .replace("timeout = \"2s\"", "timeout = \"1s\"");
    let config = Config::from_str_with_env(&toml, std::path::Path::new("test.toml"), |_| None)
        .expect("config");
    let store = Arc::new(Store::open_sled(&config.store.path, 16 << 20).expect("store"));
    let client = hirehook::ats::KomboClient::new(config.kombo.client_config()).expect("client");
    Syncer::new(client, store.clone(), SyncSettings::from_config(&config))
        .sync(&integration, |_| {})
        .await
        .expect("baseline");

    // Several events per application in one sync (interview, offer, outcome): each
    // application's queue must keep them in order behind a failing head.
    let s = sim.sim();
    let live: Vec<String> = s
        .application_ids(&integration)
        .into_iter()
        .filter(|id| {
            s.application(&integration, id)
                .is_some_and(|a| a.remote_deleted_at.is_none())
        })
        .collect();
    for id in live.iter().take(30) {
        s.apply(&integration, id, Mutation::ScheduleInterview)
            .expect("schedule");
        s.apply(&integration, id, Mutation::CreateOffer { status: None })
            .expect("offer");
        let _ = s.apply(&integration, id, Mutation::Hire);
    }

    faulty.set(Mode::Status(503));
    let daemon = {
        let mut daemon = Daemon::new(config.clone(), store.clone()).expect("daemon");
        daemon.set_admin_listener(admin).expect("admin");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move { daemon.run(token).await.expect("daemon runs") });
        Running { shutdown, task }
    };

    // The healthy subscriber gets everything of the first sync while the other fails.
    wait_store("events logged", &store, async |st| {
        logged(st).await.len() >= 60
    })
    .await;
    let first_batch = logged(&store).await;
    healthy
        .wait_until(LIMIT, |r| {
            let got: BTreeSet<&str> = r.iter().map(|x| x.id.as_str()).collect();
            first_batch.iter().all(|id| got.contains(id.as_str()))
        })
        .await;

    // Phase by phase: each lasts until it was seen to take effect.
    faulty.wait("5xx", |s| s.len() >= 5).await;
    faulty.set(Mode::Status(500));
    faulty
        .wait("500", |s| {
            s.iter().filter(|x| x.mode == Mode::Status(500)).count() >= 5
        })
        .await;
    faulty.set(Mode::Slow(Duration::from_millis(1_500)));
    faulty
        .wait("timeouts", |s| {
            s.iter().filter(|x| matches!(x.mode, Mode::Slow(_))).count() >= 3
        })
        .await;
    faulty.set(Mode::Hang);
    faulty
        .wait("hangs cut", |s| {
            s.iter().filter(|x| x.hung_for.is_some()).count() >= 3
        })
        .await;
    // A second batch of changes while the subscriber struggles: later sequences queue up.
    for id in live.iter().take(10) {
        let _ = s.apply(&integration, id, Mutation::Revert { to_null: false });
    }
    faulty.set(Mode::Reset);
    faulty
        .wait("resets", |s| {
            s.iter().filter(|x| x.mode == Mode::Reset).count() >= 5
        })
        .await;
    faulty.set(Mode::Huge);
    faulty
        .wait("huge answers", |s| {
            s.iter().filter(|x| x.huge_written.is_some()).count() >= 3
        })
        .await;
    faulty.refuse();
    let faulty_name = "faulty";
    wait_store("a refused connection", &store, async |st| {
        st.deliveries(Some(faulty_name), Some(DeliveryState::Pending), None)
            .await
            .is_ok_and(|d| {
                d.iter().any(|(_, _, e)| {
                    e.last_error
                        .as_deref()
                        .is_some_and(|m| m.contains("connection failed"))
                })
            })
    })
    .await;

    // Meanwhile the healthy one has every event, the second batch included.
    wait_store("second batch logged", &store, async |st| {
        logged(st).await.len() > first_batch.len()
    })
    .await;
    let all_so_far = logged(&store).await;
    healthy
        .wait_until(LIMIT, |r| {
            let got: BTreeSet<&str> = r.iter().map(|x| x.id.as_str()).collect();
            all_so_far.iter().all(|id| got.contains(id.as_str()))
        })
        .await;
    assert!(
        faulty.seen().iter().all(|x| x.mode != Mode::Ok),
        "the faulty subscriber has not accepted anything yet"
    );

    // 410: disabled (persisted), nothing more is sent to it.
    faulty.listen_again().await;
    faulty.set(Mode::Status(410));
    wait_store("disabled by a 410", &store, async |st| {
        st.disabled_reason(faulty_name)
            .await
            .is_ok_and(|r| r.is_some())
    })
    .await;

    // Recovery: it answers 2xx again and an operator enables it.
    faulty.set(Mode::Ok);
    let response = reqwest::Client::new()
        .post(format!("http://{admin_addr}/v1/subscribers/faulty/enable"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("enable");
    assert_eq!(response.status(), 200);
    let everything = logged(&store).await;
    faulty
        .wait("every event accepted", |s| {
            let got: BTreeSet<&str> = s
                .iter()
                .filter(|x| x.mode == Mode::Ok)
                .map(|x| x.id.as_str())
                .collect();
            everything.iter().all(|id| got.contains(id.as_str()))
        })
        .await;
    wait_store("nothing pending", &store, async |st| {
        st.deliveries(None, Some(DeliveryState::Pending), None)
            .await
            .is_ok_and(|d| d.is_empty())
    })
    .await;
    daemon.shutdown.cancel();
    tokio::time::timeout(LIMIT, daemon.task)
        .await
        .expect("stops")
        .expect("daemon task");

    // Every request to either subscriber verifies; nothing is dead.
    let seen = faulty.seen();
    assert!(seen.iter().all(|x| x.verified), "faulty side verifies");
    assert!(healthy.received().iter().all(|r| r.verified));
    assert!(
        store
            .deliveries(None, Some(DeliveryState::Dead), None)
            .await
            .expect("deliveries")
            .is_empty()
    );
    // Same body on every attempt of an id.
    let mut bodies: BTreeMap<&str, &[u8]> = BTreeMap::new();
    for x in &seen {
        let first = bodies.entry(x.id.as_str()).or_insert(&x.body);
        assert_eq!(
            *first,
            &x.body[..],
            "every attempt of {} sends the same body",
            x.id
        );
    }

    // In order per application, on both sides.
    let order = |ids: Vec<(String, Vec<u8>)>| {
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        let mut firsts = BTreeSet::new();
        for (id, body) in ids {
            if !firsts.insert(id.clone()) {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&body).expect("body");
            let app = v["data"]["application"]["id"]
                .as_str()
                .expect("app")
                .to_owned();
            let seq = v["data"]["sequence"].as_u64().expect("sequence");
            let prev = last.insert(app.clone(), seq);
            assert!(prev.is_none_or(|p| p < seq), "{app}: {seq} after {prev:?}");
        }
    };
    order(
        seen.iter()
            .filter(|x| x.mode == Mode::Ok)
            .map(|x| (x.id.clone(), x.body.clone()))
            .collect(),
    );
    order(
        healthy
            .delivered()
            .into_iter()
            .map(|r| (r.id, r.body))
            .collect(),
    );

    // The hang was cut by the 1 s timeout (sanity bound far below the 30 s hang).
    for x in seen.iter().filter_map(|x| x.hung_for) {
        assert!(x < Duration::from_secs(15), "a hang lasted {x:?}");
    }
    // The huge answer was read only as far as a bounded prefix: the client left long
    // before 50 MB, and what was kept of it is at most 512 bytes.
    for written in seen.iter().filter_map(|x| x.huge_written) {
        assert!(
            written < HUGE / 2,
            "{written} bytes of the huge body were taken"
        );
    }
    let mut prefixes = 0;
    for (_, log_seq, _) in store
        .deliveries(Some("faulty"), None, None)
        .await
        .expect("deliveries")
    {
        for attempt in store.attempts("faulty", log_seq).await.expect("attempts") {
            if let Some(prefix) = &attempt.response_prefix
                && prefix.starts_with("xxx")
            {
                prefixes += 1;
                assert!(prefix.len() <= 512, "{} bytes kept", prefix.len());
            }
        }
    }
    assert!(prefixes >= 3, "huge answers recorded: {prefixes}");
    // After the first 410, only requests already in flight (max_in_flight 8) got one.
    let gone = faulty.count(Mode::Status(410));
    assert!((1..=8).contains(&gone), "{gone} requests answered 410");
}
