//! Leases (one poller per integration, one deliverer per subscriber, across replicas),
//! replica heartbeats, and wake-ups
//! by `LISTEN/NOTIFY`.
//!
//! Lease and heartbeat expiry use the database's clock (`now()`), so the replicas' clocks
//! do not matter.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::{PgStore, Server, WAKE_CHANNEL, describe};
use crate::ats::Timestamp;
use crate::store::StoreError;

/// The first wait before reconnecting the listener; doubled up to [`RECONNECT_MAX`].
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);
/// How often the listener checks that its connection still answers.
const LISTEN_PING: Duration = Duration::from_secs(15);

/// One kind of lease's statements: taken or renewed when free, expired or already ours;
/// given back by its holder; listed.
struct LeaseSql {
    take: &'static str,
    release: &'static str,
    list: &'static str,
}

/// Integrations' leases: who polls (and may commit; fencing reads this table).
const INTEGRATION_LEASES: LeaseSql = LeaseSql {
    take: "INSERT INTO leases (integration_id, holder, expires_at) \
           VALUES ($1, $2, now() + make_interval(secs => $3)) \
           ON CONFLICT (integration_id) DO UPDATE \
           SET holder = excluded.holder, expires_at = excluded.expires_at \
           WHERE leases.holder = excluded.holder OR leases.expires_at <= now() \
           RETURNING 1",
    release: "DELETE FROM leases WHERE integration_id = $1 AND holder = $2",
    list: "SELECT integration_id, holder, expires_at FROM leases ORDER BY integration_id",
};

/// Subscribers' delivery leases: who claims their deliveries.
const DELIVERY_LEASES: LeaseSql = LeaseSql {
    take: "INSERT INTO delivery_leases (subscriber, holder, expires_at) \
           VALUES ($1, $2, now() + make_interval(secs => $3)) \
           ON CONFLICT (subscriber) DO UPDATE \
           SET holder = excluded.holder, expires_at = excluded.expires_at \
           WHERE delivery_leases.holder = excluded.holder \
              OR delivery_leases.expires_at <= now() \
           RETURNING 1",
    release: "DELETE FROM delivery_leases WHERE subscriber = $1 AND holder = $2",
    list: "SELECT subscriber, holder, expires_at FROM delivery_leases ORDER BY subscriber",
};

impl PgStore {
    /// Takes or renews this replica's lease on `integration_id` for `ttl` (when it is
    /// free, expired, or already ours). Returns whether this replica holds it now.
    pub async fn try_lease(&self, integration_id: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.take_lease(&INTEGRATION_LEASES, integration_id, ttl)
            .await
    }

    /// Gives up this replica's lease on `integration_id` (nothing if it holds none).
    pub async fn release_lease(&self, integration_id: &str) -> Result<(), StoreError> {
        self.give_back_lease(&INTEGRATION_LEASES, integration_id)
            .await
    }

