//! `brasa run` and `brasa check` (placeholder until the RADIUS daemon lands).

use crate::common::GlobalArgs;
use std::path::PathBuf;

/// Arguments of `brasa run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Config file (TOML). Without it the embedded defaults are used.
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}

/// Arguments of `brasa check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Config file (TOML) to validate.
    #[arg(short, long)]
    pub config: PathBuf,
}

pub async fn run(_global: &GlobalArgs, _args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("brasa run is not implemented yet")
}

pub async fn check(_global: &GlobalArgs, _args: CheckArgs) -> anyhow::Result<()> {
    anyhow::bail!("brasa check is not implemented yet")
}
