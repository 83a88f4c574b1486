//! "Poll now": the per-integration triggers that the admin API (`POST
//! /v1/integrations/{id}/sync`) and Kombo's push webhook pull, and that the daemon's
//! pollers wait on. Its own module so that the admin server and the daemon, which both
//! hold them, do not import each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt as _;
use tokio::sync::Notify;

/// "Poll now" for each configured integration. Cheap to clone.
///
/// Triggers coalesce: a trigger while the integration's sync runs queues one more sync
/// after it (so a change reported during a sync is still picked up), and any number of
/// triggers before that queued sync starts are covered by it. Each trigger says which it
/// was, so callers can tell Kombo or an operator.
#[derive(Debug, Clone, Default)]
pub struct PollTriggers {
    by_integration: Arc<HashMap<String, Arc<PollTrigger>>>,
}

/// What a trigger did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Triggered {
    /// A poll is now queued: it starts at once, or right after the one running.
    Queued,
    /// A poll was already queued and has not started: it covers this trigger too.
    Coalesced,
}

impl Triggered {
    /// Whether the trigger was absorbed by a poll already queued.
    pub fn coalesced(self) -> bool {
        self == Triggered::Coalesced
    }
}

/// One integration's trigger, as its poller holds it.
#[derive(Debug, Default)]
pub struct PollTrigger {
    /// Wakes the poller; keeps one permit while the poller is busy syncing.
    notify: Notify,
    /// A poll was asked for and has not started yet: later triggers coalesce into it.
    queued: AtomicBool,
}

impl PollTrigger {
    /// A sync starts now: it covers every trigger so far. The stale permit is taken
    /// before the flag is cleared, so a trigger in between is at worst one sync too
    /// many, never lost.
    pub fn starting(&self) {
        let _ = self.notify.notified().now_or_never();
        self.queued.store(false, Ordering::SeqCst);
    }

    /// Resolves when a poll is asked for (at once if one was asked for since the last
    /// [`PollTrigger::starting`]).
    pub async fn requested(&self) {
        self.notify.notified().await;
    }
}

impl PollTriggers {
    /// One trigger per integration id.
    pub fn new<'a>(integration_ids: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            by_integration: Arc::new(
                integration_ids
                    .into_iter()
                    .map(|id| (id.to_owned(), Arc::default()))
                    .collect(),
            ),
        }
    }

    /// Asks for a poll of `integration_id` now. `None` when it is not configured.
    pub fn trigger(&self, integration_id: &str) -> Option<Triggered> {
        let trigger = self.by_integration.get(integration_id)?;
        if trigger.queued.swap(true, Ordering::SeqCst) {
            return Some(Triggered::Coalesced);
        }
        trigger.notify.notify_one();
        Some(Triggered::Queued)
    }

    /// The trigger a poller of `integration_id` waits on (a detached one if the id is not
    /// configured).
    pub fn get(&self, integration_id: &str) -> Arc<PollTrigger> {
        self.by_integration
            .get(integration_id)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_coalesce_until_the_queued_sync_starts() {
        let triggers = PollTriggers::new(["a", "b"]);
        assert_eq!(triggers.trigger("nope"), None);
        assert_eq!(triggers.trigger("a"), Some(Triggered::Queued));
        assert_eq!(triggers.trigger("a"), Some(Triggered::Coalesced));
        assert_eq!(triggers.trigger("a"), Some(Triggered::Coalesced));
        assert_eq!(
            triggers.trigger("b"),
            Some(Triggered::Queued),
            "per integration"
        );
        // The queued sync starts: it takes the one wake-up the triggers left.
        let a = triggers.get("a");
        a.starting();
        assert!(
            a.notify.notified().now_or_never().is_none(),
            "no wake-up left for a second sync"
        );
        // A trigger while it runs queues exactly one more.
        assert_eq!(triggers.trigger("a"), Some(Triggered::Queued));
        assert_eq!(triggers.trigger("a"), Some(Triggered::Coalesced));
        assert!(a.notify.notified().now_or_never().is_some(), "one wake-up");
        assert!(a.notify.notified().now_or_never().is_none(), "only one");
    }
}
