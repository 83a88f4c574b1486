use std::collections::HashMap;

use super::*;

/// A valid secret: `whsec_` + base64("a test signing key").
const SECRET: &str = "whsec_YSB0ZXN0IHNpZ25pbmcga2V5";

const MINIMAL: &str = r#"
[kombo]
api_key = "k"

[[integrations]]
id = "greenhouse:1"
"#;

fn parse_with(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_str_with_env(text, Path::new("conf/test.toml"), move |name| {
        env.get(name).cloned()
    })
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, &[])
}

/// MINIMAL plus one subscriber with the given extra lines.
fn with_subscriber(extra: &str) -> String {
    format!(
        "{MINIMAL}\n[[subscribers]]\nname = \"crm\"\nurl = \"https://crm.example.com/h\"\nsecrets = [\"{SECRET}\"]\n{extra}\n"
    )
}

#[test]
fn minimal_config_gets_every_default() {
    let c = parse(MINIMAL).expect("minimal config is valid");
    assert_eq!(c.store.path, PathBuf::from("./hirehook-data"));
    assert_eq!(c.store.cache_capacity, ByteSize(64 * 1024 * 1024));
    assert_eq!(c.kombo.base_url, "https://api.kombo.dev/v1");
    assert_eq!(c.kombo.api_key.expose(), "k");
    assert_eq!(c.kombo.webhook_secret, None);
    assert_eq!(c.kombo.poll_interval, Duration::from_secs(300));
    assert_eq!(c.kombo.overlap, Duration::from_secs(120));
    assert_eq!(c.kombo.full_resync_interval, Duration::from_secs(86_400));
    assert_eq!(c.kombo.initial_sync, InitialSync::Baseline);
    assert_eq!(c.kombo.request_timeout, Duration::from_secs(30));
    assert_eq!(c.kombo.page_size, 250);
    assert_eq!(c.integrations.len(), 1);
    assert_eq!(c.integrations[0].label, None);
    assert!(c.subscribers.is_empty());
    let secs = |v: &[u64]| {
        v.iter()
            .copied()
            .map(Duration::from_secs)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        c.delivery.retry_schedule,
        secs(&[5, 300, 1800, 7200, 18_000, 36_000, 36_000])
    );
    assert_eq!(c.delivery.jitter, 0.2);
    assert_eq!(c.delivery.max_retry_after, Duration::from_secs(86_400));
    assert_eq!(c.delivery.shutdown_grace, Duration::from_secs(10));
    assert!(!c.delivery.allow_private_networks);
    assert_eq!(c.guard.mass_change_ratio, 0.5);
    assert_eq!(c.guard.mass_change_min_records, 100);
    assert_eq!(c.admin.listen, "127.0.0.1:9400".parse().expect("addr"));
    assert_eq!(c.admin.token, None);
    assert_eq!(
        c.retention.events,
        Keep::For(Duration::from_secs(30 * 86_400))
    );
    assert_eq!(
        c.retention.deleted_applications,
        Keep::For(Duration::from_secs(14 * 86_400))
    );
    assert_eq!(c.retention.sweep_interval, Duration::from_secs(600));
}

#[test]
fn rewrite_growth_is_a_percentage_or_never() {
    assert_eq!(
        parse(MINIMAL).expect("valid").store.rewrite_growth,
        RewriteGrowth::By(1.0),
        "default: the files doubled"
    );
    let cases = [
        ("\"100%\"", RewriteGrowth::By(1.0), "100%"),
        ("\"25%\"", RewriteGrowth::By(0.25), "25%"),
        ("\" 300 % \"", RewriteGrowth::By(3.0), "300%"),
        ("\"never\"", RewriteGrowth::Never, "never"),
    ];
    for (value, want, shown) in cases {
        let c = parse(&format!("{MINIMAL}\n[store]\nrewrite_growth = {value}\n"))
            .unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(c.store.rewrite_growth, want, "{value}");
        let out = c.to_redacted_toml().expect("serializes");
        assert!(
            out.contains(&format!("rewrite_growth = \"{shown}\"")),
            "{out}"
        );
        let back: Config = toml::from_str(&out).expect("reads back");
        assert_eq!(back.store.rewrite_growth, want, "{value}");
    }
}

