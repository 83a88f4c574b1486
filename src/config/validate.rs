//! Checks that need the whole parsed config. Every problem is collected, each prefixed by
//! its key path; none quotes a secret.

use std::collections::HashSet;
use std::time::Duration;

use super::{Config, StoreBackend, decode_webhook_secret};
use crate::ats::client::MAX_PAGE_SIZE;
use crate::event::EventType;
use crate::secret::Secret;

/// Every problem of `config`, in file order of sections; empty when it is valid.
/// `store_keys` are the keys the file's `[store]` table gives (defaults are not given).
pub(super) fn problems(config: &Config, store_keys: &[String]) -> Vec<String> {
    let mut p = Problems::default();
    store(config, store_keys, &mut p);
    kombo(config, &mut p);
    integrations(config, &mut p);
    subscribers(config, &mut p);
    delivery(config, &mut p);
    guard(config, &mut p);
    admin(config, &mut p);
    retention(config, &mut p);
    p.0
}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, key: impl std::fmt::Display, message: impl std::fmt::Display) {
        self.0.push(format!("{key}: {message}"));
    }

    fn check(&mut self, ok: bool, key: impl std::fmt::Display, message: impl std::fmt::Display) {
        if !ok {
            self.add(key, message);
        }
    }
}

fn store(config: &Config, given: &[String], p: &mut Problems) {
    let store = &config.store;
    let given = |key: &str| given.iter().any(|k| k == key);
    match store.backend {
        StoreBackend::Sled => {
            p.check(
                !store.path.as_os_str().is_empty(),
                "store.path",
                "must not be empty",
            );
            p.check(
                store.cache_capacity.bytes() > 0,
                "store.cache_capacity",
                "must be more than 0 bytes",
            );
            for key in ["url", "pool_size", "lease_ttl"] {
                if given(key) {
                    p.add(
                        format!("store.{key}"),
                        "only used with store.backend = \"postgres\" (the backend is \"sled\"): \
                         set store.backend = \"postgres\", or remove it",
                    );
                }
            }
        }
        StoreBackend::Postgres => {
            for key in ["path", "cache_capacity", "rewrite_growth"] {
                if given(key) {
                    p.add(
                        format!("store.{key}"),
                        "only used with store.backend = \"sled\": remove it (the PostgreSQL \
                         store lives in the database store.url names)",
                    );
                }
            }
            match &store.url {
                None => p.add(
                    "store.url",
                    "required with store.backend = \"postgres\", e.g. \
                     url = \"${HIREHOOK_DATABASE_URL}\" holding postgres://user:password@host:5432/database",
                ),
                Some(url) => {
                    if let Err(why) = crate::store::postgres::check_url(url) {
                        // The value is not quoted: it holds a password.
                        p.add("store.url", why);
                    }
                }
            }
            p.check(
                store.pool_size >= 1,
                "store.pool_size",
                "must be at least 1",
            );
            p.check(
                store.lease_ttl >= Duration::from_secs(1),
                "store.lease_ttl",
                format!(
                    "must be at least 1s, not {}",
                    super::duration::format(store.lease_ttl)
                ),
            );
        }
    }
}

