//! `brasa curling` (placeholder until its work lands).

use crate::common::GlobalArgs;

/// Subcommands of `brasa curling`.
#[derive(clap::Subcommand, Debug)]
pub enum CurlingCommand {
    /// Not implemented yet.
    Placeholder,
}

pub async fn run(_global: &GlobalArgs, _command: CurlingCommand) -> anyhow::Result<()> {
    anyhow::bail!("brasa curling is not implemented yet")
}
