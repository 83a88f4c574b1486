//! The Kombo client against the built-in simulator, over loopback on port 0.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hirehook::ats::{
    ApplicationsQuery, ClientConfig, KomboClient, KomboError, Outcome, RetryNotice, RetryPolicy,
};
use hirehook::secret::Secret;
use hirehook::sim::{FaultKind, Mutation, RunningSim, ScriptedFault, SimConfig, spawn};

async fn sim(applications: usize) -> RunningSim {
    spawn(SimConfig {
        integrations: 2,
        applications,
        seed: 7,
        ..Default::default()
    })
    .await
    .expect("simulator starts")
}

fn client(sim: &RunningSim) -> KomboClient {
    KomboClient::new(ClientConfig {
        base_url: sim.base_url(),
        api_key: Secret::new(sim.sim().api_key()),
        request_timeout: Duration::from_secs(10),
        limits: Default::default(),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(20),
            max_server_wait: Duration::from_secs(5),
        },
    })
    .expect("client builds")
}

/// Every record of a listing, and the number of pages.
async fn list_all(
    client: &KomboClient,
    integration: &str,
    query: ApplicationsQuery,
) -> Result<(Vec<hirehook::ats::Application>, u32), KomboError> {
    let mut pager = client.applications(integration, query, 0);
    let mut all = Vec::new();
    while let Some(page) = pager.next_page().await? {
        let page = page.records.parse_all();
        assert!(page.rejected.is_empty(), "{:?}", page.rejected);
        all.extend(page.records);
    }
    Ok((all, pager.pages_fetched()))
}

#[tokio::test]
async fn a_multi_page_listing_returns_every_record_exactly_once() {
    let sim = sim(1_234).await;
    let integration = &sim.sim().integration_ids()[0];
    let query = ApplicationsQuery {
        include_deleted: true,
        page_size: Some(100),
        ..Default::default()
    };
    let (records, pages) = list_all(&client(&sim), integration, query)
        .await
        .expect("lists");
    assert_eq!(pages, 13);
    let ids: Vec<&str> = records.iter().map(|a| a.id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "no record twice");
    let expected: HashSet<String> = sim.sim().application_ids(integration).into_iter().collect();
    assert_eq!(unique, expected.iter().map(String::as_str).collect());
}

#[tokio::test]
async fn filters_select_exactly_what_they_name() {
    let sim = sim(600).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let client = client(&sim);
    let base = ApplicationsQuery {
        include_deleted: true,
        ..Default::default()
    };
    let (all, _) = list_all(&client, &integration, base.clone())
        .await
        .expect("lists");

    let some_ids: Vec<String> = all.iter().step_by(50).map(|a| a.id.clone()).collect();
    let (got, _) = list_all(
        &client,
        &integration,
        ApplicationsQuery {
            ids: some_ids.clone(),
            ..base.clone()
        },
    )
    .await
    .expect("lists");
    let got: HashSet<String> = got.into_iter().map(|a| a.id).collect();
    assert_eq!(got, some_ids.into_iter().collect());

    let job = all[0].job_id.clone().expect("job id");
    let (got, _) = list_all(
        &client,
        &integration,
        ApplicationsQuery {
            job_ids: vec![job.clone()],
            ..base.clone()
        },
    )
    .await
    .expect("lists");
    let want = all
        .iter()
        .filter(|a| a.job_id.as_ref() == Some(&job))
        .count();
    assert!(want > 0);
    assert_eq!(got.len(), want);
    assert!(got.iter().all(|a| a.job_id.as_ref() == Some(&job)));

    let (got, _) = list_all(
        &client,
        &integration,
        ApplicationsQuery {
            outcomes: vec![Outcome::Hired, Outcome::Declined],
            ..base.clone()
        },
    )
    .await
    .expect("lists");
    let want = all
        .iter()
        .filter(|a| matches!(a.outcome, Some(Outcome::Hired | Outcome::Declined)))
        .count();
    assert_eq!(got.len(), want);

    let stage = all
        .iter()
        .find_map(|a| a.current_stage_id.clone())
        .expect("a stage");
    let (got, _) = list_all(
        &client,
        &integration,
        ApplicationsQuery {
            current_stage_ids: vec![stage.clone()],
            job_ids: vec![job.clone()],
            ..base.clone()
        },
    )
    .await
    .expect("lists");
    let want = all
        .iter()
        .filter(|a| a.current_stage_id.as_ref() == Some(&stage) && a.job_id.as_ref() == Some(&job))
        .count();
    assert_eq!(got.len(), want, "filters AND together");

    let (without_deleted, _) = list_all(&client, &integration, ApplicationsQuery::default())
        .await
        .expect("lists");
    let live = all.iter().filter(|a| a.remote_deleted_at.is_none()).count();
    assert_eq!(without_deleted.len(), live);
}

