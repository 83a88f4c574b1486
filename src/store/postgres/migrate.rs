//! Schema migrations: SQL files embedded in the binary, applied in order, each in its own
//! transaction, under a session advisory lock so that replicas starting together never
//! race. `hirehook_schema_version` holds the version applied last.

use super::{Server, describe};
use crate::store::StoreError;

/// The migrations, in order: version `i + 1` is `MIGRATIONS[i]`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_retention.sql"),
    include_str!("migrations/0003_claims.sql"),
    include_str!("migrations/0004_no_event_ids.sql"),
    include_str!("migrations/0005_delivery_leases.sql"),
];

/// The highest schema version this hirehook knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The advisory lock key migrations hold ("hirehook" in ASCII).
const LOCK_KEY: i64 = 0x6869_7265_686f_6f6b;

/// Connects to `url`, applies the missing migrations and returns the schema version now
/// (`hirehook store migrate`).
pub async fn migrate(url: &str) -> Result<u32, StoreError> {
    let server = Server::parse(url)?;
    run(&server).await
}

/// Applies the missing migrations on a connection of its own (closed after: the advisory
/// lock goes with it even if this future is dropped half-way).
pub(super) async fn run(server: &Server) -> Result<u32, StoreError> {
    run_to(server, SCHEMA_VERSION).await
}

/// Applies the missing migrations up to `version` only: an older schema, as an older
/// hirehook left it (the migration tests start from one).
#[cfg(test)]
pub(super) async fn migrate_to(url: &str, version: u32) -> Result<u32, StoreError> {
    run_to(&Server::parse(url)?, version.min(SCHEMA_VERSION)).await
}

/// [`run`], stopping at `upto` (at most [`SCHEMA_VERSION`]).
async fn run_to(server: &Server, upto: u32) -> Result<u32, StoreError> {
    let mut client = server.connect_one().await?;
    let err = |e: tokio_postgres::Error| StoreError::Database {
        target: server.target.clone(),
        cause: server.scrub(format!("migrating the schema: {}", describe(&e))),
    };
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(err)?;
    let result = apply(&mut client, server, upto).await;
    // Unlocked explicitly so a pooled or long-lived connection never keeps it; closing the
    // connection would release it too.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply(
    client: &mut tokio_postgres::Client,
    server: &Server,
    upto: u32,
) -> Result<u32, StoreError> {
    let err = |e: tokio_postgres::Error| StoreError::Database {
        target: server.target.clone(),
        cause: server.scrub(format!("migrating the schema: {}", describe(&e))),
    };
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS hirehook_schema_version (version integer NOT NULL)",
        )
        .await
        .map_err(err)?;
    let row = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM hirehook_schema_version",
            &[],
        )
        .await
        .map_err(err)?;
    let found: i32 = row.try_get(0).map_err(err)?;
    let found = u32::try_from(found).unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in (1i32..)
        .zip(MIGRATIONS.iter())
        .take(upto as usize)
        .skip(found as usize)
    {
        let tx = client.transaction().await.map_err(err)?;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::Database {
                target: server.target.clone(),
                cause: server.scrub(format!("applying migration {version}: {}", describe(&e))),
            })?;
        if version == 2 {
            backfill_deleted_at(&tx).await.map_err(err)?;
        }
        tx.execute("DELETE FROM hirehook_schema_version", &[])
            .await
            .map_err(err)?;
        tx.execute(
            "INSERT INTO hirehook_schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(err)?;
        tx.commit().await.map_err(err)?;
    }
    Ok(upto.max(found))
}

/// Migration 2 added `snapshots.deleted_at`: fills it for the snapshots already stored, in
/// the migration's transaction, reading them in key order a batch at a time (the deletion
/// is in the snapshot's header, which only Rust decodes).
async fn backfill_deleted_at(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<(), tokio_postgres::Error> {
    use crate::diff::snapshot::Header;
    const BATCH: i64 = 10_000;
    let mut after = (String::new(), String::new());
    loop {
        let rows = tx
            .query(
                "SELECT integration_id, application_id, bytes FROM snapshots \
                 WHERE (integration_id, application_id) > ($1, $2) \
                 ORDER BY integration_id, application_id LIMIT $3",
                &[&after.0, &after.1, &BATCH],
            )
            .await?;
        let (mut integrations, mut applications, mut times) = (Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let integration: String = row.try_get(0)?;
            let application: String = row.try_get(1)?;
            let bytes: Vec<u8> = row.try_get(2)?;
            if let Some(at) = Header::read(&bytes).and_then(|h| h.deleted_at) {
                integrations.push(integration.clone());
                applications.push(application.clone());
                times.push(at);
            }
            after = (integration, application);
        }
        if !integrations.is_empty() {
            tx.execute(
                "UPDATE snapshots s SET deleted_at = u.d \
                 FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(i, a, d) \
                 WHERE s.integration_id = u.i AND s.application_id = u.a",
                &[&integrations, &applications, &times],
            )
            .await?;
        }
        if (rows.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
