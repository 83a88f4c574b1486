//! The PostgreSQL backend: several hirehook replicas share one database.
//!
//! The schema is in `migrations/` (applied by [`migrate`] under an advisory lock). What
//! holds across replicas:
//!
//! - **Page commits** are one transaction each: snapshots, events (logged or held), outbox
//!   rows, the integration's application count. Log sequences come from a one-row counter
//!   updated inside that transaction, so they are gap-free and follow commit order.
//! - **Fencing**: unless the store was made with [`PgStore::without_fencing`], a page
//!   commit and a sync-state write first check, inside their transaction, that this
//!   replica holds an unexpired lease on the integration (the lease row is locked `FOR
//!   SHARE` until commit, so the lease cannot move under the commit); otherwise they fail
//!   with [`StoreError::LeaseLost`] and write nothing.
//! - **Claims**: a pending delivery is handed to one claimant at a time (row locks with
//!   `FOR UPDATE SKIP LOCKED`, then `claimed_until`/`claimed_by`), and only the oldest
//!   pending delivery of each (subscriber, application) can be claimed; a claim that is
//!   not ended by an attempt expires and the delivery can be claimed again.
//! - **Attempts** recorded at the same moment go to the database as one statement
//!   ([`attempts`]); claims and attempts commit without waiting for the disk (a database
//!   crash may lose the last fraction of a second of them, as sled loses what it had not
//!   flushed: a claim comes back, an attempt is made again with the same `webhook-id`);
//!   page commits and operator actions are durable when they return, so [`PgStore::flush`]
//!   has nothing to do.
//! - **Wake-ups**: commits that make deliveries claimable `NOTIFY` a channel inside their
//!   transaction; [`PgStore::listen`] turns it into a `watch` receiver.
//! - **Plans**: a claim walks the due index from its cursor and probes the per-application
//!   index once per candidate (`outbox::CLAIMABLE`); the `ANALYZE` of the outbox after
//!   large backfills keeps the planner on that path, and JIT is off.
//!
//! Errors never carry the password: connect errors name `host:port/database`.

mod attempts;
mod erase;
mod import;
mod lease;
mod log;
mod migrate;
mod outbox;
mod retention;
#[doc(hidden)]
pub mod scratch;
mod seam;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use super::StoreError;

pub use import::{Import, schema_version};
pub use migrate::{SCHEMA_VERSION, migrate};
pub use scratch::test_database;

/// The channel that page commits, releases and retries notify.
pub const WAKE_CHANNEL: &str = "hirehook_wake";

/// After this many outbox rows written by one process, it refreshes the planner's
/// statistics of the outbox and the log itself, then again each time the count doubles
/// (see [`PgStore::wrote_outbox_rows`]).
const ANALYZE_FIRST: u64 = 10_000;

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL store: a pool of connections and this replica's identity.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    replica_id: String,
    /// Whether page commits and sync-state writes require this replica's lease.
    fenced: bool,
    /// How to open a connection outside the pool (the LISTEN connection).
    server: Arc<Server>,
    /// Outbox rows this process wrote, and the count at which it next refreshes the
    /// planner's statistics (see [`PgStore::wrote_outbox_rows`]).
    outbox_written: Arc<(std::sync::atomic::AtomicU64, std::sync::atomic::AtomicU64)>,
    /// Groups concurrent attempts into one statement (see [`attempts`]).
    recorder: Arc<attempts::Recorder>,
    /// Where each subscriber's next claim starts (see [`outbox::ClaimCursors`]).
    claim_cursors: Arc<outbox::ClaimCursors>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.server.target)
            .field("replica_id", &self.replica_id)
            .field("fenced", &self.fenced)
            .finish_non_exhaustive()
    }
}

/// A parsed connection URL: the driver's config, the TLS connector, and what errors may
/// show of it.
pub(crate) struct Server {
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// `host:port/database`, for messages.
    target: String,
    /// Scrubbed from every message, in case a driver error ever quotes it.
    password: Option<String>,
}

