//! `hirehook demo` as a newcomer runs it: events flow, every signature verifies, and it
//! stops cleanly on its own or on Ctrl-C (SIGINT).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn demo(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hirehook"));
    cmd.arg("demo")
        .args([
            "--applications",
            "80",
            "--changes-per-second",
            "25",
            "--poll-interval",
            "1s",
        ])
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The number in "N event(s) delivered, M signature(s) verified, R refused, D duplicate(s)".
fn summary(stdout: &str) -> (u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.contains("event(s) delivered"))
        .unwrap_or_else(|| panic!("no summary in:\n{stdout}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (nums[0], nums[1], nums[2])
}

#[tokio::test]
async fn the_demo_delivers_verified_events_and_stops_by_itself() {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        demo(&["--duration", "6s"]).output(),
    )
    .await
    .expect("the demo stops by itself")
    .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("simulator  http://127.0.0.1:"), "{stdout}");
    let (delivered, verified, refused) = summary(&stdout);
    assert!(delivered > 0, "{stdout}");
    assert!(verified >= delivered);
    assert_eq!(refused, 0);
    // One readable line per delivered event: "HH:MM:SS  tool:xxxx  Name · Job  change".
    let event_lines = stdout.lines().filter(|l| l.contains(" · ")).count() as u64;
    assert_eq!(event_lines, delivered, "{stdout}");
}

#[tokio::test]
async fn ctrl_c_stops_the_demo_cleanly() {
    let mut child = demo(&[]).spawn().expect("demo starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    // Wait for the first event on screen.
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let is_event = line.contains(" · ");
            seen.push(line);
            if is_event {
                return true;
            }
        }
        false
    })
    .await
    .expect("an event within the limit");
    assert!(first, "{seen:?}");
    crate::common::process::signal(child.id().expect("pid"), "-INT");
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            rest.push_str(&line);
            rest.push('\n');
        }
        rest
    })
    .await
    .expect("output ends");
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "exit {status:?}\n{rest}");
    let (_, _, refused) = summary(&rest);
    assert_eq!(refused, 0);
}
