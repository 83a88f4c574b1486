//! Standard Webhooks signatures (standardwebhooks.com): signing for delivery, verifying for
//! receivers.
//!
//! The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the signature is
//! `v1,` + base64 (standard alphabet, padded) of HMAC-SHA256 over it, keyed with the
//! base64-decoded secret after `whsec_`. With several keys (rotation) the
//! `webhook-signature` header carries one such entry per key, separated by spaces, and a
//! receiver accepts the message if any entry matches any of its keys.
//!
//! Pure: no clock, no I/O. Callers pass `now` to [`verify`].

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::digest::{CtOutput, Output};
use hmac::{Hmac, KeyInit as _, Mac as _};
use http::HeaderMap;
use http::header::{HeaderValue, InvalidHeaderValue};
use sha2::Sha256;

use crate::config::{SecretFormatError, decode_webhook_secret};
use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the message id, the same on every attempt: receivers dedupe on it.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the unix seconds of this attempt.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How far a timestamp may be from the receiver's clock, either way, by default (the spec's
/// and its libraries' value).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The version prefix of the only signature scheme defined (symmetric HMAC-SHA256).
const VERSION_PREFIX: &str = "v1,";
/// Length of base64 (padded) of a 32-byte tag.
const TAG_BASE64_LEN: usize = 44;

/// One HMAC key, ready to sign with. `Debug` never prints the key.
///
/// Holds the HMAC state already keyed (the inner and outer pads hashed once), so signing
/// with it costs only the hashing of the message itself.
#[derive(Clone)]
pub struct SigningKey {
    /// HMAC-SHA256 keyed with the secret; cloned for each message.
    mac: HmacSha256,
}

impl SigningKey {
    /// The key of a Standard Webhooks secret: `whsec_` + base64 (see
    /// [`decode_webhook_secret`]).
    pub fn from_secret(secret: &Secret) -> Result<SigningKey, SecretFormatError> {
        decode_webhook_secret(secret).map(SigningKey::from_bytes)
    }

    /// A key from raw bytes, of any length (an empty key is valid HMAC but a poor secret;
    /// config validation refuses it).
    pub fn from_bytes(bytes: Vec<u8>) -> SigningKey {
        // Cannot panic: HMAC accepts keys of any length (longer ones are hashed first), and
        // hmac's own `KeyInit::new` relies on the same `expect`.
        let mac = HmacSha256::new_from_slice(&bytes).expect("HMAC accepts keys of any length");
        SigningKey { mac }
    }

    /// HMAC of `{msg_id}.{timestamp}.{body}`, fed piecewise: the content is never
    /// concatenated.
    fn tag(&self, msg_id: &str, timestamp: &[u8], body: &[u8]) -> CtOutput<HmacSha256> {
        let mut mac = self.mac.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp);
        mac.update(b".");
        mac.update(body);
        mac.finalize()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

/// The three Standard Webhooks headers of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the event id, stable across retries.
    pub id: String,
    /// `webhook-timestamp`: unix seconds of this attempt.
    pub timestamp: i64,
    /// `webhook-signature`: one `v1,<base64>` per key, space-separated.
    pub signature: String,
}

impl SignedHeaders {
    /// Inserts the three headers into `headers`, replacing any previous values. Fails only
    /// if the id holds bytes a header cannot carry (control characters); event ids never do.
    pub fn write_to(&self, headers: &mut HeaderMap) -> Result<(), InvalidHeaderValue> {
        let id = HeaderValue::from_str(&self.id)?;
        let timestamp = HeaderValue::from(self.timestamp);
        let signature = HeaderValue::from_str(&self.signature)?;
        headers.insert(HEADER_ID, id);
        headers.insert(HEADER_TIMESTAMP, timestamp);
        headers.insert(HEADER_SIGNATURE, signature);
        Ok(())
    }
}

/// The `webhook-signature` value: `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`
/// for each key, in order, separated by single spaces. No keys: an empty string (config
/// validation guarantees every subscriber has at least one secret).
pub fn sign(msg_id: &str, timestamp: i64, body: &[u8], keys: &[SigningKey]) -> String {
    let mut digits = [0u8; 20];
    let timestamp = decimal(timestamp, &mut digits);
    let mut out = String::with_capacity(keys.len() * (VERSION_PREFIX.len() + TAG_BASE64_LEN + 1));
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(VERSION_PREFIX);
        STANDARD.encode_string(key.tag(msg_id, timestamp, body).as_bytes(), &mut out);
    }
    out
}

