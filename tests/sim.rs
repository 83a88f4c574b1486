//! Black-box tests of the simulator over HTTP, on a loopback port.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use hirehook::ats::client::format_timestamp;
use hirehook::ats::model::{Application, ErrorEnvelope, Outcome};
use hirehook::ats::page::parse_page;
use hirehook::ats::{ApplicationsQuery, ClientConfig, KomboClient, RetryPolicy};
use hirehook::secret::Secret;
use hirehook::sim::{
    FaultConfig, FaultKind, Mutation, RunningSim, ScriptedFault, SimConfig, TruthChange, spawn,
};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

/// Safety net for anything awaited; tests finish far sooner.
const DEADLINE: Duration = Duration::from_secs(20);

fn config(integrations: usize, applications: usize) -> SimConfig {
    SimConfig {
        integrations,
        applications,
        seed: 42,
        ..SimConfig::default()
    }
}

/// One client for all requests: building a client is costly (TLS roots).
fn http() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn error(&self) -> ErrorEnvelope {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not a Kombo error body ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn page(&self) -> (Vec<Application>, Option<String>) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let page = parse_page(&self.body).expect("page parses");
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        (page.records, page.next)
    }
}

/// `GET /v1/ats/applications?{query}` with the right key.
async fn get(sim: &RunningSim, integration: &str, query: &str) -> Answer {
    get_with(sim, Some(sim.sim().api_key()), Some(integration), query).await
}

async fn get_with(
    sim: &RunningSim,
    key: Option<&str>,
    integration: Option<&str>,
    query: &str,
) -> Answer {
    let mut req = http().get(format!("{}/ats/applications?{query}", sim.base_url()));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    if let Some(integration) = integration {
        req = req.header("X-Integration-Id", integration);
    }
    let resp = tokio::time::timeout(DEADLINE, req.send())
        .await
        .expect("in time")
        .expect("request sent");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body read").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// Every record of a listing, following cursors (the query is re-sent with each).
async fn list_all(sim: &RunningSim, integration: &str, query: &str) -> Vec<Application> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={}", enc(c)),
            None => query.to_owned(),
        };
        let (records, next) = get(sim, integration, &q).await.page();
        all.extend(records);
        match next {
            Some(n) => cursor = Some(n),
            None => return all,
        }
    }
    panic!("listing did not end");
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn ids(apps: &[Application]) -> BTreeSet<String> {
    apps.iter().map(|a| a.id.clone()).collect()
}

#[tokio::test]
async fn the_same_seed_serves_the_same_bytes() {
    let a = spawn(config(2, 300)).await.unwrap();
    let b = spawn(config(2, 300)).await.unwrap();
    let c = spawn(SimConfig {
        seed: 43,
        ..config(2, 300)
    })
    .await
    .unwrap();
    assert_eq!(a.sim().integration_ids(), b.sim().integration_ids());
    assert_ne!(a.sim().integration_ids(), c.sim().integration_ids());
    for integration in a.sim().integration_ids() {
        let q = "page_size=250&include_deleted=true";
        assert_eq!(
            get(&a, &integration, q).await.body,
            get(&b, &integration, q).await.body
        );
    }
}

#[tokio::test]
async fn auth_failures_have_kombo_error_bodies() {
    let sim = spawn(config(1, 10)).await.unwrap();
    let integration = sim.sim().integration_ids()[0].clone();
    for key in [None, Some("wrong"), Some("")] {
        let a = get_with(&sim, key, Some(&integration), "").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{key:?}");
        let e = a.error();
        assert_eq!(e.status.as_deref(), Some("error"));
        assert_eq!(
            e.error.code.as_deref(),
            Some("PLATFORM.AUTHENTICATION_INVALID")
        );
        assert!(e.error.title.is_some() && !e.error.message.is_empty());
    }
    let raw: serde_json::Value =
        serde_json::from_slice(&get_with(&sim, None, Some(&integration), "").await.body).unwrap();
    for field in ["code", "title", "message", "log_url"] {
        assert!(raw["error"].get(field).is_some(), "error.{field} missing");
    }
}

