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
//! | `a` | subscriber `\0` integration `\0` application `\0` log sequence | empty: the application's pending deliveries, in order |
//! | `q` | subscriber `\0` due time (ms, BE) log sequence (BE) | empty: deliveries ready to send, by due time (only each application's head) |
//! | `t` | subscriber `\0` log sequence (BE) attempt (u32 BE) | [`AttemptRecord`](super::AttemptRecord) |
//! | `d` | subscriber | why the subscriber is disabled (a 410) |
//! | `m` | name | store metadata (format version) |

pub const SNAPSHOT: u8 = b's';
pub const SYNC_STATE: u8 = b'w';
pub const EVENT: u8 = b'e';
pub const EVENT_ID: u8 = b'i';
pub const OUTBOX: u8 = b'o';
pub const HELD: u8 = b'h';
pub const META: u8 = b'm';
pub const APP_QUEUE: u8 = b'a';
pub const DUE: u8 = b'q';
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

pub fn app_queue(
    subscriber: &str,
    integration_id: &str,
    application_id: &str,
    log_seq: u64,
) -> Vec<u8> {
    let mut key = app_queue_prefix(subscriber, integration_id, application_id);
    key.extend_from_slice(&log_seq.to_be_bytes());
    key
}

pub fn app_queue_prefix(subscriber: &str, integration_id: &str, application_id: &str) -> Vec<u8> {
    let mut key = join(
        APP_QUEUE,
        &[
            subscriber.as_bytes(),
            integration_id.as_bytes(),
            application_id.as_bytes(),
        ],
    );
    key.push(SEP);
    key
}

/// Milliseconds since the epoch, clamped at 0, big-endian: sorts by time.
fn millis(t: &crate::ats::Timestamp) -> [u8; 8] {
    (t.timestamp_millis().max(0) as u64).to_be_bytes()
}

pub fn due(subscriber: &str, due_at: &crate::ats::Timestamp, log_seq: u64) -> Vec<u8> {
    let mut key = due_prefix(subscriber);
    key.extend_from_slice(&millis(due_at));
    key.extend_from_slice(&log_seq.to_be_bytes());
    key
}

pub fn due_prefix(subscriber: &str) -> Vec<u8> {
    let mut key = join(DUE, &[subscriber.as_bytes()]);
    key.push(SEP);
    key
}

/// The due time (ms) and log sequence of a `q` key.
pub fn due_parts(key: &[u8]) -> Option<(i64, u64)> {
    let n = key.len();
    let ms: [u8; 8] = key.get(n.checked_sub(16)?..n - 8)?.try_into().ok()?;
    Some((u64::from_be_bytes(ms) as i64, trailing_seq(key)?))
}

pub fn attempt(subscriber: &str, log_seq: u64, attempt: u32) -> Vec<u8> {
    let mut key = attempt_prefix(subscriber, log_seq);
    key.extend_from_slice(&attempt.to_be_bytes());
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
