//! Kombo-style ids: 24 base58 characters, deterministic from the seed, and decodable.
//!
//! An id is derived from `(kind, n)` where `n` is the record's position in its world's
//! table. The pair is packed into 64 bits, scrambled by a keyed Feistel permutation (a
//! bijection), written as 11 base58 digits, and followed by 13 checksum-like characters
//! derived from the same value. The result looks random (`26vafvWSRmbhNcxJYqjCzuJg`), yet
//! decoding an id back to its table position is O(1) with no id → index map: a million
//! applications cost no memory for lookups.

use super::rng::mix64;

/// Bitcoin's base58 alphabet (no `0`, `O`, `I`, `l`).
const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Length of every Kombo id.
pub const ID_LEN: usize = 24;

/// Base58 digits needed for any u64 (58^11 > 2^64).
const HEAD_LEN: usize = 11;

/// Feistel rounds: enough to make consecutive positions look unrelated.
const ROUNDS: u64 = 4;

/// What an id names; part of the encoded value, so ids of different kinds never collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum IdKind {
    Integration = 1,
    Job = 2,
    Stage = 3,
    Candidate = 4,
    Application = 5,
    Interview = 6,
    Offer = 7,
    Tag = 8,
    IntegrationField = 9,
}

/// Encodes and decodes the ids of one world (one key per integration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCodec {
    /// The permutation key, derived from the seed and the integration.
    key: u64,
}

impl IdCodec {
    /// A codec keyed by `key`.
    pub fn new(key: u64) -> Self {
        Self { key }
    }

    /// The id of record `n` of `kind`.
    pub fn encode(&self, kind: IdKind, n: u32) -> String {
        let value = self.permute((u64::from(kind as u8) << 32) | u64::from(n));
        let mut out = [0u8; ID_LEN];
        let mut v = value;
        for slot in out[..HEAD_LEN].iter_mut().rev() {
            *slot = ALPHABET[(v % 58) as usize];
            v /= 58;
        }
        for (i, slot) in out[HEAD_LEN..].iter_mut().enumerate() {
            let h = mix64(value ^ self.key.rotate_left(i as u32 + 1));
            *slot = ALPHABET[(h % 58) as usize];
        }
        // Every byte comes from ALPHABET, which is ASCII.
        out.iter().map(|&b| b as char).collect()
    }

    /// The position `n` encoded in `id`, if `id` is a well-formed id of `kind` from this
    /// codec. Anything else (garbage, another world's id, another kind) is `None`.
    pub fn decode(&self, kind: IdKind, id: &str) -> Option<u32> {
        let bytes = id.as_bytes();
        if bytes.len() != ID_LEN {
            return None;
        }
        let mut value: u64 = 0;
        for &b in &bytes[..HEAD_LEN] {
            let digit = ALPHABET.iter().position(|&a| a == b)? as u64;
            value = value.checked_mul(58)?.checked_add(digit)?;
        }
        let plain = self.unpermute(value);
        if plain >> 32 != u64::from(kind as u8) {
            return None;
        }
        let n = plain as u32;
        (self.encode(kind, n) == id).then_some(n)
    }

    fn round_key(&self, round: u64) -> u64 {
        mix64(self.key ^ round.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    fn permute(&self, x: u64) -> u64 {
        let (mut l, mut r) = ((x >> 32) as u32, x as u32);
        for round in 0..ROUNDS {
            let f = mix64(u64::from(r) ^ self.round_key(round)) as u32;
            (l, r) = (r, l ^ f);
        }
        (u64::from(l) << 32) | u64::from(r)
    }

    fn unpermute(&self, y: u64) -> u64 {
        let (mut l, mut r) = ((y >> 32) as u32, y as u32);
        for round in (0..ROUNDS).rev() {
            let f = mix64(u64::from(l) ^ self.round_key(round)) as u32;
            (l, r) = (r ^ f, l);
        }
        (u64::from(l) << 32) | u64::from(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_look_like_kombo_ids() {
        let codec = IdCodec::new(42);
        let mut seen = std::collections::HashSet::new();
        for n in (0..2_000).chain([u32::MAX - 1, 1_000_000]) {
            let id = codec.encode(IdKind::Application, n);
            assert_eq!(id.len(), ID_LEN);
            assert!(id.bytes().all(|b| ALPHABET.contains(&b)), "{id}");
            assert_eq!(codec.decode(IdKind::Application, &id), Some(n));
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn decode_rejects_foreign_ids() {
        let codec = IdCodec::new(42);
        let other = IdCodec::new(43);
        let id = codec.encode(IdKind::Job, 5);
        let cases: &[(&str, IdKind)] = &[
            (&id, IdKind::Stage),
            ("", IdKind::Job),
            ("not an id", IdKind::Job),
            ("000000000000000000000000", IdKind::Job),
            ("zzzzzzzzzzzzzzzzzzzzzzzz", IdKind::Job),
            ("26vafvWSRmbhNcxJYqjCzuJg", IdKind::Job),
            ("ééééééééééééé", IdKind::Job),
        ];
        for (input, kind) in cases {
            assert_eq!(codec.decode(*kind, input), None, "{input}");
        }
        assert_eq!(other.decode(IdKind::Job, &id), None);
        let mut tampered = id.clone().into_bytes();
        tampered[20] = if tampered[20] == b'a' { b'b' } else { b'a' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(codec.decode(IdKind::Job, &tampered), None);
    }
}
