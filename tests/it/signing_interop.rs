//! hirehook's signatures against an independent implementation, the official
//! `standardwebhooks` crate: it accepts what hirehook signs, and hirehook accepts what it
//! signs, for several ids, bodies, timestamps, key lengths and one or two keys (rotation).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hirehook::deliver::sign::{
    DEFAULT_TOLERANCE, SigningKey, VerifyError, sign, signed_headers, verify, verify_headers,
};
use hirehook::secret::Secret;
use http::HeaderMap;
use standardwebhooks::Webhook;

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("fits i64")
}

/// `whsec_` secrets (padded base64, as the crate's `Webhook::new` requires) of several
/// lengths, including the spec's 24-byte test key.
fn secrets() -> Vec<String> {
    let mut out = vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned()];
    for len in [1usize, 16, 32, 64, 65, 200] {
        let key: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
        out.push(format!("whsec_{}", STANDARD.encode(key)));
    }
    out
}

fn key(secret: &str) -> SigningKey {
    SigningKey::from_secret(&Secret::new(secret)).expect("secret decodes")
}

fn webhook(secret: &str) -> Webhook {
    Webhook::new(secret).expect("the crate accepts the secret")
}

const IDS: &[&str] = &[
    "evt_0123456789abcdef0123456789abcdef",
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "evt_with.dots.in.it",
    "x",
];

fn bodies() -> Vec<Vec<u8>> {
    vec![
        br#"{"type":"stage_changed","timestamp":"2026-11-29T10:00:00.123Z","data":{"event_id":"evt_1","sequence":7}}"#.to_vec(),
        br#"{"test": 2432232314}"#.to_vec(),
        "{\"name\":\"Zoë Ångström — 履歴書 ✓\"}".as_bytes().to_vec(),
        b"{}".to_vec(),
        Vec::new(),
        format!("{{\"pad\":\"{}\"}}", "a".repeat(100_000)).into_bytes(),
    ]
}

#[test]
fn standardwebhooks_accepts_what_hirehook_signs() {
    let secrets = secrets();
    let now = now();
    let mut checked = 0;
    for (i, secret) in secrets.iter().enumerate() {
        // One key, and two keys (rotation) with this secret first or second.
        let other = &secrets[(i + 1) % secrets.len()];
        let key_sets: [Vec<&String>; 3] = [vec![secret], vec![secret, other], vec![other, secret]];
        for keys in key_sets {
            let signing: Vec<SigningKey> = keys.iter().map(|s| key(s)).collect();
            for id in IDS {
                for body in bodies() {
                    for ts in [now, now - 120, now + 120] {
                        let mut headers = HeaderMap::new();
                        signed_headers(id, ts, &body, &signing)
                            .write_to(&mut headers)
                            .expect("valid header values");
                        for s in &keys {
                            let result = webhook(s).verify(&body, &headers);
                            assert!(
                                result.is_ok(),
                                "{id} ts={ts} keys={}: {result:?}",
                                keys.len()
                            );
                            checked += 1;
                        }
                        // And hirehook's own receiver side agrees.
                        for s in &keys {
                            assert_eq!(
                                verify_headers(&headers, &body, &[key(s)], now, DEFAULT_TOLERANCE),
                                Ok(())
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn standardwebhooks_rejects_what_hirehook_signed_for_another_body_or_key() {
    let secrets = secrets();
    let now = now();
    let body = br#"{"a":1}"#;
    let mut headers = HeaderMap::new();
    signed_headers("evt_1", now, body, &[key(&secrets[0])])
        .write_to(&mut headers)
        .expect("valid header values");
    assert!(webhook(&secrets[0]).verify(body, &headers).is_ok());
    assert!(
        webhook(&secrets[0])
            .verify(br#"{"a":2}"#, &headers)
            .is_err()
    );
    assert!(webhook(&secrets[1]).verify(body, &headers).is_err());
}

#[test]
fn hirehook_accepts_what_standardwebhooks_signs() {
    let secrets = secrets();
    let now = now();
    for (i, secret) in secrets.iter().enumerate() {
        let other = &secrets[(i + 1) % secrets.len()];
        for id in IDS {
            for body in bodies() {
                for ts in [now, now - 299, now + 299] {
                    let ours = sign(id, ts, &body, &[key(secret)]);
                    let theirs = webhook(secret).sign(id, ts, &body).expect("UTF-8 body");
                    assert_eq!(ours, theirs, "{id} ts={ts}");

                    let ts_str = ts.to_string();
                    let check = |header: &str, keys: &[SigningKey]| {
                        verify(id, &ts_str, header, &body, keys, now, DEFAULT_TOLERANCE)
                    };
                    assert_eq!(check(&theirs, &[key(secret)]), Ok(()));
                    assert_eq!(
                        check(&theirs, &[key(other)]),
                        Err(VerifyError::NoMatchingSignature)
                    );
                    // A rotating sender: both signatures in one header; either key verifies.
                    let second = webhook(other).sign(id, ts, &body).expect("UTF-8 body");
                    let both = format!("{theirs} {second}");
                    assert_eq!(check(&both, &[key(secret)]), Ok(()));
                    assert_eq!(check(&both, &[key(other)]), Ok(()));
                }
            }
        }
    }
}

#[test]
fn both_sides_refuse_stale_timestamps() {
    let secret = &secrets()[0];
    let now = now();
    let body = b"{}";
    for ts in [now - 301, now + 301] {
        let mut headers = HeaderMap::new();
        signed_headers("evt_1", ts, body, &[key(secret)])
            .write_to(&mut headers)
            .expect("valid header values");
        assert!(webhook(secret).verify(body, &headers).is_err(), "{ts}");
        assert!(verify_headers(&headers, body, &[key(secret)], now, DEFAULT_TOLERANCE).is_err());
    }
}