#[test]
fn retention_keeps_a_duration_or_forever() {
    let cases = [
        ("events = \"forever\"", Keep::Forever, "forever"),
        (
            "events = \"7d\"",
            Keep::For(Duration::from_secs(7 * 86_400)),
            "7d",
        ),
        (
            "events = \"36h\"",
            Keep::For(Duration::from_secs(36 * 3600)),
            "36h",
        ),
        (
            "events = \"90m\"",
            Keep::For(Duration::from_secs(90 * 60)),
            "90m",
        ),
    ];
    for (line, want, shown) in cases {
        let c = parse(&format!("{MINIMAL}\n[retention]\n{line}\n"))
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(c.retention.events, want, "{line}");
        assert_eq!(c.retention.events.to_string(), shown, "{line}");
        let out = c.to_redacted_toml().expect("serializes");
        assert!(out.contains(&format!("events = \"{shown}\"")), "{out}");
        let back: Config = toml::from_str(&out).expect("reads back");
        assert_eq!(back.retention, c.retention, "{line}");
    }
    let policy = crate::store::RetentionPolicy::from(
        &parse(&format!(
            "{MINIMAL}\n[retention]\nevents = \"forever\"\ndeleted_applications = \"1d\"\n"
        ))
        .expect("valid")
        .retention,
    );
    assert_eq!(policy.events, None);
    assert_eq!(
        policy.deleted_applications,
        Some(Duration::from_secs(86_400))
    );
}

#[test]
fn subscriber_defaults() {
    let c = parse(&with_subscriber("")).expect("valid");
    let s = &c.subscribers[0];
    assert_eq!(s.timeout, Duration::from_secs(15));
    assert_eq!(s.max_in_flight, 16);
    assert_eq!(s.rate_limit, None);
    assert_eq!(s.events, None);
    assert_eq!(s.integrations, None);
    assert_eq!(s.signing_keys(), vec![b"a test signing key".to_vec()]);
}

#[test]
fn example_file_parses() {
    let text = include_str!("../../deploy/hirehook.example.toml");
    let vars = [
        ("KOMBO_API_KEY", "kombo-key"),
        ("KOMBO_WEBHOOK_SECRET", "kombo-webhook-secret"),
        ("CRM_WEBHOOK_SECRET", SECRET),
        ("ANALYTICS_WEBHOOK_SECRET", SECRET),
        ("ANALYTICS_WEBHOOK_SECRET_OLD", "whsec_b2xkIGtleQ=="),
        ("HIREHOOK_ADMIN_TOKEN", "admin-token"),
    ];
    let c = parse_with(text, &vars).unwrap_or_else(|e| panic!("example must parse: {e}"));
    assert_eq!(c.integrations.len(), 2);
    assert_eq!(c.subscribers.len(), 2);
    assert_eq!(c.subscribers[1].signing_keys().len(), 2);
    assert_eq!(c.subscribers[0].rate_limit, Some(50.0));
    assert_eq!(c.kombo.api_key.expose(), "kombo-key");
    // The example spells out the defaults: apart from what it sets on purpose, parsing it
    // gives the same as leaving everything out.
    let defaults = parse(MINIMAL).expect("minimal");
    assert_eq!(c.store, defaults.store);
    assert_eq!(c.delivery, defaults.delivery);
    assert_eq!(c.guard, defaults.guard);
    assert_eq!(c.retention, defaults.retention);
    assert_eq!(c.admin.listen, defaults.admin.listen);
    let mut kombo = c.kombo.clone();
    kombo.api_key = defaults.kombo.api_key.clone();
    kombo.webhook_secret = None;
    assert_eq!(kombo, defaults.kombo);
}

#[test]
fn expands_variables_inside_strings() {
    let text = r#"
[kombo]
api_key = "${KEY}"
base_url = "https://${HOST}:8443/v1"
[[integrations]]
id = "greenhouse:${TENANT}"
label = "literal $${NOT_A_VAR} and $5"
"#;
    let c = parse_with(
        text,
        &[("KEY", "k1"), ("HOST", "kombo.internal"), ("TENANT", "t7")],
    )
    .expect("valid");
    assert_eq!(c.kombo.api_key.expose(), "k1");
    assert_eq!(c.kombo.base_url, "https://kombo.internal:8443/v1");
    assert_eq!(c.integrations[0].id, "greenhouse:t7");
    assert_eq!(
        c.integrations[0].label.as_deref(),
        Some("literal ${NOT_A_VAR} and $5")
    );
}

