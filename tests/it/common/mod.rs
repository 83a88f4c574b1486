//! Shared test helpers: a capturing, independently verifying webhook receiver, and a
//! config builder for hirehook against the simulator.
#![allow(dead_code)]

pub mod harness;
pub mod oracle;
pub mod process;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

/// A signing secret for tests (`whsec_` + base64 of "hirehook test signing key").
pub const SECRET: &str = "whsec_aGlyZWhvb2sgdGVzdCBzaWduaW5nIGtleQ==";

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub timestamp: String,
    pub body: Vec<u8>,
    /// Verified by the Standard Webhooks reference crate, not by hirehook's code.
    pub verified: bool,
    /// The status the receiver answered.
    pub answered: u16,
    pub event: serde_json::Value,
    pub at: std::time::Instant,
}

impl Received {
    pub fn application(&self) -> &str {
        self.event["data"]["application"]["id"]
            .as_str()
            .unwrap_or("")
    }
    pub fn event_type(&self) -> &str {
        self.event["type"].as_str().unwrap_or("")
    }
    pub fn sequence(&self) -> u64 {
        self.event["data"]["sequence"].as_u64().unwrap_or(0)
    }
}

/// What to answer: given the request and how many times this id was seen before.
pub type Behaviour = Box<dyn Fn(&Received, usize) -> Reply + Send>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply {
    Ok,
    Status(u16),
    /// Status with a `Retry-After` header (seconds).
    RetryAfter(u16, u64),
}

struct Inner {
    secret: String,
    /// Milliseconds to wait before answering (a slow subscriber).
    delay_ms: std::sync::atomic::AtomicU64,
    /// Requests that arrived, answered or not yet (while the delay runs).
    arrived: std::sync::atomic::AtomicUsize,
    /// While false, requests wait before being handled (see [`Receiver::hold`]).
    open: tokio::sync::watch::Sender<bool>,
    received: Mutex<Vec<Received>>,
    behaviour: Mutex<Behaviour>,
    changed: Notify,
}

/// A webhook receiver on 127.0.0.1:0.
pub struct Receiver {
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    inner
        .arrived
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _ = inner.open.subscribe().wait_for(|open| *open).await;
    let delay = inner.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let verified = standardwebhooks::Webhook::new(&inner.secret)
        .map(|wh| wh.verify(&body, &headers).is_ok())
        .unwrap_or(false);
    let mut received = Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        body: body.to_vec(),
        verified,
        answered: 0,
        event: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        at: std::time::Instant::now(),
    };
    let reply = {
        let seen = inner
            .received
            .lock()
            .map(|r| r.iter().filter(|x| x.id == received.id).count())
            .unwrap_or(0);
        let behaviour = inner.behaviour.lock().expect("behaviour lock");
        behaviour(&received, seen)
    };
    let (status, retry_after) = match reply {
        Reply::Ok => (200, None),
        Reply::Status(s) => (s, None),
        Reply::RetryAfter(s, secs) => (s, Some(secs)),
    };
    received.answered = status;
    inner.received.lock().expect("lock").push(received);
    inner.changed.notify_waiters();
    let mut response = StatusCode::from_u16(status)
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        .into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    response
}

impl Receiver {
    pub async fn start() -> Receiver {
        Self::start_with(Box::new(|_, _| Reply::Ok)).await
    }

    pub async fn start_with(behaviour: Behaviour) -> Receiver {
        let inner = Arc::new(Inner {
            secret: SECRET.into(),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
            arrived: std::sync::atomic::AtomicUsize::new(0),
            open: tokio::sync::watch::Sender::new(true),
            received: Mutex::new(Vec::new()),
            behaviour: Mutex::new(behaviour),
            changed: Notify::new(),
        });
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(handle))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, inner, task }
    }

    pub fn set_delay(&self, delay: Duration) {
        self.inner.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub fn set_behaviour(&self, behaviour: Behaviour) {
        *self.inner.behaviour.lock().expect("lock") = behaviour;
    }

    /// Holds every request that arrives from now on (unanswered) until
    /// [`Receiver::release`].
    pub fn hold(&self) {
        self.inner.open.send_replace(false);
    }

    /// Answers the held requests and stops holding.
    pub fn release(&self) {
        self.inner.open.send_replace(true);
    }

    /// Requests that arrived so far, including those not answered yet (see
    /// [`Receiver::set_delay`]).
    pub fn arrived(&self) -> usize {
        self.inner.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().expect("lock").clone()
    }

    /// Requests answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.answered))
            .collect()
    }

    /// Waits until `done` holds for what was received; panics after `limit` (a safety net,
    /// not a timing assertion).
    pub async fn wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        match self.try_wait_until(limit, done).await {
            Ok(now) => now,
            Err(now) => panic!(
                "receiver: condition not met within {limit:?}; got {} requests",
                now.len()
            ),
        }
    }

    /// As [`Self::wait_until`], but a condition not met within `limit` is an `Err` with
    /// what was received, for a test that has more to say when it fails.
    pub async fn try_wait_until(
        &self,
        limit: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Result<Vec<Received>, Vec<Received>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.inner.changed.notified();
            let now = self.received();
            if done(&now) {
                return Ok(now);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                let now = self.received();
                return if done(&now) { Ok(now) } else { Err(now) };
            }
        }
    }
}

