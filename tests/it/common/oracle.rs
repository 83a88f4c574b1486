//! The oracle of the tests that disturb `hirehook run` (replicas killed and paused, the
//! database stopped): a **reference**, a sled store and a syncer in the test's process with
//! the same settings, never disturbed, syncs after each batch of changes to the simulated
//! world, and the world changes only once the disturbed daemons have synced every
//! integration since the last batch (read from their store). Both then observe the same
//! states, so they derive the same events with the same deterministic ids; whatever the
//! disturbance, the daemons' log must be the reference's, id for id, and the receiver must
//! have every one of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hirehook::config::Config;
use hirehook::store::{EventFilter, Store};
use hirehook::sync::{SyncSettings, Syncer};

use super::Receiver;

/// Appended to the disturbed daemons' configs: they keep the snapshots of applications
/// deleted upstream, as the reference does. The simulated world's deletion dates lie years
/// back, so with the default `deleted_applications = "14d"` the daemons' first retention
/// sweep would purge those snapshots, and a later change to such a record would be diffed
/// against what is kept of it (its sequence) where the reference, which never sweeps,
/// diffs against the whole snapshot: different events, by design, not by the disturbance.
pub const KEEP_DELETED_APPLICATIONS: &str = "\n[retention]\ndeleted_applications = \"forever\"\n";

/// The never-disturbed reference.
pub struct Reference {
    pub store: Arc<Store>,
    syncer: Syncer,
    integrations: Vec<String>,
}

impl Reference {
    /// A reference with `config`'s settings, its sled store in `dir`.
    pub fn new(config: &Config, dir: &std::path::Path) -> Reference {
        let store =
            Arc::new(Store::open_sled(&dir.join("reference"), 16 << 20).expect("reference"));
        let mut config = config.clone();
        config.kombo.request_timeout = Duration::from_secs(10);
        let syncer = Syncer::new(
            hirehook::ats::KomboClient::new(config.kombo.client_config()).expect("client"),
            store.clone(),
            SyncSettings::from_config(&config),
        );
        Reference {
            store,
            syncer,
            integrations: config.integrations.iter().map(|i| i.id.clone()).collect(),
        }
    }

    /// Syncs every integration once; each must read every record and move its watermark.
    pub async fn sync(&self) {
        for id in &self.integrations {
            let report = self.syncer.sync(id, |_| {}).await.expect("reference sync");
            assert!(report.rejected.is_empty() && report.watermark_advanced);
        }
    }

    /// The reference's log: id → body.
    pub async fn expected(&self) -> BTreeMap<String, Vec<u8>> {
        self.store
            .events(&EventFilter::default())
            .await
            .expect("reference log")
            .into_iter()
            .map(|e| (e.id, e.body))
            .collect()
    }
}

/// Waits (up to `limit`) until every integration completed a sync that started after
/// `since`; false if it did not. Store errors count as not yet (the store may be away).
pub async fn wait_synced(
    store: &Store,
    integrations: &[String],
    since: chrono::DateTime<Utc>,
    limit: Duration,
) -> bool {
    let wait = async {
        loop {
            let mut all = true;
            for id in integrations {
                let synced = store.sync_state(id).await.is_ok_and(|state| {
                    state.baseline_done
                        && state.last_error.is_none()
                        && state.watermark.is_some_and(|w| w > since)
                });
                all &= synced;
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(limit, wait).await.is_ok()
}

/// A webhook body without its detection times.
pub fn without_times(body: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
    if let Some(o) = v.as_object_mut() {
        o.remove("timestamp");
    }
    if let Some(data) = v.get_mut("data").and_then(|d| d.as_object_mut()) {
        data.remove("detected_at");
    }
    v
}

/// The daemons' log is the reference's: the same ids (none missing, none extra, so no
/// change was logged twice under different ids), log sequences without gaps, the same
/// bodies but for when each detected the change.
pub async fn assert_log_is_the_reference(shared: &Store, expected: &BTreeMap<String, Vec<u8>>) {
    let logged = shared
        .events(&EventFilter::default())
        .await
        .expect("shared log");
    let seqs: Vec<u64> = logged.iter().map(|e| e.log_seq).collect();
    assert_eq!(
        seqs,
        (1..=logged.len() as u64).collect::<Vec<_>>(),
        "log sequences without gaps"
    );
    let logged: BTreeMap<String, Vec<u8>> = logged.into_iter().map(|e| (e.id, e.body)).collect();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !logged.contains_key(*id))
        .collect();
    let extra: Vec<&String> = logged
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .collect();
    let describe = |ids: &[&String], from: &BTreeMap<String, Vec<u8>>| {
        ids.iter()
            .map(|id| {
                let body = from.get(*id).map(|b| without_times(b)).unwrap_or_default();
                let d = &body["data"];
                format!("{id} {} seq {}: {body}", body["type"], d["sequence"])
            })
            .collect::<Vec<_>>()
    };
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {:#?}, extra {:#?} ({} expected)",
        describe(&missing, expected),
        describe(&extra, &logged),
        expected.len()
    );
    let differing: Vec<&String> = expected
        .iter()
        .filter(|(id, body)| logged.get(*id).map(|b| without_times(b)) != Some(without_times(body)))
        .map(|(id, _)| id)
        .collect();
    assert!(differing.is_empty(), "bodies differ: {differing:?}");
}

/// The receiver got every expected event, each verified; a duplicate (the same id sent
/// again) is byte-identical; nothing else arrived; per application, first receipts came
/// in sequence order.
pub fn assert_received_exactly(receiver: &Receiver, expected: &BTreeMap<String, Vec<u8>>) {
    let received = receiver.received();
    assert!(
        received.iter().all(|r| r.verified),
        "every signature verifies"
    );
    let mut first: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for r in &received {
        match first.get(&r.id) {
            Some(body) => assert_eq!(body, &r.body, "a duplicate of {} differs", r.id),
            None => {
                first.insert(r.id.clone(), r.body.clone());
            }
        }
    }
    let got: BTreeSet<&String> = received
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| &r.id)
        .collect();
    let want: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(got, want, "every event delivered, under its id");
    let all: BTreeSet<&String> = first.keys().collect();
    assert_eq!(all, want, "nothing but the expected ids was sent");
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for r in &received {
        if !seen.insert(r.id.clone()) {
            continue;
        }
        let app = r.application().to_owned();
        let seq = r.sequence();
        if let Some(prev) = last.get(&app) {
            assert!(seq > *prev, "{app}: sequence {seq} arrived after {prev}");
        }
        last.insert(app, seq);
    }
}

/// Waits (up to `limit`) until no delivery is pending in `store`; false if some still are.
pub async fn wait_drained(store: &Store, limit: Duration) -> bool {
    let drained = async {
        loop {
            let pending = store
                .deliveries(None, Some(hirehook::store::DeliveryState::Pending), None)
                .await;
            if pending.is_ok_and(|p| p.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(limit, drained).await.is_ok()
}
