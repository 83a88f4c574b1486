//! A throwaway PostgreSQL for tests and benchmarks: `initdb` + `pg_ctl` in a temporary
//! directory, on a free loopback port, stopped and removed when dropped — or, when the
//! process dies without dropping it (a server held in a static never is), by a watchdog
//! shell that waits for the process to end.
//!
//! [`test_database`] gives each caller a fresh empty database: on the server
//! `HIREHOOK_TEST_DATABASE_URL` names, else on one scratch server per process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Server;

/// A PostgreSQL server of our own, in a temporary directory.
#[derive(Debug)]
pub struct ScratchServer {
    dir: PathBuf,
    port: u16,
    /// Whether the server runs as the `postgres` user (we are root, which PostgreSQL
    /// refuses to run as).
    as_postgres: bool,
    /// The CA that signed the server's certificate (for `localhost`), when `openssl` was
    /// there to make them: the server then also accepts TLS.
    tls_root: Option<PathBuf>,
    /// The server's settings (`pg_ctl start -o`), for [`ScratchServer::start_again`].
    options: String,
    watchdog: Option<Child>,
}

/// How [`ScratchServer::stop`] stops the server (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Sessions are ended and a checkpoint written: an orderly shutdown.
    Fast,
    /// Every process quits at once, as in a crash: recovery runs at the next start.
    Immediate,
}

/// The superuser's password (host connections authenticate with SCRAM, as in production).
pub const SCRATCH_PASSWORD: &str = "scratch-pw";

