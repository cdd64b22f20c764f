//! `brasa` — the one binary: daemons (`run`, `dataplane`, `rae`, `curling`) and operator commands.

mod cmd;
mod common;
mod console;
mod daemon;

use clap::{Parser, Subcommand};

/// brasa: an open, programmable subscriber policy and service control plane.
///
/// Daemons: `brasa run` (RADIUS server/proxy and the other control-plane components its config
/// enables), `brasa dataplane`, `brasa rae`, `brasa curling`. Operator commands talk to a running
/// daemon through its management API (`--api URL` or `BRASA_API`).
#[derive(Parser, Debug)]
#[command(
    name = "brasa",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: common::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the control-plane daemon with the components its config enables.
    Run(cmd::run::RunArgs),
    /// Validate a config file without starting anything (errors give file:line:col).
    Check(cmd::run::CheckArgs),
    /// Show state and statistics of a running daemon.
    #[command(subcommand)]
    Show(cmd::show::ShowCommand),
    /// Operator tools of a running daemon: dump python-policy caches, change entry lifetimes,
    /// reload python-scripts (the SR OS `tools dump|perform` commands).
    #[command(subcommand)]
    Tools(cmd::tools::ToolsCommand),
    /// Remove state of a running daemon (`clear python python-policy NAME cache --string-key K`).
    #[command(subcommand)]
    Clear(cmd::tools::ClearCommand),
    /// Debug logging of a running daemon, changed without a restart
    /// (`debug service dynamic-services [no] capture-sap SAP …`).
    #[command(subcommand)]
    Debug(cmd::dynsvc::DebugCommand),
    /// RADIUS client tools (a built-in radclient with rate and latency summary).
    #[command(subcommand)]
    Radius(cmd::radius::RadiusCommand),
    /// Routing Awareness Entity: run the daemon or query a running one (COMET D4.3 §4).
    Rae(cmd::rae::RaeArgs),
    /// Run the userspace data plane daemon (CAFE forwarding and intercept, COMET D4.3 §5).
    Dataplane(cmd::dataplane::DataplaneArgs),
    /// CAFE forwarding and intercept tables of a running data plane (the cf_tool/ci_tool commands).
    #[command(subcommand)]
    Cafe(cmd::cafe::CafeCommand),
    /// Stateful content-aware forwarding (CURLING, COMET D4.3 §6): scenarios and entities.
    #[command(subcommand)]
    Curling(cmd::curling::CurlingCommand),
    /// Subscriber manager (Cisco SCMS Subscriber Manager): subscribers, lookups, logins, enforcement points.
    #[command(subcommand)]
    Sm(cmd::sm::SmCommand),
    /// Services of the data plane in `brasa run` (Epipe, VPLS, IES, VPRN on SAPs, with
    /// filters and policers): apply commands in the SR OS-like text form, remove, export.
    #[command(subcommand)]
    Service(cmd::service::ServiceCommand),
    /// Print an Argon2 password hash for `[[api.user]]`, or a new API token and its digest
    /// for `[[api.token]]`.
    Passwd(cmd::passwd::PasswdArgs),
}

impl Command {
    /// True for the commands that start a long-running daemon.
    fn starts_daemon(&self) -> bool {
        match self {
            Command::Run(_) | Command::Dataplane(_) => true,
            Command::Rae(args) => args.starts_daemon(),
            Command::Curling(command) => command.starts_daemon(),
            _ => false,
        }
    }
}

/// Operator commands end quietly when their reader goes away (`brasa … | head`), as Unix tools
/// do: the default SIGPIPE action ends the process without a word, where Rust's ignored SIGPIPE
/// would turn the failed write into a panic. Daemons keep SIGPIPE ignored, so that a peer closing
/// a pipe or socket is an error they handle, never their end.
fn restore_default_sigpipe() {
    // SAFETY: called at the start of `main`, before any thread exists; setting a signal's
    // disposition to SIG_DFL installs no handler code, so no async-signal-safety rule applies.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if !cli.command.starts_daemon() {
        restore_default_sigpipe();
    }
    if let Err(err) = common::init_logging(&cli.global) {
        eprintln!("error: {err:#}");
        return std::process::ExitCode::from(2);
    }
    match common::api::Credentials::load(
        cli.global.token.as_deref(),
        cli.global.token_file.as_deref(),
        cli.global.ca_cert.as_deref(),
    ) {
        Ok(credentials) => credentials.install(),
        Err(err) => {
            eprintln!("error: {err:#}");
            return std::process::ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let global = cli.global;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => cmd::run::run(&global, args).await,
            Command::Check(args) => cmd::run::check(&global, args).await,
            Command::Show(command) => cmd::show::run(&global, command).await,
            Command::Tools(command) => cmd::tools::run_tools(&global, command).await,
            Command::Clear(command) => cmd::tools::run_clear(&global, command).await,
            Command::Debug(command) => {
                tokio::task::block_in_place(|| cmd::dynsvc::debug(&global, command))
            }
            Command::Radius(command) => cmd::radius::run(&global, command).await,
            Command::Rae(args) => cmd::rae::run(&global, args).await,
            Command::Dataplane(args) => cmd::dataplane::run(&global, args).await,
            Command::Cafe(command) => cmd::cafe::run(&global, command).await,
            Command::Curling(command) => cmd::curling::run(&global, command).await,
            Command::Sm(command) => cmd::sm::run(&global, command).await,
            Command::Service(command) => cmd::service::run(&global, command).await,
            Command::Passwd(args) => cmd::passwd::run(args),
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
