//! The snapshot: what the diff remembers of one application between polls, and its compact
//! binary encoding.
//!
//! It keeps only what the rules compare (stage id, last known outcome, offer statuses,
//! interview times and cancellations, deletion) and what payloads show (the small summary:
//! remote id and URL, job, candidate, stage names). The application id itself is not kept:
//! it is the store's key, and the diff gets it from the fetched record.
//!
//! # Encoding, version 1
//!
//! One version byte (`1`), then the fields in declaration order with these primitives:
//!
//! | primitive | bytes |
//! |---|---|
//! | `varint` | unsigned LEB128 |
//! | `opt_str` | `varint` tag: 0 = null; 1 = a Kombo id (24 base58 characters) packed in 18 bytes (see `pack_id`); n + 2 = n raw UTF-8 bytes follow |
//! | `str` | an `opt_str` that is never null |
//! | `opt_ts` | `varint` 0 = null; else v + 1 where v = zigzag(unix seconds) << 1 for a whole second, zigzag(unix millis) << 1 \| 1 otherwise. An interview's `ending_at` is written relative to its `starting_at` (when there is one) |
//! | `opt_i64` | byte 0 = null, byte 1 + zigzag `varint` |
//! | `opt_struct` | byte 0 = null, byte 1 + the struct's fields |
//! | outcome | byte 0 null, 1 PENDING, 2 HIRED, 3 DECLINED, 4 + `str` unknown; after an unknown, one byte: the last known outcome (0..=3) |
//! | offer status | byte 0 null, 1 ACCEPTED, 2 DECLINED, 3 SENT, 4 APPROVED, 5 DRAFT, 6 ABANDONED, 7 + `str` unknown |
//! | list | `varint` count, then the items |
//!
//! # Version 2
//!
//! A snapshot that knows the record it came from (its [`RecordDigest`]) is written as
//! version 2: the byte `2`, the 16 bytes of the digest, then version 1's fields from
//! `sequence` on. One without (a tombstone, an erased snapshot, one decoded from version 1)
//! is still written as version 1. Both versions are read.
//!
//! A realistic record (24-character Kombo ids, numeric remote ids, a stage, a job, a
//! candidate, a 65-character URL) encodes in about 210 bytes without offers or interviews,
//! plus about 25 bytes per offer and 50 per interview; see the size test.

use chrono::{DateTime, Timelike};

use crate::domain::{OfferStatus, Outcome};
use crate::domain::{RecordDigest, Timestamp};
use crate::event::{CandidateRef, InterviewRef, JobRef, OfferRef, StageRef};

/// The encoding version of a snapshot without a [`Snapshot::source`], its first byte.
pub const SNAPSHOT_VERSION: u8 = 1;

/// The encoding version of a snapshot with a [`Snapshot::source`]: the digest follows the
/// version byte.
pub const SNAPSHOT_VERSION_WITH_SOURCE: u8 = 2;

/// The bytes of a [`RecordDigest`].
const DIGEST_LEN: usize = 16;

/// What the diff keeps of one application.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Sequence number of the last event derived for this application (0 = none yet): the
    /// next event gets `sequence + 1`.
    pub sequence: u64,
    /// `remote_deleted_at` while the application is deleted. While set, the fields below
    /// hold the state from before the deletion (a tombstone's nulls never overwrite them).
    pub deleted_at: Option<Timestamp>,
    /// The ATS's own id, for payloads.
    pub remote_id: Option<String>,
    /// The link into the ATS, for payloads.
    pub remote_url: Option<String>,
    /// The job, for payloads.
    pub job: Option<JobRef>,
    /// The candidate (no contact details), for payloads.
    pub candidate: Option<CandidateRef>,
    /// The current stage: its id is what `stage_changed` compares; its name is refreshed on
    /// a rename so `previous_stage` shows the last name seen.
    pub stage: Option<StageRef>,
    /// The outcome exactly as last reported (an unknown value included), for payloads.
    pub outcome: Option<Outcome>,
    /// The last outcome this version understands: the outcome rules compare against it, so
    /// an unknown value in between (`HIRED → WITHDRAWN → PENDING`) is transparent.
    pub known_outcome: KnownOutcome,
    /// Every offer ever seen, disappeared ones included (so a reappearance is not "created").
    pub offers: Vec<OfferRef>,
    /// Every interview ever seen; disappeared ones are kept marked canceled, so a
    /// cancellation is reported once.
    pub interviews: Vec<InterviewRef>,
    /// The digest of the record this snapshot was last diffed from, when known: the same
    /// bytes again are skipped unread (see [`RecordDigest`]). Set by the sync, never by the
    /// diff; cleared by whatever changes a snapshot other than a diff (erasure, purge).
    pub source: Option<RecordDigest>,
}