#[test]
fn expands_variables_in_non_string_typed_fields() {
    // Durations and sizes are strings in TOML, so they can come from the environment too.
    let text = format!("{MINIMAL}\n[store]\ncache_capacity = \"${{CACHE}}\"\n");
    let c = parse_with(&text, &[("CACHE", "1GiB")]).expect("valid");
    assert_eq!(c.store.cache_capacity, ByteSize(1 << 30));
}

#[test]
fn unset_variable_names_variable_and_key() {
    let text = with_subscriber("").replace(SECRET, "${CRM_WEBHOOK_SECRET}");
    let err = parse(&text).expect_err("unset");
    match &err {
        ConfigError::Env { path, key, var } => {
            assert_eq!(path, Path::new("conf/test.toml"));
            assert_eq!(key, "subscribers[0].secrets[0]");
            assert_eq!(var, "CRM_WEBHOOK_SECRET");
        }
        other => panic!("want Env, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "conf/test.toml: subscribers[0].secrets[0]: environment variable CRM_WEBHOOK_SECRET is not set"
    );
}

/// MINIMAL with a valid PostgreSQL `[store]` plus the given extra lines.
fn pg(extra: &str) -> String {
    format!(
        "{MINIMAL}\n[store]\nbackend = \"postgres\"\nurl = \"postgres://hirehook:pw@db:5432/hirehook?sslmode=require\"\n{extra}\n"
    )
}

#[test]
fn the_postgres_store_gets_its_defaults_and_its_url_from_the_environment() {
    let text = format!(
        "{MINIMAL}\n[store]\nbackend = \"postgres\"\nurl = \"${{HIREHOOK_DATABASE_URL}}\"\n"
    );
    let url = "postgres://hirehook:s3cretpw@db.internal:5432/hooks?sslmode=verify-full";
    let c = parse_with(&text, &[("HIREHOOK_DATABASE_URL", url)]).expect("valid");
    assert_eq!(c.store.backend, StoreBackend::Postgres);
    assert_eq!(c.store.url.as_deref(), Some(url));
    assert_eq!(c.store.pool_size, 16);
    assert_eq!(c.store.lease_ttl, Duration::from_secs(15));
    let c = parse(&pg("pool_size = 4\nlease_ttl = \"3s\"")).expect("valid");
    assert_eq!(
        (c.store.pool_size, c.store.lease_ttl),
        (4, Duration::from_secs(3))
    );
    let sled = parse(MINIMAL).expect("valid");
    assert_eq!(sled.store.backend, StoreBackend::Sled);
    assert_eq!(sled.store.url, None);
}

#[test]
fn the_database_url_is_never_shown() {
    let text = pg("pool_size = 4").replace(":pw@", ":s3cretpw@");
    let c = parse(&text).expect("valid");
    let shown = format!("{:?} {}", c, c.to_redacted_toml().expect("serializes"));
    assert!(!shown.contains("s3cretpw"), "{shown}");
    assert!(
        shown.contains("db:5432/hirehook"),
        "where it points stays: {shown}"
    );
    let out = c.to_redacted_toml().expect("serializes");
    assert!(out.contains("backend = \"postgres\""), "{out}");
    assert!(
        out.contains("pool_size = 4") && out.contains("lease_ttl = \"15s\""),
        "{out}"
    );
    assert!(
        !out.contains("cache_capacity") && !out.contains("path ="),
        "{out}"
    );
    let back: Config = toml::from_str(&out).expect("the effective config parses");
    assert_eq!(back.store.pool_size, 4);

    // Nor in errors about it: a bad value, a wrong type.
    for text in [
        pg("")
            .replace(":pw@", ":s3cretpw@")
            .replace("db:5432", "db:port"),
        pg("").replace(
            "\"postgres://hirehook:pw@db:5432/hirehook?sslmode=require\"",
            "[\"postgres://u:s3cretpw@h/db\"]",
        ),
        format!("{MINIMAL}\n[store]\nurl = \"postgres://u:s3cretpw@h/db\"\n"),
    ] {
        let err = parse(&text).expect_err("invalid");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("s3cretpw"), "{shown}");
        assert!(shown.contains("store.url"), "{shown}");
    }

    let sled = parse(MINIMAL)
        .expect("valid")
        .to_redacted_toml()
        .expect("serializes");
    assert!(
        sled.contains("backend = \"sled\"") && sled.contains("cache_capacity"),
        "{sled}"
    );
    assert!(
        !sled.contains("lease_ttl") && !sled.contains("pool_size"),
        "{sled}"
    );
}

