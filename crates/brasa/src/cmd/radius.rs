//! `brasa radius` (placeholder until its work lands).

use crate::common::GlobalArgs;

/// Subcommands of `brasa radius`.
#[derive(clap::Subcommand, Debug)]
pub enum RadiusCommand {
    /// Not implemented yet.
    Placeholder,
}

pub async fn run(_global: &GlobalArgs, _command: RadiusCommand) -> anyhow::Result<()> {
    anyhow::bail!("brasa radius is not implemented yet")
}