/// An outcome value the outcome rules understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KnownOutcome {
    /// Kombo reported no outcome (null).
    #[default]
    Null,
    /// `PENDING`.
    Pending,
    /// `HIRED`.
    Hired,
    /// `DECLINED`.
    Declined,
}

impl KnownOutcome {
    /// The known reading of a wire outcome; `None` for an unknown value.
    pub fn of(outcome: Option<&Outcome>) -> Option<KnownOutcome> {
        match outcome {
            None => Some(KnownOutcome::Null),
            Some(Outcome::Pending) => Some(KnownOutcome::Pending),
            Some(Outcome::Hired) => Some(KnownOutcome::Hired),
            Some(Outcome::Declined) => Some(KnownOutcome::Declined),
            Some(Outcome::Unknown(_)) => None,
        }
    }

    /// Back to the wire outcome, for payloads.
    pub fn to_outcome(self) -> Option<Outcome> {
        match self {
            KnownOutcome::Null => None,
            KnownOutcome::Pending => Some(Outcome::Pending),
            KnownOutcome::Hired => Some(Outcome::Hired),
            KnownOutcome::Declined => Some(Outcome::Declined),
        }
    }

    /// `HIRED` or `DECLINED`: the outcomes `outcome_reverted` leaves.
    pub fn is_final(self) -> bool {
        matches!(self, KnownOutcome::Hired | KnownOutcome::Declined)
    }

    fn tag(self) -> u8 {
        match self {
            KnownOutcome::Null => 0,
            KnownOutcome::Pending => 1,
            KnownOutcome::Hired => 2,
            KnownOutcome::Declined => 3,
        }
    }

    fn from_tag(tag: u8) -> Option<KnownOutcome> {
        match tag {
            0 => Some(KnownOutcome::Null),
            1 => Some(KnownOutcome::Pending),
            2 => Some(KnownOutcome::Hired),
            3 => Some(KnownOutcome::Declined),
            _ => None,
        }
    }
}

