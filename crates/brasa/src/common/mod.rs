//! Pieces every subcommand shares: global flags, logging, config files, the management API
//! (server and client), Prometheus text output, operator-facing tables, the daemons'
//! shutdown signals and crash-safe file replacement.

pub mod access;
pub mod api;
pub mod config;
pub mod durable;
pub mod mgmt;
pub mod output;
pub mod prom;
pub mod signal;

use clap::{Args, ValueEnum};

/// Flags accepted by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info,brasa_aaa=debug`).
    #[arg(long, global = true, env = "BRASA_LOG", default_value = "info")]
    pub log: String,
    /// Log line format: `text` for people, `json` for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Management API of the daemon to talk to (default: the daemon's own default address).
    #[arg(long, global = true, env = "BRASA_API")]
    pub api: Option<String>,
    /// Print show/dump output as JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// API token of a daemon that requires credentials (`[[api.token]]`).
    #[arg(long, global = true, env = "BRASA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File whose first line is the API token (instead of `--token`).
    #[arg(
        long,
        global = true,
        env = "BRASA_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<std::path::PathBuf>,
    /// PEM certificate(s) the daemon's HTTPS certificate must chain to (a private CA or
    /// the daemon's own self-signed certificate).
    #[arg(long, global = true, env = "BRASA_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
}

/// How log lines are written.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl GlobalArgs {
    /// The management API base URL, `default` when neither `--api` nor `BRASA_API` is given.
    pub fn api_url(&self, default: &str) -> String {
        let url = self.api.clone().unwrap_or_else(|| default.to_string());
        if url.starts_with("http://") || url.starts_with("https://") {
            url.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", url.trim_end_matches('/'))
        }
    }
}

/// Installs the global tracing subscriber on stderr. Colour escapes only when stderr is a
/// terminal and `NO_COLOR` is unset, and never in JSON lines: a log file or a collector must get
/// plain text.
pub fn init_logging(global: &GlobalArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&global.log)
        .map_err(|err| anyhow::anyhow!("invalid --log filter {:?}: {err}", global.log))?;
    let colour = global.log_format == LogFormat::Text
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|err| anyhow::anyhow!("cannot install the logger: {err}"))
}