/// The headers of one attempt: [`sign`] plus the id and timestamp it covers.
pub fn signed_headers(
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    keys: &[SigningKey],
) -> SignedHeaders {
    SignedHeaders {
        id: msg_id.to_owned(),
        timestamp,
        signature: sign(msg_id, timestamp, body, keys),
    }
}

/// Why a webhook was not accepted. Never carries key material or signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required header is absent (from [`verify_headers`]).
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    /// A header holds bytes that are not visible ASCII (from [`verify_headers`]).
    #[error("header `{0}` is not visible ASCII")]
    InvalidHeader(&'static str),
    /// `webhook-timestamp` is not an integer number of seconds.
    #[error("`webhook-timestamp` is not an integer (unix seconds)")]
    BadTimestamp,
    /// The timestamp is further in the past than the tolerance: possibly a replay.
    #[error("`webhook-timestamp` is too old (outside the tolerance)")]
    TooOld,
    /// The timestamp is further in the future than the tolerance.
    #[error("`webhook-timestamp` is too far in the future (outside the tolerance)")]
    TooNew,
    /// `webhook-signature` holds no `v1,` entry at all (empty, or only unknown versions).
    #[error("`webhook-signature` holds no `v1,` signature")]
    NoSignature,
    /// No `v1,` entry matches any key: wrong secret, or the id, timestamp or body changed.
    #[error("no signature in `webhook-signature` matches")]
    NoMatchingSignature,
}

/// Receiver side: accepts the message if `timestamp` is within `tolerance` of `now` (both
/// directions, bounds inclusive) and at least one `v1,` entry of the space-separated
/// `signature_header` is the signature of `{msg_id}.{timestamp}.{body}` under one of `keys`.
///
/// Entries of other versions (`v1a,…`) and malformed entries are ignored. Tags are compared
/// in constant time. The timestamp is checked first, then the signatures; like the
/// reference libraries, the signed timestamp is the parsed integer written in decimal.
pub fn verify(
    msg_id: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    keys: &[SigningKey],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.saturating_sub(ts) > tolerance {
        return Err(VerifyError::TooOld);
    }
    if ts.saturating_sub(now) > tolerance {
        return Err(VerifyError::TooNew);
    }

    let entries = || {
        signature_header
            .split(' ')
            .filter_map(|entry| entry.strip_prefix(VERSION_PREFIX))
    };
    if entries().next().is_none() {
        return Err(VerifyError::NoSignature);
    }

    let mut digits = [0u8; 20];
    let ts = decimal(ts, &mut digits);
    for key in keys {
        let expected = key.tag(msg_id, ts, body);
        if entries()
            .filter_map(decode_tag)
            .any(|candidate| candidate == expected)
        {
            return Ok(());
        }
    }
    Err(VerifyError::NoMatchingSignature)
}

/// [`verify`] reading `webhook-id`, `webhook-timestamp` and `webhook-signature` from
/// `headers` (the first value of each).
pub fn verify_headers(
    headers: &HeaderMap,
    body: &[u8],
    keys: &[SigningKey],
    now: i64,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let header = |name: &'static str| {
        headers
            .get(name)
            .ok_or(VerifyError::MissingHeader(name))?
            .to_str()
            .map_err(|_| VerifyError::InvalidHeader(name))
    };
    let id = header(HEADER_ID)?;
    let timestamp = header(HEADER_TIMESTAMP)?;
    let signature = header(HEADER_SIGNATURE)?;
    verify(id, timestamp, signature, body, keys, now, tolerance)
}

/// The tag of one `v1,` entry (after the prefix), if it is canonical padded base64 of
/// exactly 32 bytes.
fn decode_tag(encoded: &str) -> Option<CtOutput<HmacSha256>> {
    if encoded.len() != TAG_BASE64_LEN {
        return None;
    }
    let mut buf = [0u8; 36];
    let n = STANDARD.decode_slice(encoded, &mut buf).ok()?;
    let bytes = buf.get(..n)?;
    Output::<HmacSha256>::try_from(bytes)
        .ok()
        .map(CtOutput::new)
}

