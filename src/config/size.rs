//! A byte count written either as an integer (`67108864`) or with a unit (`"64MiB"`).

use std::fmt;
use std::str::FromStr;

/// A number of bytes. In TOML: an integer, or a string of a number and a unit: `B`, `KiB`,
/// `MiB`, `GiB` (powers of 1024) or `kB`, `MB`, `GB` (powers of 1000); case-insensitive,
/// space between number and unit optional (`"64MiB"`, `"512 kib"`, `"1GB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        Self(n * MIB)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the count exactly: `64MiB`, `1536KiB`, `100B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        match n {
            0 => f.write_str("0B"),
            _ if n.is_multiple_of(GIB) => write!(f, "{}GiB", n / GIB),
            _ if n.is_multiple_of(MIB) => write!(f, "{}MiB", n / MIB),
            _ if n.is_multiple_of(KIB) => write!(f, "{}KiB", n / KIB),
            _ => write!(f, "{n}B"),
        }
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size: expected e.g. \"64MiB\" or 67108864"))?;
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => KIB,
            "mib" => MIB,
            "gib" => GIB,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}`: use B, KiB, MiB, GiB, kB, MB or GB"
                ));
            }
        };
        number
            .checked_mul(factor)
            .map(Self)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a byte count or a string like \"64MiB\"")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let cases: &[(&str, Option<u64>)] = &[
            ("64MiB", Some(64 * MIB)),
            ("64 mib", Some(64 * MIB)),
            ("1GiB", Some(GIB)),
            ("512KiB", Some(512 * KIB)),
            ("1GB", Some(1_000_000_000)),
            ("100", Some(100)),
            ("100B", Some(100)),
            ("MiB", None),
            ("5 parsecs", None),
            ("-1MiB", None),
            ("99999999999999GiB", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<ByteSize>().ok().map(|b| b.0),
                *want,
                "{input}"
            );
        }
        assert_eq!(ByteSize::mib(64).to_string(), "64MiB");
        assert_eq!(ByteSize(1536 * KIB).to_string(), "1536KiB");
        assert_eq!(ByteSize(1_000_000_000).to_string(), "1000000000B");
    }
}