/// A hirehook config for one simulator and one receiver.
pub struct ConfigBuilder {
    pub store: std::path::PathBuf,
    pub base_url: String,
    pub api_key: String,
    pub integrations: Vec<String>,
    pub subscribers: Vec<(String, String)>,
    pub poll_interval: &'static str,
    pub retry_schedule: &'static str,
    pub allow_private_networks: bool,
    pub extra_subscriber_keys: &'static str,
    pub shutdown_grace: &'static str,
    pub initial_sync: &'static str,
    /// `[admin] listen`: port 0 by default, so that daemons in parallel tests never collide.
    pub admin_listen: String,
    pub admin_token: Option<String>,
    pub kombo_webhook_secret: Option<String>,
    /// A PostgreSQL URL: the store is PostgreSQL instead of sled at `store`.
    pub database_url: Option<String>,
}

impl ConfigBuilder {
    pub fn new(
        store: &std::path::Path,
        base_url: String,
        api_key: &str,
        integrations: Vec<String>,
    ) -> Self {
        Self {
            store: store.to_owned(),
            base_url,
            api_key: api_key.to_owned(),
            integrations,
            subscribers: Vec::new(),
            poll_interval: "1s",
            retry_schedule: r#"["50ms", "100ms", "150ms"]"#,
            allow_private_networks: true,
            extra_subscriber_keys: "",
            shutdown_grace: "5s",
            initial_sync: "baseline",
            admin_listen: "127.0.0.1:0".into(),
            admin_token: None,
            kombo_webhook_secret: None,
            database_url: None,
        }
    }

    /// The store on PostgreSQL at `url` (sled when `None`).
    pub fn with_database(mut self, url: Option<String>) -> Self {
        self.database_url = url;
        self
    }

    fn store_table(&self) -> String {
        match &self.database_url {
            Some(url) => {
                format!("[store]\nbackend = \"postgres\"\nurl = \"{url}\"\nlease_ttl = \"3s\"\n")
            }
            None => format!("[store]\npath = \"{}\"\n", self.store.display()),
        }
    }

    pub fn subscriber(mut self, name: &str, url: &str) -> Self {
        self.subscribers.push((name.to_owned(), url.to_owned()));
        self
    }

    pub fn toml(&self) -> String {
        let mut t = format!(
            r#"
{}
[kombo]
base_url = "{}"
api_key = "{}"
poll_interval = "{}"
initial_sync = "{}"
overlap = "2m"
request_timeout = "5s"
{}
[delivery]
retry_schedule = {}
allow_private_networks = {}
shutdown_grace = "{}"
"#,
            self.store_table(),
            self.base_url,
            self.api_key,
            self.poll_interval,
            self.initial_sync,
            self.kombo_webhook_secret
                .as_ref()
                .map(|s| format!("webhook_secret = \"{s}\"\n"))
                .unwrap_or_default(),
            self.retry_schedule,
            self.allow_private_networks,
            self.shutdown_grace,
        );
        t.push_str(&format!("\n[admin]\nlisten = \"{}\"\n", self.admin_listen));
        if let Some(token) = &self.admin_token {
            t.push_str(&format!("token = \"{token}\"\n"));
        }
        for id in &self.integrations {
            t.push_str(&format!("\n[[integrations]]\nid = \"{id}\"\n"));
        }
        for (name, url) in &self.subscribers {
            t.push_str(&format!(
                "\n[[subscribers]]\nname = \"{name}\"\nurl = \"{url}\"\nsecrets = [\"{SECRET}\"]\ntimeout = \"2s\"\n{}\n",
                self.extra_subscriber_keys
            ));
        }
        t
    }

    /// The config as parsed, without validation: for tests of the guards behind it (a
    /// subscriber on a private IP literal, which `config check` refuses, must still be
    /// refused by the SSRF guard at delivery).
    pub fn build_unvalidated(&self) -> hirehook::config::Config {
        toml::from_str(&self.toml()).expect("test config parses")
    }

    pub fn build(&self) -> hirehook::config::Config {
        hirehook::config::Config::from_str_with_env(
            &self.toml(),
            std::path::Path::new("test.toml"),
            |_| None,
        )
        .expect("test config is valid")
    }
}

/// Which store a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

impl Backend {
    /// The database URL to configure: `Some(None)` for sled, `Some(Some(url))` for a fresh
    /// PostgreSQL database, `None` when PostgreSQL is not available here (the test is
    /// skipped, and says so; CI requires it).
    pub async fn database(self) -> Option<Option<String>> {
        match self {
            Backend::Sled => Some(None),
            Backend::Postgres => hirehook::store::postgres::test_database().await.map(Some),
        }
    }
}

/// Runs each named `async fn name(backend: Backend)` as two tests, `on_sled::name` and
/// `on_postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sled).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Live (not deleted) applications of an integration of the simulator, in listing order.
pub fn live(sim: &hirehook::sim::RunningSim, integration: &str) -> Vec<String> {
    sim.sim()
        .application_ids(integration)
        .into_iter()
        .filter(|id| {
            sim.sim()
                .application(integration, id)
                .is_some_and(|a| a.remote_deleted_at.is_none())
        })
        .collect()
}
