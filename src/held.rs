//! The operator's decision on events the mass-change guard held: release them for delivery
//! or drop them. Shared by `hirehook events release|drop` (on the store) and the admin API
//! (while the daemon runs), so both decide the same way.
//!
//! Only the events the guard has decided to hold are touched: those up to the
//! integration's `guard_decided_through`. Events a sync has held but not yet judged (it is
//! still running, or it stopped before its end) are left to that sync's guard, or the next
//! one's: an operator's answer to an earlier mass change must not wave through, or discard,
//! the events of a sync in progress.

use serde::{Deserialize, Serialize};

use crate::store::{EventRecord, Store, StoreError};

/// What a release or a drop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Events released into the log and the outbox, or dropped.
    pub decided: usize,
    /// Held events left for a sync's guard to judge (see the module docs).
    pub undecided: usize,
}

/// An integration's held events, split by whether the guard has judged them.
pub struct Held {
    /// Held for an operator, oldest first.
    pub decided: Vec<EventRecord>,
    /// Held by a sync that has not reached its guard yet, oldest first.
    pub undecided: Vec<EventRecord>,
}

/// An integration's held events.
pub async fn held(store: &Store, integration_id: &str) -> Result<Held, StoreError> {
    let through = store
        .sync_state(integration_id)
        .await?
        .guard_decided_through;
    let (decided, undecided) = store
        .held_events(integration_id)
        .await?
        .into_iter()
        .partition(|r| r.log_seq <= through);
    Ok(Held { decided, undecided })
}

/// Moves the held events the guard decided on into the log and the outbox, and flushes:
/// they are on disk, and queued for delivery, when this returns. The caller then wakes the
/// deliverer, if one runs.
pub async fn release(store: &Store, integration_id: &str) -> Result<Decision, StoreError> {
    let held = held(store, integration_id).await?;
    let seqs: Vec<u64> = held.decided.iter().map(|r| r.log_seq).collect();
    let released = if seqs.is_empty() {
        0
    } else {
        store.release_held(integration_id, Some(&seqs)).await?.len()
    };
    store.flush().await?;
    Ok(Decision {
        decided: released,
        undecided: held.undecided.len(),
    })
}

/// Discards the held events the guard decided on, and flushes. Their ids stay known, so a
/// re-derivation does not bring them back.
pub async fn drop(store: &Store, integration_id: &str) -> Result<Decision, StoreError> {
    let held = held(store, integration_id).await?;
    let seqs: Vec<u64> = held.decided.iter().map(|r| r.log_seq).collect();
    let dropped = if seqs.is_empty() {
        0
    } else {
        store.drop_held(integration_id, &seqs).await?
    };
    store.flush().await?;
    Ok(Decision {
        decided: dropped,
        undecided: held.undecided.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use crate::store::{EventFilter, NewEvent, PageCommit};

    fn held_event(id: &str, app: &str) -> NewEvent {
        NewEvent {
            id: id.into(),
            event_type: EventType::ApplicationDeleted,
            application_id: app.into(),
            sequence: 1,
            detected_at: chrono::Utc::now(),
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            subscribers: vec!["crm".into()],
            hold: true,
        }
    }

    async fn hold(store: &Store, events: Vec<NewEvent>) -> Vec<u64> {
        let commit = PageCommit {
            snapshots: vec![],
            events,
        };
        store
            .commit_page("gh:1", commit)
            .await
            .expect("commit")
            .iter()
            .map(|r| r.log_seq)
            .collect()
    }

    async fn decide_through(store: &Store, seq: u64) {
        let mut state = store.sync_state("gh:1").await.expect("state");
        state.guard_decided_through = seq;
        store
            .put_sync_state("gh:1", &state)
            .await
            .expect("put state");
    }

    #[tokio::test]
    async fn only_events_the_guard_decided_on_are_released_or_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sled(&dir.path().join("db"), 8 << 20).expect("open");
        // A sync held two events and its guard judged them a mass change...
        let decided = hold(&store, vec![held_event("e1", "a"), held_event("e2", "b")]).await;
        decide_through(&store, decided[1]).await;
        // ...and a later sync has held one it has not judged yet.
        hold(&store, vec![held_event("e3", "c")]).await;

        let split = held(&store, "gh:1").await.expect("held");
        assert_eq!((split.decided.len(), split.undecided.len()), (2, 1));

        let released = release(&store, "gh:1").await.expect("release");
        assert_eq!(
            released,
            Decision {
                decided: 2,
                undecided: 1
            }
        );
        assert_eq!(
            store
                .events(&EventFilter::default())
                .await
                .expect("log")
                .len(),
            2
        );
        assert_eq!(store.outbox("crm").await.expect("outbox").len(), 2);
        let left = store.held_events("gh:1").await.expect("held");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "e3");

        // Nothing decided is left: a second release is a no-op.
        assert_eq!(
            release(&store, "gh:1").await.expect("release"),
            Decision {
                decided: 0,
                undecided: 1
            }
        );

        // Once judged, the last one can be dropped; it never reaches the log.
        decide_through(&store, left[0].log_seq).await;
        assert_eq!(
            drop(&store, "gh:1").await.expect("drop"),
            Decision {
                decided: 1,
                undecided: 0
            }
        );
        assert!(store.held_events("gh:1").await.expect("held").is_empty());
        assert_eq!(
            store
                .events(&EventFilter::default())
                .await
                .expect("log")
                .len(),
            2
        );
        assert_eq!(store.outbox("crm").await.expect("outbox").len(), 2);
        assert_eq!(
            drop(&store, "gh:1").await.expect("drop"),
            Decision {
                decided: 0,
                undecided: 0
            }
        );
    }
}
