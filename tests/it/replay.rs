//! `hirehook replay` (the real binary) to a capturing receiver that verifies every
//! signature with the Standard Webhooks reference crate.

use std::collections::BTreeSet;

use crate::common::harness::{Harness, LIMIT, Options};
use crate::common::{Receiver, Reply, SECRET};
use hirehook::sim::Mutation;
use hirehook::store::{EventFilter, EventRecord, Store};
use serde_json::json;

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn hirehook(args: &[&str]) -> Output {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(args)
        .env_remove("HIREHOOK_REPLAY_SECRET")
        .output();
    let output = tokio::time::timeout(LIMIT, output)
        .await
        .expect("hirehook ends")
        .expect("hirehook runs");
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A stopped hirehook whose log holds: interviews on apps 0..3, a hire of app 0, an offer
/// on app 1. Returns the harness (store closed) and the log.
async fn logged_events() -> (Harness, Vec<EventRecord>) {
    let mut harness = Harness::start(Options::default()).await;
    let integration = harness.integration();
    let apps = harness.live_apps();
    let sim = harness.sim.sim();
    for app in &apps[..3] {
        sim.apply(&integration, app, Mutation::ScheduleInterview)
            .expect("schedule");
    }
    sim.apply(&integration, &apps[0], Mutation::Hire)
        .expect("hire");
    sim.apply(
        &integration,
        &apps[1],
        Mutation::CreateOffer { status: None },
    )
    .expect("offer");
    let (status, _) = harness
        .post(&format!("/v1/integrations/{integration}/sync"), &json!({}))
        .await;
    assert_eq!(status, 202);
    harness.receiver.wait_until(LIMIT, |r| r.len() >= 5).await;
    harness.stop().await;
    let store = Store::open_sled(&harness.config.store.path, 1 << 20).expect("store");
    let log = store.events(&EventFilter::default()).await.expect("log");
    assert_eq!(log.len(), 5, "{log:?}");
    (harness, log)
}

/// The harness's log exported with `hirehook events export` to a file of its directory.
async fn export_log(harness: &Harness) -> std::path::PathBuf {
    let config = harness.config_path.to_str().expect("path").to_owned();
    let export = harness.dir.path().join("events.jsonl");
    let out = hirehook(&[
        "events",
        "export",
        "--config",
        &config,
        "-o",
        export.to_str().expect("path"),
    ])
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    export
}

async fn deliveries_snapshot(harness: &Harness) -> String {
    let store = Store::open_sled(&harness.config.store.path, 1 << 20).expect("store");
    format!(
        "{:?}",
        store
            .deliveries(None, None, None)
            .await
            .expect("deliveries")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sends_every_selected_event_with_its_id_signed_in_log_order() {
    let (harness, log) = logged_events().await;
    let config = harness.config_path.to_str().expect("path").to_owned();
    let before = deliveries_snapshot(&harness).await;

    // Everything.
    let target = Receiver::start().await;
    let out = hirehook(&[
        "replay",
        "--config",
        &config,
        "--to",
        &target.url,
        "--secret",
        SECRET,
    ])
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("sent 5, accepted 5, failed 0"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("by status: 200 ×5"), "{}", out.stdout);
    let got = target.received();
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<&str> = log.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, want, "original ids, in log order");
    assert!(got.iter().all(|r| r.verified), "every signature verifies");
    for (r, e) in got.iter().zip(&log) {
        assert_eq!(r.body, e.body, "the logged body, byte for byte");
    }

    // Filters select exactly.
    let hired_app = log
        .iter()
        .find(|e| e.event_type.as_str() == "outcome_hired")
        .expect("hire")
        .application_id
        .clone();
    let cases: Vec<(Vec<&str>, Vec<&EventRecord>)> = vec![
        (
            vec!["--type", "outcome_hired"],
            log.iter()
                .filter(|e| e.event_type.as_str() == "outcome_hired")
                .collect(),
        ),
        (
            vec!["--type", "offer_created", "--type", "outcome_hired"],
            log.iter()
                .filter(|e| matches!(e.event_type.as_str(), "offer_created" | "outcome_hired"))
                .collect(),
        ),
        (
            vec!["--application", &hired_app],
            log.iter()
                .filter(|e| e.application_id == hired_app)
                .collect(),
        ),
        (vec!["--integration", "greenhouse:other"], vec![]),
        (
            vec!["--since", "2000-01-01T00:00:00Z", "--until", "1h"],
            vec![],
        ),
        (vec!["--since", "1h"], log.iter().collect()),
    ];
    for (filter, want) in cases {
        let target = Receiver::start().await;
        let mut args = vec![
            "replay",
            "--config",
            &config,
            "--to",
            &target.url,
            "--secret",
            SECRET,
        ];
        args.extend(filter.iter().copied());
        let out = hirehook(&args).await;
        assert_eq!(out.code, 0, "{filter:?}: {}{}", out.stdout, out.stderr);
        let got: Vec<String> = target.received().into_iter().map(|r| r.id).collect();
        let want: Vec<String> = want.iter().map(|e| e.id.clone()).collect();
        assert_eq!(got, want, "{filter:?}");
    }

    // A dry run sends nothing and lists what it would send.
    let target = Receiver::start().await;
    let out = hirehook(&[
        "replay",
        "--config",
        &config,
        "--to",
        &target.url,
        "--dry-run",
        "--type",
        "outcome_hired",
    ])
    .await;
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("dry run: 1 event(s) would be sent"),
        "{}",
        out.stdout
    );
    assert!(target.received().is_empty());

    assert_eq!(
        deliveries_snapshot(&harness).await,
        before,
        "replay never changes the delivery state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_counted_listed_and_exit_1_without_stopping_the_replay() {
    let (harness, log) = logged_events().await;
    let config = harness.config_path.to_str().expect("path").to_owned();
    let second = log[1].id.clone();
    let target = Receiver::start_with(Box::new(move |r, _| {
        if r.id == second {
            Reply::Status(500)
        } else {
            Reply::Ok
        }
    }))
    .await;
    let out = hirehook(&[
        "replay",
        "--config",
        &config,
        "--to",
        &target.url,
        "--secret",
        SECRET,
        "--rate",
        "200",
    ])
    .await;
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("sent 5, accepted 4, failed 1"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("200 ×4, 500 ×1"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&log[1].id) && out.stdout.contains("HTTP 500"),
        "{}",
        out.stdout
    );
    assert_eq!(
        target.received().len(),
        5,
        "the replay went on after the failure"
    );

    // Nothing listening: every request fails, each is listed.
    let out = hirehook(&[
        "replay",
        "--config",
        &config,
        "--to",
        "http://127.0.0.1:9/hook",
        "--secret",
        SECRET,
    ])
    .await;
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("failed 5"), "{}", out.stdout);
    assert!(out.stdout.contains("connection failed"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_an_export_file_reports_bad_lines_by_number() {
    let (harness, log) = logged_events().await;
    let export = export_log(&harness).await;
    let text = std::fs::read_to_string(&export).expect("export");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 5);
    // Line 2 becomes garbage, line 4 an event body with a bad id; a blank line is fine.
    lines.insert(1, "{\"type\": \"stage_changed\"".into());
    lines.insert(
        3,
        lines[2].replace("\"event_id\":\"evt_", "\"event_id\":\"evx_"),
    );
    lines.insert(5, String::new());
    std::fs::write(&export, lines.join("\n") + "\n").expect("write");

    let target = Receiver::start().await;
    let out = hirehook(&[
        "replay",
        "--from-file",
        export.to_str().expect("path"),
        "--to",
        &target.url,
        "--secret",
        SECRET,
    ])
    .await;
    assert_eq!(
        out.code, 1,
        "bad lines make the replay fail: {}",
        out.stdout
    );
    assert!(out.stderr.contains("line 2:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("line 4:") && out.stderr.contains("event_id"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout.contains("line 2:") && out.stdout.contains("line 4:"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("line 6:"),
        "blank lines are not errors"
    );
    let got = target.received();
    let ids: Vec<&str> = got.iter().map(|r| r.id.as_str()).collect();
    let want: Vec<&str> = log.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, want, "every good line, in file order");
    assert!(got.iter().all(|r| r.verified));

    // Filters apply to the file too.
    let target = Receiver::start().await;
    let out = hirehook(&[
        "replay",
        "--from-file",
        export.to_str().expect("path"),
        "--to",
        &target.url,
        "--secret",
        SECRET,
        "--type",
        "interview_scheduled",
    ])
    .await;
    assert_eq!(out.code, 1);
    let got: BTreeSet<String> = target.received().into_iter().map(|r| r.id).collect();
    let want: BTreeSet<String> = log
        .iter()
        .filter(|e| e.event_type.as_str() == "interview_scheduled")
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2() {
    for args in [
        vec!["replay", "--to", "http://127.0.0.1:9/", "--secret", SECRET],
        vec![
            "replay",
            "--from-file",
            "x",
            "--to",
            "ftp://x",
            "--secret",
            SECRET,
        ],
        vec![
            "replay",
            "--from-file",
            "x",
            "--to",
            "http://127.0.0.1:9/",
            "--secret",
            "nope",
        ],
        vec!["replay", "--from-file", "x", "--to", "http://127.0.0.1:9/"],
        vec![
            "replay",
            "--from-file",
            "x",
            "--to",
            "http://x/",
            "--secret",
            SECRET,
            "--rate",
            "0",
        ],
    ] {
        let out = hirehook(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains(SECRET), "secrets never printed");
    }
}

/// A replay of an export whose first line is 256 MiB: the line is reported by number and
/// skipped with bounded memory, the event after it is sent, the summary (printed on
/// SIGINT too) never shows the URL's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_line_is_skipped_with_bounded_memory_and_sigint_still_prints_the_summary() {
    let (harness, log) = logged_events().await;
    let export = export_log(&harness).await;
    let events = std::fs::read_to_string(&export).expect("export");
    {
        use std::io::Write as _;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&export).expect("create"));
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..256 {
            file.write_all(&chunk).expect("write");
        }
        file.write_all(b"\n").expect("write");
        file.write_all(events.as_bytes()).expect("write");
        file.flush().expect("flush");
    }

    // A receiver that reads the first request's head and never answers: the replay waits
    // on it while the test looks at the process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let first_request = tokio::spawn(async move {
        use tokio::io::AsyncReadExt as _;
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "the replay hung up");
            head.extend_from_slice(&buf[..n]);
        }
        (String::from_utf8_lossy(&head).into_owned(), stream)
    });
    let to = format!("http://user:pa55w0rd@127.0.0.1:{port}?token=t0k3n");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(["replay", "--from-file"])
        .arg(&export)
        .args(["--to", &to, "--secret", SECRET])
        .env_remove("HIREHOOK_REPLAY_SECRET")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("replay starts");
    let pid = child.id().expect("pid");
    // The first event arrived: the huge line is behind the replay.
    let (head, _held) = tokio::time::timeout(LIMIT, first_request)
        .await
        .expect("the first event is sent")
        .expect("receiver");
    let peak = crate::common::process::peak_rss_kb(pid);
    assert!(peak < 200 * 1024, "peak RSS {peak} kB for a 256 MiB line");
    assert!(
        head.contains(&format!("webhook-id: {}", log[0].id)),
        "{head}"
    );

    crate::common::process::signal(pid, "-INT");
    let output = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .expect("replay ends on SIGINT")
        .expect("status");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("interrupted (SIGINT)"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "replay to http://[redacted]@127.0.0.1:{port}/?token=[redacted]: sent"
        )),
        "{stdout}"
    );
    assert!(stderr.contains("line 1: longer than 8 MiB"), "{stderr}");
    for text in [&stdout, &stderr] {
        assert!(
            !text.contains("pa55w0rd") && !text.contains("t0k3n"),
            "{text}"
        );
    }
}