fn kombo(config: &Config, p: &mut Problems) {
    let k = &config.kombo;
    check_http_url(&k.base_url, "kombo.base_url", p);
    check_not_empty_secret(&k.api_key, "kombo.api_key", p);
    if let Some(secret) = &k.webhook_secret {
        check_not_empty_secret(secret, "kombo.webhook_secret", p);
    }
    // Low enough for latency-sensitive setups (and the latency benchmark's 200ms), high
    // enough that a typo such as "0s" or "5ms" cannot hammer Kombo.
    p.check(
        k.poll_interval >= Duration::from_millis(100),
        "kombo.poll_interval",
        format!(
            "must be at least 100ms, not {}",
            super::duration::format(k.poll_interval)
        ),
    );
    let (response, record) = (k.max_response_bytes.bytes(), k.max_record_bytes.bytes());
    p.check(
        response >= 1024 * 1024,
        "kombo.max_response_bytes",
        format!("must be at least 1MiB, not {}", k.max_response_bytes),
    );
    p.check(
        record >= 16 * 1024,
        "kombo.max_record_bytes",
        format!("must be at least 16KiB, not {}", k.max_record_bytes),
    );
    p.check(
        record <= response,
        "kombo.max_record_bytes",
        format!(
            "must not exceed kombo.max_response_bytes ({} is more than {})",
            k.max_record_bytes, k.max_response_bytes
        ),
    );
    p.check(
        k.overlap < k.full_resync_interval,
        "kombo.overlap",
        format!(
            "must be less than kombo.full_resync_interval ({} is not less than {})",
            super::duration::format(k.overlap),
            super::duration::format(k.full_resync_interval)
        ),
    );
    p.check(
        !k.request_timeout.is_zero(),
        "kombo.request_timeout",
        "must be more than 0",
    );
    p.check(
        (1..=MAX_PAGE_SIZE).contains(&k.page_size),
        "kombo.page_size",
        format!("must be in 1..={MAX_PAGE_SIZE}, not {}", k.page_size),
    );
}

fn integrations(config: &Config, p: &mut Problems) {
    p.check(
        !config.integrations.is_empty(),
        "integrations",
        "at least one [[integrations]] entry is required",
    );
    let mut seen = HashSet::new();
    for (i, integration) in config.integrations.iter().enumerate() {
        let key = format!("integrations[{i}].id");
        if integration.id.trim().is_empty() {
            p.add(&key, "must not be empty");
        } else if !seen.insert(integration.id.as_str()) {
            p.add(
                &key,
                format!("duplicate integration id {:?}", integration.id),
            );
        }
    }
}

fn subscribers(config: &Config, p: &mut Problems) {
    let known_integrations: HashSet<&str> =
        config.integrations.iter().map(|i| i.id.as_str()).collect();
    let mut names = HashSet::new();
    for (i, sub) in config.subscribers.iter().enumerate() {
        let at = format!("subscribers[{i}]");
        // Name the subscriber in every message so it can be found without counting.
        let who = if sub.name.trim().is_empty() {
            String::new()
        } else {
            format!(" (subscriber {:?})", sub.name)
        };

        if sub.name.trim().is_empty() {
            p.add(format!("{at}.name"), "must not be empty");
        } else if !names.insert(sub.name.as_str()) {
            p.add(
                format!("{at}.name"),
                format!("duplicate subscriber name {:?}", sub.name),
            );
        }

        if let Some(url) = check_http_url(&sub.url, &format!("{at}.url"), p)
            && !config.delivery.allow_private_networks
        {
            check_public_literal(&url, &format!("{at}.url"), p);
        }

        if sub.secrets.is_empty() {
            p.add(
                format!("{at}.secrets"),
                format!("at least one `whsec_` secret is required{who}"),
            );
        }
        for (j, secret) in sub.secrets.iter().enumerate() {
            if let Err(e) = decode_webhook_secret(secret) {
                p.add(format!("{at}.secrets[{j}]"), format!("{e}{who}"));
            }
        }

        if let Some(events) = &sub.events {
            if events.is_empty() {
                p.add(
                    format!("{at}.events"),
                    format!("an empty list delivers nothing; omit the key for all types{who}"),
                );
            }
            for (j, event) in events.iter().enumerate() {
                p.check(
                    EventType::parse(event).is_some(),
                    format!("{at}.events[{j}]"),
                    format!(
                        "unknown event type {event:?}{who}; known types: {}",
                        EventType::ALL.map(EventType::as_str).join(", ")
                    ),
                );
            }
        }

        if let Some(integrations) = &sub.integrations {
            if integrations.is_empty() {
                p.add(
                    format!("{at}.integrations"),
                    format!(
                        "an empty list delivers nothing; omit the key for all integrations{who}"
                    ),
                );
            }
            for (j, id) in integrations.iter().enumerate() {
                p.check(
                    known_integrations.contains(id.as_str()),
                    format!("{at}.integrations[{j}]"),
                    format!("{id:?} is not a configured integration id{who}"),
                );
            }
        }

        p.check(
            !sub.timeout.is_zero(),
            format!("{at}.timeout"),
            format!("must be more than 0{who}"),
        );
        p.check(
            sub.max_in_flight >= 1,
            format!("{at}.max_in_flight"),
            format!("must be at least 1{who}"),
        );
        if let Some(rate) = sub.rate_limit {
            p.check(
                rate.is_finite() && rate > 0.0,
                format!("{at}.rate_limit"),
                format!("must be more than 0 requests per second{who}"),
            );
        }
    }
}