#[tokio::test]
async fn updated_after_sees_nested_changes_but_not_a_stage_rename() {
    let sim = sim(300).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let client = client(&sim);
    let ids = sim.sim().application_ids(&integration);
    let live: Vec<&String> = ids
        .iter()
        .filter(|id| {
            sim.sim()
                .application(&integration, id)
                .is_some_and(|a| a.remote_deleted_at.is_none() && a.current_stage_id.is_some())
        })
        .take(3)
        .collect();
    let since = chrono::Utc::now();
    // Let the simulator's millisecond clock pass `since`.
    tokio::time::sleep(Duration::from_millis(5)).await;
    sim.sim()
        .apply(&integration, live[0], Mutation::EditCandidate)
        .expect("edit candidate");
    sim.sim()
        .apply(&integration, live[1], Mutation::ScheduleInterview)
        .expect("schedule interview");
    sim.sim()
        .apply(
            &integration,
            live[2],
            Mutation::RenameStage {
                name: Some("Renamed".into()),
            },
        )
        .expect("rename stage");

    let (changed, _) = list_all(
        &client,
        &integration,
        ApplicationsQuery {
            updated_after: Some(since),
            include_deleted: true,
            ..Default::default()
        },
    )
    .await
    .expect("lists");
    let changed: HashSet<&str> = changed.iter().map(|a| a.id.as_str()).collect();
    assert!(changed.contains(live[0].as_str()), "candidate edit matches");
    assert!(changed.contains(live[1].as_str()), "new interview matches");
    assert!(
        !changed.contains(live[2].as_str()),
        "a stage rename alone does not match"
    );
}

fn recording(client: KomboClient) -> (KomboClient, Arc<Mutex<Vec<RetryNotice>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let client = client.with_retry_observer(Arc::new(move |n: &RetryNotice| {
        sink.lock().expect("lock").push(n.clone());
    }));
    (client, notices)
}

#[tokio::test]
async fn a_429_is_retried_after_the_wait_the_server_asked_for() {
    let sim = sim(50).await;
    let integration = sim.sim().integration_ids()[0].clone();
    sim.sim().script_fault(ScriptedFault::next(
        1,
        FaultKind::RateLimit {
            retry_after: Some(true),
        },
    ));
    let (client, notices) = recording(client(&sim));
    let (records, _) = list_all(&client, &integration, ApplicationsQuery::default())
        .await
        .expect("succeeds after the retry");
    assert!(!records.is_empty());
    let notices = notices.lock().expect("lock");
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].server_hint, Some(Duration::from_secs(1)));
    assert!(
        notices[0].wait >= Duration::from_secs(1),
        "{:?}",
        notices[0]
    );
    assert!(
        notices[0].reason.contains("RATE_LIMIT_EXCEEDED"),
        "{}",
        notices[0].reason
    );
}

#[tokio::test]
async fn a_503_without_json_is_retried() {
    let sim = sim(50).await;
    let integration = sim.sim().integration_ids()[0].clone();
    sim.sim()
        .script_fault(ScriptedFault::next(2, FaultKind::Unavailable));
    let (client, notices) = recording(client(&sim));
    list_all(&client, &integration, ApplicationsQuery::default())
        .await
        .expect("succeeds on the third attempt");
    assert_eq!(notices.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn a_400_is_not_retried_and_says_what_kombo_said() {
    let sim = sim(50).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let (client, notices) = recording(client(&sim));
    let err = list_all(
        &client,
        &integration,
        ApplicationsQuery {
            page_size: Some(251),
            ..Default::default()
        },
    )
    .await
    .expect_err("page_size 251 is invalid");
    assert!(notices.lock().expect("lock").is_empty(), "not retried");
    match &err {
        KomboError::Api { status, body, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(body.code.as_deref(), Some("PLATFORM.INPUT_INVALID"));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&integration) && text.contains("page 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_truncated_body_is_a_clear_error_naming_the_page() {
    let sim = sim(600).await;
    let integration = sim.sim().integration_ids()[0].clone();
    sim.sim().script_fault(ScriptedFault {
        integration_id: Some(integration.clone()),
        page: Some(2),
        fault: FaultKind::Truncate,
        times: 10,
    });
    let (client, notices) = recording(client(&sim));
    let err = list_all(&client, &integration, ApplicationsQuery::default())
        .await
        .expect_err("page 2 is always truncated");
    assert!(matches!(err, KomboError::Malformed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("page 2"), "{text}");
    assert!(text.contains(&integration), "{text}");
    assert!(text.contains("truncated"), "{text}");
    assert_eq!(
        notices.lock().expect("lock").len(),
        2,
        "retried, then gave up"
    );
}

#[tokio::test]
async fn a_wrong_api_key_reads_as_such() {
    let sim = sim(10).await;
    let integration = sim.sim().integration_ids()[0].clone();
    let client = KomboClient::new(ClientConfig {
        base_url: sim.base_url(),
        api_key: Secret::new("wrong"),
        request_timeout: Duration::from_secs(5),
        limits: Default::default(),
        retry: RetryPolicy::default(),
    })
    .expect("client");
    let err = list_all(&client, &integration, ApplicationsQuery::default())
        .await
        .expect_err("rejected");
    assert!(matches!(err, KomboError::Unauthorized { .. }), "{err:?}");
    assert!(
        err.to_string().contains("the Kombo API key was rejected"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_integration_is_named() {
    let sim = sim(10).await;
    let err = list_all(
        &client(&sim),
        "greenhouse:nope",
        ApplicationsQuery::default(),
    )
    .await
    .expect_err("unknown");
    assert_eq!(
        err.code(),
        Some("PLATFORM.INTEGRATION_NOT_FOUND"),
        "{err:?}"
    );
    assert!(err.to_string().contains("greenhouse:nope"));
}

#[tokio::test]
async fn thousands_of_generated_records_parse_without_a_rejection() {
    let sim = sim(3_000).await;
    for integration in sim.sim().integration_ids() {
        let query = ApplicationsQuery {
            include_deleted: true,
            ..Default::default()
        };
        // list_all asserts that no record of any page was rejected.
        let (records, _) = list_all(&client(&sim), &integration, query)
            .await
            .expect("lists");
        assert_eq!(records.len(), 3_000);
    }
}
