//! The admin listener: accepts connections and serves the router on each, within limits,
//! so the admin port keeps answering `/healthz` while someone holds thousands of
//! connections open. Everything here happens before authentication.
//!
//! `axum::serve` alone never times a connection out and accepts without limit: a client
//! that sends half a request head, or nothing, holds its connection forever, and enough of
//! them exhaust the process's file descriptors. Here:
//!
//! - **Request head timeout** ([`HEADER_READ_TIMEOUT`]): hyper closes a connection whose
//!   request head has not fully arrived in time. hyper (1.12) starts that timer whenever it
//!   waits for a request head: right after accept, and after each response on a kept-alive
//!   connection. So it is the idle timeout as well (`tests/admin_hostile.rs` checks both).
//! - **Body timeout** ([`BODY_READ_TIMEOUT`]): a request's body must have arrived within
//!   this time of its head; a handler reading it gets an error (400) and the connection
//!   closes. Without it a client could hold a connection "serving" by trickling a body.
//! - **Connection cap** ([`MAX_CONNECTIONS`]): at the cap, the oldest connection that is
//!   not serving a request (still reading its head, or idle between requests) is closed to
//!   make room, so held half-sent connections give way to a fresh `/healthz`. When every
//!   connection is serving, the new one is closed instead.
//! - **Accept errors** back off ([`ACCEPT_BACKOFF_MIN`] doubling to
//!   [`ACCEPT_BACKOFF_MAX`]) and are logged once per burst. Out of file descriptors, the
//!   oldest idle connection is closed first, so the next accept can succeed even when the
//!   process's descriptor limit is below the cap.
//! - **Shutdown**: accepting stops, requests in flight finish, then connections close.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a client has to send a whole request head: from accept, and from the end of
/// the previous response on a kept-alive connection (so also the idle timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request's body may take to arrive, from its head.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 1024;

/// Largest request head (request line and headers); larger ones get a 431. The admin API's
/// requests are small, and this bounds what a held connection can make hyper buffer.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// First wait after a failed accept.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);

/// Longest wait between accepts while they keep failing.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long the accept loop waits for a connection it closed to give its place back (it
/// does at once unless its task is starved).
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// `EMFILE` and `ENFILE` (the same numbers on Linux and the BSDs): out of file descriptors.
const OUT_OF_FDS: [i32; 2] = [24, 23];

/// The admin listener's limits. [`Default`] is what the daemon uses; tests pass shorter
/// timeouts or a smaller cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// See [`MAX_CONNECTIONS`]; at least 1.
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// Where connections come from: the TCP listener, or in-memory streams in tests.
pub(crate) trait Acceptor: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Acceptor for TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> io::Result<TcpStream> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// Accepts and serves `router` on each connection within `limits` until `shutdown`; then
/// stops accepting, lets requests in flight finish and returns once every connection is
/// closed.
pub(crate) async fn run<A: Acceptor>(
    mut acceptor: A,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut backoff = Backoff::default();
    // Whether the cap was reached since the last accept that found room (warned once).
    let mut at_cap = false;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = acceptor.accept() => accepted,
        };
        let io = match accepted {
            Ok(io) => {
                let errors = backoff.succeeded();
                if errors > 0 {
                    tracing::info!(errors, "accepting admin connections again");
                }
                io
            }
            Err(e) if is_per_connection(&e) => {
                tracing::debug!("an admin connection failed before it was accepted: {e}");
                continue;
            }
            Err(e) => {
                let wait = backoff.failed();
                if backoff.errors == 1 {
                    tracing::warn!(
                        "cannot accept admin connections: {e}; retrying with backoff (up to {}) \
                         until it passes",
                        humantime::format_duration(ACCEPT_BACKOFF_MAX)
                    );
                }
                if e.raw_os_error().is_some_and(|n| OUT_OF_FDS.contains(&n))
                    && let Some(closed) = registry.evict_oldest_idle()
                {
                    // Progress, not a spin: the next accept gets the descriptor this frees.
                    tracing::debug!("out of file descriptors: closed the oldest idle connection");
                    let _ = tokio::time::timeout(EVICTION_WAIT, closed.cancelled()).await;
                    continue;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
        };
        let admitted = match registry.admit().await {
            Admission::Room(admitted) => {
                at_cap = false;
                admitted
            }
            Admission::Evicted(admitted) => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        cap = limits.max_connections,
                        "admin connections at the cap: closing the oldest idle ones to make room"
                    );
                }
                admitted
            }
            Admission::Refused => {
                if !at_cap {
                    at_cap = true;
                    tracing::warn!(
                        cap = limits.max_connections,
                        "admin connections at the cap, all serving: refusing new ones"
                    );
                }
                continue;
            }
        };
        connections.spawn(serve_connection(
            io,
            admitted,
            router.clone(),
            limits,
            shutdown.clone(),
        ));
    }
    // No more connections: a client connecting now is refused instead of left waiting.
    drop(acceptor);
    connections.close();
    connections.wait().await;
}