/// `n` in decimal ASCII, written into `buf` without allocating (20 bytes fit `i64::MIN`).
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut magnitude = n.unsigned_abs();
    let mut start = buf.len();
    loop {
        start -= 1;
        // `magnitude % 10` < 10, so the cast cannot truncate.
        buf[start] = b'0' + (magnitude % 10) as u8;
        magnitude /= 10;
        if magnitude == 0 {
            break;
        }
    }
    if n < 0 {
        start -= 1;
        buf[start] = b'-';
    }
    &buf[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_614_265_330;

    fn key(secret: &str) -> SigningKey {
        SigningKey::from_secret(&Secret::new(secret)).expect("test secret decodes")
    }

    /// Published vectors: (secret, msg_id, timestamp, body, expected `webhook-signature`).
    /// - Standard Webhooks repo, `libraries/go/webhook_test.go` (`TestWebhookSign`), also in
    ///   Svix's docs: the spec's reference vector.
    /// - Standard Webhooks repo, `libraries/rust/src/lib.rs` (`test_sign`), shipped in the
    ///   `standardwebhooks` 1.0.1 crate.
    const VECTORS: &[(&str, &str, i64, &[u8], &str)] = &[
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];

    #[test]
    fn signs_the_published_vectors() {
        for &(secret, id, ts, body, expected) in VECTORS {
            assert_eq!(sign(id, ts, body, &[key(secret)]), expected, "{id}");
            let headers = signed_headers(id, ts, body, &[key(secret)]);
            assert_eq!(
                headers,
                SignedHeaders {
                    id: id.to_owned(),
                    timestamp: ts,
                    signature: expected.to_owned()
                }
            );
        }
    }

    #[test]
    fn verifies_the_published_vectors() {
        for &(secret, id, ts, body, signature) in VECTORS {
            let ts_str = ts.to_string();
            let keys = [key(secret)];
            assert_eq!(
                verify(id, &ts_str, signature, body, &keys, ts, DEFAULT_TOLERANCE),
                Ok(()),
                "{id}"
            );
        }
    }

    /// The `standardwebhooks` crate's own multi-signature tests: three foreign `v1`
    /// signatures around the valid one verify; without the valid one they do not.
    #[test]
    fn crate_multi_signature_vectors() {
        let (secret, id, ts, body, valid) = VECTORS[1];
        let foreign = [
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ=",
            "v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=",
            "v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=",
        ];
        let keys = [key(secret)];
        let ts_str = ts.to_string();
        let with = format!("{} {} {valid} {}", foreign[0], foreign[1], foreign[2]);
        let without = foreign.join(" ");
        let check = |header: &str| verify(id, &ts_str, header, body, &keys, ts, DEFAULT_TOLERANCE);
        assert_eq!(check(&with), Ok(()));
        assert_eq!(check(&without), Err(VerifyError::NoMatchingSignature));
        // The crate's `test_no_verify` signature, and its partial signatures.
        assert_eq!(
            check("v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU="),
            Err(VerifyError::NoMatchingSignature)
        );
        assert_eq!(check("v1,"), Err(VerifyError::NoMatchingSignature));
        assert_eq!(check(&valid[..8]), Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn rotation_signs_once_per_key_in_order() {
        let (old, new) = (key(VECTORS[0].0), key(VECTORS[1].0));
        let (id, body) = ("evt_1", br#"{"type":"rejected"}"#.as_slice());
        let both = sign(id, NOW, body, &[old.clone(), new.clone()]);
        let entries: Vec<&str> = both.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0], sign(id, NOW, body, std::slice::from_ref(&old)));
        assert_eq!(entries[1], sign(id, NOW, body, std::slice::from_ref(&new)));
        let ts = NOW.to_string();
        for k in [old, new] {
            assert_eq!(
                verify(id, &ts, &both, body, &[k], NOW, DEFAULT_TOLERANCE),
                Ok(())
            );
        }
        assert_eq!(sign(id, NOW, body, &[]), "");
    }

    /// One `verify` call: the spec vector, with one thing changed.
    struct Case {
        name: &'static str,
        id: &'static str,
        timestamp: String,
        header: String,
        body: &'static [u8],
        keys: Vec<SigningKey>,
        now: i64,
        expected: Result<(), VerifyError>,
    }

    #[test]
    fn verify_table() {
        use VerifyError::*;
        let (secret, id, ts, body, sig) = VECTORS[0];
        let tol = 300;
        let other = || SigningKey::from_bytes(b"another key".to_vec());
        let base = || Case {
            name: "valid",
            id,
            timestamp: ts.to_string(),
            header: sig.to_owned(),
            body,
            keys: vec![key(secret)],
            now: ts,
            expected: Ok(()),
        };
        let tag = &sig[3..];
        let cases = [
            base(),
            Case {
                name: "valid at the old edge",
                now: ts + tol,
                ..base()
            },
            Case {
                name: "valid at the new edge",
                now: ts - tol,
                ..base()
            },
            Case {
                name: "unknown version before a valid v1",
                header: format!("v1a,{tag} {sig}"),
                ..base()
            },
            Case {
                name: "doubled spaces",
                header: format!("  {sig}  "),
                ..base()
            },
            Case {
                name: "the second key matches",
                keys: vec![other(), key(secret)],
                ..base()
            },
            Case {
                name: "tampered body",
                body: br#"{"test": 2432232315}"#,
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "tampered id",
                id: "msg_p5jXN8AQM9LWM0D4loKWxJel",
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "tampered timestamp",
                timestamp: (ts + 1).to_string(),
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "tampered tag",
                header: sig.replacen('g', "h", 1),
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "wrong key",
                keys: vec![other()],
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "no keys",
                keys: vec![],
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "too old",
                now: ts + tol + 1,
                expected: Err(TooOld),
                ..base()
            },
            Case {
                name: "too new",
                now: ts - tol - 1,
                expected: Err(TooNew),
                ..base()
            },
            Case {
                name: "timestamp not a number",
                timestamp: "soon".into(),
                expected: Err(BadTimestamp),
                ..base()
            },
            Case {
                name: "timestamp empty",
                timestamp: "".into(),
                expected: Err(BadTimestamp),
                ..base()
            },
            Case {
                name: "timestamp fractional",
                timestamp: format!("{ts}.5"),
                expected: Err(BadTimestamp),
                ..base()
            },
            Case {
                name: "timestamp with spaces",
                timestamp: format!(" {ts}"),
                expected: Err(BadTimestamp),
                ..base()
            },
            Case {
                name: "timestamp overflows i64",
                timestamp: "99999999999999999999".into(),
                expected: Err(BadTimestamp),
                ..base()
            },
            Case {
                name: "timestamp i64::MIN, now i64::MAX",
                timestamp: i64::MIN.to_string(),
                now: i64::MAX,
                expected: Err(TooOld),
                ..base()
            },
            Case {
                name: "timestamp i64::MAX, now i64::MIN",
                timestamp: i64::MAX.to_string(),
                now: i64::MIN,
                expected: Err(TooNew),
                ..base()
            },
            Case {
                name: "empty header",
                header: "".into(),
                expected: Err(NoSignature),
                ..base()
            },
            Case {
                name: "only spaces",
                header: "   ".into(),
                expected: Err(NoSignature),
                ..base()
            },
            Case {
                name: "only an unknown version",
                header: format!("v1a,{tag} v2,{tag}"),
                expected: Err(NoSignature),
                ..base()
            },
            Case {
                name: "no comma",
                header: "v1".into(),
                expected: Err(NoSignature),
                ..base()
            },
            Case {
                name: "uppercase version",
                header: format!("V1,{tag}"),
                expected: Err(NoSignature),
                ..base()
            },
            Case {
                name: "comma-separated instead of spaces",
                header: format!("v1,AAAA,{sig}"),
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "not base64",
                header: format!("v1,{}", "!".repeat(44)),
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "unpadded",
                header: sig.trim_end_matches('=').to_owned(),
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "truncated tag",
                header: "v1,AAAA".into(),
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "bare v1,",
                header: "v1,".into(),
                expected: Err(NoMatchingSignature),
                ..base()
            },
            Case {
                name: "multibyte garbage",
                header: format!("v1,{}", "é".repeat(22)),
                expected: Err(NoMatchingSignature),
                ..base()
            },
        ];
        for case in cases {
            let got = verify(
                case.id,
                &case.timestamp,
                &case.header,
                case.body,
                &case.keys,
                case.now,
                DEFAULT_TOLERANCE,
            );
            assert_eq!(got, case.expected, "{}", case.name);
        }
    }

    #[test]
    fn tolerance_is_configurable() {
        let (secret, id, ts, body, sig) = VECTORS[0];
        let keys = [key(secret)];
        let ts_str = ts.to_string();
        let zero = Duration::ZERO;
        assert_eq!(verify(id, &ts_str, sig, body, &keys, ts, zero), Ok(()));
        assert_eq!(
            verify(id, &ts_str, sig, body, &keys, ts + 1, zero),
            Err(VerifyError::TooOld)
        );
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(verify(id, &ts_str, sig, body, &keys, 0, huge), Ok(()));
    }

    #[test]
    fn verify_headers_reads_the_three_headers() {
        let (secret, id, ts, body, _) = VECTORS[0];
        let keys = [key(secret)];
        let mut headers = HeaderMap::new();
        signed_headers(id, ts, body, &keys)
            .write_to(&mut headers)
            .expect("ascii headers");
        let check = |h: &HeaderMap| verify_headers(h, body, &keys, ts, DEFAULT_TOLERANCE);
        assert_eq!(check(&headers), Ok(()));

        for name in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let mut missing = headers.clone();
            missing.remove(name);
            assert_eq!(check(&missing), Err(VerifyError::MissingHeader(name)));

            let mut invalid = headers.clone();
            let value = HeaderValue::from_bytes(b"caf\xc3\xa9").expect("opaque bytes are allowed");
            invalid.insert(name, value);
            assert_eq!(check(&invalid), Err(VerifyError::InvalidHeader(name)));
        }
    }

    #[test]
    fn write_to_refuses_ids_a_header_cannot_carry() {
        let headers = signed_headers("evt\n1", NOW, b"{}", &[key(VECTORS[0].0)]);
        assert!(headers.write_to(&mut HeaderMap::new()).is_err());
    }

    #[test]
    fn from_secret_reports_bad_secrets_without_echoing_them() {
        for (secret, expected) in [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SecretFormatError::MissingPrefix,
            ),
            ("whsec_not base64!", SecretFormatError::NotBase64),
            ("whsec_", SecretFormatError::Empty),
        ] {
            let err = SigningKey::from_secret(&Secret::new(secret)).map(|_| ());
            assert_eq!(err, Err(expected));
            let body = secret.trim_start_matches("whsec_");
            assert!(body.is_empty() || !expected.to_string().contains(body));
        }
    }

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = SigningKey::from_bytes(b"super-secret-key-bytes".to_vec());
        let shown = format!("{k:?} {:?}", std::slice::from_ref(&k));
        assert!(!shown.contains("super"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn long_keys_are_hashed_not_refused() {
        let long = SigningKey::from_bytes(vec![7; 1000]);
        let sig = sign("evt_1", NOW, b"{}", std::slice::from_ref(&long));
        let ts = NOW.to_string();
        assert_eq!(
            verify("evt_1", &ts, &sig, b"{}", &[long], NOW, DEFAULT_TOLERANCE),
            Ok(())
        );
    }

    proptest::proptest! {
        #[test]
        fn decimal_matches_to_string(n: i64) {
            let mut buf = [0u8; 20];
            let expected = n.to_string();
            proptest::prop_assert_eq!(decimal(n, &mut buf), expected.as_bytes());
        }

        #[test]
        fn sign_then_verify_round_trips(
            id in "[ -~]{0,40}",
            ts: i64,
            body: Vec<u8>,
            key_bytes: Vec<u8>,
        ) {
            let keys = [SigningKey::from_bytes(key_bytes)];
            let header = sign(&id, ts, &body, &keys);
            let ts_str = ts.to_string();
            proptest::prop_assert_eq!(verify(&id, &ts_str, &header, &body, &keys, ts, Duration::ZERO), Ok(()));
        }

        #[test]
        fn verify_never_panics(
            id: String,
            ts: String,
            header: String,
            body: Vec<u8>,
            now: i64,
            tol: u64,
        ) {
            let keys = [SigningKey::from_bytes(b"k".to_vec())];
            let _ = verify(&id, &ts, &header, &body, &keys, now, Duration::from_secs(tol));
        }
    }
}