/// Each case: a name, the file text, and strings its error message must contain.
#[test]
fn bad_inputs_name_what_and_where() {
    let sub = with_subscriber;
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown top-level key",
            format!("stor = 1\n{MINIMAL}"),
            vec!["conf/test.toml", "line 1, column 1", "unknown field `stor`"],
        ),
        (
            "unknown key in [kombo]",
            MINIMAL.replace("api_key = \"k\"", "api_key = \"k\"\npol_interval = \"1m\""),
            vec![
                "line 4, column 1",
                "kombo.pol_interval",
                "unknown field `pol_interval`",
            ],
        ),
        (
            "unknown key in [[subscribers]]",
            format!("{MINIMAL}\n[[subscribers]]\nname = \"crm\"\nurll = \"https://x\"\n"),
            vec![
                "conf/test.toml",
                "line 10, column 1",
                "subscribers[0].urll",
                "`urll`",
            ],
        ),
        (
            "unknown section",
            format!("{MINIMAL}\n[gaurd]\nmass_change_ratio = 0.4\n"),
            vec!["unknown field `gaurd`"],
        ),
        (
            "TOML syntax error",
            format!("{MINIMAL}\n[admin\n"),
            vec!["conf/test.toml", "line 8, column 7"],
        ),
        (
            "missing api_key",
            "[kombo]\n[[integrations]]\nid = \"a\"\n".to_owned(),
            vec!["kombo", "missing field `api_key`"],
        ),
        (
            "missing [kombo]",
            "[[integrations]]\nid = \"a\"\n".to_owned(),
            vec!["missing field `kombo`"],
        ),
        (
            "bad duration",
            MINIMAL.replace(
                "api_key = \"k\"",
                "api_key = \"k\"\npoll_interval = \"5 fortnights\"",
            ),
            vec!["line 4", "kombo.poll_interval", "5 fortnights"],
        ),
        (
            "bad duration in a list",
            format!("{MINIMAL}\n[delivery]\nretry_schedule = [\"5s\", \"soon\"]\n"),
            vec!["delivery.retry_schedule", "soon"],
        ),
        (
            "wrong type",
            sub("max_in_flight = \"many\""),
            vec!["subscribers[0].max_in_flight"],
        ),
        (
            "unknown initial_sync",
            MINIMAL.replace(
                "api_key = \"k\"",
                "api_key = \"k\"\ninitial_sync = \"emitt\"",
            ),
            vec!["kombo.initial_sync", "emitt"],
        ),
        (
            "admin listen is not a socket address",
            format!("{MINIMAL}\n[admin]\nlisten = \"localhost\"\n"),
            vec!["admin.listen"],
        ),
        (
            "bad size",
            format!("{MINIMAL}\n[store]\ncache_capacity = \"64 parsecs\"\n"),
            vec!["store.cache_capacity", "parsecs"],
        ),
        (
            "malformed placeholder",
            MINIMAL.replace("\"greenhouse:1\"", "\"${1KEY}\""),
            vec!["integrations[0].id", "line 6", "`${1KEY}`"],
        ),
        (
            "unterminated placeholder",
            MINIMAL.replace("\"k\"", "\"${KEY\""),
            vec!["kombo.api_key", "without a closing"],
        ),
        (
            "secret without prefix",
            sub("").replace(SECRET, "c2VjcmV0"),
            vec![
                "subscribers[0].secrets[0]",
                "must start with `whsec_`",
                "\"crm\"",
            ],
        ),
        (
            "secret with bad base64",
            sub("").replace(SECRET, "whsec_not*base64!"),
            vec!["subscribers[0].secrets[0]", "not valid base64"],
        ),
        (
            "secret with an empty key",
            sub("").replace(SECRET, "whsec_"),
            vec!["subscribers[0].secrets[0]", "empty key"],
        ),
        (
            "no secrets",
            sub("").replace(&format!("[\"{SECRET}\"]"), "[]"),
            vec!["subscribers[0].secrets", "at least one"],
        ),
        (
            "duplicate integration id",
            format!("{MINIMAL}\n[[integrations]]\nid = \"greenhouse:1\"\n"),
            vec![
                "integrations[1].id",
                "duplicate integration id \"greenhouse:1\"",
            ],
        ),
        (
            "empty integration id",
            MINIMAL.replace("\"greenhouse:1\"", "\"\""),
            vec!["integrations[0].id", "must not be empty"],
        ),
        (
            "no integrations",
            "[kombo]\napi_key = \"k\"\n".to_owned(),
            vec!["integrations", "at least one"],
        ),
        (
            "unknown event type",
            sub("events = [\"stage_changed\", \"stage_change\"]"),
            vec![
                "subscribers[0].events[1]",
                "unknown event type \"stage_change\"",
                "\"crm\"",
            ],
        ),
        (
            "empty events filter",
            sub("events = []"),
            vec!["subscribers[0].events", "omit the key"],
        ),
        (
            "unknown integration filter",
            sub("integrations = [\"workday:9\"]"),
            vec![
                "subscribers[0].integrations[0]",
                "\"workday:9\"",
                "not a configured",
            ],
        ),
        (
            "duplicate subscriber name",
            format!(
                "{}\n[[subscribers]]\nname = \"crm\"\nurl = \"https://b.example\"\nsecrets = [\"{SECRET}\"]\n",
                sub("")
            ),
            vec!["subscribers[1].name", "duplicate subscriber name \"crm\""],
        ),
        (
            "empty subscriber name",
            sub("").replace("name = \"crm\"", "name = \" \""),
            vec!["subscribers[0].name", "must not be empty"],
        ),
        (
            "subscriber url not http",
            sub("").replace("https://crm.example.com/h", "ftp://crm.example.com/h"),
            vec!["subscribers[0].url", "http or https", "\"ftp\""],
        ),
        (
            "subscriber url unparsable",
            sub("").replace("https://crm.example.com/h", "crm.example.com/h"),
            vec!["subscribers[0].url", "not a valid URL"],
        ),
        (
            "zero max_in_flight",
            sub("max_in_flight = 0"),
            vec!["subscribers[0].max_in_flight", "at least 1"],
        ),
        (
            "zero rate_limit",
            sub("rate_limit = 0"),
            vec!["subscribers[0].rate_limit", "more than 0"],
        ),
        (
            "zero subscriber timeout",
            sub("timeout = \"0s\""),
            vec!["subscribers[0].timeout", "more than 0"],
        ),
        (
            "non-loopback admin without token",
            format!("{MINIMAL}\n[admin]\nlisten = \"0.0.0.0:9400\"\n"),
            vec!["admin.token", "required", "0.0.0.0:9400", "not a loopback"],
        ),
        (
            "overlap not less than full resync",
            MINIMAL.replace(
                "api_key = \"k\"",
                "api_key = \"k\"\noverlap = \"2h\"\nfull_resync_interval = \"1h\"",
            ),
            vec![
                "kombo.overlap",
                "less than kombo.full_resync_interval",
                "2h",
                "1h",
            ],
        ),
        (
            "poll interval under 100ms",
            MINIMAL.replace(
                "api_key = \"k\"",
                "api_key = \"k\"\npoll_interval = \"50ms\"",
            ),
            vec!["kombo.poll_interval", "at least 100ms", "50ms"],
        ),
        (
            "zero request timeout",
            MINIMAL.replace(
                "api_key = \"k\"",
                "api_key = \"k\"\nrequest_timeout = \"0s\"",
            ),
            vec!["kombo.request_timeout"],
        ),
        (
            "page size 0",
            MINIMAL.replace("api_key = \"k\"", "api_key = \"k\"\npage_size = 0"),
            vec!["kombo.page_size", "1..=250"],
        ),
        (
            "page size 251",
            MINIMAL.replace("api_key = \"k\"", "api_key = \"k\"\npage_size = 251"),
            vec!["kombo.page_size", "251"],
        ),
        (
            "bad base_url",
            MINIMAL.replace(
                "api_key = \"k\"",
                "api_key = \"k\"\nbase_url = \"api.kombo.dev\"",
            ),
            vec!["kombo.base_url", "not a valid URL"],
        ),
        (
            "empty api key",
            MINIMAL.replace("\"k\"", "\"${KEY}\""),
            vec!["kombo.api_key", "must not be empty"],
        ),
        (
            "empty retry schedule",
            format!("{MINIMAL}\n[delivery]\nretry_schedule = []\n"),
            vec!["delivery.retry_schedule", "at least one"],
        ),
        (
            "zero wait in retry schedule",
            format!("{MINIMAL}\n[delivery]\nretry_schedule = [\"5s\", \"0s\"]\n"),
            vec!["delivery.retry_schedule[1]", "more than 0"],
        ),
        (
            "jitter above 1",
            format!("{MINIMAL}\n[delivery]\njitter = 1.5\n"),
            vec!["delivery.jitter", "0..=1"],
        ),
        (
            "mass change ratio 0",
            format!("{MINIMAL}\n[guard]\nmass_change_ratio = 0.0\n"),
            vec!["guard.mass_change_ratio", "(0, 1]"],
        ),
        (
            "zero cache",
            format!("{MINIMAL}\n[store]\ncache_capacity = 0\n"),
            vec!["store.cache_capacity"],
        ),
        (
            "unknown backend",
            format!("{MINIMAL}\n[store]\nbackend = \"mysql\"\n"),
            vec![
                "store.backend",
                "unknown variant `mysql`",
                "sled",
                "postgres",
            ],
        ),
        (
            "postgres without url",
            format!("{MINIMAL}\n[store]\nbackend = \"postgres\"\n"),
            vec!["store.url", "required with store.backend = \"postgres\""],
        ),
        (
            "postgres with sled's path",
            pg("path = \"./hirehook-data\""),
            vec!["store.path", "only used with store.backend = \"sled\""],
        ),
        (
            "rewrite growth without a percent sign",
            format!("{MINIMAL}\n[store]\nrewrite_growth = \"2\"\n"),
            vec!["store.rewrite_growth", "percentage"],
        ),
        (
            "rewrite growth below 1%",
            format!("{MINIMAL}\n[store]\nrewrite_growth = \"0%\"\n"),
            vec!["store.rewrite_growth", "at least 1%"],
        ),
        (
            "postgres with sled's rewrite growth",
            pg("rewrite_growth = \"50%\""),
            vec![
                "store.rewrite_growth",
                "only used with store.backend = \"sled\"",
            ],
        ),
        (
            "postgres with sled's cache",
            pg("cache_capacity = \"64MiB\""),
            vec![
                "store.cache_capacity",
                "only used with store.backend = \"sled\"",
            ],
        ),
        (
            "sled with a database url",
            format!("{MINIMAL}\n[store]\nurl = \"postgres://h/db\"\n"),
            vec!["store.url", "only used with store.backend = \"postgres\""],
        ),
        (
            "sled with a lease ttl",
            format!("{MINIMAL}\n[store]\nbackend = \"sled\"\nlease_ttl = \"5s\"\n"),
            vec![
                "store.lease_ttl",
                "only used with store.backend = \"postgres\"",
            ],
        ),
        (
            "url not postgres",
            pg("").replace("postgres://hirehook:pw@db:5432/hirehook", "mysql://db/x"),
            vec!["store.url", "postgres:// or postgresql://"],
        ),
        (
            "url with a bad port",
            pg("").replace("db:5432", "db:port"),
            vec!["store.url", "not a valid PostgreSQL URL"],
        ),
        (
            "url with a bad sslmode",
            pg("").replace("sslmode=require", "sslmode=sometimes"),
            vec!["store.url", "sslmode"],
        ),
        (
            "pool of 0",
            pg("pool_size = 0"),
            vec!["store.pool_size", "at least 1"],
        ),
        (
            "lease under 1s",
            pg("lease_ttl = \"500ms\""),
            vec!["store.lease_ttl", "at least 1s", "500ms"],
        ),
        (
            "lease not a duration",
            pg("lease_ttl = \"soon\""),
            vec!["store.lease_ttl"],
        ),
        (
            "retention not a duration",
            format!("{MINIMAL}\n[retention]\nevents = \"30 dayz\"\n"),
            vec!["line 9", "retention.events", "30 dayz", "forever"],
        ),
        (
            "retention of a wrong type",
            format!("{MINIMAL}\n[retention]\ndeleted_applications = 14\n"),
            vec!["retention.deleted_applications"],
        ),
        (
            "retention of zero",
            format!("{MINIMAL}\n[retention]\nevents = \"0s\"\n"),
            vec!["retention.events", "more than 0", "\"forever\""],
        ),
        (
            "retention of zero for deleted applications",
            format!("{MINIMAL}\n[retention]\ndeleted_applications = \"0d\"\n"),
            vec!["retention.deleted_applications", "\"forever\""],
        ),
        (
            "sweep interval under 1s",
            format!("{MINIMAL}\n[retention]\nsweep_interval = \"10ms\"\n"),
            vec!["retention.sweep_interval", "at least 1s", "10ms"],
        ),
        (
            "sweep interval forever",
            format!("{MINIMAL}\n[retention]\nsweep_interval = \"forever\"\n"),
            vec!["retention.sweep_interval", "forever"],
        ),
        (
            "unknown key in [retention]",
            format!("{MINIMAL}\n[retention]\nevent = \"30d\"\n"),
            vec!["retention.event", "unknown field `event`"],
        ),
    ];
    for (name, text, wants) in cases {
        let err = match parse_with(&text, &[("KEY", "")]) {
            Ok(_) => panic!("{name}: expected an error"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.starts_with("conf/test.toml: "),
            "{name}: the error must name the file: {err}"
        );
        for want in wants {
            assert!(err.contains(want), "{name}: {want:?} missing from: {err}");
        }
    }
}

