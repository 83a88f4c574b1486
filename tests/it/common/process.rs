//! Other processes the tests start (`hirehook run`, `replay`, `demo`, `sim`, PostgreSQL):
//! starting them, signals and peak memory, read the way an operator would (`kill`,
//! `/proc`).

/// Sends `signal` (`-TERM`, `-INT`, `-KILL`, …) to process `pid`; panics if `kill` fails.
pub fn signal(pid: u32, signal: &str) {
    let ok = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill {signal} {pid}");
}

/// The peak resident set size of a running process, in kB (`VmHWM` in `/proc/PID/status`).
pub fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

/// A PostgreSQL scratch server of the calling test's own (to stop, start, reconfigure), or None when there is
/// no PostgreSQL here (skipped, unless `HIREHOOK_REQUIRE_POSTGRES=1`).
pub fn own_server() -> Option<hirehook::store::postgres::scratch::ScratchServer> {
    match hirehook::store::postgres::scratch::ScratchServer::start() {
        Ok(server) => Some(server),
        Err(why) if std::env::var("HIREHOOK_REQUIRE_POSTGRES").as_deref() == Ok("1") => {
            panic!("PostgreSQL is required (HIREHOOK_REQUIRE_POSTGRES=1) but unavailable: {why}")
        }
        Err(why) => {
            eprintln!("skipped: no PostgreSQL server of our own here: {why}");
            None
        }
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `hirehook run` with its stderr in `log`.
pub fn start_daemon(config: &std::path::Path, log: &std::path::Path) -> tokio::process::Child {
    let log = std::fs::File::create(log).expect("log file");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .expect("hirehook run starts")
}

/// The last lines of a log, for failure messages.
pub fn tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
