//! The SSRF guard: subscriber URLs must not reach loopback, private, link-local, CGNAT or
//! otherwise non-global addresses, unless `allow_private_networks = true`.
//!
//! Two checks, because reqwest takes two paths to an address:
//! - a host that is an IP literal is connected to directly, without a resolver:
//!   [`check_literal`] must be called on the URL before each request;
//! - a host name goes through the client's resolver: [`GuardedResolver`] drops forbidden
//!   addresses and reqwest connects only to the addresses it returned, so the addresses
//!   checked are the addresses connected to (no DNS rebinding in between).
//!
//! [`delivery_client`] builds a client with the resolver installed, redirects off (a
//! redirect would be a second, unchecked URL) and proxies off (a proxy resolves the target
//! itself, out of the guard's sight).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// The `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("hirehook/", env!("CARGO_PKG_VERSION"));

/// Why a subscriber URL may not be requested. Messages name the host and address, never the
/// URL's path, query or credentials (they may hold a receiver's token).
#[derive(Debug, thiserror::Error)]
pub enum SsrfError {
    /// The host is, or resolves only to, a non-global address.
    #[error(
        "SSRF guard refused `{host}`: {addr} is {} (set `allow_private_networks = true` to allow)",
        forbidden_reason(*addr).unwrap_or("not a public unicast address")
    )]
    Forbidden {
        /// The URL's host as written (a name or an IP literal).
        host: String,
        /// The first refused address.
        addr: IpAddr,
    },
    /// The host name could not be resolved.
    #[error("could not resolve `{host}`: {source}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host name resolved to no address at all.
    #[error("`{host}` resolves to no address")]
    NoAddress {
        /// The host name.
        host: String,
    },
    /// The URL cannot be delivered to (scheme, missing host).
    #[error("bad subscriber URL: {0}")]
    BadUrl(String),
}

pub use crate::addr::{forbidden_reason, is_forbidden};

/// Checks a URL whose host is an IP literal: reqwest connects to those without calling a
/// resolver, so [`GuardedResolver`] never sees them. Call before each request. Host names
/// pass (the resolver checks them). Also refuses schemes other than `http`/`https` and URLs
/// without a host.
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), SsrfError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SsrfError::BadUrl(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host().is_none() {
        return Err(SsrfError::BadUrl("no host".to_owned()));
    }
    let Some(addr) = crate::addr::ip_literal(url) else {
        return Ok(());
    };
    if !allow_private && is_forbidden(addr) {
        return Err(SsrfError::Forbidden {
            host: url.host_str().unwrap_or_default().to_owned(),
            addr,
        });
    }
    Ok(())
}

/// A reqwest resolver that resolves with tokio's `lookup_host` and drops forbidden
/// addresses (unless private networks are allowed). When none remain it fails with
/// [`SsrfError::Forbidden`] naming the host and the first refused address.
#[derive(Clone, Copy)]
pub struct GuardedResolver {
    /// `allow_private_networks`: when true, every resolved address is returned.
    allow_private: bool,
}

impl GuardedResolver {
    /// A resolver refusing non-global addresses unless `allow_private`.
    pub fn new(allow_private: bool) -> GuardedResolver {
        GuardedResolver { allow_private }
    }

    /// The addresses of `host` that may be connected to (port 0: reqwest fills in the
    /// URL's). Also usable to check a subscriber up front.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, SsrfError> {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|source| SsrfError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect();
        let Some(first) = resolved.first() else {
            return Err(SsrfError::NoAddress {
                host: host.to_owned(),
            });
        };
        let first = first.ip();
        if self.allow_private {
            return Ok(resolved);
        }
        let total = resolved.len();
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|addr| !is_forbidden(addr.ip()))
            .collect();
        if allowed.is_empty() {
            return Err(SsrfError::Forbidden {
                host: host.to_owned(),
                addr: first,
            });
        }
        if allowed.len() < total {
            tracing::debug!(
                host,
                refused = total - allowed.len(),
                "SSRF guard dropped non-global addresses"
            );
        }
        Ok(allowed)
    }
}

