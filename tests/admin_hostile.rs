//! The admin listener under hostile clients, before any authentication: thousands of
//! half-sent request heads held open, idle kept-alive connections, a trickled body.
//! `/healthz` keeps answering, the server closes what it must, and it never holds more
//! connections than its cap.
//!
//! The tests count the process's open file descriptors, which the daemon (in-process)
//! shares with the test's own clients: they run one at a time.

#[path = "it/common/mod.rs"]
mod common;

use std::time::Duration;

use common::harness::{Harness, LIMIT, Options};
use hirehook::admin::ServeLimits;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// One test at a time: the descriptor counts must not see another test's sockets.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A request head without its final empty line: the server waits for the rest.
const HALF_SENT: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";

/// Descriptors the daemon may open on its own while a test runs (its first sync, the
/// client and server sockets of one `/healthz`).
const SLACK: usize = 64;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

async fn healthz(harness: &Harness) -> u16 {
    // A fresh client: no pooled connection that could have been closed under it.
    let request = reqwest::Client::new().get(harness.url("/healthz")).send();
    tokio::time::timeout(LIMIT, request)
        .await
        .expect("/healthz answers within the limit")
        .expect("/healthz")
        .status()
        .as_u16()
}

/// Whether the server closed `stream` (EOF or reset), without waiting.
fn closed_by_server(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 256];
    match stream.try_read(&mut buf) {
        Ok(0) => true,
        // Bytes of an answer (e.g. 408): the close follows.
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Reads until the server closes the connection; what it sent.
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(LIMIT, stream.read_to_end(&mut out)).await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what}: still open after {LIMIT:?}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_half_sent_requests_are_capped_and_healthz_still_answers() {
    let _serial = SERIAL.lock().await;
    const CAP: usize = 200;
    const HELD: usize = 2_000;
    let harness = Harness::start(Options {
        admin_limits: ServeLimits {
            // Longer than the test: only the cap closes connections here.
            header_read_timeout: Duration::from_secs(600),
            max_connections: CAP,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    assert_eq!(healthz(&harness).await, 200);
    let before = open_fds();

    let mut held = Vec::with_capacity(HELD);
    for i in 0..HELD {
        let mut stream = TcpStream::connect(harness.admin).await.expect("connect");
        stream.write_all(HALF_SENT).await.expect("half a head");
        held.push(stream);
        if i % 100 == 99 {
            // Ours plus the server's: the server holds at most CAP of them.
            let open = open_fds().saturating_sub(before);
            assert!(
                open <= held.len() + CAP + SLACK,
                "{open} descriptors for {} client connections: the server holds more than {CAP}",
                held.len()
            );
        }
    }

    // Accepted in order: once this is served, every held connection was accepted (or
    // closed to make room).
    assert_eq!(healthz(&harness).await, 200);
    let open = open_fds().saturating_sub(before);
    assert!(
        open <= HELD + CAP + SLACK,
        "{open} descriptors for {HELD} client connections"
    );

    // The server closed all but at most CAP of them, oldest first.
    let wait = async {
        loop {
            let closed = held.iter().filter(|s| closed_by_server(s)).count();
            if closed >= HELD - CAP {
                return closed;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let closed = tokio::time::timeout(LIMIT, wait)
        .await
        .expect("the server closes all but CAP of the held connections");
    assert!(closed <= HELD, "{closed}");
    assert!(
        closed_by_server(&held[0]),
        "the oldest held connection made room"
    );
    assert!(
        !closed_by_server(&held[HELD - 1]),
        "the newest held connection is still open"
    );
    // Descriptors come back.
    drop(held);
    assert_eq!(healthz(&harness).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_idle_and_trickling_connections_are_closed_after_the_timeouts() {
    let _serial = SERIAL.lock().await;
    let harness = Harness::start(Options {
        admin_limits: ServeLimits {
            header_read_timeout: Duration::from_millis(500),
            body_read_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let connect = || TcpStream::connect(harness.admin);

    // Half a head, and nothing at all.
    let mut half_sent = Vec::new();
    for _ in 0..20 {
        let mut stream = connect().await.expect("connect");
        stream.write_all(HALF_SENT).await.expect("write");
        half_sent.push(stream);
    }
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(connect().await.expect("connect"));
    }
    // One whole request, answered, then idle on a kept-alive connection.
    let mut kept_alive = Vec::new();
    for _ in 0..5 {
        let mut stream = connect().await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        kept_alive.push(stream);
    }
    // A body that never finishes arriving.
    let mut trickling = connect().await.expect("connect");
    trickling
        .write_all(
            b"POST /kombo/webhook HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
              x-kombo-signature: x\r\ncontent-length: 100\r\n\r\n{\"id\":",
        )
        .await
        .expect("write");

    for stream in half_sent.iter_mut().chain(silent.iter_mut()) {
        read_until_closed(stream, "a connection without a whole request head").await;
    }
    for stream in &mut kept_alive {
        let answer = read_until_closed(stream, "an idle kept-alive connection").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"status\":\"ok\""), "{answer}");
    }
    let answer = read_until_closed(&mut trickling, "a request whose body trickles").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert_eq!(healthz(&harness).await, 200);
}
