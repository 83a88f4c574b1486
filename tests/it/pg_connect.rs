//! `hirehook run` meeting a PostgreSQL store it cannot use at start, and TLS to a real
//! server, as an operator sees them: the real binary, a config file, its exit code and
//! stderr.
//!
//! - A host that does not resolve, a refused connection, a wrong password, a missing
//!   database: exit 1, naming `host:port/database` and the cause, never the password.
//! - TLS (libpq's `sslmode`, with rustls): `disable` is plain; `prefer` and `require`
//!   encrypt without checking the certificate, so `require` also works with a self-signed
//!   one; `verify-full` with `sslrootcert` naming the CA works for the certificate's host
//!   name, and exits 1 naming the host and the cause for another name or a certificate no
//!   trusted root vouches for. What the running daemon's connections use is read from the
//!   server (`pg_stat_ssl`).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use hirehook::store::postgres::scratch::{SCRATCH_PASSWORD, ScratchServer};
use tokio::process::Command;

use crate::common::process::{free_port, own_server, start_daemon, tail};

const LIMIT: Duration = Duration::from_secs(60);

/// A config for `hirehook run` on the store at `url` (Kombo unreachable: the daemon runs,
/// its syncs fail, which is not what these tests look at).
fn config(dir: &Path, url: &str) -> PathBuf {
    let text = format!(
        r#"[store]
backend = "postgres"
url = "{url}"
pool_size = 2

[kombo]
base_url = "http://127.0.0.1:9"
api_key = "test-key"
poll_interval = "1h"

[admin]
listen = "127.0.0.1:{}"

[[integrations]]
id = "greenhouse:a"
"#,
        free_port()
    );
    let path = dir.join(format!("{:08x}.toml", rand::random::<u32>()));
    std::fs::write(&path, text).expect("write config");
    path
}

/// `hirehook run` that must fail at start: its output.
async fn run_fails(config: &Path) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(LIMIT, child)
        .await
        .expect("exits at start")
        .expect("runs")
}