#[test]
fn several_problems_are_reported_together() {
    let text = format!(
        "{}\n[[integrations]]\nid = \"greenhouse:1\"\n[admin]\nlisten = \"10.0.0.1:9400\"\n[delivery]\njitter = -1.0\n",
        with_subscriber("events = [\"nope\"]").replace(SECRET, "plain")
    );
    let err = parse(&text).expect_err("invalid");
    let ConfigError::Invalid { problems, .. } = &err else {
        panic!("want Invalid, got {err:?}");
    };
    let keys: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(
        keys,
        [
            "integrations[1].id",
            "subscribers[0].secrets[0]",
            "subscribers[0].events[0]",
            "delivery.jitter",
            "admin.token",
        ],
        "{err}"
    );
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 1 + problems.len(), "{shown}");
}

#[test]
fn errors_never_show_secret_values() {
    let bad_secret = "whsec_TOPSECRET*value";
    let cases = [
        with_subscriber("").replace(SECRET, bad_secret),
        with_subscriber("").replace(SECRET, "TOPSECRETwithoutprefix"),
        // Parse errors elsewhere must not echo secrets either.
        with_subscriber("urll = 1").replace(SECRET, "whsec_TOPSECRET"),
        // A secret of the wrong type: serde would quote it.
        with_subscriber("").replace(&format!("[\"{SECRET}\"]"), "\"whsec_TOPSECRET\""),
        MINIMAL.replace("\"k\"", "[\"TOPSECRET\"]"),
        format!("{MINIMAL}\n[admin]\ntoken = [\"TOPSECRET\"]\n"),
        // A pasted secret inside `${…}`.
        MINIMAL.replace("\"k\"", "\"${TOPSECRET+/=}\""),
    ];
    for text in cases {
        let err = parse(&text).expect_err("invalid");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(
            shown.contains("secrets") || shown.contains("token") || shown.contains("api_key"),
            "{shown}"
        );
    }
}

