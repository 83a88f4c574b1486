//! Opaque pagination cursors.
//!
//! A cursor is base64url (no padding) of a small JSON object: the internal position where
//! the next page starts scanning, the page number it fetches (page 1 has no cursor; fault
//! scripts count pages with it), and the fingerprint of the filters it was issued for.
//! Clients must treat it as opaque; a cursor that is not one of ours, or that is sent with
//! different filters, is a 400 `PLATFORM.INPUT_INVALID`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::query::InputError;

/// Where a listing continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Internal position (application table index) where scanning resumes.
    pub position: u32,
    /// 1-based number of the page this cursor fetches within its listing.
    pub page: u32,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    /// Format version, so a future format can be told apart.
    v: u8,
    p: u32,
    n: u32,
    /// Fingerprint of the filters (see [`super::query::Filters::fingerprint`]).
    f: String,
}

impl Cursor {
    /// The opaque string for this cursor under filters with `fingerprint`.
    pub fn encode(&self, fingerprint: &str) -> String {
        let wire = Wire {
            v: 1,
            p: self.position,
            n: self.page,
            f: fingerprint.to_owned(),
        };
        // Serializing a struct of integers and a string into a Vec cannot fail.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Reads a cursor, which must have been issued for filters with `fingerprint`.
    pub fn decode(raw: &str, fingerprint: &str) -> Result<Cursor, InputError> {
        let invalid = || InputError(format!("cursor {raw:?} is not a valid cursor"));
        let bytes = URL_SAFE_NO_PAD.decode(raw.trim()).map_err(|_| invalid())?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        if wire.v != 1 || wire.n < 2 {
            return Err(invalid());
        }
        if wire.f != fingerprint {
            return Err(InputError(
                "cursor was issued for different filters: send the same filters with every \
                 cursor request"
                    .into(),
            ));
        }
        Ok(Cursor {
            position: wire.p,
            page: wire.n,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = Cursor {
            position: 12_345,
            page: 7,
        };
        let s = c.encode("abcd");
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(Cursor::decode(&s, "abcd"), Ok(c));
    }

    #[test]
    fn tampering_is_rejected() {
        let good = Cursor {
            position: 10,
            page: 2,
        }
        .encode("abcd");
        let forged_page1 = URL_SAFE_NO_PAD.encode(br#"{"v":1,"p":0,"n":1,"f":"abcd"}"#);
        let other_version = URL_SAFE_NO_PAD.encode(br#"{"v":2,"p":0,"n":2,"f":"abcd"}"#);
        let cases = [
            ("", "abcd"),
            ("garbage!", "abcd"),
            ("eyJ2IjoxfQ", "abcd"), // {"v":1}
            (good.as_str(), "other"),
            (&good[..good.len() - 3], "abcd"),
            (forged_page1.as_str(), "abcd"),
            (other_version.as_str(), "abcd"),
        ];
        for (raw, fp) in cases {
            assert!(Cursor::decode(raw, fp).is_err(), "{raw} / {fp}");
        }
    }
}
