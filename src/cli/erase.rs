//! `hirehook erase`: remove a person's data from every stored snapshot, event body and
//! delivery record of one integration, and from the store's files.
//!
//! sled: the store itself when no daemon holds it, else the daemon's `POST /v1/erase`;
//! either rewrites the store's files ([`crate::store::Store::purge_erased`]). PostgreSQL:
//! directly, while replicas run (then `VACUUM FULL` of the changed tables).

use std::path::PathBuf;

use anyhow::anyhow;

use super::Failure;
use super::admin_client::{Source, store_or_api};
use super::sync::load_config;
use crate::admin::api::EraseRequest;
use crate::config::StoreBackend;
use crate::store::erase::check_id;
use crate::store::{EraseReport, ErasureSubject};

/// Options of `hirehook erase`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("subject")
        .required(true)
        .args(["application", "candidate"])
))]
pub struct EraseArgs {
    /// The TOML config file (its `[store]`, and `[admin]` when a daemon holds a sled store).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The Kombo integration id.
    #[arg(long, value_name = "ID")]
    pub integration: String,
    /// Erase one application: its snapshot and all its events.
    #[arg(long, value_name = "ID")]
    pub application: Option<String>,
    /// Erase one candidate: every snapshot and event of the integration naming this id.
    #[arg(long, value_name = "ID")]
    pub candidate: Option<String>,
}

/// Runs `hirehook erase`.
pub async fn run(args: EraseArgs) -> Result<(), Failure> {
    let usage = |flag: &str, why: &str| Failure::Usage(anyhow!("`--{flag}` {why}"));
    check_id(&args.integration).map_err(|why| usage("integration", why))?;
    let subject = match (args.application, args.candidate) {
        (Some(a), None) => {
            check_id(&a).map_err(|why| usage("application", why))?;
            ErasureSubject::Application(a)
        }
        (None, Some(c)) => {
            check_id(&c).map_err(|why| usage("candidate", why))?;
            ErasureSubject::Candidate(c)
        }
        // clap's group refuses both and neither.
        _ => return Err(usage("application", "or `--candidate`: give exactly one")),
    };
    let config = load_config(&args.config)?;
    let integration = args.integration;
    let (report, purge) = match store_or_api(&config).await? {
        Source::Api(client) => {
            let request = EraseRequest {
                integration: Some(integration.clone()),
                application: matches!(subject, ErasureSubject::Application(_))
                    .then(|| subject.id().to_owned()),
                candidate: matches!(subject, ErasureSubject::Candidate(_))
                    .then(|| subject.id().to_owned()),
            };
            let report: EraseReport = client.post("/v1/erase", &request).await?;
            (report, None)
        }
        Source::Store(store) => {
            let runtime = |e: crate::store::StoreError| Failure::Runtime(e.into());
            let report = store.erase(&integration, &subject).await.map_err(runtime)?;
            // sled: nothing else holds the store, and the rewrite an erasure needs is the
            // one a daemon runs online; PostgreSQL: VACUUM FULL of the changed tables.
            let purge = store.purge_erased(&report).await.map_err(|e| {
                let redo = match config.store.backend {
                    StoreBackend::Sled => {
                        "rewriting the sled store's files (so the old values leave them) \
                         failed: run `hirehook store compact` to rewrite them"
                    }
                    StoreBackend::Postgres => {
                        "VACUUM FULL of the changed tables failed: run it again \
                         (docs/operations.md § Erasure)"
                    }
                };
                Failure::Runtime(
                    anyhow::Error::new(e).context(format!("the erasure is durable, but {redo}")),
                )
            })?;
            crate::erase::log_erasure(&integration, &subject, &report, &purge, "command line");
            (report, Some(purge))
        }
    };
    println!(
        "erased {} {} of integration {integration}: {}",
        subject.kind(),
        subject.id(),
        report.summary()
    );
    if let Some(purge) = purge.filter(|p| !p.what.is_empty()) {
        println!("{} in {:.1?}", purge.what, purge.took);
    }
    Ok(())
}