#[test]
fn effective_config_redacts_secrets_and_round_trips() {
    let text = format!(
        "{}\n[admin]\nlisten = \"0.0.0.0:9400\"\ntoken = \"admintoken123\"\n",
        with_subscriber("rate_limit = 2.5\nevents = [\"rejected\"]").replace(
            "api_key = \"k\"",
            "api_key = \"kombokey123\"\nwebhook_secret = \"kombohook123\""
        )
    );
    let config = parse(&text).expect("valid");
    let out = config.to_redacted_toml().expect("serializes");
    for secret in ["kombokey123", "kombohook123", "admintoken123", SECRET] {
        assert!(!out.contains(secret), "secret leaked:\n{out}");
    }
    assert_eq!(out.matches("[redacted]").count(), 4, "{out}");
    assert!(out.contains("full_resync_interval = \"24h\""), "{out}");

    // Reading the output back gives the same config, with redacted secrets.
    let back: Config = toml::from_str(&out).expect("the effective config parses");
    let redacted = Secret::new("[redacted]");
    let mut want = config.clone();
    want.kombo.api_key = redacted.clone();
    want.kombo.webhook_secret = Some(redacted.clone());
    want.admin.token = Some(redacted.clone());
    want.subscribers[0].secrets = vec![redacted];
    assert_eq!(back, want);
}