/// Why stored bytes are not a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Zero bytes.
    #[error("snapshot: empty")]
    Empty,
    /// Written by a version of hirehook with another encoding.
    #[error(
        "snapshot: unsupported encoding version {0} (this build reads version {SNAPSHOT_VERSION})"
    )]
    UnsupportedVersion(u8),
    /// The bytes end inside `field`.
    #[error("snapshot: truncated in `{field}` at byte {offset}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where the bytes ran out.
        offset: usize,
    },
    /// A value that no encoder writes (bad tag, bad UTF-8, varint overflow, timestamp out
    /// of range).
    #[error("snapshot: invalid `{field}` at byte {offset}: {reason}")]
    Invalid {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// Bytes after the last field.
    #[error("snapshot: {0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

impl Snapshot {
    /// The compact binary form (see the module docs), version byte first.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(self.size_hint()));
        match &self.source {
            None => w.0.push(SNAPSHOT_VERSION),
            Some(digest) => {
                w.0.push(SNAPSHOT_VERSION_WITH_SOURCE);
                w.0.extend_from_slice(&digest.0);
            }
        }
        w.varint(self.sequence);
        w.opt_ts(self.deleted_at.as_ref());
        w.opt_str(self.remote_id.as_deref());
        w.opt_str(self.remote_url.as_deref());
        match &self.job {
            None => w.0.push(0),
            Some(job) => {
                w.0.push(1);
                w.str(&job.id);
                w.opt_str(job.remote_id.as_deref());
                w.opt_str(job.name.as_deref());
            }
        }
        match &self.candidate {
            None => w.0.push(0),
            Some(c) => {
                w.0.push(1);
                w.str(&c.id);
                w.opt_str(c.first_name.as_deref());
                w.opt_str(c.last_name.as_deref());
            }
        }
        match &self.stage {
            None => w.0.push(0),
            Some(stage) => {
                w.0.push(1);
                w.str(&stage.id);
                w.opt_str(stage.remote_id.as_deref());
                w.opt_str(stage.name.as_deref());
                match stage.index {
                    None => w.0.push(0),
                    Some(i) => {
                        w.0.push(1);
                        w.varint(zigzag(i));
                    }
                }
            }
        }
        match &self.outcome {
            None => w.0.push(0),
            Some(Outcome::Pending) => w.0.push(1),
            Some(Outcome::Hired) => w.0.push(2),
            Some(Outcome::Declined) => w.0.push(3),
            Some(Outcome::Unknown(raw)) => {
                w.0.push(4);
                w.str(raw);
            }
        }
        // For a known outcome the last known one is the outcome itself: not written.
        if matches!(self.outcome, Some(Outcome::Unknown(_))) {
            w.0.push(self.known_outcome.tag());
        }
        w.varint(self.offers.len() as u64);
        for offer in &self.offers {
            w.str(&offer.id);
            w.opt_str(offer.remote_id.as_deref());
            match &offer.status {
                None => w.0.push(0),
                Some(OfferStatus::Accepted) => w.0.push(1),
                Some(OfferStatus::Declined) => w.0.push(2),
                Some(OfferStatus::Sent) => w.0.push(3),
                Some(OfferStatus::Approved) => w.0.push(4),
                Some(OfferStatus::Draft) => w.0.push(5),
                Some(OfferStatus::Abandoned) => w.0.push(6),
                Some(OfferStatus::Unknown(raw)) => {
                    w.0.push(7);
                    w.str(raw);
                }
            }
        }
        w.varint(self.interviews.len() as u64);
        for iv in &self.interviews {
            w.str(&iv.id);
            w.opt_str(iv.remote_id.as_deref());
            w.opt_str(iv.title.as_deref());
            w.opt_ts(iv.starting_at.as_ref());
            w.opt_ts_from(iv.ending_at.as_ref(), iv.starting_at.as_ref());
            w.0.push(u8::from(iv.canceled));
        }
        w.0
    }

    /// Reads [`Snapshot::encode`]'s output back. Never panics: any byte string is either a
    /// snapshot or a [`SnapshotError`] naming the version or the field.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
        let (source, mut r) = Reader::fields(bytes)?;
        let sequence = r.varint("sequence")?;
        let deleted_at = r.opt_ts("deleted_at")?;
        let remote_id = r.opt_str("remote_id")?;
        let remote_url = r.opt_str("remote_url")?;
        let job = if r.flag("job")? {
            Some(JobRef {
                id: r.str("job.id")?,
                remote_id: r.opt_str("job.remote_id")?,
                name: r.opt_str("job.name")?,
            })
        } else {
            None
        };
        let candidate = if r.flag("candidate")? {
            Some(CandidateRef {
                id: r.str("candidate.id")?,
                first_name: r.opt_str("candidate.first_name")?,
                last_name: r.opt_str("candidate.last_name")?,
            })
        } else {
            None
        };
        let stage = if r.flag("stage")? {
            Some(StageRef {
                id: r.str("stage.id")?,
                remote_id: r.opt_str("stage.remote_id")?,
                name: r.opt_str("stage.name")?,
                index: if r.flag("stage.index")? {
                    Some(unzigzag(r.varint("stage.index")?))
                } else {
                    None
                },
            })
        } else {
            None
        };
        let (outcome, known_outcome) = match r.byte("outcome")? {
            0 => (None, KnownOutcome::Null),
            1 => (Some(Outcome::Pending), KnownOutcome::Pending),
            2 => (Some(Outcome::Hired), KnownOutcome::Hired),
            3 => (Some(Outcome::Declined), KnownOutcome::Declined),
            4 => {
                let raw = r.str("outcome")?;
                let known = KnownOutcome::from_tag(r.byte("known_outcome")?)
                    .ok_or_else(|| r.invalid("known_outcome", "unknown tag"))?;
                (Some(Outcome::Unknown(raw)), known)
            }
            _ => return Err(r.invalid("outcome", "unknown tag")),
        };
        let n = r.count("offers")?;
        let mut offers = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.str("offers.id")?;
            let remote_id = r.opt_str("offers.remote_id")?;
            let status = match r.byte("offers.status")? {
                0 => None,
                1 => Some(OfferStatus::Accepted),
                2 => Some(OfferStatus::Declined),
                3 => Some(OfferStatus::Sent),
                4 => Some(OfferStatus::Approved),
                5 => Some(OfferStatus::Draft),
                6 => Some(OfferStatus::Abandoned),
                7 => Some(OfferStatus::Unknown(r.str("offers.status")?)),
                _ => return Err(r.invalid("offers.status", "unknown tag")),
            };
            offers.push(OfferRef {
                id,
                remote_id,
                status,
            });
        }
        let n = r.count("interviews")?;
        let mut interviews = Vec::with_capacity(n);
        for _ in 0..n {
            let id = r.str("interviews.id")?;
            let remote_id = r.opt_str("interviews.remote_id")?;
            let title = r.opt_str("interviews.title")?;
            let starting_at = r.opt_ts("interviews.starting_at")?;
            interviews.push(InterviewRef {
                id,
                remote_id,
                title,
                starting_at,
                ending_at: r.opt_ts_from("interviews.ending_at", starting_at.as_ref())?,
                canceled: match r.byte("interviews.canceled")? {
                    0 => false,
                    1 => true,
                    _ => return Err(r.invalid("interviews.canceled", "not 0 or 1")),
                },
            });
        }
        if r.pos != r.buf.len() {
            return Err(SnapshotError::TrailingBytes(r.buf.len() - r.pos));
        }
        Ok(Snapshot {
            sequence,
            deleted_at,
            remote_id,
            remote_url,
            job,
            candidate,
            stage,
            outcome,
            known_outcome,
            offers,
            interviews,
            source,
        })
    }

    /// The [`Snapshot::source`] of an encoded snapshot, read without decoding the rest.
    pub fn source_of(bytes: &[u8]) -> Option<RecordDigest> {
        Reader::fields(bytes).ok()?.0
    }

    /// A close upper estimate of the encoded size, so `encode` allocates once.
    fn size_hint(&self) -> usize {
        fn s(v: &Option<String>) -> usize {
            v.as_ref().map_or(1, |s| s.len() + 3)
        }
        let mut n = 32 + DIGEST_LEN + s(&self.remote_id) + s(&self.remote_url);
        if let Some(j) = &self.job {
            n += j.id.len() + s(&j.remote_id) + s(&j.name) + 2;
        }
        if let Some(c) = &self.candidate {
            n += c.id.len() + s(&c.first_name) + s(&c.last_name) + 2;
        }
        if let Some(st) = &self.stage {
            n += st.id.len() + s(&st.remote_id) + s(&st.name) + 12;
        }
        if let Some(Outcome::Unknown(raw)) = &self.outcome {
            n += raw.len() + 2;
        }
        for o in &self.offers {
            n += o.id.len() + s(&o.remote_id) + 12;
        }
        for i in &self.interviews {
            n += i.id.len() + s(&i.remote_id) + s(&i.title) + 24;
        }
        n
    }
}

