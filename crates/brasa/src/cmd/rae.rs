//! `brasa rae` (owned by the rae work; placeholder until it lands).

use crate::common::GlobalArgs;

/// Arguments of `brasa rae`.
#[derive(clap::Args, Debug)]
pub struct RaeArgs {}

pub async fn run(_global: &GlobalArgs, _args: RaeArgs) -> anyhow::Result<()> {
    anyhow::bail!("brasa rae is not implemented yet")
}