fn delivery(config: &Config, p: &mut Problems) {
    let d = &config.delivery;
    p.check(
        !d.retry_schedule.is_empty(),
        "delivery.retry_schedule",
        "must list at least one wait",
    );
    for (i, wait) in d.retry_schedule.iter().enumerate() {
        p.check(
            !wait.is_zero(),
            format!("delivery.retry_schedule[{i}]"),
            "must be more than 0",
        );
    }
    p.check(
        (0.0..=1.0).contains(&d.jitter),
        "delivery.jitter",
        format!("must be in 0..=1, not {}", d.jitter),
    );
    p.check(
        !d.max_retry_after.is_zero(),
        "delivery.max_retry_after",
        "must be more than 0",
    );
}

fn guard(config: &Config, p: &mut Problems) {
    let ratio = config.guard.mass_change_ratio;
    p.check(
        ratio > 0.0 && ratio <= 1.0,
        "guard.mass_change_ratio",
        format!("must be in (0, 1], not {ratio}"),
    );
}

fn admin(config: &Config, p: &mut Problems) {
    let admin = &config.admin;
    match &admin.token {
        Some(token) => check_not_empty_secret(token, "admin.token", p),
        None => p.check(
            admin.listen.ip().is_loopback(),
            "admin.token",
            format!(
                "required because admin.listen ({}) is not a loopback address",
                admin.listen
            ),
        ),
    }
}

fn retention(config: &Config, p: &mut Problems) {
    let r = &config.retention;
    for (key, keep) in [
        ("retention.events", r.events),
        ("retention.deleted_applications", r.deleted_applications),
    ] {
        if keep.duration().is_some_and(|d| d.is_zero()) {
            p.add(
                key,
                "must be more than 0: 0 would keep nothing; write \"forever\" to keep everything",
            );
        }
    }
    p.check(
        r.sweep_interval >= Duration::from_secs(1),
        "retention.sweep_interval",
        format!(
            "must be at least 1s, not {}",
            super::duration::format(r.sweep_interval)
        ),
    );
}

/// Checks an http(s) URL with a host; returns it parsed when it is one.
fn check_http_url(value: &str, key: &str, p: &mut Problems) -> Option<url::Url> {
    match url::Url::parse(value) {
        // The value is not quoted: a webhook URL may carry a token in its path.
        Err(e) => p.add(key, format!("not a valid URL: {e}")),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => p.add(
            key,
            format!("scheme must be http or https, not {:?}", url.scheme()),
        ),
        Ok(url) if url.host().is_none() => p.add(key, "the URL has no host"),
        Ok(url) => return Some(url),
    }
    None
}

/// A URL whose host is an IP literal the SSRF guard refuses would fail every delivery:
/// refuse it here, where the operator looks first. Host names are judged when they
/// resolve (by the guard, at each connection).
fn check_public_literal(url: &url::Url, key: &str, p: &mut Problems) {
    let Some(addr) = crate::addr::ip_literal(url) else {
        return;
    };
    if let Some(reason) = crate::addr::forbidden_reason(addr) {
        p.add(
            key,
            format!(
                "the host {addr} is {reason}: the SSRF guard refuses every delivery to it; \
                 set delivery.allow_private_networks = true to allow it (tests, demos and \
                 local relays only)"
            ),
        );
    }
}

fn check_not_empty_secret(secret: &Secret, key: &str, p: &mut Problems) {
    p.check(!secret.expose().trim().is_empty(), key, "must not be empty");
}
