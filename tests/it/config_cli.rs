//! `hirehook config check` as a user runs it: the real binary, temp files, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SECRET: &str = "whsec_c3VwZXJzZWNyZXRrZXl2YWx1ZQ==";
const API_KEY: &str = "kombo-api-key-value-123";

const GOOD: &str = r#"
[kombo]
api_key = "${TEST_KOMBO_API_KEY}"
poll_interval = "1m"

[[integrations]]
id = "greenhouse:1"

[[integrations]]
id = "workday:2"
label = "Acme"

[[subscribers]]
name = "crm"
url = "https://crm.example.com/hooks"
secrets = ["${TEST_CRM_SECRET}"]
events = ["stage_changed"]
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("hirehook.toml");
    std::fs::write(&path, text).expect("write the config file");
    path
}

fn check(path: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hirehook"));
    cmd.args(["config", "check", "--config"])
        .arg(path)
        .env_remove("TEST_KOMBO_API_KEY")
        .env_remove("TEST_CRM_SECRET")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hirehook")
}

fn good_env() -> [(&'static str, &'static str); 2] {
    [("TEST_KOMBO_API_KEY", API_KEY), ("TEST_CRM_SECRET", SECRET)]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn good_file_prints_effective_config_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), GOOD);
    let out = check(&path, &good_env());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stdout.contains("[redacted]"), "{stdout}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    assert!(!stdout.contains(API_KEY) && !stderr.contains(API_KEY));
    // Defaults are filled in.
    assert!(stdout.contains("poll_interval = \"1m\""), "{stdout}");
    assert!(
        stdout.contains("full_resync_interval = \"24h\""),
        "{stdout}"
    );
    assert!(stdout.contains("listen = \"127.0.0.1:9400\""), "{stdout}");
    assert!(stdout.contains("max_in_flight = 16"), "{stdout}");
    assert!(
        stderr.contains("config OK: 2 integrations, 1 subscribers"),
        "{stderr}"
    );
    // The output is TOML.
    let value: toml::Table = toml::from_str(&stdout).expect("stdout is TOML");
    assert!(value.contains_key("delivery"));
}

#[test]
fn unknown_key_exits_2_naming_key_and_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), &GOOD.replace("url = \"https", "urll = \"https"));
    let out = check(&path, &good_env());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("subscribers[0].urll"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 15"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unset_variable_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), GOOD);
    let out = check(&path, &[("TEST_KOMBO_API_KEY", API_KEY)]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("TEST_CRM_SECRET"), "{stderr}");
    assert!(stderr.contains("subscribers[0].secrets[0]"), "{stderr}");
}

#[test]
fn bad_secret_exits_2_without_showing_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), GOOD);
    let bad = "whsec_not-base64-at-all!";
    let out = check(
        &path,
        &[("TEST_KOMBO_API_KEY", API_KEY), ("TEST_CRM_SECRET", bad)],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("subscribers[0].secrets[0]"), "{stderr}");
    assert!(stderr.contains("base64"), "{stderr}");
    assert!(!stderr.contains(bad), "{stderr}");
}

#[test]
fn missing_file_exits_2_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.toml");
    let out = check(&path, &good_env());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
}

#[test]
fn several_problems_are_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text_in = GOOD
        .replace("\"stage_changed\"", "\"stage_change\"")
        .replace("workday:2", "greenhouse:1");
    let path = write(
        dir.path(),
        &format!("{text_in}\n[admin]\nlisten = \"0.0.0.0:9400\"\n"),
    );
    let out = check(&path, &good_env());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for key in [
        "integrations[1].id",
        "subscribers[0].events[0]",
        "admin.token",
    ] {
        assert!(stderr.contains(key), "{key} missing: {stderr}");
    }
}

#[test]
fn example_config_checks() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/hirehook.example.toml");
    let out = check(
        Path::new(example),
        &[
            ("KOMBO_API_KEY", API_KEY),
            ("KOMBO_WEBHOOK_SECRET", "kombo-hook-secret"),
            ("CRM_WEBHOOK_SECRET", SECRET),
            ("ANALYTICS_WEBHOOK_SECRET", SECRET),
            ("ANALYTICS_WEBHOOK_SECRET_OLD", SECRET),
            ("HIREHOOK_ADMIN_TOKEN", "admin-token"),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("config OK: 2 integrations, 2 subscribers"),
        "{stderr}"
    );
}

#[test]
fn urls_are_printed_without_their_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text_with_credentials = GOOD
        .replace(
            "poll_interval = \"1m\"",
            "poll_interval = \"1m\"\nbase_url = \"https://kuser:kpa55@kombo.example.com/v1?key=kq1\"",
        )
        .replace(
            "https://crm.example.com/hooks",
            "http://user:pa55w0rd@crm.example.com/hook?token=tok3n&x=1",
        );
    let path = write(dir.path(), &text_with_credentials);
    let out = check(&path, &good_env());
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    for secret in ["pa55w0rd", "tok3n", "kpa55", "kq1", "kuser", "user:"] {
        assert!(!stdout.contains(secret), "{secret} shown:\n{stdout}");
        assert!(!stderr.contains(secret), "{secret} shown:\n{stderr}");
    }
    assert!(
        stdout.contains(
            "url = \"http://[redacted]@crm.example.com/hook?token=[redacted]&x=[redacted]\""
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("base_url = \"https://[redacted]@kombo.example.com/v1?key=[redacted]\""),
        "{stdout}"
    );
}

#[test]
fn a_subscriber_on_a_private_ip_literal_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (host, what) in [
        ("127.0.0.1:8080", "loopback"),
        ("10.1.2.3", "private"),
        ("[::1]", "loopback"),
        ("169.254.169.254", "link-local"),
    ] {
        let config = GOOD.replace(
            "https://crm.example.com/hooks",
            &format!("http://{host}/hooks"),
        );
        let out = check(&write(dir.path(), &config), &good_env());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{host}: {stderr}");
        assert!(stderr.contains("subscribers[0].url"), "{stderr}");
        assert!(stderr.contains(what), "{host}: {stderr}");
        assert!(stderr.contains("allow_private_networks"), "{stderr}");

        let allowed = format!("{config}\n[delivery]\nallow_private_networks = true\n");
        let out = check(&write(dir.path(), &allowed), &good_env());
        assert_eq!(out.status.code(), Some(0), "{host}: {}", text(&out.stderr));
    }
}

#[test]
fn a_bad_retention_duration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        ("events = \"30 dayz\"", "retention.events"),
        (
            "deleted_applications = \"0s\"",
            "retention.deleted_applications",
        ),
        ("sweep_interval = \"soon\"", "retention.sweep_interval"),
    ];
    for (line, key) in cases {
        let path = write(dir.path(), &format!("{GOOD}\n[retention]\n{line}\n"));
        let out = check(&path, &good_env());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{line}: {stderr}");
        assert!(stderr.contains(key), "{line}: {stderr}");
        assert!(stderr.contains("hirehook.toml"), "{line}: {stderr}");
    }
    // The defaults, and "forever", are shown as they were written.
    let path = write(
        dir.path(),
        &format!("{GOOD}\n[retention]\nevents = \"forever\"\n"),
    );
    let out = check(&path, &good_env());
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("events = \"forever\""), "{stdout}");
    assert!(
        stdout.contains("deleted_applications = \"14d\""),
        "{stdout}"
    );
    assert!(stdout.contains("sweep_interval = \"10m\""), "{stdout}");
}
