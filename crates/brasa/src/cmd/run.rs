//! `brasa run` and `brasa check`.

use crate::common::signal::ShutdownSignal;
use crate::common::GlobalArgs;
use crate::daemon;
use std::path::PathBuf;

/// Arguments of `brasa run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Config file (TOML). Without it the embedded defaults run: a RADIUS server on
    /// 127.0.0.1:1812/1813 with client 127.0.0.1 (secret `testing123`) and user `alice`
    /// (password `wonderland`), as in examples/quickstart.toml.
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

pub async fn run(_global: &GlobalArgs, args: RunArgs) -> anyhow::Result<()> {
    let mut shutdown = ShutdownSignal::install()?;
    let resolved = daemon::config::load(args.config.as_deref())?;
    let running = daemon::start(resolved).await?;
    tracing::info!(api = %running.api, "brasa is running");
    let signal = shutdown.recv().await;
    tracing::info!(signal, "shutting down");
    running.shutdown().await;
    Ok(())
}

pub async fn check(global: &GlobalArgs, args: CheckArgs) -> anyhow::Result<()> {
    let resolved = daemon::config::load(Some(&args.config))?;
    let summary = serde_json::json!({
        "config": args.config,
        "valid": true,
        "api": resolved.api.listen.to_string(),
        "api_tls": resolved.api.tls.is_some(),
        "api_users": resolved.api.access.users.len(),
        "api_tokens": resolved.api.access.tokens.len(),
        "data_dir": resolved.data_dir,
        "radius": resolved.radius.as_ref().map(|(engine, _)| serde_json::json!({
            "clients": engine.clients.len(),
            "servers": engine.servers.len(),
            "pools": engine.pools.len(),
            "local_databases": engine.local_databases.len(),
            "policies": engine.policies.len(),
        })),
        "subscriber_manager": resolved.subscriber_manager.as_ref().map(|sm| serde_json::json!({
            "listen": sm.listen.to_string(),
            "domains": sm.config.index.domains,
            "eps": sm.config.eps.len(),
            "radius_login_events": sm.radius.is_some(),
        })),
        "python": resolved.python.as_ref().map(|python| serde_json::json!({
            "scripts": python.worker.scripts.len(),
            "policies": python.worker.policies.len(),
            "caches": python.caches.caches.len(),
        })),
    });
    if global.json {
        crate::common::output::print_json(&summary)?;
    } else {
        println!("{}: configuration is valid", args.config.display());
    }
    Ok(())
}