/// The first two fields of an encoded snapshot: all the store reads of one (for retention
/// and as the last word on re-derived events), without decoding the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The sequence of the application's last event (see [`Snapshot::sequence`]).
    pub sequence: u64,
    /// `remote_deleted_at` while the application is deleted upstream.
    pub deleted_at: Option<Timestamp>,
}

impl Header {
    /// Reads the header of an encoded snapshot; `None` when `bytes` is not a snapshot of
    /// this version (the store then knows nothing of it, and treats it as live).
    pub fn read(bytes: &[u8]) -> Option<Header> {
        let (_, mut r) = Reader::fields(bytes).ok()?;
        let sequence = r.varint("sequence").ok()?;
        let deleted_at = r.opt_ts("deleted_at").ok()?;
        Some(Header {
            sequence,
            deleted_at,
        })
    }
}

impl Snapshot {
    /// What is kept of an application deleted upstream once retention purges its
    /// snapshot: its last sequence and its deletion, nothing else (no job, candidate,
    /// stage, offers or interviews: Kombo anonymises the record by then). Diffed against,
    /// it keeps the sequence going: the record still deleted gives nothing, restored it
    /// gives `application_restored` and then everything it shows as new.
    pub fn tombstone(sequence: u64, deleted_at: Timestamp) -> Snapshot {
        Snapshot {
            sequence,
            deleted_at: Some(deleted_at),
            ..Snapshot::default()
        }
    }
}