/// Asserts exit 1 with one error that names `target` and every one of `causes` (any
/// case), and never the password.
fn assert_refused(out: &Output, target: &str, causes: &[&str], password: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(target), "names {target}: {stderr}");
    for cause in causes {
        assert!(
            stderr.to_lowercase().contains(&cause.to_lowercase()),
            "says {cause:?}: {stderr}"
        );
    }
    assert!(!stderr.contains(password), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `host:port/database` of a URL's parts.
fn target(host: &str, port: u16, db: &str) -> String {
    format!("{host}:{port}/{db}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_exits_1_naming_the_database_and_the_cause_when_it_cannot_use_it() {
    let Some(server) = own_server() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = server.port();
    let pw = SCRATCH_PASSWORD;

    // A host that does not resolve.
    let url = "postgres://hirehook:pw-s3cret-1@no-such-host.invalid:5432/hooks";
    let out = run_fails(&config(dir.path(), url)).await;
    assert_refused(
        &out,
        &target("no-such-host.invalid", 5432, "hooks"),
        &["cannot use the PostgreSQL store", "lookup address"],
        "pw-s3cret-1",
    );
    // Nothing listening.
    let closed = free_port();
    let url = format!("postgres://hirehook:pw-s3cret-2@127.0.0.1:{closed}/hooks?connect_timeout=5");
    let out = run_fails(&config(dir.path(), &url)).await;
    assert_refused(
        &out,
        &target("127.0.0.1", closed, "hooks"),
        &["refused"],
        "pw-s3cret-2",
    );
    // A wrong password.
    let url = format!("postgres://postgres:pw-s3cret-3@127.0.0.1:{port}/postgres?sslmode=disable");
    let out = run_fails(&config(dir.path(), &url)).await;
    assert_refused(
        &out,
        &target("127.0.0.1", port, "postgres"),
        &["password authentication failed"],
        "pw-s3cret-3",
    );
    // A database that does not exist (the right password: it must not show either).
    let url = format!("postgres://postgres:{pw}@127.0.0.1:{port}/no_such_db?sslmode=disable");
    let out = run_fails(&config(dir.path(), &url)).await;
    assert_refused(
        &out,
        &target("127.0.0.1", port, "no_such_db"),
        &["does not exist"],
        pw,
    );
    // A URL that is not one is a config error (exit 2), caught before connecting.
    let url = "postgres://u:pw-s3cret-4@h:notaport/db";
    let out = run_fails(&config(dir.path(), url)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("store.url"), "{stderr}");
    assert!(!stderr.contains("pw-s3cret-4"), "{stderr}");
}

/// A running `hirehook run`; [`Running::stop`] ends it (SIGTERM, exit 0).
struct Running {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Running {
    fn start(config: &Path, log: PathBuf) -> Running {
        let child = start_daemon(config, &log);
        Running { child, log }
    }

    async fn stop(mut self) {
        crate::common::process::signal(self.child.id().expect("running"), "-TERM");
        let status = tokio::time::timeout(LIMIT, self.child.wait())
            .await
            .expect("exits")
            .expect("status");
        assert!(status.success(), "{status:?}\n{}", tail(&self.log));
    }
}

/// Waits until the daemon's connections to `database` show on the server, and returns
/// whether each is encrypted (`pg_stat_ssl`).
async fn daemon_connections_encrypted(
    admin: &tokio_postgres::Client,
    database: &str,
    daemon: &Running,
) -> Vec<bool> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let rows = admin
            .query(
                "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
                 WHERE a.application_name = 'hirehook' AND a.datname = $1",
                &[&database],
            )
            .await
            .expect("pg_stat_ssl");
        // The pool's first connection and the wake-up listener's: the daemon is up.
        if rows.len() >= 2 {
            return rows.iter().map(|r| r.get::<_, bool>(0)).collect();
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never connected\n{}",
            tail(&daemon.log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn superuser(server: &ScratchServer) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
        .await
        .expect("connect as the superuser");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_work_as_libpq_says_and_a_bad_certificate_stops_the_start() {
    let Some(server) = own_server() else {
        return;
    };
    let Some(ca) = server.tls_root() else {
        assert!(
            std::env::var("HIREHOOK_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "no TLS on the scratch server: is openssl on PATH?"
        );
        eprintln!("skipped: the scratch server has no TLS (no openssl)");
        return;
    };
    let database = "tls";
    server.create_database(database).await.expect("database");
    let admin = superuser(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, pw) = (server.port(), SCRATCH_PASSWORD);
    let url = |host: &str, params: &str| {
        format!("postgres://postgres:{pw}@{host}:{port}/{database}?{params}")
    };
    let rootcert = |path: &Path| {
        url::form_urlencoded::byte_serialize(path.to_string_lossy().as_bytes()).collect::<String>()
    };
    let ca_param = rootcert(ca);

    // The daemon runs, its connections encrypted or not as the mode says.
    let runs = [
        ("127.0.0.1", "sslmode=disable".to_owned(), false),
        ("127.0.0.1", "sslmode=prefer".to_owned(), true),
        ("127.0.0.1", "sslmode=require".to_owned(), true),
        (
            "localhost",
            format!("sslmode=verify-full&sslrootcert={ca_param}"),
            true,
        ),
    ];
    for (i, (host, params, tls)) in runs.iter().enumerate() {
        let config = config(dir.path(), &url(host, params));
        let daemon = Running::start(&config, dir.path().join(format!("run-{i}.log")));
        let encrypted = daemon_connections_encrypted(&admin, database, &daemon).await;
        assert!(
            encrypted.iter().all(|e| e == tls),
            "{host} {params}: {encrypted:?}"
        );
        daemon.stop().await;
        // Until its connections are gone, the next run's would mix with them.
        let deadline = Instant::now() + LIMIT;
        while !admin
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'hirehook'",
                &[],
            )
            .await
            .expect("activity")
            .is_empty()
        {
            assert!(Instant::now() < deadline, "the daemon's connections closed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The certificate is for localhost, not 127.0.0.1.
    let out = run_fails(&config(
        dir.path(),
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca_param}"),
        ),
    ))
    .await;
    assert_refused(
        &out,
        &target("127.0.0.1", port, database),
        &[
            "certificate",
            "not valid for name",
            "not for this host name",
        ],
        pw,
    );
    // No root the system trusts vouches for it.
    let out = run_fails(&config(
        dir.path(),
        &url("localhost", "sslmode=verify-full"),
    ))
    .await;
    assert_refused(
        &out,
        &target("localhost", port, database),
        &["certificate", "UnknownIssuer"],
        pw,
    );

    // A self-signed certificate: `require` encrypts without checking it; verifying against
    // the CA fails.
    server
        .use_self_signed_certificate()
        .expect("a self-signed certificate");
    let verify = url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca_param}"),
    );
    // The server reloads its certificate a moment after the signal: until a verifying
    // connection fails.
    let deadline = Instant::now() + LIMIT;
    while hirehook::store::postgres::migrate(&verify).await.is_ok() {
        assert!(Instant::now() < deadline, "the new certificate in use");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = run_fails(&config(dir.path(), &verify)).await;
    assert_refused(
        &out,
        &target("localhost", port, database),
        &["certificate", "self-signed", "sslmode=require accepts it"],
        pw,
    );
    let config = config(dir.path(), &url("127.0.0.1", "sslmode=require"));
    let daemon = Running::start(&config, dir.path().join("self-signed.log"));
    let encrypted = daemon_connections_encrypted(&admin, database, &daemon).await;
    assert!(encrypted.iter().all(|e| *e), "{encrypted:?}");
    daemon.stop().await;
}