/// A connection is not worth a backoff when only it failed (reset before accept).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Serves one connection until the client or hyper closes it, it is evicted, or shutdown
/// (then its request in flight finishes first).
async fn serve_connection<I>(
    io: I,
    admitted: Admitted,
    router: Router,
    limits: ServeLimits,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handle = admitted.handle();
    let app = TowerToHyperService::new(router);
    let body_timeout = limits.body_read_timeout;
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        // From the request head until the handler has its response: not evictable.
        let serving = handle.serving();
        let request = request.map(|body| axum::body::Body::new(TimedBody::new(body, body_timeout)));
        let response = app.call(request);
        async move {
            let response = response.await;
            drop(serving);
            response
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    // Declared after `admitted`, so dropped (socket closed) before it gives its place back.
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = admitted.close.cancelled() => {
            tracing::debug!("admin connection closed to make room for a new one");
            return;
        }
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.as_mut().await
        }
    };
    match result {
        Ok(()) => {}
        Err(e) if e.is_timeout() => {
            tracing::debug!("admin connection closed: no whole request head in time")
        }
        Err(e) => tracing::debug!("admin connection closed: {e}"),
    }
}

/// Why an accept waits or gives up.
#[derive(Debug, Default)]
struct Backoff {
    /// Consecutive failed accepts.
    errors: u32,
}

impl Backoff {
    /// One more failed accept: how long to wait before the next.
    fn failed(&mut self) -> Duration {
        let wait = ACCEPT_BACKOFF_MIN
            .saturating_mul(2u32.saturating_pow(self.errors))
            .min(ACCEPT_BACKOFF_MAX);
        self.errors = self.errors.saturating_add(1);
        wait
    }

    /// An accept succeeded: the failures of the burst it ends (0 when none).
    fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.errors)
    }
}

/// The open connections, oldest first (ids grow with each accept).
struct Registry {
    slots: Mutex<Slots>,
    /// One permit per open connection, so the cap holds strictly: a connection gives its
    /// permit back after its socket is closed.
    permits: Arc<Semaphore>,
}

#[derive(Default)]
struct Slots {
    next_id: u64,
    open: BTreeMap<u64, Slot>,
}

struct Slot {
    /// Requests being served (HTTP/1: 0 or 1).
    serving: u32,
    /// Cancelled to close the connection at once (to make room).
    close: CancellationToken,
    /// Cancelled once the connection is closed.
    closed: CancellationToken,
}

enum Admission {
    /// Below the cap.
    Room(Admitted),
    /// At the cap: the oldest idle connection was closed to make room.
    Evicted(Admitted),
    /// At the cap and every connection is serving.
    Refused,
}

impl Registry {
    fn new(max_connections: usize) -> Self {
        Self {
            slots: Mutex::new(Slots::default()),
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // Poisoned: a panic while a guard was held; the map is still consistent (every
        // update is one insert, remove or counter change).
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection: a free one, else the oldest idle connection's.
    async fn admit(self: &Arc<Self>) -> Admission {
        let (permit, evicted) = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => (permit, false),
            Err(_) => {
                if self.evict_oldest_idle().is_none() {
                    return Admission::Refused;
                }
                let wait =
                    tokio::time::timeout(EVICTION_WAIT, self.permits.clone().acquire_owned());
                match wait.await {
                    Ok(Ok(permit)) => (permit, true),
                    _ => return Admission::Refused,
                }
            }
        };
        let close = CancellationToken::new();
        let closed = CancellationToken::new();
        let id = {
            let mut slots = self.slots();
            let id = slots.next_id;
            slots.next_id += 1;
            slots.open.insert(
                id,
                Slot {
                    serving: 0,
                    close: close.clone(),
                    closed: closed.clone(),
                },
            );
            id
        };
        let admitted = Admitted {
            handle: Handle {
                registry: self.clone(),
                id,
            },
            close,
            closed,
            _permit: permit,
        };
        if evicted {
            Admission::Evicted(admitted)
        } else {
            Admission::Room(admitted)
        }
    }

    /// Closes the oldest connection that is not serving a request and not already closing;
    /// returns the token cancelled once it is closed. `None` when every one is serving.
    ///
    /// A request head may arrive on the chosen connection between this choice and its
    /// close; that request is cut off (the client sees the connection reset).
    fn evict_oldest_idle(&self) -> Option<CancellationToken> {
        let slots = self.slots();
        let slot = slots
            .open
            .values()
            .find(|s| s.serving == 0 && !s.close.is_cancelled())?;
        slot.close.cancel();
        Some(slot.closed.clone())
    }
}

/// A connection's place in the registry; given back when dropped.
struct Admitted {
    handle: Handle,
    /// Cancelled to close the connection at once.
    close: CancellationToken,
    /// Cancelled when this is dropped (after the connection's socket).
    closed: CancellationToken,
    /// Dropped after `drop` below has removed the slot.
    _permit: OwnedSemaphorePermit,
}

impl Admitted {
    fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.handle.registry.slots().open.remove(&self.handle.id);
        self.closed.cancel();
    }
}