impl ScratchServer {
    /// Creates a cluster in a temporary directory and starts it on a free loopback port
    /// (user `postgres` with [`SCRATCH_PASSWORD`] over TCP, `fsync=on`, TLS too when
    /// `openssl` can make a certificate). Fails with what went wrong (a missing `initdb`,
    /// its output, the server log).
    pub fn start() -> Result<ScratchServer, String> {
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("hirehook-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?
            .keep();
        let mut server = ScratchServer {
            dir,
            port: 0,
            as_postgres,
            tls_root: None,
            options: String::new(),
            watchdog: None,
        };
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&server.dir))?;
        }
        // The watchdog first: whatever happens next, the directory goes with the process.
        server.watchdog = Some(server.spawn_watchdog()?);
        let data = server.data_dir();
        let password_file = server.dir.join("password");
        std::fs::write(&password_file, SCRATCH_PASSWORD)
            .map_err(|e| format!("cannot write {}: {e}", password_file.display()))?;
        if as_postgres {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&password_file))?;
        }
        run(server
            .pg("initdb")
            .arg("-D")
            .arg(&data)
            .arg(format!("--pwfile={}", password_file.display()))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]))?;
        // TLS is a bonus: without openssl the server is plain, and the TLS test says so.
        let tls = server.make_certificates().ok();
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port()?;
            let mut options = format!(
                "-c port={port} -c listen_addresses=127.0.0.1 -k {} -c fsync=on \
                 -c max_connections=300",
                server.dir.display()
            );
            // Benchmarks add their own settings (e.g. `-c shared_preload_libraries=
            // pg_stat_statements` to see where the database's time goes).
            if let Ok(extra) = std::env::var("HIREHOOK_SCRATCH_PG_OPTIONS") {
                options.push(' ');
                options.push_str(&extra);
            }
            if let Some(tls) = &tls {
                options.push_str(&format!(
                    " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                    tls.join("server.crt").display(),
                    tls.join("server.key").display()
                ));
            }
            let started = run(server
                .pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(server.dir.join("server.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]));
            match started {
                Ok(()) => {
                    server.port = port;
                    server.tls_root = tls.map(|dir| dir.join("ca.crt"));
                    server.options = options;
                    return Ok(server);
                }
                // Another process may have taken the port in between: try another.
                Err(e) => last_error = format!("{e}\n{}", server.log_tail()),
            }
        }
        Err(last_error)
    }

    /// Stops the server and waits until it is gone: the database goes away under whoever
    /// uses it (connections are cut, new ones refused) until [`ScratchServer::start_again`].
    pub fn stop(&self, mode: StopMode) -> Result<(), String> {
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        run(self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", mode, "-w", "-t", "60", "stop"]))
    }

    /// Starts a stopped server again: the same data, port and settings. Returns once it
    /// accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        run(self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &self.options, "start"]))
        .map_err(|e| format!("{e}\n{}", self.log_tail()))
    }

    /// Makes the server read its configuration files again (`pg_ctl reload`), its TLS
    /// certificate and key included.
    pub fn reload(&self) -> Result<(), String> {
        run(self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("reload"))
    }

    /// The superuser's URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    fn url_of(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{SCRATCH_PASSWORD}@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// The PEM file of the CA that signed the server's certificate (for `localhost`), if
    /// the server accepts TLS.
    pub fn tls_root(&self) -> Option<&Path> {
        self.tls_root.as_deref()
    }

    /// A CA and a server certificate for `localhost` signed by it, in `<dir>/tls`, made by
    /// the `openssl` command (as the server's user: the key must be its own, mode 0600).
    fn make_certificates(&self) -> Result<PathBuf, String> {
        let tls = self.dir.join("tls");
        std::fs::create_dir_all(&tls).map_err(|e| format!("{}: {e}", tls.display()))?;
        std::fs::write(
            tls.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| format!("{}: {e}", tls.display()))?;
        if self.as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(&tls))?;
        }
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(self
            .pg("openssl")
            .current_dir(&tls)
            .args(["req", "-x509"])
            .args(ec)
            .args(["-keyout", "ca.key", "-out", "ca.crt", "-days", "3"])
            .args(["-subj", "/CN=hirehook scratch CA"]))?;
        run(self
            .pg("openssl")
            .current_dir(&tls)
            .arg("req")
            .args(ec)
            .args(["-keyout", "server.key", "-out", "server.csr"])
            .args(["-subj", "/CN=localhost"]))?;
        run(self.pg("openssl").current_dir(&tls).args([
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "3",
            "-extfile",
            "server.ext",
        ]))?;
        run(self.pg("chmod").arg("600").arg(tls.join("server.key")))?;
        Ok(tls)
    }

    /// Replaces the server's certificate with a self-signed one for `localhost` (no CA
    /// vouches for it) and reloads: from then on, `require` still connects, and any
    /// verifying mode fails. Needs `openssl`, and a server started with TLS.
    pub fn use_self_signed_certificate(&self) -> Result<(), String> {
        if self.tls_root.is_none() {
            return Err("the server was started without TLS".to_owned());
        }
        let tls = self.dir.join("tls");
        run(self
            .pg("openssl")
            .current_dir(&tls)
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-keyout", "server.key", "-out", "server.crt", "-days", "3"])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=DNS:localhost"]))?;
        run(self.pg("chmod").arg("600").arg(tls.join("server.key")))?;
        self.reload()
    }

    /// Its temporary directory (data, socket, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates an empty database `name` (letters, digits, `_`) and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String, String> {
        create_database_at(&self.url(), name).await?;
        Ok(self.url_of(name))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A PostgreSQL program, run as `postgres` when we are root.
    fn pg(&self, program: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        }
    }

    fn spawn_watchdog(&self) -> Result<Child, String> {
        let stop = format!(
            "{}pg_ctl -D '{}' -m immediate stop",
            if self.as_postgres {
                "runuser -u postgres -- "
            } else {
                ""
            },
            self.data_dir().display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        use std::os::unix::process::CommandExt as _;
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: a Ctrl-C to the tests does not take it along.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start the watchdog shell: {e}"))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ScratchServer {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self
                .pg("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "fast", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a command to its end; an error carries its output.
fn run(command: &mut Command) -> Result<(), String> {
    let program = format!("{:?}", command.get_program());
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{program} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Connects to `admin_url` and creates the database `name`.
async fn create_database_at(admin_url: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(format!("{name:?} is not a plain database name"));
    }
    let server = Server::parse(admin_url).map_err(|e| e.to_string())?;
    let client = server.connect_one().await.map_err(|e| e.to_string())?;
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(|e| format!("CREATE DATABASE {name}: {}", super::describe(&e)))
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> Result<String, String> {
    let mut parsed = url::Url::parse(url)
        .map_err(|e| format!("HIREHOOK_TEST_DATABASE_URL is not a URL: {e}"))?;
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.to_string())
}

/// A fresh, empty database for one test: on the server of `HIREHOOK_TEST_DATABASE_URL`
/// when it is set, else on a scratch server started once per process. None (after saying
/// so on stderr) when neither works — unless `HIREHOOK_REQUIRE_POSTGRES=1`, which makes
/// that a panic (CI sets it: tests must run, never skip).
pub async fn test_database() -> Option<String> {
    match try_test_database().await {
        Ok(url) => Some(url),
        Err(why) if std::env::var("HIREHOOK_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("PostgreSQL is required (HIREHOOK_REQUIRE_POSTGRES=1) but unavailable: {why}")
        }
        Err(why) => {
            eprintln!(
                "skipped: no PostgreSQL (set HIREHOOK_TEST_DATABASE_URL or put initdb/pg_ctl on PATH): {why}"
            );
            None
        }
    }
}

async fn try_test_database() -> Result<String, String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "hirehook_test_{}_{}_{:06x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>() & 0xff_ffff
    );
    if let Ok(url) = std::env::var("HIREHOOK_TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        create_database_at(&url, &name).await?;
        return with_database(&url, &name);
    }
    let server = scratch_server()?;
    server.create_database(&name).await
}

/// The process's scratch server, started on first use (never dropped: its watchdog stops
/// it when the process ends).
pub fn scratch_server() -> Result<&'static ScratchServer, String> {
    static SERVER: OnceLock<Result<ScratchServer, String>> = OnceLock::new();
    SERVER
        .get_or_init(ScratchServer::start)
        .as_ref()
        .map_err(Clone::clone)
}
