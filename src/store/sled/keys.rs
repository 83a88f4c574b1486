//! The key layout of the one sled tree hirehook keeps.
//!
//! Everything lives in one tree so that a page's snapshots, events, outbox entries and sync
//! state change together in one atomic `apply_batch`. The first byte says what a key is:
//!
//! | prefix | key | value |
//! |---|---|---|
//! | `s` | integration `\0` application id | encoded snapshot (the diff's format) |
//! | `w` | integration | [`SyncState`](super::SyncState) as JSON |
//! | `e` | log sequence (u64 BE) | [`EventRecord`](super::EventRecord) |
//! | `i` | event id | log sequence (u64 BE) |
//! | `o` | subscriber `\0` log sequence (u64 BE) | [`OutboxEntry`](super::OutboxEntry) |
//! | `h` | integration `\0` log sequence (u64 BE) | held [`EventRecord`](super::EventRecord) |
//! | `t` | subscriber `\0` log sequence (BE) attempt (u32 BE) | [`AttemptRecord`](crate::store::AttemptRecord), in stores written by earlier builds only: attempts now live in their outbox entry (read by `Store::attempts`) |
//! | `d` | subscriber | why the subscriber is disabled (a 410) |
//! | `m` | name | store metadata (format version) |
//!
//! Which pending delivery goes next is not stored: the delivery queues are derived from
//! the outbox entries in memory (see `queues`). Stores written by earlier builds kept them
//! as `a` (per-application queue) and `q` (due index) keys; those are removed at open.

pub const SNAPSHOT: u8 = b's';
pub const SYNC_STATE: u8 = b'w';
pub const EVENT: u8 = b'e';
pub const EVENT_ID: u8 = b'i';
pub const OUTBOX: u8 = b'o';
pub const HELD: u8 = b'h';
pub const META: u8 = b'm';
/// Retired: the per-application queue keys of earlier builds (removed at open).
pub const RETIRED_APP_QUEUE: u8 = b'a';
/// Retired: the due-index keys of earlier builds (removed at open).
pub const RETIRED_DUE: u8 = b'q';
pub const ATTEMPT: u8 = b't';
pub const DISABLED: u8 = b'd';

const SEP: u8 = 0;

fn join(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut key = Vec::with_capacity(len);
    key.push(prefix);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.extend_from_slice(part);
    }
    key
}

pub fn snapshot(integration_id: &str, application_id: &str) -> Vec<u8> {
    join(
        SNAPSHOT,
        &[integration_id.as_bytes(), application_id.as_bytes()],
    )
}

pub fn snapshot_prefix(integration_id: &str) -> Vec<u8> {
    let mut key = join(SNAPSHOT, &[integration_id.as_bytes()]);
    key.push(SEP);
    key
}

pub fn sync_state(integration_id: &str) -> Vec<u8> {
    join(SYNC_STATE, &[integration_id.as_bytes()])
}

pub fn event(log_seq: u64) -> Vec<u8> {
    join(EVENT, &[&log_seq.to_be_bytes()])
}

pub fn event_id(id: &str) -> Vec<u8> {
    join(EVENT_ID, &[id.as_bytes()])
}

pub fn outbox(subscriber: &str, log_seq: u64) -> Vec<u8> {
    join(OUTBOX, &[subscriber.as_bytes(), &log_seq.to_be_bytes()])
}

pub fn held(integration_id: &str, log_seq: u64) -> Vec<u8> {
    join(HELD, &[integration_id.as_bytes(), &log_seq.to_be_bytes()])
}

pub fn held_prefix(integration_id: &str) -> Vec<u8> {
    let mut key = join(HELD, &[integration_id.as_bytes()]);
    key.push(SEP);
    key
}

pub fn meta(name: &str) -> Vec<u8> {
    join(META, &[name.as_bytes()])
}

pub fn outbox_prefix(subscriber: &str) -> Vec<u8> {
    let mut key = join(OUTBOX, &[subscriber.as_bytes()]);
    key.push(SEP);
    key
}

pub fn attempt_prefix(subscriber: &str, log_seq: u64) -> Vec<u8> {
    let mut key = join(ATTEMPT, &[subscriber.as_bytes()]);
    key.push(SEP);
    key.extend_from_slice(&log_seq.to_be_bytes());
    key
}

pub fn disabled(subscriber: &str) -> Vec<u8> {
    join(DISABLED, &[subscriber.as_bytes()])
}

/// The log sequence at the end of an `e`, `o` or `h` key.
pub fn trailing_seq(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_sequence_and_do_not_collide() {
        assert!(event(1) < event(2));
        assert!(event(255) < event(256));
        assert!(snapshot("a", "b") != snapshot("a\0b", ""));
        assert!(snapshot("gh:1", "x").starts_with(&snapshot_prefix("gh:1")));
        assert!(!snapshot("gh:10", "x").starts_with(&snapshot_prefix("gh:1")));
        assert_eq!(trailing_seq(&outbox("crm", 42)), Some(42));
        assert_eq!(trailing_seq(&held("gh:1", 7)), Some(7));
        assert_eq!(trailing_seq(b"short"), None);
    }
}