/// Marks one connection as serving.
#[derive(Clone)]
struct Handle {
    registry: Arc<Registry>,
    id: u64,
}

impl Handle {
    /// Serving a request until the guard is dropped.
    fn serving(&self) -> Serving {
        if let Some(slot) = self.registry.slots().open.get_mut(&self.id) {
            slot.serving += 1;
        }
        Serving(self.clone())
    }
}

struct Serving(Handle);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(slot) = self.0.registry.slots().open.get_mut(&self.0.id) {
            slot.serving = slot.serving.saturating_sub(1);
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error(
        "the request body did not arrive within {}",
        humantime::format_duration(*.0)
    )]
    TimedOut(Duration),
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

/// A request body that fails once it has taken longer than its limit.
struct TimedBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
    limit: Duration,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(BodyError::from))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::TimedOut(this.limit)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
    use tokio::sync::{Notify, mpsc};

    #[test]
    fn backoff_doubles_to_the_maximum_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(
            waits,
            [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000],
            "10 ms doubling to 1 s"
        );
        assert_eq!(b.succeeded(), 10);
        assert_eq!(b.succeeded(), 0);
        assert_eq!(b.failed(), ACCEPT_BACKOFF_MIN);
        for _ in 0..100 {
            assert!(b.failed() <= ACCEPT_BACKOFF_MAX);
        }
    }

    /// Accepts whatever the test sends: a stream or an error; counts the calls.
    struct Script {
        next: mpsc::UnboundedReceiver<io::Result<DuplexStream>>,
        /// What every accept returns once the script is used up (`None`: wait).
        then_fail: Option<i32>,
        calls: Arc<AtomicU32>,
    }

    impl Acceptor for Script {
        type Io = DuplexStream;

        async fn accept(&mut self) -> io::Result<DuplexStream> {
            // A loop that never waits would keep the paused clock from moving: past this
            // many calls, stop answering, so the test sees the count instead of hanging.
            if self.calls.fetch_add(1, Ordering::SeqCst) >= 10_000 {
                std::future::pending::<()>().await;
            }
            tokio::task::yield_now().await;
            if let Ok(next) = self.next.try_recv() {
                return next;
            }
            match self.then_fail {
                Some(errno) => Err(io::Error::from_raw_os_error(errno)),
                None => match self.next.recv().await {
                    Some(next) => next,
                    None => std::future::pending().await,
                },
            }
        }
    }

    fn script(
        then_fail: Option<i32>,
    ) -> (
        Script,
        mpsc::UnboundedSender<io::Result<DuplexStream>>,
        Arc<AtomicU32>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let calls = Arc::new(AtomicU32::new(0));
        (
            Script {
                next: rx,
                then_fail,
                calls: calls.clone(),
            },
            tx,
            calls,
        )
    }

    /// `/healthz`, and `/hold` that answers once `release` is notified.
    fn router(release: Arc<Notify>) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/hold",
                get(move || {
                    let release = release.clone();
                    async move {
                        release.notified().await;
                        "released"
                    }
                }),
            )
    }

    /// A new in-memory connection, handed to the server; the client's end.
    fn connect(tx: &mpsc::UnboundedSender<io::Result<DuplexStream>>) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 * 1024);
        tx.send(Ok(server)).expect("server running");
        client
    }

    /// Reads until the server closes; what it sent.
    async fn read_to_close(client: &mut DuplexStream) -> String {
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(60), client.read_to_end(&mut out));
        read.await.expect("closed in time").expect("read");
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads one whole response (head and `content-length` body).
    async fn read_response(client: &mut DuplexStream) -> String {
        let mut out = Vec::new();
        let read = async {
            loop {
                let text = String::from_utf8_lossy(&out).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|n| n.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        return text;
                    }
                }
                let mut buf = [0u8; 1024];
                let n = client.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed before a whole response: {text:?}");
                out.extend_from_slice(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .expect("an answer in time")
    }

    /// Sends `GET path`; the whole response.
    async fn request(client: &mut DuplexStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
        client.write_all(request.as_bytes()).await.expect("write");
        read_response(client).await
    }

    /// Whether the server closed `client` (without blocking).
    async fn is_closed(client: &mut DuplexStream) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_millis(1), client.read(&mut buf)).await,
            Ok(Ok(0))
        )
    }

    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off_instead_of_spinning() {
        const ENOBUFS: i32 = 105;
        let (acceptor, _tx, calls) = script(Some(ENOBUFS));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(run(
            acceptor,
            router(Arc::default()),
            ServeLimits::default(),
            shutdown.clone(),
        ));
        // Ten seconds of (paused, auto-advanced) time: 10+20+...+640 ms, then one a second.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let n = calls.load(Ordering::SeqCst);
        assert!((10..=20).contains(&n), "{n} accepts in 10 s of failures");
        shutdown.cancel();
        server.await.expect("server stops");
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_oldest_idle_connection_makes_room_and_serving_ones_stay() {
        let release = Arc::new(Notify::new());
        let (acceptor, tx, _) = script(None);
        let shutdown = CancellationToken::new();
        let limits = ServeLimits {
            header_read_timeout: Duration::from_secs(3600),
            max_connections: 3,
            ..Default::default()
        };
        let server = tokio::spawn(run(
            acceptor,
            router(release.clone()),
            limits,
            shutdown.clone(),
        ));
        let mut busy = connect(&tx);
        busy.write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut idle_old = connect(&tx);
        idle_old
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        let mut idle_new = connect(&tx);
        tokio::time::sleep(Duration::from_millis(10)).await;

        // A fourth: the oldest idle one (not the older, serving one) makes room.
        let mut fourth = connect(&tx);
        assert!(
            request(&mut fourth, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert_eq!(read_to_close(&mut idle_old).await, "", "evicted");
        assert!(!is_closed(&mut busy).await, "the serving connection stays");
        assert!(!is_closed(&mut idle_new).await);

        // Now `fourth` (idle again) and `idle_new` give way, oldest first.
        let mut fifth = connect(&tx);
        assert!(
            request(&mut fifth, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert_eq!(read_to_close(&mut idle_new).await, "");
        assert!(!is_closed(&mut fourth).await);

        // Every connection serving: a new one is closed, the others keep going.
        fourth
            .write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        fifth
            .write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut refused = connect(&tx);
        assert_eq!(read_to_close(&mut refused).await, "", "refused");
        release.notify_waiters();
        for client in [&mut busy, &mut fourth, &mut fifth] {
            let answer = read_response(client).await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            assert!(answer.ends_with("released"), "{answer}");
        }
        shutdown.cancel();
        server.await.expect("server stops");
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_file_descriptors_an_idle_connection_is_closed_for_the_next_accept() {
        const EMFILE: i32 = 24;
        let (acceptor, tx, calls) = script(None);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(run(
            acceptor,
            router(Arc::default()),
            ServeLimits {
                header_read_timeout: Duration::from_secs(3600),
                ..Default::default()
            },
            shutdown.clone(),
        ));
        let mut held: Vec<DuplexStream> = (0..3).map(|_| connect(&tx)).collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(Err(io::Error::from_raw_os_error(EMFILE)))
            .expect("server running");
        let mut fresh = connect(&tx);
        assert!(
            request(&mut fresh, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert_eq!(read_to_close(&mut held[0]).await, "", "the oldest idle one");
        assert!(!is_closed(&mut held[1]).await);
        assert!(!is_closed(&mut held[2]).await);
        assert!(calls.load(Ordering::SeqCst) >= 5);
        shutdown.cancel();
        server.await.expect("server stops");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_the_request_in_flight_finish_then_closes() {
        let release = Arc::new(Notify::new());
        let (acceptor, tx, _) = script(None);
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(run(
            acceptor,
            router(release.clone()),
            ServeLimits::default(),
            shutdown.clone(),
        ));
        let mut busy = connect(&tx);
        busy.write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut idle = connect(&tx);
        tokio::time::sleep(Duration::from_millis(10)).await;
        shutdown.cancel();
        assert_eq!(read_to_close(&mut idle).await, "", "idle: closed at once");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!server.is_finished(), "waits for the request in flight");
        release.notify_one();
        let answer = read_to_close(&mut busy).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("released"), "{answer}");
        server.await.expect("server stops");
    }
}
