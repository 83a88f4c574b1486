//! Reading everything out of a sled store, kind by kind: what `hirehook store copy` moves
//! into PostgreSQL.
//!
//! Each kind is a sync iterator over its key prefix (see [`keys`]): nothing is collected,
//! so a store of a million snapshots is read in constant memory (the caller batches).
//! Items come in key order: snapshots by (integration, application), events and event
//! ids as sled orders them, outbox entries by (subscriber, log sequence). Nothing here
//! writes. Values are decoded as the rest of the backend decodes them; a value that does
//! not decode is a [`StoreError::Corrupt`] naming its key, never skipped.

use super::{SledStore, decode_record, keys};
use crate::ats::Timestamp;
use crate::store::{ATTEMPTS_KEPT, AttemptRecord, EventRecord, OutboxEntry, StoreError, SyncState};

fn corrupt(what: impl Into<String>, message: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        message: message.to_string(),
    }
}

/// A key part as text (every name and id hirehook writes is UTF-8).
fn text(bytes: &[u8], what: &str) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|e| corrupt(format!("{what} key"), e))
}

/// The name between the prefix byte and `\0` + a log sequence (`o` and `h` keys).
fn name_before_seq(key: &[u8], what: &str) -> Result<(String, u64), StoreError> {
    let seq = keys::trailing_seq(key).ok_or_else(|| corrupt(format!("{what} key"), "too short"))?;
    let name = key
        .get(1..key.len().saturating_sub(9))
        .ok_or_else(|| corrupt(format!("{what} key"), "too short"))?;
    Ok((text(name, what)?, seq))
}

/// A scan that holds the read guard on the handles while it is iterated.
struct Guarded<'a> {
    _guard: super::HandlesGuard<'a>,
    iter: ::sled::Iter,
}

impl Iterator for Guarded<'_> {
    type Item = Result<(::sled::IVec, ::sled::IVec), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.iter.next().map(|r| r.map_err(StoreError::from))
    }
}

