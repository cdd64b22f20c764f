//! `brasa dataplane -c dp.toml`: starts the userspace data plane daemon (wired in
//! `daemon::dataplane`); `brasa cafe` is its operator command.

use crate::common::GlobalArgs;
use std::path::PathBuf;

/// Arguments of `brasa dataplane`.
#[derive(clap::Args, Debug)]
pub struct DataplaneArgs {
    /// Configuration file (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Runs the daemon until SIGTERM or Ctrl-C.
pub async fn run(_global: &GlobalArgs, args: DataplaneArgs) -> anyhow::Result<()> {
    crate::daemon::dataplane::run(&args.config).await
}
