//! Going through a running daemon's admin API, for the inspection and repair commands
//! when the store is locked by `hirehook run`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Failure;
use super::sync::open_store;
use crate::config::Config;
use crate::secret::Secret;
use crate::store::{Store, StoreError};

/// A client of the admin API `[admin] listen` and `[admin] token` describe.
pub struct AdminClient {
    /// `http://host:port`.
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl AdminClient {
    /// The daemon's API as its config describes it (an unspecified listen address is
    /// reached on loopback).
    pub fn from_config(config: &Config) -> Result<Self, Failure> {
        let listen = config.admin.listen;
        let ip = match listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .context("cannot build the HTTP client for the admin API")?;
        Ok(Self {
            base: format!("http://{}", SocketAddr::new(ip, listen.port())),
            token: config.admin.token.clone(),
            http,
        })
    }

    /// The URL of `path` (e.g. `/v1/status`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GETs `path` and reads the JSON answer; an error answer becomes an error naming the
    /// URL, status and the API's message. `Ok(None)` for a 404.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, Failure> {
        let url = self.url(path);
        let mut request = self.http.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let (status, bytes) = send(request, &url).await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        answer(&url, status, &bytes).map(Some)
    }

    /// POSTs `body` as JSON to `path` and reads the JSON answer. Every error answer, a 404
    /// included (no such subscriber or integration in the daemon's config), becomes an
    /// error naming the URL, status and the API's message.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, Failure> {
        let url = self.url(path);
        let mut request = self.http.post(&url).json(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let (status, bytes) = send(request, &url).await?;
        answer(&url, status, &bytes)
    }
}

/// `/v1/` followed by `segments`, each percent-encoded as one path segment (a name or an
/// id may hold characters a path cannot; `:` of integration ids stays as it is).
pub fn v1_path(segments: &[&str]) -> String {
    let mut path = String::from("/v1");
    for segment in segments {
        path.push('/');
        for b in segment.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
                path.push(char::from(b));
            } else {
                path.push_str(&format!("%{b:02X}"));
            }
        }
    }
    path
}

/// Sends a request and reads the whole answer.
async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<(reqwest::StatusCode, bytes::Bytes), Failure> {
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach the admin API at {url}"))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("cannot read the answer of {url}"))?;
    Ok((status, bytes))
}

/// The JSON of a success; an error answer becomes an error with the API's message.
fn answer<T: DeserializeOwned>(
    url: &str,
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Result<T, Failure> {
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the admin API at {url} answered {status}: {message}"
        )));
    }
    serde_json::from_slice(bytes)
        .with_context(|| format!("unexpected answer from {url}"))
        .map_err(Failure::Runtime)
}

/// Where an inspection or repair command reads and writes.
pub enum Source {
    /// The daemon is stopped: the store itself.
    Store(Arc<Store>),
    /// The daemon runs (it holds the store's lock): its admin API.
    Api(AdminClient),
}

/// Opens the store, or, when a running daemon holds it, says so on stderr and goes through
/// the daemon's admin API.
pub async fn store_or_api(config: &Config) -> Result<Source, Failure> {
    match open_store(config).await {
        Ok(store) => Ok(Source::Store(store)),
        Err(Failure::Runtime(e))
            if matches!(
                e.downcast_ref::<StoreError>(),
                Some(StoreError::Locked { .. })
            ) =>
        {
            let client = AdminClient::from_config(config)?;
            eprintln!(
                "note: the store is in use by a running daemon; going through its admin API at {}",
                client.url("/v1")
            );
            Ok(Source::Api(client))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            v1_path(&[
                "integrations",
                "greenhouse:CBNMt7dSNCzBdnRTx87dev4E",
                "held"
            ]),
            "/v1/integrations/greenhouse:CBNMt7dSNCzBdnRTx87dev4E/held"
        );
        assert_eq!(
            v1_path(&["subscribers", "a b/c?d#é", "enable"]),
            "/v1/subscribers/a%20b%2Fc%3Fd%23%C3%A9/enable"
        );
    }
}
