//! `hirehook sim`.

use crate::cli::Failure;

/// Options of `hirehook sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {}

/// Runs the simulator until interrupted.
pub async fn run(_args: SimArgs) -> Result<(), Failure> {
    Err(Failure::Usage(anyhow::anyhow!(
        "the simulator is not built yet"
    )))
}
