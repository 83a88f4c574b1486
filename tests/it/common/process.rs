//! Other processes the tests start (`hirehook run`, `replay`, `demo`, `sim`): signals and
//! peak memory, read the way an operator would (`kill`, `/proc`).

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
