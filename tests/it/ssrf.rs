//! The delivery client against a real local server: the SSRF guard refuses `localhost`
//! unless private networks are allowed, and redirects are returned, not followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use hirehook::deliver::ssrf::{SsrfError, USER_AGENT, check_literal, delivery_client, ssrf_error};

/// What the receiver saw.
#[derive(Default)]
struct Seen {
    /// Requests to `/`.
    hooks: AtomicUsize,
    /// Requests to `/landed`, the redirect's target: must stay 0.
    landed: AtomicUsize,
    /// Requests whose user agent was hirehook's.
    our_agent: AtomicUsize,
}

async fn receiver() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route(
            "/",
            post(
                |State(seen): State<Arc<Seen>>, headers: HeaderMap| async move {
                    seen.hooks.fetch_add(1, Ordering::SeqCst);
                    if headers
                        .get(header::USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        == Some(USER_AGENT)
                    {
                        seen.our_agent.fetch_add(1, Ordering::SeqCst);
                    }
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/moved",
            post(|| async { (StatusCode::FOUND, [(header::LOCATION, "/landed")]) }),
        )
        .route(
            "/landed",
            post(|State(seen): State<Arc<Seen>>| async move {
                seen.landed.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, app).await.expect("server runs");
    });
    (addr, seen)
}

/// Every message in an error's source chain, joined.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn guarded_client_refuses_localhost() {
    let (addr, seen) = receiver().await;
    let url = format!("http://localhost:{}/", addr.port());
    let client = delivery_client(TIMEOUT, false).expect("client builds");
    let err = client
        .post(&url)
        .body("{}")
        .send()
        .await
        .expect_err("refused by the guard");
    let message = chain(&err);
    assert!(message.contains("SSRF guard"), "{message}");
    assert!(message.contains("`localhost`"), "{message}");
    assert!(
        message.contains("127.0.0.1") || message.contains("::1"),
        "{message}"
    );
    assert!(
        matches!(ssrf_error(&err), Some(SsrfError::Forbidden { host, .. }) if host == "localhost"),
        "{message}"
    );
    assert_eq!(
        seen.hooks.load(Ordering::SeqCst),
        0,
        "nothing reached the server"
    );
}

#[tokio::test]
async fn allowing_private_networks_lets_it_through() {
    let (addr, seen) = receiver().await;
    let url = format!("http://localhost:{}/", addr.port());
    let client = delivery_client(TIMEOUT, true).expect("client builds");
    let response = client
        .post(&url)
        .body("{}")
        .send()
        .await
        .expect("delivered");
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(seen.hooks.load(Ordering::SeqCst), 1);
    assert_eq!(
        seen.our_agent.load(Ordering::SeqCst),
        1,
        "user agent is {USER_AGENT}"
    );
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let (addr, seen) = receiver().await;
    let url = format!("http://localhost:{}/moved", addr.port());
    let client = delivery_client(TIMEOUT, true).expect("client builds");
    let response = client
        .post(&url)
        .body("{}")
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(
        response
            .headers()
            .get(header::LOCATION)
            .map(|v| v.as_bytes()),
        Some(b"/landed".as_slice())
    );
    assert_eq!(
        seen.landed.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}

/// The resolver never sees IP literals, so the guard for them is `check_literal`, which
/// the caller runs before each request.
#[tokio::test]
async fn ip_literals_are_refused_by_check_literal() {
    let (addr, _) = receiver().await;
    let url = url::Url::parse(&format!("http://127.0.0.1:{}/", addr.port())).expect("url");
    let err = check_literal(&url, false).expect_err("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(check_literal(&url, true).is_ok());
}
