//! `brasa dataplane` (owned by the dataplane work; placeholder until it lands).

use crate::common::GlobalArgs;

/// Arguments of `brasa dataplane`.
#[derive(clap::Args, Debug)]
pub struct DataplaneArgs {}

pub async fn run(_global: &GlobalArgs, _args: DataplaneArgs) -> anyhow::Result<()> {
    anyhow::bail!("brasa dataplane is not implemented yet")
}
