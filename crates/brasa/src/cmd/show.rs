//! `brasa show` (placeholder until its work lands).

use crate::common::GlobalArgs;

/// Subcommands of `brasa show`.
#[derive(clap::Subcommand, Debug)]
pub enum ShowCommand {
    /// Not implemented yet.
    Placeholder,
}

pub async fn run(_global: &GlobalArgs, _command: ShowCommand) -> anyhow::Result<()> {
    anyhow::bail!("brasa show is not implemented yet")
}