impl Server {
    /// Parses `url` (a `postgres://` URL, with libpq's `sslmode` and `sslrootcert`).
    pub(crate) fn parse(url: &str) -> Result<Server, StoreError> {
        let (rest, tls) = tls::split_tls_params(url).map_err(|cause| StoreError::Database {
            target: crate::redact::url(url),
            cause,
        })?;
        let mut config: tokio_postgres::Config =
            rest.parse()
                .map_err(|e: tokio_postgres::Error| StoreError::Database {
                    target: crate::redact::url(url),
                    cause: format!("not a valid PostgreSQL URL: {}", describe(&e)),
                })?;
        let target = target_of(&config);
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .filter(|p| !p.is_empty());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("hirehook");
        }
        // No JIT: hirehook's statements are short, and a claim's estimated cost (a LIMIT
        // over a large backlog) passes jit_above_cost, so JIT would spend ~40 ms compiling
        // a statement that runs in one.
        let options = match config.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} -c jit=off"),
            _ => "-c jit=off".to_owned(),
        };
        config.options(options);
        config.ssl_mode(tls.ssl_mode());
        let tls = tls.connector().map_err(|cause| StoreError::Database {
            target: target.clone(),
            cause,
        })?;
        Ok(Server {
            config,
            tls,
            target,
            password,
        })
    }

    /// `text` without the password.
    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(p) if text.contains(p.as_str()) => text.replace(p.as_str(), "[redacted]"),
            _ => text,
        }
    }

    /// A connect-time error: names the target.
    fn connect_error(&self, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Database {
            target: self.target.clone(),
            cause: self.scrub(describe(e)),
        }
    }

    /// One connection outside the pool; its driver task runs on the runtime.
    async fn connect_one(&self) -> Result<tokio_postgres::Client, StoreError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.connect_error(&e))?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the client's next
            // call then reports the error.
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// Whether `url` is a PostgreSQL URL hirehook can use (for `config check`): why not, in
/// words that never quote it. Nothing is connected to, and no certificate file is read.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("must be a postgres:// or postgresql:// URL".to_owned());
    }
    let (rest, _) = tls::split_tls_params(url)?;
    rest.parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| format!("not a valid PostgreSQL URL: {}", describe(&e)))
}

/// `host:port/database` of a config (no user, no password).
fn target_of(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => config
            .get_hostaddrs()
            .first()
            .map_or_else(|| "localhost".to_owned(), |a| a.to_string()),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

/// A driver error in words: its kind, then the server's message or the underlying cause
/// (a server error's DETAIL is left out: it can quote stored values).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{}: {} ({})", db.severity(), db.message(), db.code().code());
    }
    let mut out = e.to_string();
    let mut hint = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        // A TLS failure comes as an I/O error wrapping rustls' (whose own `source` skips
        // it).
        let rustls = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .or_else(|| s.downcast_ref::<rustls::Error>());
        hint = hint.or_else(|| rustls.and_then(tls_hint));
        source = s.source();
    }
    if let Some(hint) = hint {
        out.push_str(" (");
        out.push_str(hint);
        out.push(')');
    }
    out
}

/// What a certificate failure means for the operator, when rustls' name for it is terse.
fn tls_hint(error: &rustls::Error) -> Option<&'static str> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(cert) = error else {
        return None;
    };
    Some(match cert {
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "the server's certificate is not for this host name: connect by a name it names"
        }
        C::UnknownIssuer => {
            "no trusted root vouches for the server's certificate: set sslrootcert to the CA \
             that signed it"
        }
        C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired",
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet"
        }
        C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "the server's certificate is a CA certificate, as a self-signed one is: \
             sslmode=require accepts it unchecked, verify-ca and verify-full need one \
             signed by the CA in sslrootcert"
        }
        _ => return None,
    })
}