#[tokio::test]
async fn unknown_or_missing_integration() {
    let sim = spawn(config(1, 10)).await.unwrap();
    let key = sim.sim().api_key().to_owned();
    let a = get_with(&sim, Some(&key), Some("greenhouse:nope"), "").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        a.error().error.code.as_deref(),
        Some("PLATFORM.INTEGRATION_NOT_FOUND")
    );
    let a = get_with(&sim, Some(&key), None, "").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        a.error().error.code.as_deref(),
        Some("PLATFORM.INPUT_INVALID")
    );
}

#[tokio::test]
async fn parameters_are_validated() {
    let sim = spawn(config(1, 300)).await.unwrap();
    let integration = sim.sim().integration_ids()[0].clone();
    let bad = [
        ("page_size=0", "page_size"),
        ("page_size=251", "page_size"),
        ("page_size=abc", "page_size"),
        ("updated_after=2024-01-02T03:04:05%2B00:00", "updated_after"),
        (
            "updated_after=2024-01-02T03:04:05.000+01:00",
            "updated_after",
        ),
        ("updated_after=tomorrow", "updated_after"),
        ("remote_created_after=2024-13-01", "remote_created_after"),
        ("include_deleted=1", "include_deleted"),
        (
            "ignore_unsupported_filters=yes",
            "ignore_unsupported_filters",
        ),
        ("outcomes=HIRED,WON", "outcomes"),
        ("cursor=garbage", "cursor"),
    ];
    for (query, name) in bad {
        let a = get(&sim, &integration, query).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        let e = a.error();
        assert_eq!(e.error.code.as_deref(), Some("PLATFORM.INPUT_INVALID"));
        assert!(
            e.error.message.contains(name),
            "{query}: {}",
            e.error.message
        );
    }
    let good = [
        ("page_size=250", 250),
        ("page_size=1", 1),
        ("", 100),
        ("updated_after=2000-01-02T03:04:05.123456Z&page_size=7", 7),
        ("updated_after=2000-01-02T03:04:05&page_size=7", 7),
        ("updated_after=2000-01-02&page_size=7", 7),
        (
            "ignore_unsupported_filters=true&include_deleted=false&page_size=7",
            7,
        ),
    ];
    for (query, n) in good {
        let (records, next) = get(&sim, &integration, query).await.page();
        assert_eq!(records.len(), n, "{query}");
        assert!(next.is_some());
    }
}

#[tokio::test]
async fn a_full_listing_returns_every_id_exactly_once() {
    let sim = spawn(config(2, 1_234)).await.unwrap();
    let integration = sim.sim().integration_ids()[1].clone();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("page_size=100&include_deleted=true&cursor={}", enc(c)),
            None => "page_size=100&include_deleted=true".to_owned(),
        };
        let (records, next) = get(&sim, &integration, &q).await.page();
        pages += 1;
        assert!(records.len() <= 100);
        seen.extend(records.into_iter().map(|a| a.id));
        match next {
            Some(n) => {
                assert_eq!(seen.len(), pages * 100, "short page before the end");
                cursor = Some(n);
            }
            None => break,
        }
    }
    assert_eq!(pages, 13);
    assert_eq!(seen.len(), 1_234);
    assert_eq!(
        seen,
        sim.sim().application_ids(&integration),
        "order or set differs"
    );
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), 1_234);

    let visible = list_all(&sim, &integration, "page_size=250").await;
    let deleted = list_all(&sim, &integration, "page_size=250&include_deleted=true")
        .await
        .into_iter()
        .filter(|a| a.remote_deleted_at.is_some())
        .count();
    assert!(deleted > 0);
    assert_eq!(visible.len() + deleted, 1_234);
    assert!(visible.iter().all(|a| a.remote_deleted_at.is_none()));
}

