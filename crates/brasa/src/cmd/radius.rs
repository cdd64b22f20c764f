//! `brasa radius send`: a built-in RADIUS test client in the spirit of radclient, with a load
//! mode (`--count`, `--parallel`) that prints rate and latency percentiles.

use crate::common::GlobalArgs;
use anyhow::{bail, Context};
use brasa_aaa::client::{Exchange, IdSpace, MessageAuthenticator, ReplyError, Retry, Timeout};
use brasa_radius::{Code, Dictionary, Message};
use rand::RngCore;
use serde::Serialize;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// RADIUS client tools.
#[derive(clap::Subcommand, Debug)]
pub enum RadiusCommand {
    /// Send requests built from `Name = value` lines (radclient syntax) and print the replies,
    /// or with `--count` a summary with rate and latency percentiles.
    ///
    /// Example: echo 'User-Name = alice, User-Password = wonderland' |
    ///          brasa radius send 127.0.0.1:1812 auth testing123
    Send(SendArgs),
}

/// Arguments of `brasa radius send`.
#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Server address (`host:port`; the port defaults by type: 1812 auth/status, 1813 acct,
    /// 3799 coa/disconnect).
    pub server: String,
    /// Request type: auth, acct, status, coa, disconnect (or a code name/number).
    pub kind: String,
    /// Shared secret.
    pub secret: String,
    /// Read the attributes from this file instead of standard input.
    #[arg(short, long)]
    pub file: Option<PathBuf>,
    /// Extra FreeRADIUS dictionary files merged over the built-in ones.
    #[arg(short = 'd', long = "dictionary")]
    pub dictionaries: Vec<PathBuf>,
    /// Number of requests to send in total (load mode when > 1).
    #[arg(short = 'c', long, default_value_t = 1)]
    pub count: u64,
    /// Requests in flight at once (each on its own socket).
    #[arg(short = 'p', long, default_value_t = 1)]
    pub parallel: usize,
    /// Seconds to wait for each reply.
    #[arg(short = 't', long, default_value_t = 3.0)]
    pub timeout: f64,
    /// Further attempts after a timeout.
    #[arg(short = 'r', long, default_value_t = 0)]
    pub retries: u32,
    /// Do not add a Message-Authenticator to Access-Requests (it is added by default).
    #[arg(long)]
    pub no_message_authenticator: bool,
    /// Print nothing per reply in single mode; only the summary.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Serialize, Default)]
struct Summary {
    sent: u64,
    received: u64,
    timeouts: u64,
    bad_replies: u64,
    by_code: std::collections::BTreeMap<String, u64>,
    seconds: f64,
    rate_per_second: f64,
    latency_ms_p50: f64,
    latency_ms_p90: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
}

#[derive(Debug, Serialize)]
struct ReplyView {
    code: String,
    identifier: u8,
    from: String,
    length: usize,
    latency_ms: f64,
    attributes: Vec<String>,
}

pub async fn run(global: &GlobalArgs, command: RadiusCommand) -> anyhow::Result<()> {
    match command {
        RadiusCommand::Send(args) => send(global, args).await,
    }
}