impl fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = *self;
        Box::pin(async move {
            let addrs = resolver.lookup(name.as_str()).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client for deliveries: [`GuardedResolver`], no redirects (a 3xx is returned as
/// the response), no proxy, `timeout` per request (connect to end of body), user agent
/// [`USER_AGENT`], rustls.
///
/// The resolver covers host names only: call [`check_literal`] on each URL too.
pub fn delivery_client(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(GuardedResolver::new(allow_private))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .tls_backend_rustls()
        .build()
}

/// The SSRF refusal behind a failed request, if that is why it failed (walks the error's
/// sources). Lets the delivery worker tell a refused subscriber from a network failure.
pub fn ssrf_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a SsrfError> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(ssrf) = e.downcast_ref::<SsrfError>() {
            return Some(ssrf);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_forbidden_table() {
        let cases: &[(&str, bool)] = &[
            // IPv4, refused.
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("10.0.0.1", true),
            ("10.255.255.255", true),
            ("100.64.0.1", true),
            ("100.127.255.254", true),
            ("127.0.0.1", true),
            ("127.255.255.254", true),
            ("169.254.169.254", true),
            ("169.254.0.1", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("192.0.0.1", true),
            ("192.0.2.1", true),
            ("192.88.99.1", true),
            ("192.168.1.1", true),
            ("198.18.0.1", true),
            ("198.19.255.255", true),
            ("198.51.100.7", true),
            ("203.0.113.9", true),
            ("224.0.0.1", true),
            ("239.255.255.250", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            // IPv4, allowed: public, including the neighbours of each refused range.
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            ("9.255.255.255", false),
            ("11.0.0.0", false),
            ("100.63.255.255", false),
            ("100.128.0.0", false),
            ("126.255.255.255", false),
            ("128.0.0.0", false),
            ("169.253.255.255", false),
            ("169.255.0.0", false),
            ("172.15.255.255", false),
            ("172.32.0.0", false),
            ("192.0.1.0", false),
            ("192.0.3.0", false),
            ("192.167.255.255", false),
            ("192.169.0.0", false),
            ("198.17.255.255", false),
            ("198.20.0.0", false),
            ("203.0.114.1", false),
            ("223.255.255.255", false),
            // IPv6, refused.
            ("::", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.1.2.3", true),
            ("::ffff:169.254.169.254", true),
            ("::127.0.0.1", true),
            ("::8.8.8.8", true),
            ("64:ff9b::7f00:1", true),
            ("64:ff9b::a9fe:a9fe", true),
            ("64:ff9b:1::1", true),
            ("100::1", true),
            ("2001::1", true),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", true),
            ("2001:2::1", true),
            ("2001:10::1", true),
            ("2001:1ff::1", true),
            ("2001:db8::1", true),
            ("2002:7f00:1::1", true),
            ("2002:a00:1::", true),
            ("2002:a9fe:a9fe::1", true),
            ("3fff::1", true),
            ("fc00::1", true),
            ("fd00::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("ff02::1", true),
            ("4000::1", true),
            ("::ffff:0:7f00:1", true),
            // IPv6, allowed.
            ("::ffff:8.8.8.8", false),
            ("64:ff9b::808:808", false),
            ("2606:4700::1111", false),
            ("2001:4860:4860::8888", false),
            ("2001:200::1", false),
            ("2002:808:808::1", false),
            ("2a00:1450:4001::1", false),
            ("3ffe::1", false),
        ];
        for &(ip, forbidden) in cases {
            let addr: IpAddr = ip.parse().expect("test address parses");
            assert_eq!(is_forbidden(addr), forbidden, "{ip}");
            assert_eq!(forbidden_reason(addr).is_some(), forbidden, "{ip}");
        }
    }

    #[test]
    fn reasons_name_the_range() {
        let reason = |ip: &str| forbidden_reason(ip.parse().expect("parses"));
        assert_eq!(reason("127.0.0.1"), Some("loopback"));
        assert_eq!(reason("::1"), Some("loopback"));
        assert_eq!(reason("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(reason("255.255.255.255"), Some("broadcast"));
        assert_eq!(reason("2001::1"), Some("Teredo (2001::/32)"));
        assert_eq!(reason("2001:db8::1"), Some("documentation (2001:db8::/32)"));
        assert_eq!(
            reason("169.254.169.254"),
            Some("link-local (169.254.0.0/16)")
        );
    }

    #[test]
    fn check_literal_table() {
        let cases: &[(&str, bool, bool)] = &[
            // (url, refused without the flag, refused with it)
            ("http://127.0.0.1:8080/x", true, false),
            ("http://[::1]/", true, false),
            ("http://169.254.169.254/latest/meta-data", true, false),
            ("https://[::ffff:7f00:1]/", true, false),
            ("http://2130706433/", true, false),
            ("http://0x7f.1/", true, false),
            ("http://10.0.0.1/hook", true, false),
            ("https://8.8.8.8/hook", false, false),
            ("https://[2606:4700::1111]/hook", false, false),
            ("https://localhost/hook", false, false),
            ("https://example.com/hook", false, false),
            ("ftp://8.8.8.8/x", true, true),
            ("file:///etc/passwd", true, true),
            ("mailto:ops@example.com", true, true),
        ];
        for &(url, without, with) in cases {
            let url = Url::parse(url).expect("test URL parses");
            assert_eq!(check_literal(&url, false).is_err(), without, "{url}");
            assert_eq!(check_literal(&url, true).is_err(), with, "{url} (allowed)");
        }
    }

    #[test]
    fn check_literal_errors_name_host_and_address_but_not_the_path() {
        let url = Url::parse("http://user:pw@169.254.169.254/latest?token=abc").expect("parses");
        let err = check_literal(&url, false).expect_err("refused");
        assert!(matches!(
            err,
            SsrfError::Forbidden { ref host, addr }
                if host == "169.254.169.254" && addr == IpAddr::from([169, 254, 169, 254])
        ));
        let message = err.to_string();
        assert!(message.contains("SSRF guard"), "{message}");
        assert!(message.contains("link-local"), "{message}");
        assert!(
            !message.contains("token") && !message.contains("pw"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn resolver_refuses_localhost_unless_allowed() {
        let err = GuardedResolver::new(false)
            .lookup("localhost")
            .await
            .expect_err("refused");
        let message = err.to_string();
        assert!(matches!(err, SsrfError::Forbidden { .. }), "{message}");
        assert!(message.contains("`localhost`"), "{message}");
        assert!(
            message.contains("127.0.0.1") || message.contains("::1"),
            "{message}"
        );

        let addrs = GuardedResolver::new(true)
            .lookup("localhost")
            .await
            .expect("allowed");
        assert!(!addrs.is_empty());
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn resolver_checks_literals_passed_to_it() {
        let err = GuardedResolver::new(false).lookup("10.1.2.3").await;
        assert!(matches!(err, Err(SsrfError::Forbidden { .. })));
        let ok = GuardedResolver::new(false).lookup("8.8.8.8").await;
        assert_eq!(ok.ok(), Some(vec![SocketAddr::from(([8, 8, 8, 8], 0))]));
    }

    #[tokio::test]
    async fn resolver_reports_unresolvable_names() {
        // `.invalid` never resolves (RFC 6761); no network needed for the failure.
        let err = GuardedResolver::new(false)
            .lookup("hirehook-test.invalid")
            .await
            .expect_err("does not resolve");
        assert!(
            matches!(err, SsrfError::Resolve { ref host, .. } | SsrfError::NoAddress { ref host } if host == "hirehook-test.invalid"),
            "{err}"
        );
    }
}
