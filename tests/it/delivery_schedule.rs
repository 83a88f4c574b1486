//! The delivery schedule on tokio's paused clock: exact retry times (the default schedule
//! 5s, 5m, 30m, 2h, 5h, 10h, 10h, then a dead letter), jitter bounds, `Retry-After` and
//! its cap, 410, and the rate limit — asserted to the millisecond, without sleeping and
//! without a network (the deliverer's scripted answers stand in for the subscriber).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hirehook::clock::Clock;
use hirehook::deliver::retry::RetrySchedule;
use hirehook::deliver::sign::SigningKey;
use hirehook::deliver::worker::{Answer, Deliverer, DeliverySettings, ScriptedAnswers, Target};
use hirehook::domain::Timestamp;
use hirehook::event::EventType;
use hirehook::secret::Secret;
use hirehook::store::{AttemptRecord, DeliveryState, NewEvent, PageCommit, Store};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_aGlyZWhvb2sgdGVzdCBzaWduaW5nIGtleQ==";
const SUBSCRIBER: &str = "crm";

/// The default schedule's delays, in seconds.
const DEFAULT_DELAYS: [u64; 7] = [5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];

struct Setup {
    store: Arc<Store>,
    _dir: tempfile::TempDir,
    /// Log sequences of the events, in commit order.
    log_seqs: Vec<u64>,
}

/// A store with `events` events (one application each) pending for the subscriber,
/// detected a second before `start`.
async fn setup(events: usize, start: Timestamp) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open_sled(&dir.path().join("store"), 8 << 20).expect("store"));
    let new: Vec<NewEvent> = (0..events)
        .map(|i| NewEvent {
            id: format!("evt_schedule_{i:04}"),
            event_type: EventType::StageChanged,
            application_id: format!("app_{i}"),
            sequence: 1,
            detected_at: start - chrono::Duration::seconds(1),
            body: format!("{{\"n\":{i}}}").into_bytes(),
            subscribers: vec![SUBSCRIBER.into()],
            hold: false,
        })
        .collect();
    let written = store
        .commit_page(
            "gh:1",
            PageCommit {
                snapshots: Vec::new(),
                events: new,
            },
        )
        .await
        .expect("commit");
    store.flush().await.expect("flush");
    Setup {
        store,
        _dir: dir,
        log_seqs: written.iter().map(|r| r.log_seq).collect(),
    }
}

fn target(rate_limit: Option<f64>, max_in_flight: usize) -> Target {
    Target {
        name: SUBSCRIBER.into(),
        url: url::Url::parse("https://crm.example.com/hook").expect("url"),
        keys: Arc::new(vec![
            SigningKey::from_secret(&Secret::new(SECRET)).expect("key"),
        ]),
        max_in_flight,
        rate_limit,
        timeout: Duration::from_secs(15),
    }
}

/// Runs the deliverer on the paused clock for `hours` of virtual time, answering with
/// `answer(attempt number of that event, event's log position)`.
async fn run(
    setup: &Setup,
    target: Target,
    schedule: RetrySchedule,
    start: Timestamp,
    hours: u64,
    answer: impl Fn(u32, u64) -> Answer + Send + Sync + 'static,
) {
    let settings = DeliverySettings {
        schedule,
        allow_private_networks: false,
        shutdown_grace: Duration::from_secs(1),
        clock: Clock::tokio_at(start),
    };
    let seen: Mutex<HashMap<u64, u32>> = Mutex::default();
    let answers: ScriptedAnswers = Arc::new(move |_, delivery| {
        let mut seen = seen.lock().expect("seen");
        let n = seen.entry(delivery.log_seq).or_default();
        *n += 1;
        answer(*n, delivery.log_seq)
    });
    let deliverer = Deliverer::new(setup.store.clone(), vec![target], settings)
        .expect("deliverer")
        .with_scripted_answers(answers);
    let waker = deliverer.waker();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(deliverer.run(shutdown.clone()));
    waker.wake();
    tokio::time::sleep(Duration::from_secs(hours * 3600)).await;
    shutdown.cancel();
    task.await.expect("deliverer ends");
}

fn status(code: u16) -> Answer {
    Answer {
        status: Some(code),
        ..Default::default()
    }
}

async fn attempts(setup: &Setup, log_seq: u64) -> Vec<AttemptRecord> {
    setup
        .store
        .attempts(SUBSCRIBER, log_seq)
        .await
        .expect("attempts")
}

/// Milliseconds from each attempt to the next.
fn gaps(attempts: &[AttemptRecord]) -> Vec<i64> {
    attempts
        .windows(2)
        .map(|w| (w[1].at - w[0].at).num_milliseconds())
        .collect()
}

async fn state_of(setup: &Setup, log_seq: u64) -> DeliveryState {
    setup
        .store
        .deliveries(Some(SUBSCRIBER), None, None)
        .await
        .expect("deliveries")
        .into_iter()
        .find(|(_, seq, _)| *seq == log_seq)
        .map(|(_, _, entry)| entry.state)
        .expect("the delivery")
}

fn now() -> Timestamp {
    chrono::Utc::now()
}