    /// Every lease: (integration id, holder's replica id, expiry), by integration. An
    /// expired lease stays listed until it is taken or released.
    pub async fn leases(&self) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        self.list_leases(&INTEGRATION_LEASES).await
    }

    /// Takes or renews this replica's delivery lease on `subscriber` for `ttl` (when it is
    /// free, expired, or already ours). Returns whether this replica holds it now. The
    /// lease decides which replica claims the subscriber's deliveries; claims themselves
    /// keep a delivery on one replica and the order per application, lease or not.
    pub async fn try_delivery_lease(
        &self,
        subscriber: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.take_lease(&DELIVERY_LEASES, subscriber, ttl).await
    }

    /// Gives up this replica's delivery lease on `subscriber` (nothing if it holds none).
    pub async fn release_delivery_lease(&self, subscriber: &str) -> Result<(), StoreError> {
        self.give_back_lease(&DELIVERY_LEASES, subscriber).await
    }

    /// Every delivery lease: (subscriber, holder's replica id, expiry), by subscriber.
    pub async fn delivery_leases(&self) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        self.list_leases(&DELIVERY_LEASES).await
    }

    async fn take_lease(
        &self,
        sql: &LeaseSql,
        key: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(sql.take)
            .await
            .map_err(|e| self.io(&e))?;
        let rows = client
            .query(&stmt, &[&key, &self.replica_id, &ttl.as_secs_f64()])
            .await
            .map_err(|e| self.io(&e))?;
        Ok(!rows.is_empty())
    }

    async fn give_back_lease(&self, sql: &LeaseSql, key: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(sql.release, &[&key, &self.replica_id])
            .await
            .map_err(|e| self.io(&e))?;
        Ok(())
    }

    async fn list_leases(
        &self,
        sql: &LeaseSql,
    ) -> Result<Vec<(String, String, Timestamp)>, StoreError> {
        let client = self.client().await?;
        let rows = client.query(sql.list, &[]).await.map_err(|e| self.io(&e))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(|e| self.io(&e))
    }

    /// Records that this replica is alive for `ttl`, and returns how many replicas are
    /// alive (this one included). Replicas silent for an hour are forgotten.
    pub async fn heartbeat(&self, ttl: Duration) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "WITH beat AS (INSERT INTO replicas (replica_id, expires_at) \
                 VALUES ($1, now() + make_interval(secs => $2)) \
                 ON CONFLICT (replica_id) DO UPDATE SET expires_at = excluded.expires_at), \
                 gone AS (DELETE FROM replicas WHERE expires_at < now() - interval '1 hour') \
                 SELECT count(*) FROM replicas WHERE expires_at > now() AND replica_id <> $1",
            )
            .await
            .map_err(|e| self.io(&e))?;
        let others: i64 = client
            .query_one(&stmt, &[&self.replica_id, &ttl.as_secs_f64()])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.io(&e))?;
        Ok(usize::try_from(others).unwrap_or(0) + 1)
    }

    /// Wake-ups: the receiver's value changes after every commit that made deliveries
    /// claimable (page commits, releases, dead letters retried), on any replica, and after
    /// the listening connection was re-established (something may have been missed while
    /// it was down). The connection is its own (not from the pool); it reconnects with
    /// backoff when the database goes away, and closes when every receiver is dropped.
    /// Fails only if the first connection cannot be made.
    pub async fn listen(&self) -> Result<watch::Receiver<u64>, StoreError> {
        let first = open_listener(&self.server).await?;
        let (tx, rx) = watch::channel(0u64);
        tokio::spawn(run_listener(self.server.clone(), first, tx));
        Ok(rx)
    }
}

/// A listening connection: its client (for pings) and the notifications it receives (the
/// channel closes when the connection ends).
type Listener = (tokio_postgres::Client, mpsc::UnboundedReceiver<()>);

async fn open_listener(server: &Server) -> Result<Listener, StoreError> {
    let (client, mut connection) = server
        .config
        .connect(server.tls.clone())
        .await
        .map_err(|e| server.connect_error(&e))?;
    let (notes_tx, notes_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if notes_tx.send(()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {WAKE_CHANNEL}"))
        .await
        .map_err(|e| server.connect_error(&e))?;
    Ok((client, notes_rx))
}

async fn run_listener(server: Arc<Server>, first: Listener, tx: watch::Sender<u64>) {
    let mut current = Some(first);
    let mut backoff = RECONNECT_MIN;
    loop {
        let (client, mut notes) = match current.take() {
            Some(listener) => listener,
            None => match open_listener(&server).await {
                Ok(listener) => {
                    backoff = RECONNECT_MIN;
                    tracing::info!(target = %server.target, "store: listening for wake-ups again");
                    tx.send_modify(|n| *n = n.wrapping_add(1));
                    listener
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "store: cannot listen for wake-ups");
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RECONNECT_MAX);
                    continue;
                }
            },
        };
        let mut ping = tokio::time::interval(LISTEN_PING);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                note = notes.recv() => match note {
                    Some(()) => tx.send_modify(|n| *n = n.wrapping_add(1)),
                    None => break,
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(LISTEN_PING, client.simple_query("SELECT 1")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::warn!(error = %server.scrub(describe(&e)), "store: the wake-up connection failed");
                            break;
                        }
                        Err(_) => {
                            tracing::warn!("store: the wake-up connection stopped answering");
                            break;
                        }
                    }
                }
            }
        }
        tracing::warn!(target = %server.target, "store: lost the wake-up connection; reconnecting");
    }
}