/// Truncates a timestamp to whole milliseconds: the precision of snapshots and bodies, so
/// comparisons never see a sub-millisecond difference that cannot be stored.
pub(crate) fn to_millis(ts: Timestamp) -> Timestamp {
    let nanos = ts.nanosecond();
    ts.with_nanosecond(nanos - nanos % 1_000_000).unwrap_or(ts)
}

/// Assigns only when different, reusing the allocation.
pub(crate) fn set_opt(slot: &mut Option<String>, value: Option<&String>) {
    if slot.as_ref() != value {
        match (slot.as_mut(), value) {
            (Some(s), Some(v)) => s.clone_from(v),
            (_, v) => *slot = v.cloned(),
        }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends primitives to the output.
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    /// A required string: as [`Writer::opt_str`], never the null tag.
    fn str(&mut self, s: &str) {
        self.opt_str(Some(s));
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.0.push(STR_NULL),
            Some(s) => match pack_id(s) {
                Some(packed) => {
                    self.0.push(STR_PACKED_ID);
                    self.0.extend_from_slice(&packed);
                }
                None => {
                    self.varint(s.len() as u64 + STR_RAW);
                    self.0.extend_from_slice(s.as_bytes());
                }
            },
        }
    }

    fn opt_ts(&mut self, ts: Option<&Timestamp>) {
        self.opt_ts_from(ts, None);
    }

    /// A timestamp relative to `base` (0 when none): whole seconds take a bit less room.
    fn opt_ts_from(&mut self, ts: Option<&Timestamp>, base: Option<&Timestamp>) {
        match ts {
            None => self.0.push(0),
            Some(ts) => {
                // chrono's range is ±262,000 years, about ±2^53 ms: a difference of two is
                // within ±2^54, its zigzag within 2^55, shifted and + 1 within 2^57.
                let ms = ts.timestamp_millis() - base.map_or(0, |b| b.timestamp_millis());
                let v = if ms % 1000 == 0 {
                    zigzag(ms / 1000) << 1
                } else {
                    (zigzag(ms) << 1) | 1
                };
                self.varint(v + 1);
            }
        }
    }
}

/// `opt_str` tag: null.
const STR_NULL: u8 = 0;
/// `opt_str` tag: a Kombo-style id packed into [`PACKED_ID_LEN`] bytes.
const STR_PACKED_ID: u8 = 1;
/// `opt_str`: a raw string of length `n` is tagged `n + STR_RAW`.
const STR_RAW: u64 = 2;

/// The base58 alphabet Kombo's ids are written in.
const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Kombo ids are 24 base58 characters (e.g. `26vafvWSRmbhNcxJYqjCzuJg`).
const ID_CHARS: usize = 24;
/// Ids are packed by quarters of 6 characters, each a number below 58^6 < 2^36.
const QUARTER_CHARS: usize = 6;
/// Bits of one quarter.
const QUARTER_BITS: u32 = 36;
/// 58^6, the bound of one quarter.
const QUARTER_BOUND: u64 = 58u64.pow(6);
/// Two quarters side by side make 72 bits: 9 bytes.
const HALF_BYTES: usize = 9;
/// A packed id: 4 quarters, 144 bits.
const PACKED_ID_LEN: usize = 2 * HALF_BYTES;