#[tokio::test]
async fn a_cursor_only_works_with_its_own_filters() {
    let sim = spawn(config(2, 300)).await.unwrap();
    let [a, b] = <[String; 2]>::try_from(sim.sim().integration_ids()).unwrap();
    let (_, next) = get(&sim, &a, "page_size=10&outcomes=PENDING").await.page();
    let next = enc(&next.unwrap());
    let ok = get(
        &sim,
        &a,
        &format!("page_size=10&outcomes=PENDING&cursor={next}"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    // page_size is not a filter: it may change between pages.
    let ok = get(
        &sim,
        &a,
        &format!("page_size=20&outcomes=PENDING&cursor={next}"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    for (integration, query) in [
        (&a, format!("page_size=10&cursor={next}")),
        (&a, format!("page_size=10&outcomes=HIRED&cursor={next}")),
        (&b, format!("page_size=10&outcomes=PENDING&cursor={next}")),
        (
            &a,
            format!(
                "page_size=10&outcomes=PENDING&cursor={}x",
                &next[..next.len() - 2]
            ),
        ),
    ] {
        let r = get(&sim, integration, &query).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(r.error().error.message.contains("cursor"));
    }
}

#[tokio::test]
async fn every_filter_selects_what_it_says() {
    let sim = spawn(config(3, 400)).await.unwrap();
    for integration in sim.sim().integration_ids() {
        let all = list_all(&sim, &integration, "page_size=250&include_deleted=true").await;
        let pick = |f: &dyn Fn(&Application) -> bool| -> BTreeSet<String> {
            all.iter()
                .filter(|a| a.remote_deleted_at.is_none() && f(a))
                .map(|a| a.id.clone())
                .collect()
        };
        let sample: Vec<&Application> = all.iter().step_by(41).collect();
        let some_ids: Vec<String> = sample.iter().map(|a| a.id.clone()).collect();
        let some_remote: Vec<String> = sample.iter().filter_map(|a| a.remote_id.clone()).collect();
        let jobs: Vec<String> = sample
            .iter()
            .take(2)
            .filter_map(|a| a.job_id.clone())
            .collect();
        let job_remote: Vec<String> = sample
            .iter()
            .skip(2)
            .take(2)
            .filter_map(|a| a.job.as_ref().and_then(|j| j.remote_id.clone()))
            .collect();
        let stages: Vec<String> = sample
            .iter()
            .take(3)
            .filter_map(|a| a.current_stage_id.clone())
            .collect();
        let day = "2024-06-01";
        let day_start = chrono::DateTime::parse_from_rfc3339("2024-06-01T00:00:00Z").unwrap();
        let cases: Vec<(String, BTreeSet<String>)> = vec![
            (
                format!("ids={}", some_ids.join(",")),
                pick(&|a| some_ids.contains(&a.id)),
            ),
            (
                format!("remote_ids={}", enc(&some_remote.join(","))),
                pick(&|a| {
                    a.remote_id
                        .as_ref()
                        .is_some_and(|r| some_remote.contains(r))
                }),
            ),
            (
                "outcomes=HIRED,DECLINED".into(),
                pick(&|a| matches!(a.outcome, Some(Outcome::Hired | Outcome::Declined))),
            ),
            (
                "outcome=PENDING".into(),
                pick(&|a| a.outcome == Some(Outcome::Pending)),
            ),
            (
                format!("job_ids={}", jobs.join(",")),
                pick(&|a| a.job_id.as_ref().is_some_and(|j| jobs.contains(j))),
            ),
            (
                format!("job_remote_ids={}", enc(&job_remote.join(","))),
                pick(&|a| {
                    a.job
                        .as_ref()
                        .and_then(|j| j.remote_id.as_ref())
                        .is_some_and(|r| job_remote.contains(r))
                }),
            ),
            (
                format!("current_stage_ids={}", stages.join(",")),
                pick(&|a| {
                    a.current_stage_id
                        .as_ref()
                        .is_some_and(|s| stages.contains(s))
                }),
            ),
            (
                format!("remote_created_after={day}"),
                pick(&|a| a.remote_created_at.is_some_and(|c| c >= day_start)),
            ),
            (
                format!("outcomes=PENDING&job_ids={}", jobs.join(",")),
                pick(&|a| {
                    a.outcome == Some(Outcome::Pending)
                        && a.job_id.as_ref().is_some_and(|j| jobs.contains(j))
                }),
            ),
        ];
        for (query, want) in cases {
            assert!(
                !want.is_empty(),
                "{integration} {query}: weak test, nothing matches"
            );
            let got = ids(&list_all(&sim, &integration, &format!("page_size=120&{query}")).await);
            assert_eq!(got, want, "{integration} {query}");
        }
    }
}

#[tokio::test]
async fn updated_after_sees_nested_changes_but_not_stage_renames() {
    let sim = spawn(config(1, 400)).await.unwrap();
    let s = sim.sim();
    let integration = s.integration_ids()[0].clone();
    // Three live applications in three different stages.
    let mut stages_used = HashSet::new();
    let picked: Vec<Application> = s
        .application_ids(&integration)
        .iter()
        .filter_map(|id| s.application(&integration, id))
        .filter(|a| a.remote_deleted_at.is_none())
        .filter(|a| {
            a.current_stage_id
                .clone()
                .is_some_and(|st| stages_used.insert(st))
        })
        .take(3)
        .collect();
    let [a, b, c] = <[Application; 3]>::try_from(picked).unwrap();

    let scheduled = s
        .apply(&integration, &a.id, Mutation::ScheduleInterview)
        .unwrap();
    let since = scheduled.at - chrono::Duration::milliseconds(1);
    s.apply(&integration, &b.id, Mutation::EditCandidate)
        .unwrap();
    let renamed = s
        .apply(
            &integration,
            &c.id,
            Mutation::RenameStage {
                name: Some("Renamed Stage".into()),
            },
        )
        .unwrap();
    assert!(matches!(renamed.change, TruthChange::StageRenamed { .. }));
    assert_eq!(renamed.application_id, None);

    let query = format!(
        "updated_after={}&include_deleted=true",
        format_timestamp(&since)
    );
    let changed = list_all(&sim, &integration, &query).await;
    assert_eq!(ids(&changed), BTreeSet::from([a.id.clone(), b.id.clone()]));
    let a_now = changed.iter().find(|x| x.id == a.id).unwrap();
    assert_eq!(
        a_now.changed_at, a.changed_at,
        "a nested change moved changed_at"
    );
    assert_eq!(
        a_now.interviews.as_ref().unwrap().len(),
        a.interviews.as_ref().unwrap().len() + 1
    );
    let b_now = changed.iter().find(|x| x.id == b.id).unwrap();
    assert_ne!(
        b_now.candidate.as_ref().unwrap().email_addresses,
        b.candidate.as_ref().unwrap().email_addresses
    );
    // The rename is visible, yet did not make c match.
    let (c_now, _) = get(&sim, &integration, &format!("ids={}", c.id))
        .await
        .page();
    assert_eq!(
        c_now[0].current_stage.as_ref().unwrap().name.as_deref(),
        Some("Renamed Stage")
    );
    // Strictly after: the change's own timestamp does not match.
    let at = format_timestamp(&scheduled.at);
    let later = list_all(&sim, &integration, &format!("updated_after={at}")).await;
    assert_eq!(ids(&later), BTreeSet::from([b.id.clone()]));

    // An own-field change (stage move) matches too.
    let job_stage = s
        .with_world(&integration, |w| {
            let i = w.app_index(&c.id).unwrap() as usize;
            let app = &w.apps[i];
            let job = &w.jobs[app.job as usize];
            (job.first_stage..job.first_stage + u32::from(job.stage_count))
                .find(|&st| Some(st) != app.stage)
                .map(|st| w.stage_id(st))
        })
        .flatten()
        .unwrap();
    let moved = s
        .apply(
            &integration,
            &c.id,
            Mutation::MoveStage {
                to_stage_id: job_stage.clone(),
            },
        )
        .unwrap();
    let query = format!(
        "updated_after={}",
        format_timestamp(&(moved.at - chrono::Duration::milliseconds(1)))
    );
    let (moved_page, next) = get(&sim, &integration, &query).await.page();
    assert_eq!(ids(&moved_page), BTreeSet::from([c.id.clone()]));
    assert_eq!(
        moved_page[0].current_stage_id.as_deref(),
        Some(job_stage.as_str())
    );
    assert_eq!(moved_page[0].changed_at, moved.at);
    assert_eq!(next, None);
}

#[tokio::test]
async fn deleted_applications_are_hidden_unless_asked_for() {
    let sim = spawn(config(1, 100)).await.unwrap();
    let s = sim.sim();
    let integration = s.integration_ids()[0].clone();
    let victim = s
        .application_ids(&integration)
        .into_iter()
        .find(|id| {
            s.application(&integration, id)
                .unwrap()
                .remote_deleted_at
                .is_none()
        })
        .unwrap();
    let entry = s.apply(&integration, &victim, Mutation::Delete).unwrap();
    let q = format!("ids={victim}");
    assert!(get(&sim, &integration, &q).await.page().0.is_empty());
    let (found, _) = get(&sim, &integration, &format!("{q}&include_deleted=true"))
        .await
        .page();
    assert_eq!(found[0].remote_deleted_at, Some(entry.at));
    assert!(matches!(
        s.apply(&integration, &victim, Mutation::Hire),
        Err(hirehook::sim::SimError::Deleted(_))
    ));
    s.apply(&integration, &victim, Mutation::Restore).unwrap();
    let (found, _) = get(&sim, &integration, &q).await.page();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].remote_deleted_at, None);
}

#[tokio::test]
async fn rate_limit_fault_carries_reset_headers() {
    let sim = spawn(config(1, 10)).await.unwrap();
    let integration = sim.sim().integration_ids()[0].clone();
    sim.sim().script_fault(ScriptedFault::next(
        1,
        FaultKind::RateLimit {
            retry_after: Some(true),
        },
    ));
    sim.sim().script_fault(ScriptedFault::next(
        1,
        FaultKind::RateLimit {
            retry_after: Some(false),
        },
    ));
    let a = get(&sim, &integration, "").await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        a.error().error.code.as_deref(),
        Some("PLATFORM.RATE_LIMIT_EXCEEDED")
    );
    let h = |name: &str| a.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(h("ratelimit-reset").as_deref(), Some("1"));
    assert_eq!(h("ratelimit-remaining").as_deref(), Some("0"));
    assert!(h("ratelimit-limit").is_some());
    assert_eq!(h("retry-after").as_deref(), Some("1"));
    let b = get(&sim, &integration, "").await;
    assert_eq!(b.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(b.headers.get("retry-after").is_none());
    assert!(b.headers.get("ratelimit-reset").is_some());
    assert_eq!(get(&sim, &integration, "").await.status, StatusCode::OK);
    assert_eq!(sim.sim().stats().faults.rate_limited, 2);
}

#[tokio::test]
async fn unavailable_and_truncated_faults() {
    let sim = spawn(config(1, 50)).await.unwrap();
    let integration = sim.sim().integration_ids()[0].clone();
    sim.sim()
        .script_fault(ScriptedFault::next(1, FaultKind::Unavailable));
    sim.sim()
        .script_fault(ScriptedFault::next(1, FaultKind::Truncate));
    let a = get(&sim, &integration, "").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(serde_json::from_slice::<serde_json::Value>(&a.body).is_err());

    let t = get(&sim, &integration, "").await;
    assert_eq!(t.status, StatusCode::OK);
    let len: usize = t.headers["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(len, t.body.len());
    let err = parse_page(&t.body).unwrap_err();
    assert!(err.truncated, "{err}");
    assert_eq!(get(&sim, &integration, "").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_page_of_one_integration_can_be_scripted_to_fail() {
    let sim = spawn(config(2, 100)).await.unwrap();
    let [a, b] = <[String; 2]>::try_from(sim.sim().integration_ids()).unwrap();
    sim.sim()
        .script_fault(ScriptedFault::page(&a, 2, FaultKind::Unavailable));
    // Page 2 of the other integration is fine.
    let (_, next_b) = get(&sim, &b, "page_size=10").await.page();
    let ok = get(
        &sim,
        &b,
        &format!("page_size=10&cursor={}", enc(&next_b.unwrap())),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    let (_, next) = get(&sim, &a, "page_size=10").await.page();
    let page2 = format!("page_size=10&cursor={}", enc(&next.unwrap()));
    assert_eq!(
        get(&sim, &a, &page2).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get(&sim, &a, &page2).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_client_pages_through_faults() {
    let sim = spawn(SimConfig {
        faults: FaultConfig {
            retry_after_secs: 0,
            ..FaultConfig::default()
        },
        ..config(1, 700)
    })
    .await
    .unwrap();
    let integration = sim.sim().integration_ids()[0].clone();
    for (page, fault) in [
        (1, FaultKind::RateLimit { retry_after: None }),
        (2, FaultKind::Unavailable),
        (3, FaultKind::Truncate),
    ] {
        sim.sim()
            .script_fault(ScriptedFault::page(&integration, page, fault));
    }
    let client = KomboClient::new(ClientConfig {
        base_url: sim.base_url(),
        api_key: Secret::new(sim.sim().api_key()),
        request_timeout: Duration::from_secs(5),
        limits: Default::default(),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_server_wait: Duration::from_millis(20),
        },
    })
    .unwrap();
    let mut pager = client.applications(
        &integration,
        ApplicationsQuery {
            include_deleted: true,
            ..ApplicationsQuery::default()
        },
        0,
    );
    let mut seen = Vec::new();
    while let Some(page) = tokio::time::timeout(DEADLINE, pager.next_page())
        .await
        .unwrap()
        .unwrap()
    {
        assert!(page.rejected.is_empty());
        seen.extend(page.records.into_iter().map(|a| a.id));
    }
    assert_eq!(seen, sim.sim().application_ids(&integration));
    let stats = sim.sim().stats();
    assert_eq!(stats.faults.scripted, 3);
    assert_eq!(stats.integrations[&integration].pages, 3);
}

#[tokio::test]
async fn every_generated_record_parses() {
    // Eight integrations cover every simulated ATS style.
    let sim = spawn(config(8, 500)).await.unwrap();
    let mut total = 0;
    let mut with_answers = 0;
    for integration in sim.sim().integration_ids() {
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("page_size=250&include_deleted=true&cursor={}", enc(c)),
                None => "page_size=250&include_deleted=true".into(),
            };
            let a = get(&sim, &integration, &q).await;
            assert_eq!(a.status, StatusCode::OK);
            let page = parse_page(&a.body).unwrap();
            assert!(page.rejected.is_empty(), "{:?}", page.rejected);
            total += page.records.len();
            with_answers += page
                .records
                .iter()
                .filter(|r| {
                    r.screening_question_answers
                        .as_ref()
                        .is_some_and(|v| !v.is_empty())
                })
                .count();
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
    }
    assert_eq!(total, 4_000);
    assert!(with_answers > 1_000);
}

#[tokio::test]
async fn control_api() {
    let sim = spawn(config(2, 200)).await.unwrap();
    let http = reqwest::Client::new();
    let root = sim.root_url();
    let mutated: serde_json::Value = http
        .post(format!("{root}/_sim/mutate?n=5"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mutated["entries"].as_array().unwrap().len(), 5);
    let truth: serde_json::Value = http
        .get(format!("{root}/_sim/truth?since=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(truth["last_seq"], 5);
    let seqs: Vec<u64> = truth["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert!(truth["entries"][0]["change"]["kind"].is_string());

    let bad = http
        .post(format!("{root}/_sim/faults"))
        .body(r#"{"rate_limit": 2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let set = http
        .post(format!("{root}/_sim/faults"))
        .body(r#"{"rate_limit": 1, "retry_after_secs": 3}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let integration = sim.sim().integration_ids()[0].clone();
    let limited = get(&sim, &integration, "").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers["ratelimit-reset"], "3");
    sim.sim().set_faults(FaultConfig::default()).unwrap();

    let app = sim.sim().application_ids(&integration)[0].clone();
    let applied = http
        .post(format!("{root}/_sim/apply"))
        .json(&serde_json::json!({
            "integration_id": integration,
            "application_id": app,
            "mutation": {"kind": "edit_candidate"}
        }))
        .send()
        .await
        .unwrap();
    let applied_status = applied.status();
    let entry: serde_json::Value = applied.json().await.unwrap();
    if applied_status == StatusCode::OK {
        assert_eq!(entry["change"]["kind"], "candidate_edited");
    } else {
        // The first application happens to be deleted.
        assert_eq!(applied_status, StatusCode::CONFLICT, "{entry}");
    }

    let stats: serde_json::Value = http
        .get(format!("{root}/_sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["faults"]["rate_limited"], 1);
    assert!(stats["truth_seq"].as_u64().unwrap() >= 5);

    let unknown = http.get(format!("{root}/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_ticker_applies_changes_while_serving() {
    let sim = spawn(SimConfig {
        changes_per_second: 200.0,
        ..config(2, 100)
    })
    .await
    .unwrap();
    tokio::time::timeout(DEADLINE, async {
        while sim.sim().last_seq() < 20 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the ticker made changes");
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_sim_command_prints_one_line_and_serves() {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hirehook"))
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--integrations",
            "2",
            "--applications",
            "150",
            "--api-key",
            "k_test",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("a line in time")
        .unwrap()
        .expect("one line");
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let base_url = info["base_url"].as_str().unwrap();
    assert!(base_url.starts_with("http://127.0.0.1:") && base_url.ends_with("/v1"));
    assert_eq!(info["api_key"], "k_test");
    let integrations = info["integrations"].as_array().unwrap();
    assert_eq!(integrations.len(), 2);

    let resp = reqwest::Client::new()
        .get(format!("{base_url}/ats/applications?page_size=5"))
        .bearer_auth("k_test")
        .header("X-Integration-Id", integrations[0].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let page = parse_page(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(page.records.len(), 5);

    // SIGTERM: a clean exit with status 0.
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(lines.next_line().await.unwrap(), None, "more than one line");
}

#[tokio::test]
async fn the_sim_command_reports_bad_flags_and_busy_ports() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let cases: [(&[&str], i32, &str); 4] = [
        (&["--listen", addr.as_str()], 1, "cannot listen"),
        (&["--listen", "not an address"], 2, "--listen"),
        (&["--fault-429", "1.5"], 2, "fault"),
        (&["--integrations", "0"], 2, "--integrations"),
    ];
    for (args, code, message) in cases {
        let out = tokio::time::timeout(
            DEADLINE,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_hirehook"))
                .arg("sim")
                .args(["--applications", "10"])
                .args(args)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// A million applications in one world, listed in full over HTTP. Run with
/// `cargo test --release --test sim -- --ignored`.
#[tokio::test]
#[ignore = "scale check: a million applications"]
async fn a_million_applications() {
    let started = std::time::Instant::now();
    let sim = spawn(config(1, 1_000_000)).await.unwrap();
    eprintln!("generated 1M in {:?}", started.elapsed());
    let integration = sim.sim().integration_ids()[0].clone();
    let started = std::time::Instant::now();
    let all = list_all(&sim, &integration, "page_size=250&include_deleted=true").await;
    eprintln!("listed 1M in {:?}", started.elapsed());
    assert_eq!(all.len(), 1_000_000);
    let started = std::time::Instant::now();
    let entries = sim.sim().mutate(10_000);
    eprintln!("10k mutations in {:?}", started.elapsed());
    let since = format_timestamp(&(entries[0].at - chrono::Duration::milliseconds(1)));
    let started = std::time::Instant::now();
    let changed = list_all(
        &sim,
        &integration,
        &format!("page_size=250&include_deleted=true&updated_after={since}"),
    )
    .await;
    eprintln!(
        "incremental listing of {} in {:?}",
        changed.len(),
        started.elapsed()
    );
    assert!(!changed.is_empty());
}