async fn send(global: &GlobalArgs, args: SendArgs) -> anyhow::Result<()> {
    let code = Code::from_name(&args.kind).with_context(|| {
        format!(
            "unknown request type {:?}; expected auth, acct, status, coa or disconnect",
            args.kind
        )
    })?;
    if !code.is_request() {
        bail!("{code} is not a request");
    }
    let default_port = match code {
        Code::AccountingRequest => 1813,
        Code::CoaRequest | Code::DisconnectRequest => 3799,
        _ => 1812,
    };
    let server = resolve_server(&args.server, default_port)?;
    let mut dictionary = Dictionary::builtin();
    for path in &args.dictionaries {
        dictionary
            .merge_file(path)
            .with_context(|| format!("loading dictionary {}", path.display()))?;
    }
    let text = match &args.file {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None if code == Code::StatusServer => String::new(),
        None => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
    };
    let pairs = dictionary
        .parse_pairs(&text)
        .map_err(|err| anyhow::anyhow!("attributes: {err}"))?;
    let template = Arc::new(Template {
        code,
        pairs,
        dictionary,
        secret: Arc::from(args.secret.as_bytes()),
        message_authenticator: !args.no_message_authenticator,
    });
    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let parallel = args.parallel.clamp(1, 4096).min(args.count.max(1) as usize);

    if args.count <= 1 {
        let socket = bind_for(server).await?;
        let outcome = exchange(&socket, &template, server, 0, timeout, args.retries).await?;
        return match outcome {
            Outcome::Reply(reply, latency, length) => {
                let view = ReplyView {
                    code: reply.code.to_string(),
                    identifier: reply.identifier,
                    from: server.to_string(),
                    length,
                    latency_ms: latency.as_secs_f64() * 1000.0,
                    attributes: template
                        .dictionary
                        .decode_pairs(&reply, None)
                        .iter()
                        .map(|p| p.to_text(&template.dictionary))
                        .collect(),
                };
                if global.json {
                    crate::common::output::print_json(&view)?;
                } else if !args.quiet {
                    println!(
                        "Received {} Id {} from {} length {} ({:.2} ms)",
                        view.code, view.identifier, view.from, view.length, view.latency_ms
                    );
                    for attribute in &view.attributes {
                        println!("\t{attribute}");
                    }
                }
                if reply.code == Code::AccessReject {
                    std::process::exit(1);
                }
                Ok(())
            }
            Outcome::Timeout => bail!(
                "no reply from {server} after {} attempt(s)",
                args.retries + 1
            ),
            Outcome::Bad(reason) => bail!("invalid reply from {server}: {reason}"),
        };
    }

    let progress = if global.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.count)
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} requests  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..parallel {
        let template = template.clone();
        let next = next.clone();
        let progress = progress.clone();
        let count = args.count;
        let retries = args.retries;
        workers.push(tokio::spawn(async move {
            let socket = bind_for(server).await?;
            let mut summary = Summary::default();
            let mut latencies = Vec::new();
            // One request in flight per socket: Identifiers rotate through its 256.
            let mut identifiers = IdSpace::new(1);
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= count {
                    break;
                }
                let Some((slot, identifier)) = identifiers.allocate() else {
                    anyhow::bail!("no free RADIUS Identifier");
                };
                summary.sent += 1;
                let outcome =
                    exchange(&socket, &template, server, identifier, timeout, retries).await?;
                identifiers.release(slot, identifier);
                match outcome {
                    Outcome::Reply(reply, latency, _) => {
                        summary.received += 1;
                        *summary.by_code.entry(reply.code.to_string()).or_default() += 1;
                        latencies.push(latency);
                    }
                    Outcome::Timeout => summary.timeouts += 1,
                    Outcome::Bad(_) => summary.bad_replies += 1,
                }
                progress.inc(1);
            }
            anyhow::Ok((summary, latencies))
        }));
    }
    let mut total = Summary::default();
    let mut latencies = Vec::new();
    for worker in workers {
        let (summary, mut worker_latencies) = worker.await??;
        total.sent += summary.sent;
        total.received += summary.received;
        total.timeouts += summary.timeouts;
        total.bad_replies += summary.bad_replies;
        for (code, count) in summary.by_code {
            *total.by_code.entry(code).or_default() += count;
        }
        latencies.append(&mut worker_latencies);
    }
    progress.finish_and_clear();
    total.seconds = started.elapsed().as_secs_f64();
    total.rate_per_second = total.received as f64 / total.seconds.max(1e-9);
    latencies.sort();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index.min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    total.latency_ms_p50 = percentile(0.50);
    total.latency_ms_p90 = percentile(0.90);
    total.latency_ms_p99 = percentile(0.99);
    total.latency_ms_max = percentile(1.0);
    if global.json {
        crate::common::output::print_json(&total)?;
    } else {
        println!(
            "sent {}  received {}  timeouts {}  bad {}  in {:.2} s  =>  {:.0} req/s",
            total.sent,
            total.received,
            total.timeouts,
            total.bad_replies,
            total.seconds,
            total.rate_per_second
        );
        let codes: Vec<String> = total
            .by_code
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        println!("replies: {}", codes.join(", "));
        println!(
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
            total.latency_ms_p50, total.latency_ms_p90, total.latency_ms_p99, total.latency_ms_max
        );
    }
    if total.received < total.sent {
        std::process::exit(1);
    }
    Ok(())
}