impl SledStore {
    /// The keys and values under `prefix`, the handles' read guard held until the
    /// iterator is dropped (an export runs long: no handle may outlive its guard).
    fn guarded_scan(
        &self,
        prefix: &[u8],
    ) -> Box<dyn Iterator<Item = Result<(::sled::IVec, ::sled::IVec), StoreError>> + '_> {
        match self.h() {
            Ok(guard) => {
                let iter = guard.tree.scan_prefix(prefix);
                Box::new(Guarded {
                    _guard: guard,
                    iter,
                })
            }
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    /// The first and last log sequence in the log, if it holds any (two key lookups: a
    /// cheap bound on its length, for progress bars).
    pub fn log_bounds(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let first = self.h()?.tree.scan_prefix([keys::EVENT]).keys().next();
        let last = self.h()?.tree.scan_prefix([keys::EVENT]).keys().next_back();
        let (Some(first), Some(last)) = (first.transpose()?, last.transpose()?) else {
            return Ok(None);
        };
        Ok(keys::trailing_seq(&first).zip(keys::trailing_seq(&last)))
    }

    /// The highest log sequence handed out so far (of a logged or held event; the next
    /// commit takes the one after it).
    pub fn last_log_seq(&self) -> u64 {
        *self.lock()
    }

    /// Every snapshot: `(integration, application, encoded snapshot)`, by integration
    /// then application.
    pub fn export_snapshots(
        &self,
    ) -> impl Iterator<Item = Result<(String, String, Vec<u8>), StoreError>> + '_ {
        self.guarded_scan(&[keys::SNAPSHOT]).map(|item| {
            let (key, value) = item?;
            let rest = key.get(1..).unwrap_or_default();
            let sep = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| corrupt("snapshot key", "no separator"))?;
            let integration = text(&rest[..sep], "snapshot")?;
            let application = text(&rest[sep + 1..], "snapshot")?;
            Ok((integration, application, value.to_vec()))
        })
    }

    /// Every tombstone retention left of a purged snapshot: `(integration, application,
    /// encoded tombstone)`.
    pub fn export_purged(
        &self,
    ) -> impl Iterator<Item = Result<(String, String, Vec<u8>), StoreError>> + '_ {
        self.guarded_scan(&[keys::PURGED]).map(|item| {
            let (key, value) = item?;
            let rest = key.get(1..).unwrap_or_default();
            let sep = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| corrupt("tombstone key", "no separator"))?;
            let integration = text(&rest[..sep], "tombstone")?;
            let application = text(&rest[sep + 1..], "tombstone")?;
            Ok((integration, application, value.to_vec()))
        })
    }

    /// Every dropped held event still remembered: `(log sequence, id, detected at)`.
    pub fn export_dropped(
        &self,
    ) -> impl Iterator<Item = Result<(u64, String, Timestamp), StoreError>> + '_ {
        self.guarded_scan(&[keys::DROPPED]).map(|item| {
            let (key, value) = item?;
            let seq = keys::trailing_seq(&key)
                .ok_or_else(|| corrupt("dropped event key", "too short"))?;
            let at = value
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(i64::from_be_bytes)
                .and_then(Timestamp::from_timestamp_millis)
                .ok_or_else(|| corrupt(format!("dropped event {seq}"), "no detection time"))?;
            let id = text(value.get(8..).unwrap_or_default(), "dropped event")?;
            Ok((seq, id, at))
        })
    }

    /// Every integration's sync state.
    pub fn export_sync_states(
        &self,
    ) -> impl Iterator<Item = Result<(String, SyncState), StoreError>> + '_ {
        self.guarded_scan(&[keys::SYNC_STATE]).map(|item| {
            let (key, value) = item?;
            let integration = text(key.get(1..).unwrap_or_default(), "sync state")?;
            let state = serde_json::from_slice(&value)
                .map_err(|e| corrupt(format!("sync state of {integration}"), e))?;
            Ok((integration, state))
        })
    }

    /// The whole event log, in log order.
    pub fn export_events(&self) -> impl Iterator<Item = Result<EventRecord, StoreError>> + '_ {
        self.guarded_scan(&[keys::EVENT])
            .map(|item| decode_record(&item?.1))
    }

    /// Every held event, of every integration (by integration, then log sequence).
    pub fn export_held(&self) -> impl Iterator<Item = Result<EventRecord, StoreError>> + '_ {
        self.guarded_scan(&[keys::HELD])
            .map(|item| decode_record(&item?.1))
    }

    /// The event-id index: every id ever written — logged, held, and held then dropped
    /// (so a re-derived dropped event stays dropped) — with the log sequence it was given.
    pub fn export_event_ids(&self) -> impl Iterator<Item = Result<(String, u64), StoreError>> + '_ {
        self.guarded_scan(&[keys::EVENT_ID]).map(|item| {
            let (key, value) = item?;
            let id = text(key.get(1..).unwrap_or_default(), "event id")?;
            let seq = keys::trailing_seq(&value)
                .filter(|_| value.len() == 8)
                .ok_or_else(|| corrupt(format!("index entry of event {id}"), "not a sequence"))?;
            Ok((id, seq))
        })
    }

    /// Every outbox entry: `(subscriber, log sequence, entry)`, by subscriber then log
    /// sequence. Each entry's `recent_attempts` are its attempts as [`SledStore::attempts`]
    /// reads them (separate attempt records of stores written by earlier builds first),
    /// the last [`ATTEMPTS_KEPT`] of them.
    pub fn export_outbox(
        &self,
    ) -> impl Iterator<Item = Result<(String, u64, OutboxEntry), StoreError>> + '_ {
        // Stores written by current builds have no attempt records: then each entry is
        // complete as it is, without a lookup per entry.
        let legacy = self.guarded_scan(&[keys::ATTEMPT]).next().is_some();
        self.guarded_scan(&[keys::OUTBOX]).map(move |item| {
            let (key, value) = item?;
            let (subscriber, seq) = name_before_seq(&key, "outbox")?;
            let mut entry: OutboxEntry = serde_json::from_slice(&value)
                .map_err(|e| corrupt(format!("outbox entry {seq} of {subscriber}"), e))?;
            if legacy {
                let own = std::mem::take(&mut entry.recent_attempts);
                entry.recent_attempts = self.merged_attempts(&subscriber, seq, own)?;
            }
            Ok((subscriber, seq, entry))
        })
    }

    /// The attempt records (`t` keys) of one delivery, then the entry's own attempts after
    /// them, keeping the last [`ATTEMPTS_KEPT`].
    fn merged_attempts(
        &self,
        subscriber: &str,
        seq: u64,
        own: Vec<AttemptRecord>,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut attempts: Vec<AttemptRecord> = self
            .h()?
            .tree
            .scan_prefix(keys::attempt_prefix(subscriber, seq))
            .values()
            .map(|v| {
                serde_json::from_slice(&v?)
                    .map_err(|e| corrupt(format!("attempt of {seq} to {subscriber}"), e))
            })
            .collect::<Result<_, StoreError>>()?;
        let kept_from = attempts.last().map_or(0, |a| a.attempt);
        attempts.extend(own.into_iter().filter(|a| a.attempt > kept_from));
        let excess = attempts.len().saturating_sub(ATTEMPTS_KEPT);
        attempts.drain(..excess);
        Ok(attempts)
    }

    /// Every subscriber disabled by a 410, with the reason.
    pub fn export_disabled(
        &self,
    ) -> impl Iterator<Item = Result<(String, String), StoreError>> + '_ {
        self.guarded_scan(&[keys::DISABLED]).map(|item| {
            let (key, value) = item?;
            let subscriber = text(key.get(1..).unwrap_or_default(), "disabled subscriber")?;
            Ok((subscriber, String::from_utf8_lossy(&value).into_owned()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ats::Timestamp;
    use crate::event::EventType;
    use crate::store::{DeliveryState, NewEvent, PageCommit, SnapshotWrite};
    use chrono::TimeZone as _;

    fn at(secs: i64) -> Timestamp {
        chrono::Utc
            .timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid")
    }

    fn event(id: &str, app: &str, hold: bool) -> NewEvent {
        NewEvent {
            id: id.into(),
            event_type: EventType::ApplicationCreated,
            application_id: app.into(),
            sequence: 1,
            detected_at: at(1),
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
            subscribers: vec!["crm".into(), "ats".into()],
            hold,
        }
    }

    fn attempt(n: u32) -> AttemptRecord {
        AttemptRecord {
            attempt: n,
            at: at(i64::from(n)),
            status: Some(500),
            latency_ms: 3,
            error: None,
            response_prefix: None,
        }
    }

    fn snapshot(app: &str) -> SnapshotWrite {
        SnapshotWrite {
            application_id: app.into(),
            bytes: app.as_bytes().to_vec(),
            is_new: true,
            previous_deleted_at: None,
        }
    }

    #[test]
    fn everything_comes_out_with_its_keys_and_legacy_attempts_merged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(&dir.path().join("db"), 8 << 20).expect("open");
        store
            .commit_page(
                "gh:1",
                PageCommit {
                    snapshots: vec![snapshot("b"), snapshot("a")],
                    events: vec![event("evt_1", "a", false), event("evt_2", "b", false)],
                },
            )
            .expect("commit");
        store
            .commit_page(
                "gh:10",
                PageCommit {
                    snapshots: vec![snapshot("x")],
                    events: vec![event("evt_3", "x", true), event("evt_4", "x", true)],
                },
            )
            .expect("commit");
        assert_eq!(store.drop_held("gh:10", &[4]).expect("drop"), 1);
        store
            .h()
            .unwrap()
            .tree
            .insert(keys::disabled("ats"), &b"410 Gone"[..])
            .expect("insert");
        // A delivery with 40 attempt records of an earlier build and 5 in its entry.
        for n in 1..=40u32 {
            let mut key = keys::attempt_prefix("crm", 1);
            key.extend_from_slice(&n.to_be_bytes());
            store
                .h()
                .unwrap()
                .tree
                .insert(key, serde_json::to_vec(&attempt(n)).expect("json"))
                .expect("insert");
        }
        let (_, mut entry) = store
            .outbox("crm")
            .expect("outbox")
            .into_iter()
            .next()
            .expect("entry");
        entry.attempts = 45;
        entry.state = DeliveryState::Dead;
        entry.recent_attempts = (41..=45).map(attempt).collect();
        store
            .h()
            .unwrap()
            .tree
            .insert(
                keys::outbox("crm", 1),
                serde_json::to_vec(&entry).expect("json"),
            )
            .expect("insert");

        assert_eq!(store.log_bounds().expect("bounds"), Some((1, 2)));
        let snapshots: Vec<_> = store
            .export_snapshots()
            .collect::<Result<_, _>>()
            .expect("snapshots");
        assert_eq!(
            snapshots,
            vec![
                ("gh:1".into(), "a".into(), b"a".to_vec()),
                ("gh:1".into(), "b".into(), b"b".to_vec()),
                ("gh:10".into(), "x".into(), b"x".to_vec()),
            ]
        );
        let states: Vec<_> = store
            .export_sync_states()
            .collect::<Result<_, _>>()
            .expect("states");
        assert_eq!(
            states
                .iter()
                .map(|(i, s)| (i.as_str(), s.applications))
                .collect::<Vec<_>>(),
            vec![("gh:1", 2), ("gh:10", 1)]
        );
        let events: Vec<_> = store
            .export_events()
            .collect::<Result<_, _>>()
            .expect("events");
        assert_eq!(
            events
                .iter()
                .map(|e| (e.log_seq, e.id.as_str()))
                .collect::<Vec<_>>(),
            vec![(1, "evt_1"), (2, "evt_2")]
        );
        let held: Vec<_> = store.export_held().collect::<Result<_, _>>().expect("held");
        assert_eq!(
            held.iter()
                .map(|e| (e.log_seq, e.id.as_str()))
                .collect::<Vec<_>>(),
            vec![(3, "evt_3")]
        );
        let mut ids: Vec<_> = store
            .export_event_ids()
            .collect::<Result<_, _>>()
            .expect("ids");
        ids.sort();
        assert_eq!(
            ids,
            vec![
                ("evt_1".into(), 1),
                ("evt_2".into(), 2),
                ("evt_3".into(), 3),
                ("evt_4".into(), 4),
            ],
            "the dropped event's id too"
        );
        assert_eq!(store.last_log_seq(), 4);
        let outbox: Vec<_> = store
            .export_outbox()
            .collect::<Result<_, _>>()
            .expect("outbox");
        assert_eq!(
            outbox
                .iter()
                .map(|(s, q, _)| (s.as_str(), *q))
                .collect::<Vec<_>>(),
            vec![("ats", 1), ("ats", 2), ("crm", 1), ("crm", 2)]
        );
        let merged = &outbox[2].2;
        assert_eq!(merged.attempts, 45);
        assert_eq!(merged.state, DeliveryState::Dead);
        assert_eq!(
            merged.recent_attempts,
            (14..=45).map(attempt).collect::<Vec<_>>(),
            "the last ATTEMPTS_KEPT of the records and the entry's own"
        );
        assert_eq!(
            merged.recent_attempts,
            store.attempts("crm", 1).expect("attempts")[13..],
            "what `attempts` reads, cut to ATTEMPTS_KEPT"
        );
        assert!(outbox[3].2.recent_attempts.is_empty());
        let disabled: Vec<_> = store
            .export_disabled()
            .collect::<Result<_, _>>()
            .expect("disabled");
        assert_eq!(disabled, vec![("ats".into(), "410 Gone".into())]);
    }
}
