//! A whole hirehook on loopback for tests: the simulator, a capturing receiver, the real
//! daemon in-process with its admin API on a port of its own, and an HTTP client for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hirehook::config::Config;
use hirehook::daemon::Daemon;
use hirehook::sim::{RunningSim, SimConfig, spawn};
use hirehook::store::Store;
use hirehook::sync::{SyncSettings, Syncer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{ConfigBuilder, Receiver};

/// The admin token of the harness (unless `Options::token` is `None`).
pub const TOKEN: &str = "admin-test-token-0123456789";

/// Kombo's webhook secret in the harness (the README's test vector secret).
pub const KOMBO_SECRET: &str = "whsec_test";

/// A safety net for waits, not a timing assertion.
pub const LIMIT: Duration = Duration::from_secs(30);

/// How to start.
pub struct Options {
    pub applications: usize,
    pub token: Option<String>,
    pub poll_interval: &'static str,
    /// Integrations the simulator does not know (their syncs fail).
    pub unknown_integrations: Vec<String>,
    /// Sync every integration once before the daemon starts, so later changes are events.
    pub baseline: bool,
    pub retry_schedule: &'static str,
    /// Start the daemon at once.
    pub run: bool,
    /// Timeouts and connection cap of the admin listener.
    pub admin_limits: hirehook::admin::ServeLimits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            applications: 40,
            token: Some(TOKEN.into()),
            poll_interval: "1h",
            unknown_integrations: Vec::new(),
            baseline: true,
            retry_schedule: r#"["50ms", "100ms", "150ms"]"#,
            run: true,
            admin_limits: Default::default(),
        }
    }
}

pub struct Harness {
    pub sim: RunningSim,
    pub receiver: Receiver,
    pub dir: tempfile::TempDir,
    pub config: Config,
    /// The config as a file (its `[admin] listen` is the daemon's real address).
    pub config_path: std::path::PathBuf,
    pub store: Option<Arc<Store>>,
    pub admin: SocketAddr,
    pub http: reqwest::Client,
    /// When the baseline sync (before the daemon) finished.
    pub baseline_at: Option<hirehook::ats::Timestamp>,
    token: Option<String>,
    admin_limits: hirehook::admin::ServeLimits,
    listener: Option<tokio::net::TcpListener>,
    running: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Harness {
    pub async fn start(options: Options) -> Harness {
        let sim = spawn(SimConfig {
            integrations: 1,
            applications: options.applications,
            seed: 5,
            ..Default::default()
        })
        .await
        .expect("sim");
        let receiver = Receiver::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin");
        let admin = listener.local_addr().expect("admin addr");
        let mut integrations = sim.sim().integration_ids();
        integrations.extend(options.unknown_integrations.iter().cloned());
        let mut builder = ConfigBuilder::new(
            &dir.path().join("store"),
            sim.base_url(),
            sim.sim().api_key(),
            integrations,
        )
        .subscriber("crm", &receiver.url);
        builder.poll_interval = options.poll_interval;
        builder.retry_schedule = options.retry_schedule;
        builder.admin_listen = admin.to_string();
        builder.admin_token = options.token.clone();
        builder.kombo_webhook_secret = Some(KOMBO_SECRET.into());
        let config_path = dir.path().join("hirehook.toml");
        std::fs::write(&config_path, builder.toml()).expect("write config");
        let config = builder.build();
        let store = Arc::new(Store::open_sled(&config.store.path, 16 << 20).expect("store"));
        if options.baseline {
            let client =
                hirehook::ats::KomboClient::new(config.kombo.client_config()).expect("client");
            let syncer = Syncer::new(client, store.clone(), SyncSettings::from_config(&config));
            for id in sim.sim().integration_ids() {
                syncer.sync(&id, |_| {}).await.expect("baseline");
            }
        }
        let baseline_at = match sim.sim().integration_ids().first() {
            Some(id) => store
                .sync_state(id)
                .await
                .ok()
                .and_then(|st| st.last_success_at),
            None => None,
        };
        let mut harness = Harness {
            sim,
            receiver,
            dir,
            config,
            config_path,
            store: Some(store),
            admin,
            http: reqwest::Client::new(),
            baseline_at,
            token: options.token,
            admin_limits: options.admin_limits,
            listener: Some(listener),
            running: None,
        };
        if options.run {
            harness.run();
        }
        harness
    }

    /// Starts the daemon (once).
    pub fn run(&mut self) {
        let store = self.store().clone();
        let mut daemon = Daemon::new(self.config.clone(), store).expect("daemon");
        let listener = self.listener.take().expect("the daemon runs once");
        daemon.set_admin_listener(listener).expect("admin listener");
        daemon.set_admin_limits(self.admin_limits);
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            daemon.run(token).await.expect("daemon runs");
        });
        self.running = Some((shutdown, task));
    }

    /// Stops the daemon and closes the store (so another process may open it).
    pub async fn stop(&mut self) {
        if let Some((shutdown, task)) = self.running.take() {
            shutdown.cancel();
            tokio::time::timeout(LIMIT, task)
                .await
                .expect("daemon stops")
                .expect("daemon task");
        }
        if let Some(store) = self.store.take() {
            store.flush().await.expect("flush");
            assert_eq!(Arc::strong_count(&store), 1, "the store is closed");
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        self.store.as_ref().expect("store open")
    }

    pub fn integration(&self) -> String {
        self.sim.sim().integration_ids()[0].clone()
    }

    /// Live applications of the integration, in listing order.
    pub fn live_apps(&self) -> Vec<String> {
        let integration = self.integration();
        self.sim
            .sim()
            .application_ids(&integration)
            .into_iter()
            .filter(|id| {
                self.sim
                    .sim()
                    .application(&integration, id)
                    .is_some_and(|a| a.remote_deleted_at.is_none())
            })
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    /// GET with the token; status and JSON body (`Null` when not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .authed(self.http.get(self.url(path)))
            .send()
            .await
            .expect("GET");
        read(response).await
    }

    /// POST a JSON body with the token.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .authed(self.http.post(self.url(path)))
            .json(body)
            .send()
            .await
            .expect("POST");
        read(response).await
    }

    /// The metrics text.
    pub async fn metrics(&self) -> String {
        let response = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), 200);
        response.text().await.expect("metrics text")
    }

    /// Waits until `done` holds for the store (polled every 10 ms; `LIMIT` is a safety net).
    pub async fn wait_store(&self, done: impl AsyncFn(&Store) -> bool) {
        let store = self.store().clone();
        let wait = async {
            while !done(&store).await {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(LIMIT, wait)
            .await
            .expect("store condition met within the limit");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some((shutdown, task)) = self.running.take() {
            shutdown.cancel();
            task.abort();
        }
    }
}

/// Status and JSON body of a response (`Null` when the body is not JSON).
pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Asserts a JSON error body: `{"error": {"code", "message"}}`.
pub fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "status; body {body}");
    assert_eq!(body["error"]["code"], want_code, "error code; body {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "error message; body {body}"
    );
}