/// Character → base58 digit, 0xff for characters outside the alphabet.
const BASE58_DIGITS: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < BASE58.len() {
        table[BASE58[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Packs a 24-character base58 string (every Kombo id) into 18 bytes instead of 24 + 1;
/// `None` for any other string, which is then written raw. Exactly reversible.
///
/// Layout: the id is cut into four 6-character quarters, each read as a base58 number
/// (< 2^36); quarters 0‖1 and 2‖3 are concatenated bitwise into two 72-bit big-endian
/// halves. Bit operations only: packing and unpacking need no wide division.
fn pack_id(s: &str) -> Option<[u8; PACKED_ID_LEN]> {
    let bytes = s.as_bytes();
    if bytes.len() != ID_CHARS {
        return None;
    }
    let mut quarters = [0u64; 4];
    for (q, chunk) in quarters.iter_mut().zip(bytes.chunks(QUARTER_CHARS)) {
        for &c in chunk {
            let d = BASE58_DIGITS[usize::from(c)];
            if d == 0xff {
                return None;
            }
            *q = *q * 58 + u64::from(d);
        }
    }
    let mut out = [0u8; PACKED_ID_LEN];
    for (half, pair) in out.chunks_mut(HALF_BYTES).zip(quarters.chunks(2)) {
        let v = (u128::from(pair[0]) << QUARTER_BITS) | u128::from(pair[1]);
        half.copy_from_slice(&v.to_be_bytes()[16 - HALF_BYTES..]);
    }
    Some(out)
}

/// Reverses [`pack_id`]; `None` when a quarter is out of range (no encoder writes that).
fn unpack_id(packed: &[u8]) -> Option<String> {
    if packed.len() != PACKED_ID_LEN {
        return None;
    }
    let mut out = [0u8; ID_CHARS];
    let mut chars = out.chunks_mut(QUARTER_CHARS);
    for half in packed.chunks(HALF_BYTES) {
        let mut be = [0u8; 16];
        be[16 - HALF_BYTES..].copy_from_slice(half);
        let v = u128::from_be_bytes(be);
        let mask = (1u128 << QUARTER_BITS) - 1;
        for q in [(v >> QUARTER_BITS) as u64, (v & mask) as u64] {
            if q >= QUARTER_BOUND {
                return None;
            }
            let mut q = q;
            for slot in chars.next()?.iter_mut().rev() {
                *slot = BASE58[(q % 58) as usize];
                q /= 58;
            }
        }
    }
    // Every byte is from the ASCII alphabet.
    String::from_utf8(out.to_vec()).ok()
}

/// Reads primitives, naming the field on every error.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole encoding (after the version byte), for messages.
    base: usize,
}

impl<'a> Reader<'a> {
    /// Reads an encoding's version byte and what comes before the fields (version 2's
    /// digest); returns the digest and a reader at the first field, `sequence`.
    fn fields(bytes: &'a [u8]) -> Result<(Option<RecordDigest>, Reader<'a>), SnapshotError> {
        let (&version, rest) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        let (source, start) = match version {
            SNAPSHOT_VERSION => (None, 1),
            SNAPSHOT_VERSION_WITH_SOURCE => {
                let digest = rest
                    .get(..DIGEST_LEN)
                    .and_then(|d| <[u8; DIGEST_LEN]>::try_from(d).ok())
                    .ok_or(SnapshotError::Truncated {
                        field: "source",
                        offset: 1,
                    })?;
                (Some(RecordDigest(digest)), 1 + DIGEST_LEN)
            }
            other => return Err(SnapshotError::UnsupportedVersion(other)),
        };
        let reader = Reader {
            buf: &bytes[start..],
            pos: 0,
            base: start,
        };
        Ok((source, reader))
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn truncated(&self, field: &'static str) -> SnapshotError {
        SnapshotError::Truncated {
            field,
            offset: self.offset(),
        }
    }

    fn invalid(&self, field: &'static str, reason: &'static str) -> SnapshotError {
        SnapshotError::Invalid {
            field,
            offset: self.offset(),
            reason,
        }
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, SnapshotError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.truncated(field))?;
        self.pos += 1;
        Ok(b)
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, SnapshotError> {
        match self.byte(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => {
                self.pos -= 1;
                Err(self.invalid(field, "presence tag not 0 or 1"))
            }
        }
    }

    fn varint(&mut self, field: &'static str) -> Result<u64, SnapshotError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte(field)?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                self.pos = start;
                return Err(self.invalid(field, "varint overflows 64 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        self.pos = start;
        Err(self.invalid(field, "varint longer than 10 bytes"))
    }

    /// A length or count, checked against the bytes left (so a corrupt count can never
    /// cause a huge allocation).
    fn len(&mut self, field: &'static str, v: u64) -> Result<usize, SnapshotError> {
        let left = (self.buf.len() - self.pos) as u64;
        if v > left {
            return Err(self.truncated(field));
        }
        Ok(v as usize)
    }

    fn count(&mut self, field: &'static str) -> Result<usize, SnapshotError> {
        let v = self.varint(field)?;
        self.len(field, v)
    }

    fn bytes_str(&mut self, field: &'static str, n: usize) -> Result<String, SnapshotError> {
        let start = self.pos;
        let raw = &self.buf[start..start + n];
        let s = std::str::from_utf8(raw).map_err(|_| self.invalid(field, "not UTF-8"))?;
        self.pos += n;
        Ok(s.to_owned())
    }

    fn str(&mut self, field: &'static str) -> Result<String, SnapshotError> {
        let start = self.pos;
        match self.opt_str(field)? {
            Some(s) => Ok(s),
            None => {
                self.pos = start;
                Err(self.invalid(field, "null where a string is required"))
            }
        }
    }

    fn opt_str(&mut self, field: &'static str) -> Result<Option<String>, SnapshotError> {
        let start = self.pos;
        match self.varint(field)? {
            0 => Ok(None),
            1 => {
                let n = self.len(field, PACKED_ID_LEN as u64)?;
                let packed = &self.buf[self.pos..self.pos + n];
                match unpack_id(packed) {
                    Some(s) => {
                        self.pos += n;
                        Ok(Some(s))
                    }
                    None => {
                        self.pos = start;
                        Err(self.invalid(field, "packed id out of range"))
                    }
                }
            }
            v => {
                let n = self.len(field, v - STR_RAW)?;
                self.bytes_str(field, n).map(Some)
            }
        }
    }

    fn opt_ts(&mut self, field: &'static str) -> Result<Option<Timestamp>, SnapshotError> {
        self.opt_ts_from(field, None)
    }

    fn opt_ts_from(
        &mut self,
        field: &'static str,
        base: Option<&Timestamp>,
    ) -> Result<Option<Timestamp>, SnapshotError> {
        let start = self.pos;
        let v = match self.varint(field)? {
            0 => return Ok(None),
            v => v - 1,
        };
        let offset = if v & 1 == 0 {
            unzigzag(v >> 1).checked_mul(1000)
        } else {
            Some(unzigzag(v >> 1))
        };
        let ms = offset.and_then(|o| o.checked_add(base.map_or(0, |b| b.timestamp_millis())));
        match ms.and_then(DateTime::from_timestamp_millis) {
            Some(ts) => Ok(Some(ts)),
            None => {
                self.pos = start;
                Err(self.invalid(field, "timestamp out of range"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(s: &str) -> Option<String> {
        let mut w = Writer(Vec::new());
        w.opt_str(Some(s));
        let mut r = Reader {
            buf: &w.0,
            pos: 0,
            base: 0,
        };
        let back = r.opt_str("s").ok().flatten();
        assert_eq!(r.pos, w.0.len());
        back
    }

    #[test]
    fn kombo_ids_are_packed() {
        for id in [
            "26vafvWSRmbhNcxJYqjCzuJg",
            "111111111111111111111111",
            "zzzzzzzzzzzzzzzzzzzzzzzz",
        ] {
            assert!(pack_id(id).is_some(), "{id}");
            assert_eq!(round_trip(id).as_deref(), Some(id));
        }
        // Not base58 (0, O, I, l) or not 24 characters: raw.
        for other in [
            "0".repeat(24),
            "26vafvWSRmbhNcxJYqjCzuJ".into(),
            "26vafvWSRmbhNcxJYqjCzuJgg".into(),
        ] {
            assert!(pack_id(&other).is_none(), "{other}");
            assert_eq!(round_trip(&other).as_deref(), Some(other.as_str()));
        }
        assert!(unpack_id(&[0xff; PACKED_ID_LEN]).is_none());
    }

    #[test]
    fn the_header_is_read_without_the_rest() {
        let deleted = DateTime::from_timestamp_millis(1_700_000_000_123);
        let full = Snapshot {
            sequence: 300,
            deleted_at: deleted,
            remote_id: Some("r1".into()),
            ..Snapshot::default()
        };
        let cases: [(&str, Vec<u8>, Option<Header>); 5] = [
            (
                "deleted",
                full.encode(),
                Some(Header {
                    sequence: 300,
                    deleted_at: deleted,
                }),
            ),
            (
                "live, no events",
                Snapshot::default().encode(),
                Some(Header {
                    sequence: 0,
                    deleted_at: None,
                }),
            ),
            ("not a snapshot", b"one".to_vec(), None),
            ("empty", Vec::new(), None),
            (
                "cut inside the sequence",
                vec![SNAPSHOT_VERSION, 0x80],
                None,
            ),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(Header::read(&bytes), want, "{name}");
        }
    }

    #[test]
    fn a_source_makes_version_2_and_is_read_without_decoding() {
        let digest = RecordDigest::of(b"{\"id\":\"a\"}");
        let deleted = DateTime::from_timestamp_millis(1_700_000_000_000);
        let without = Snapshot {
            sequence: 5,
            deleted_at: deleted,
            remote_id: Some("r1".into()),
            ..Snapshot::default()
        };
        let with = Snapshot {
            source: Some(digest),
            ..without.clone()
        };
        let (v1, v2) = (without.encode(), with.encode());
        assert_eq!(v1[0], SNAPSHOT_VERSION);
        assert_eq!(v2[0], SNAPSHOT_VERSION_WITH_SOURCE);
        assert_eq!(v2.len(), v1.len() + DIGEST_LEN);
        assert_eq!(Snapshot::decode(&v2), Ok(with));
        assert_eq!(Snapshot::decode(&v1), Ok(without));
        assert_eq!(Snapshot::source_of(&v2), Some(digest));
        assert_eq!(Snapshot::source_of(&v1), None);
        let header = Some(Header {
            sequence: 5,
            deleted_at: deleted,
        });
        assert_eq!(Header::read(&v2), header);
        assert_eq!(Header::read(&v1), header);
        // Cut inside the digest: an error naming it, never a panic.
        let cut = &v2[..1 + DIGEST_LEN - 1];
        assert!(matches!(
            Snapshot::decode(cut),
            Err(SnapshotError::Truncated {
                field: "source",
                ..
            })
        ));
        assert_eq!(Snapshot::source_of(cut), None);
        assert_eq!(Header::read(cut), None);
        assert_eq!(
            Snapshot::decode(&[3, 0]),
            Err(SnapshotError::UnsupportedVersion(3))
        );
    }

    #[test]
    fn a_tombstone_keeps_only_the_sequence_and_the_deletion() {
        let at = DateTime::from_timestamp_millis(1_700_000_000_000).unwrap_or_default();
        let bytes = Snapshot::tombstone(7, at).encode();
        assert!(bytes.len() < 20, "{} bytes", bytes.len());
        let back = Snapshot::decode(&bytes).expect("decodes");
        assert_eq!(back, Snapshot::tombstone(7, at));
        assert_eq!(back.candidate, None);
        assert_eq!(
            Header::read(&bytes),
            Some(Header {
                sequence: 7,
                deleted_at: Some(at)
            })
        );
    }

    proptest! {
        #[test]
        fn strings_round_trip(s in "\\PC{0,30}|[1-9A-HJ-NP-Za-km-z]{24}") {
            prop_assert_eq!(round_trip(&s), Some(s));
        }

        #[test]
        fn timestamps_round_trip(ms in -8_000_000_000_000_000i64..8_000_000_000_000_000, base in proptest::option::of(-8_000_000_000_000_000i64..8_000_000_000_000_000), whole in any::<bool>()) {
            let ms = if whole { ms - ms % 1000 } else { ms };
            let ts = DateTime::from_timestamp_millis(ms);
            let base = base.and_then(DateTime::from_timestamp_millis);
            prop_assume!(ts.is_some());
            let mut w = Writer(Vec::new());
            w.opt_ts_from(ts.as_ref(), base.as_ref());
            let mut r = Reader { buf: &w.0, pos: 0, base: 0 };
            prop_assert_eq!(r.opt_ts_from("t", base.as_ref()), Ok(ts));
        }
    }
}
