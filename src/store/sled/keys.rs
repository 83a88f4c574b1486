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
//! | `x` | deletion time (ms, order-preserving u64 BE) integration `\0` application id | empty: the index of snapshots of applications deleted upstream, in deletion order, that retention walks |
//! | `p` | integration `\0` application id | a purged application's tombstone (an encoded snapshot with only its sequence and deletion) |
//! | `k` | log sequence (u64 BE) | a dropped held event: detection time (ms, i64 BE) then its id, so retention can let its id go |
//! | `m` | name | store metadata: format version, `log_floor` (the highest log sequence retention removed: never handed out again), `deleted_index` (the `x` index was built) |
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
pub const DELETED: u8 = b'x';
pub const PURGED: u8 = b'p';
pub const DROPPED: u8 = b'k';

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

/// A time in ms as 8 bytes that sort as the times do (the sign bit flipped).
fn ordered_ms(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

/// The index entry of an application deleted upstream at `deleted_ms`.
pub fn deleted(deleted_ms: i64, integration_id: &str, application_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(10 + integration_id.len() + application_id.len());
    key.push(DELETED);
    key.extend_from_slice(&ordered_ms(deleted_ms));
    key.extend_from_slice(integration_id.as_bytes());
    key.push(SEP);
    key.extend_from_slice(application_id.as_bytes());
    key
}

/// The first `x` key of applications deleted at `deleted_ms` or later.
pub fn deleted_from(deleted_ms: i64) -> Vec<u8> {
    let mut key = vec![DELETED];
    key.extend_from_slice(&ordered_ms(deleted_ms));
    key
}

/// `(integration, application)` of an `x` key.
pub fn deleted_parts(key: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = key.get(9..)?;
    let sep = rest.iter().position(|&b| b == SEP)?;
    Some((&rest[..sep], &rest[sep + 1..]))
}

pub fn purged(integration_id: &str, application_id: &str) -> Vec<u8> {
    join(
        PURGED,
        &[integration_id.as_bytes(), application_id.as_bytes()],
    )
}

pub fn purged_prefix(integration_id: &str) -> Vec<u8> {
    let mut key = join(PURGED, &[integration_id.as_bytes()]);
    key.push(SEP);
    key
}

pub fn dropped(log_seq: u64) -> Vec<u8> {
    join(DROPPED, &[&log_seq.to_be_bytes()])
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
        assert_eq!(trailing_seq(&dropped(9)), Some(9));
        assert!(deleted(-1, "gh:1", "z") < deleted(0, "gh:1", "a"));
        assert!(deleted(999, "gh:2", "a") < deleted(1000, "gh:1", "a"));
        assert!(deleted(1000, "gh:1", "a") >= deleted_from(1000));
        assert!(deleted(999, "gh:9", "a") < deleted_from(1000));
        assert_eq!(
            deleted_parts(&deleted(5, "gh:1", "app")),
            Some((&b"gh:1"[..], &b"app"[..]))
        );
        assert!(purged("gh:1", "x").starts_with(&purged_prefix("gh:1")));
    }
}