struct Template {
    code: Code,
    pairs: Vec<brasa_radius::Pair>,
    dictionary: Dictionary,
    secret: Arc<[u8]>,
    message_authenticator: bool,
}

enum Outcome {
    Reply(Message, Duration, usize),
    Timeout,
    Bad(String),
}

fn resolve_server(text: &str, default_port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    use std::net::ToSocketAddrs;
    let with_port = if text.contains(':') {
        text.to_string()
    } else {
        format!("{text}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {text:?}"))?
        .next()
        .with_context(|| format!("{text:?} has no address"))
}

async fn bind_for(server: SocketAddr) -> anyhow::Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    Ok(UdpSocket::bind(local).await?)
}

/// Builds one request with `identifier`, sends it (with retries) and waits for its reply.
async fn exchange(
    socket: &UdpSocket,
    template: &Template,
    server: SocketAddr,
    identifier: u8,
    timeout: Duration,
    retries: u32,
) -> anyhow::Result<Outcome> {
    let mut packet = Message::new(template.code, identifier);
    // Signed requests (accounting, CoA, Disconnect) hide attributes over a zero authenticator.
    let mut authenticator = [0u8; 16];
    if !template.code.has_signed_request_authenticator() {
        rand::rng().fill_bytes(&mut authenticator);
    }
    for pair in &template.pairs {
        template
            .dictionary
            .add_pair(&mut packet, pair, &template.secret, &authenticator)
            .map_err(|err| anyhow::anyhow!("{}: {err}", pair.name))?;
    }
    // Blast-RADIUS advice wants one in Access-Requests (RFC 5997 requires it in Status-Server,
    // which the exchange adds anyway); otherwise what the input lists is signed.
    let message_authenticator =
        if template.message_authenticator && template.code == Code::AccessRequest {
            MessageAuthenticator::First
        } else {
            MessageAuthenticator::Keep
        };
    let retry = Retry {
        timeout,
        attempts: retries.saturating_add(1),
    };
    let mut exchange = Exchange::new(
        Instant::now(),
        packet,
        template.secret.clone(),
        authenticator,
        message_authenticator,
        retry,
    )
    .map_err(|err| anyhow::anyhow!("{err}"))?;
    let mut buffer = vec![0u8; 4096];
    socket.send_to(exchange.datagram(), server).await?;
    loop {
        let deadline = tokio::time::Instant::from_std(exchange.deadline());
        let received = tokio::time::timeout_at(deadline, socket.recv_from(&mut buffer)).await;
        let (length, from) = match received {
            Ok(Ok(received)) => received,
            Ok(Err(err)) => {
                // ICMP port unreachable: the server is not there; wait out the timeout.
                tracing::debug!(%err, "receive error");
                tokio::time::sleep_until(deadline).await;
                continue;
            }
            Err(_) => match exchange.handle_timeout(Instant::now()) {
                Timeout::Resend(bytes) => {
                    socket.send_to(bytes, server).await?;
                    continue;
                }
                Timeout::GaveUp => return Ok(Outcome::Timeout),
                Timeout::NotDue => continue,
            },
        };
        if from != server {
            continue;
        }
        match exchange.verify(&buffer[..length]) {
            Ok(reply) => return Ok(Outcome::Reply(reply, exchange.sent_at().elapsed(), length)),
            // A late answer to an earlier request.
            Err(ReplyError::OtherIdentifier(_)) => continue,
            Err(err) => return Ok(Outcome::Bad(err.to_string())),
        }
    }
}
