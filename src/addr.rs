//! Which IP addresses are public unicast: the pure half of the SSRF guard
//! ([`crate::deliver::ssrf`]), shared with config validation (which refuses a subscriber
//! URL whose IP literal the guard would refuse).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The IP address a URL's host is written as, if it is an IP literal (a host name is
/// judged when it resolves).
pub fn ip_literal(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

/// True when `ip` is not a public unicast address. See [`forbidden_reason`] for the list.
pub fn is_forbidden(ip: IpAddr) -> bool {
    forbidden_reason(ip).is_some()
}

/// What makes `ip` non-global, or `None` for a public unicast address.
///
/// IPv4: `0/8`, `10/8`, `100.64/10` (CGNAT), `127/8`, `169.254/16` (link-local, cloud
/// metadata), `172.16/12`, `192.0.0/24` (IETF), `192.0.2/24`, `198.51.100/24`,
/// `203.0.113/24` (documentation), `192.88.99/24` (6to4 relay anycast, deprecated),
/// `192.168/16`, `198.18/15` (benchmarking), `224/4` (multicast), `240/4` (reserved) and
/// `255.255.255.255`.
///
/// IPv6: everything outside `2000::/3` (so `::`, `::1`, `fc00::/7`, `fe80::/10`,
/// `fec0::/10`, `ff00::/8`, `100::/64`, `64:ff9b:1::/48`, the deprecated IPv4-compatible
/// `::/96`...), and inside it `2001::/23` (IETF: Teredo `2001::/32`, benchmarking, ORCHID),
/// `2001:db8::/32` and `3fff::/20` (documentation). Addresses embedding an IPv4 address are
/// judged by it: IPv4-mapped `::ffff:0:0/96`, NAT64 `64:ff9b::/96` and 6to4 `2002::/16`.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// Non-global IPv4 ranges, most specific first where they overlap.
const FORBIDDEN_V4: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "in \"this network\" 0.0.0.0/8"),
    ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
    ([100, 64, 0, 0], 10, "carrier-grade NAT (100.64.0.0/10)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16)"),
    ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
    (
        [192, 0, 0, 0],
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
    ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
    ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
    ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
    ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([255, 255, 255, 255], 32, "broadcast"),
    ([240, 0, 0, 0], 4, "reserved (240.0.0.0/4)"),
];

/// Non-global IPv6 ranges (as `(network, prefix length)`), most specific first where they
/// overlap. Checked after the embedded-IPv4 forms.
const FORBIDDEN_V6: &[(u128, u32, &str)] = &[
    (0, 128, "unspecified"),
    (1, 128, "loopback"),
    (0, 96, "IPv4-compatible (deprecated, ::/96)"),
    (
        0x0064_ff9b_0001 << 80,
        48,
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    (0x0100 << 112, 64, "discard-only (100::/64)"),
    (0x2001_0000 << 96, 32, "Teredo (2001::/32)"),
    (0x2001_0db8 << 96, 32, "documentation (2001:db8::/32)"),
    (0x2001 << 112, 23, "IETF protocol assignments (2001::/23)"),
    (0x3fff << 112, 20, "documentation (3fff::/20)"),
    (0xfc00 << 112, 7, "unique local (fc00::/7)"),
    (0xfe80 << 112, 10, "link-local (fe80::/10)"),
    (0xfec0 << 112, 10, "site-local (fec0::/10)"),
    (0xff00 << 112, 8, "multicast"),
];

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    FORBIDDEN_V4
        .iter()
        .find(|(net, len, _)| (bits ^ u32::from_be_bytes(*net)).checked_shr(32 - len) == Some(0))
        .map(|(_, _, reason)| *reason)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let within = |net: u128, len: u32| (bits ^ net).checked_shr(128 - len) == Some(0);
    // Forms that carry an IPv4 address a packet will end up at: judge that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if within(0x0064_ff9b << 96, 96) {
        return forbidden_v4(Ipv4Addr::from(bits as u32));
    }
    if within(0x2002 << 112, 16) {
        // 6to4: the IPv4 address is bits 16..48. `as u32` keeps the low 32 bits.
        return forbidden_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    if let Some((_, _, reason)) = FORBIDDEN_V6.iter().find(|(net, len, _)| within(*net, *len)) {
        return Some(reason);
    }
    if !within(0x2000 << 112, 3) {
        return Some("outside global unicast (2000::/3)");
    }
    None
}