#[test]
fn durations_print_in_their_largest_exact_unit() {
    let cases = [
        (Duration::ZERO, "0s"),
        (Duration::from_millis(250), "250ms"),
        (Duration::from_secs(5), "5s"),
        (Duration::from_secs(90), "90s"),
        (Duration::from_secs(120), "2m"),
        (Duration::from_secs(86_400), "24h"),
        (Duration::from_micros(1500), "1ms 500us"),
    ];
    for (d, want) in cases {
        assert_eq!(duration::format(d), want);
        assert_eq!(
            humantime::parse_duration(want).ok(),
            Some(d),
            "{want} parses back"
        );
    }
}

#[test]
fn subscriber_filters() {
    let text = format!(
        "{}\n[[integrations]]\nid = \"workday:2\"\n",
        with_subscriber(
            "events = [\"rejected\", \"outcome_hired\"]\nintegrations = [\"workday:2\"]"
        )
    );
    let c = parse(&text).expect("valid");
    let s = &c.subscribers[0];
    assert!(s.wants("rejected", "workday:2"));
    assert!(s.wants("outcome_hired", "workday:2"));
    assert!(!s.wants("stage_changed", "workday:2"));
    assert!(!s.wants("rejected", "greenhouse:1"));

    let all = parse(&with_subscriber("")).expect("valid");
    for event_type in crate::event::EventType::ALL {
        assert!(all.subscribers[0].wants(event_type.as_str(), "greenhouse:1"));
    }
}