impl PgStore {
    /// Connects (a pool of `pool_size` connections), applies migrations, returns the store.
    /// Fenced: page commits and sync-state writes need this replica's lease (see
    /// [`PgStore::without_fencing`]).
    pub async fn connect(url: &str, pool_size: usize) -> Result<PgStore, StoreError> {
        let server = Arc::new(Server::parse(url)?);
        migrate::run(&server).await?;
        let manager = Manager::from_config(
            server.config.clone(),
            server.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .build()
            .map_err(|e| StoreError::Database {
                target: server.target.clone(),
                cause: format!("cannot build the connection pool: {e}"),
            })?;
        Ok(PgStore {
            pool,
            replica_id: new_replica_id(),
            fenced: true,
            server,
            outbox_written: Arc::new((
                std::sync::atomic::AtomicU64::new(0),
                std::sync::atomic::AtomicU64::new(ANALYZE_FIRST),
            )),
            recorder: Arc::new(attempts::Recorder::default()),
            claim_cursors: Arc::default(),
        })
    }

    /// The same store without fencing: page commits and sync-state writes need no lease.
    /// For single-process uses where no lease exists (operator commands, a one-shot
    /// `sync`), never for replicas running side by side.
    pub fn without_fencing(mut self) -> Self {
        self.fenced = false;
        self
    }

    /// This replica's identity (lease holder, claimant): host name, process id and a
    /// random suffix, so two processes on one host never share it.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// `host:port/database` of the store (for messages).
    pub fn target(&self) -> &str {
        &self.server.target
    }

    /// Commits are durable when they return: nothing to flush.
    pub async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Size of the database, in bytes.
    pub async fn size_on_disk(&self) -> Result<u64, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .map_err(|e| self.io(&e))?;
        let size: i64 = row.try_get(0).map_err(|e| self.io(&e))?;
        Ok(u64::try_from(size).unwrap_or(0))
    }

    /// Counts outbox rows just committed; at [`ANALYZE_FIRST`] and each time the count
    /// doubles after, runs `ANALYZE` on the outbox's claim columns, from a small sample (the
    /// planner needs the rough shares of states, not fine histograms). Claims probe the
    /// per-application index for each candidate; with the statistics of an empty table (a
    /// backfill that emits, before autovacuum's next round) the planner walks the whole
    /// backlog instead, and a claim of 64 takes a second instead of a few milliseconds.
    /// Doubling keeps the cost of a long backfill's analyses to a few. Best effort: a
    /// failure only leaves it to autovacuum.
    async fn wrote_outbox_rows(&self, client: &deadpool_postgres::Object, n: usize) {
        use std::sync::atomic::Ordering;
        let (written, next) = &*self.outbox_written;
        let total = written.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let due = next.load(Ordering::Relaxed);
        if total >= due
            && next
                .compare_exchange(
                    due,
                    total.saturating_mul(2),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
            && let Err(e) = client
                .batch_execute(
                    "BEGIN; SET LOCAL default_statistics_target = 10; \
                     ANALYZE outbox (subscriber, state, due_at); COMMIT",
                )
                .await
        {
            tracing::debug!(error = %self.server.scrub(describe(&e)), "store: ANALYZE failed");
            // Leave the pooled connection outside any transaction.
            let _ = client.batch_execute("ROLLBACK").await;
        }
    }

    /// A pooled connection.
    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            let text = match &e {
                deadpool_postgres::PoolError::Backend(e) => describe(e),
                other => other.to_string(),
            };
            StoreError::Io(self.server.scrub(format!(
                "cannot reach PostgreSQL at {}: {text}",
                self.server.target
            )))
        })
    }

    /// A driver error while running.
    fn io(&self, e: &tokio_postgres::Error) -> StoreError {
        StoreError::Io(self.server.scrub(format!(
            "PostgreSQL at {}: {}",
            self.server.target,
            describe(e)
        )))
    }
}

fn new_replica_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Joined into the statements of claims and attempts: their commit does not wait for the
/// WAL to reach disk (`synchronous_commit = off` for that statement's own transaction).
/// A crash of the database may lose the last fraction of a second of them (PostgreSQL
/// flushes its WAL at least every few hundred milliseconds, and any later synchronous
/// commit, such as a page commit, flushes them too) — what the sled backend promises
/// between flushes: a lost claim is claimable again, a lost attempt is made again with the
/// same `webhook-id`. It never loses a page commit, never reorders, never corrupts. On
/// this machine it makes a claim or an attempt ~9x cheaper (a WAL flush costs ~3 ms).
const RELAXED: &str = "(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed";

/// A u64 as PostgreSQL's bigint.
fn to_i64(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::Io(format!("{what} {value} is beyond bigint")))
}

/// A bigint read back as u64.
fn to_u64(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        what: what.to_owned(),
        message: format!("negative value {value}"),
    })
}

#[cfg(test)]
mod tests;
