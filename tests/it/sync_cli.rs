//! `hirehook sync --once` and `hirehook events` as a user runs them: the real binary, a
//! config file, the simulator on port 0.

use std::path::Path;
use std::process::Output;

use hirehook::sim::{Mutation, RunningSim, SimConfig, spawn};
use tokio::process::Command;

const SECRET: &str = "whsec_dGVzdCBzaWduaW5nIGtleQ==";

fn write_config(dir: &Path, sim: &RunningSim, integrations: &[String]) -> std::path::PathBuf {
    let mut text = format!(
        r#"
[store]
path = "{store}"

[kombo]
base_url = "{base}"
api_key = "${{TEST_KOMBO_KEY}}"
request_timeout = "5s"
"#,
        store = dir.join("store").display(),
        base = sim.base_url(),
    );
    for id in integrations {
        text.push_str(&format!("\n[[integrations]]\nid = \"{id}\"\n"));
    }
    text.push_str(&format!(
        "\n[[subscribers]]\nname = \"crm\"\nurl = \"https://crm.example.com/hook\"\nsecrets = [\"{SECRET}\"]\n"
    ));
    let path = dir.join("hirehook.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn hirehook(args: &[&str], key: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args(args)
        .env("TEST_KOMBO_KEY", key)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("hirehook runs")
}

fn lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_once_prints_derived_events_as_json_lines() {
    let sim = spawn(SimConfig {
        integrations: 2,
        applications: 120,
        seed: 3,
        ..Default::default()
    })
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let integrations = sim.sim().integration_ids();
    let config = write_config(dir.path(), &sim, &integrations);
    let config = config.to_str().expect("utf-8 path");
    let key = sim.sim().api_key().to_owned();

    let out = hirehook(&["sync", "--once", "--config", config], &key).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "a baseline prints no events");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for id in &integrations {
        assert!(stderr.contains(&format!("{id}: baseline sync")), "{stderr}");
    }

    let target = sim
        .sim()
        .application_ids(&integrations[1])
        .into_iter()
        .find(|id| {
            sim.sim()
                .application(&integrations[1], id)
                .is_some_and(|a| a.remote_deleted_at.is_none())
        })
        .expect("a live application");
    sim.sim()
        .apply(&integrations[1], &target, Mutation::ScheduleInterview)
        .expect("schedule");
    sim.sim()
        .apply(&integrations[1], &target, Mutation::Reject { reason: None })
        .ok();

    let out = hirehook(&["sync", "--once", "--config", config], &key).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = lines(&out.stdout);
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["data"]["integration_id"], integrations[1].as_str());
        assert_eq!(e["data"]["application"]["id"], target.as_str());
        assert_eq!(e["timestamp"], e["data"]["detected_at"]);
        assert!(
            e["data"]["event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("evt_"))
        );
    }
    assert!(events.iter().any(|e| e["type"] == "interview_scheduled"));
    let sequences: Vec<u64> = events
        .iter()
        .filter_map(|e| e["data"]["sequence"].as_u64())
        .collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());

    // The same events, read back from the log.
    let export = hirehook(
        &[
            "events",
            "export",
            "--config",
            config,
            "--application",
            &target,
        ],
        &key,
    )
    .await;
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert_eq!(lines(&export.stdout), events);
    let list = hirehook(
        &[
            "events",
            "list",
            "--config",
            config,
            "--type",
            "interview_scheduled",
        ],
        &key,
    )
    .await;
    assert!(list.status.success());
    let listed = String::from_utf8_lossy(&list.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("interview_scheduled") && listed.contains(&target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_integration_exits_1_and_the_others_still_commit() {
    let sim = spawn(SimConfig {
        integrations: 1,
        applications: 30,
        seed: 4,
        ..Default::default()
    })
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let good = sim.sim().integration_ids()[0].clone();
    let config = write_config(
        dir.path(),
        &sim,
        &[good.clone(), "greenhouse:doesnotexist".into()],
    );
    let config = config.to_str().expect("utf-8 path");
    let out = hirehook(&["sync", "--once", "--config", config], sim.sim().api_key()).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("greenhouse:doesnotexist"), "{stderr}");
    assert!(stderr.contains("INTEGRATION_NOT_FOUND"), "{stderr}");
    assert!(
        stderr.contains(&format!("{good}: baseline sync")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_api_key_is_reported_as_such() {
    let sim = spawn(SimConfig {
        integrations: 1,
        applications: 5,
        ..Default::default()
    })
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &sim, &sim.sim().integration_ids());
    let out = hirehook(
        &["sync", "--once", "--config", config.to_str().expect("path")],
        "not-the-key",
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the Kombo API key was rejected"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-key"), "the key is never printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[kombo]\napi_key = \"k\"\npoll_intervl = \"5m\"\n").expect("write");
    let out = hirehook(
        &["sync", "--once", "--config", path.to_str().expect("path")],
        "k",
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("poll_intervl"));
}