#[test]
fn lookups_and_client_config() {
    let c = parse(&with_subscriber("")).expect("valid");
    assert_eq!(
        c.integration("greenhouse:1").map(|i| i.id.as_str()),
        Some("greenhouse:1")
    );
    assert!(c.integration("nope").is_none());
    assert_eq!(
        c.subscriber("crm").map(|s| s.url.as_str()),
        Some("https://crm.example.com/h")
    );
    let client = c.kombo.client_config();
    assert_eq!(client.base_url, "https://api.kombo.dev/v1");
    assert_eq!(client.api_key.expose(), "k");
    assert_eq!(client.request_timeout, Duration::from_secs(30));
    assert_eq!(client.retry, RetryPolicy::default());
}

#[test]
fn webhook_secret_decoding() {
    let cases: &[(&str, Result<&[u8], SecretFormatError>)] = &[
        (SECRET, Ok(b"a test signing key")),
        ("whsec_a2V5", Ok(b"key")),
        ("whsec_a2V5MQ==", Ok(b"key1")),
        ("whsec_a2V5MQ", Ok(b"key1")), // padding optional
        ("whsec_", Err(SecretFormatError::Empty)),
        ("whsec_a2V5_-", Err(SecretFormatError::NotBase64)), // URL-safe alphabet
        ("a2V5", Err(SecretFormatError::MissingPrefix)),
    ];
    for (input, want) in cases {
        let got = decode_webhook_secret(&Secret::new(*input));
        assert_eq!(got.as_deref(), want.as_ref().map(|k| *k), "{input}");
    }
}

#[test]
fn secret_type_errors_say_what_was_expected() {
    let text = with_subscriber("").replace(&format!("[\"{SECRET}\"]"), &format!("\"{SECRET}\""));
    let err = parse(&text)
        .expect_err("a string is not a list")
        .to_string();
    assert!(err.contains("subscribers[0].secrets"), "{err}");
    assert!(err.contains("not shown"), "{err}");
    assert!(err.contains("expected a sequence"), "{err}");
}
