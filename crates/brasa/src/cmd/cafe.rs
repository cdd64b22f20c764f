//! `brasa cafe` (placeholder until its work lands).

use crate::common::GlobalArgs;

/// Subcommands of `brasa cafe`.
#[derive(clap::Subcommand, Debug)]
pub enum CafeCommand {
    /// Not implemented yet.
    Placeholder,
}

pub async fn run(_global: &GlobalArgs, _command: CafeCommand) -> anyhow::Result<()> {
    anyhow::bail!("brasa cafe is not implemented yet")
}