#[tokio::test(start_paused = true)]
async fn a_failing_subscriber_is_retried_on_the_exact_default_schedule_then_dead_lettered() {
    let start = now();
    let setup = setup(1, start).await;
    let schedule = RetrySchedule {
        jitter: 0.0,
        ..RetrySchedule::default()
    };
    run(&setup, target(None, 4), schedule, start, 48, |_, _| {
        status(500)
    })
    .await;
    let attempts = attempts(&setup, setup.log_seqs[0]).await;
    assert_eq!(attempts.len(), 8, "the first attempt and 7 retries");
    let want: Vec<i64> = DEFAULT_DELAYS.iter().map(|s| *s as i64 * 1000).collect();
    assert_eq!(gaps(&attempts), want);
    assert!(attempts.iter().all(|a| a.status == Some(500)));
    assert_eq!(
        state_of(&setup, setup.log_seqs[0]).await,
        DeliveryState::Dead
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_keeps_every_wait_within_its_band() {
    let start = now();
    let setup = setup(20, start).await;
    let schedule = RetrySchedule {
        delays: DEFAULT_DELAYS[..3]
            .iter()
            .map(|s| Duration::from_secs(*s))
            .collect(),
        jitter: 0.2,
        ..RetrySchedule::default()
    };
    run(&setup, target(None, 32), schedule, start, 2, |_, _| {
        status(503)
    })
    .await;
    let mut exact = 0;
    for &seq in &setup.log_seqs {
        let attempts = attempts(&setup, seq).await;
        assert_eq!(attempts.len(), 4, "event {seq}");
        for (gap, base) in gaps(&attempts).into_iter().zip(DEFAULT_DELAYS) {
            let base = base as f64 * 1000.0;
            assert!(
                (gap as f64) >= base * 0.8 - 1.0 && (gap as f64) <= base * 1.2 + 1.0,
                "event {seq}: {gap} ms for a {base} ms delay"
            );
            exact += usize::from(gap as f64 == base);
        }
        assert_eq!(state_of(&setup, seq).await, DeliveryState::Dead);
    }
    assert!(exact < 10, "the waits are jittered ({exact} of 60 exact)");
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_up_to_its_cap() {
    let start = now();
    let setup = setup(1, start).await;
    let schedule = RetrySchedule {
        jitter: 0.0,
        max_retry_after: Duration::from_secs(3600),
        ..RetrySchedule::default()
    };
    run(&setup, target(None, 4), schedule, start, 3, |attempt, _| {
        match attempt {
            // Asks for more than the 5 s the schedule says.
            1 => Answer {
                status: Some(503),
                retry_after: Some(Duration::from_secs(20)),
                ..Default::default()
            },
            // Asks for 2 h: capped at max_retry_after (1 h), above the schedule's 5 min.
            2 => Answer {
                status: Some(429),
                retry_after: Some(Duration::from_secs(7200)),
                ..Default::default()
            },
            // Asks for less than the schedule's 30 min: the schedule wins.
            3 => Answer {
                status: Some(429),
                retry_after: Some(Duration::from_secs(60)),
                ..Default::default()
            },
            _ => status(200),
        }
    })
    .await;
    let attempts = attempts(&setup, setup.log_seqs[0]).await;
    assert_eq!(gaps(&attempts), [20_000, 3_600_000, 1_800_000]);
    assert_eq!(
        state_of(&setup, setup.log_seqs[0]).await,
        DeliveryState::Delivered
    );
}

#[tokio::test(start_paused = true)]
async fn a_410_disables_the_subscriber_after_one_attempt() {
    let start = now();
    let setup = setup(3, start).await;
    // The reason names the URL, without its credentials.
    let mut target = target(None, 1);
    target.url =
        url::Url::parse("https://user:pa55w0rd@crm.example.com/hook?token=t0k3n").expect("url");
    run(
        &setup,
        target,
        RetrySchedule::default(),
        start,
        1,
        |_, _| status(410),
    )
    .await;
    let reason = setup
        .store
        .disabled_reason(SUBSCRIBER)
        .await
        .expect("read")
        .expect("disabled");
    assert!(reason.contains("410"), "{reason}");
    assert!(reason.contains("crm.example.com/hook"), "{reason}");
    assert!(
        !reason.contains("pa55w0rd") && !reason.contains("t0k3n"),
        "{reason}"
    );
    let mut total = 0;
    for &seq in &setup.log_seqs {
        total += attempts(&setup, seq).await.len();
    }
    assert_eq!(total, 1, "nothing is sent to a disabled subscriber");
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_requests_exactly() {
    let start = now();
    let setup = setup(6, start).await;
    run(
        &setup,
        target(Some(2.0), 16),
        RetrySchedule::default(),
        start,
        1,
        |_, _| status(200),
    )
    .await;
    let mut times: Vec<Timestamp> = Vec::new();
    for &seq in &setup.log_seqs {
        times.extend(attempts(&setup, seq).await.iter().map(|a| a.at));
    }
    times.sort();
    let gaps: Vec<i64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds())
        .collect();
    assert_eq!(gaps, [500; 5], "2 requests a second");
    for &seq in &setup.log_seqs {
        assert_eq!(state_of(&setup, seq).await, DeliveryState::Delivered);
    }
}
