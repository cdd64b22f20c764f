//! Scenario files in the document's style (§6.3.4.1) and the runner that executes them with
//! every entity a real UDP endpoint on loopback.
//!
//! ```text
//! # comments and blank lines are ignored; times are seconds ("+1.5") or "+500ms"
//! +0 ON_ROUTER 2.1 usr.curling.Crme 3000 2 1.1 provider 4.1 customer 1 5 3.1 [ro=off]
//! +0 ON_ROUTER 2.2 usr.curling.Cafe 2000 2.1 3000 1 1.2 2000 1.1 [loss=N]
//! +0 ON_ROUTER 5.3 usr.curling.ContentServer 1000 5.1 3000 5.3 2000 [rate=20000] [chunk=1024]
//! +0 ON_ROUTER 4.3 usr.curling.ContentClient 1000 4.1 3000 4.3 2000 [idle=500ms] [attempts=5]
//! +1 ON_ROUTER 5.3 publish 1000 MyContent1 MyContent1.bin
//! +2 ON_ROUTER 4.3 consume 1000 MyContent1
//! +3 DISPLAY
//! +20 END
//! ```
//!
//! Crme: `myport nNeighbours <crmeAddr relation>… nRoutes <prefix nextHopCrmeAddr>…`, where a
//! prefix is a domain number (`5` = 127.N.5.0/24) or a CIDR. Cafe: `myport myCRMEaddr
//! myCRMEport nInterDLink <neighbourCAFEaddr neighbourCAFEport neighbourCRMEaddr>…` (neighbour
//! CRMEs listen on `myCRMEport` unless written `addr:port`). Router names `d.r` map to
//! 127.N.d.r ([`Naming`]).

use crate::cafe::{Cafe, CafeConfig};
use crate::client::{ClientConfig, ContentClient};
use crate::crme::{Crme, CrmeConfig, Relation, Route};
use crate::server::{ContentServer, ServerConfig};
use crate::shell::{Core, Entity, LogSink, Naming, ShellOptions, Snapshot};
use crate::wire::{self, Neighbour};
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A scenario that cannot be used, with the line it came from.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A line does not follow the grammar.
    #[error("{file}:{line}: {message}")]
    Syntax {
        /// The scenario file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        message: String,
    },
    /// The scenario file or a published file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An entity could not start or a command failed while running.
    #[error("{0}")]
    Run(String),
}

/// What one scenario line does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Start a CAFE; with `drop_every`, every Nth chunk copy it forwards is dropped
    /// (emulated link loss, scenario option `loss=N`).
    Cafe(CafeConfig, Option<u64>),
    /// Start a CRME.
    Crme(CrmeConfig),
    /// Start a content server.
    Server(ServerConfig),
    /// Start a content client.
    Client(ClientConfig),
    /// Publish a file's content at a server.
    Publish {
        /// The server.
        server: SocketAddrV4,
        /// The content ID.
        content_id: String,
        /// The file (relative paths resolve against the file directory).
        file: PathBuf,
    },
    /// A client consumes content.
    Consume {
        /// The client.
        client: SocketAddrV4,
        /// The content ID.
        content_id: String,
    },
    /// Print every CAFE's content state table now.
    Display,
    /// Stop the scenario.
    End,
}

/// A scenario line: when and what.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedStep {
    /// Offset from the scenario start.
    pub at: Duration,
    /// 1-based line number in the file.
    pub line: usize,
    /// The step.
    pub step: Step,
}

/// A parsed scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Steps in time order (stable for equal times).
    pub steps: Vec<TimedStep>,
}

struct Tokens<'a> {
    items: Vec<&'a str>,
    at: usize,
}

impl<'a> Tokens<'a> {
    fn next(&mut self, what: &str) -> Result<&'a str, String> {
        let item = self
            .items
            .get(self.at)
            .copied()
            .ok_or_else(|| format!("missing {what}"))?;
        self.at += 1;
        Ok(item)
    }

    fn number<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, String> {
        let item = self.next(what)?;
        item.parse()
            .map_err(|_| format!("{what}: expected a number, found {item:?}"))
    }

    fn rest(&self) -> &[&'a str] {
        self.items.get(self.at..).unwrap_or(&[])
    }
}

fn parse_time(text: &str) -> Result<Duration, String> {
    let body = text
        .strip_prefix('+')
        .ok_or_else(|| format!("expected a time such as +0 or +1.5, found {text:?}"))?;
    let (number, scale) = if let Some(ms) = body.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = body.strip_suffix('s') {
        (s, 1.0)
    } else {
        (body, 1.0)
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid time {text:?}"))?;
    if !(0.0..=86_400.0).contains(&value) {
        return Err(format!("time {text:?} out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    parse_time(&format!("+{text}"))
}

/// Options given as trailing `key=value` tokens.
fn options<'a>(rest: &[&'a str], allowed: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    rest.iter()
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("unexpected extra argument {item:?}"))?;
            if !allowed.contains(&key) {
                return Err(format!(
                    "unknown option {key:?}; expected one of: {}",
                    allowed.join(", ")
                ));
            }
            Ok((key, value))
        })
        .collect()
}

/// Parses entity arguments (the part after `usr.curling.X`) with the defaults of a scenario.
pub struct Parser {
    /// Router naming.
    pub naming: Naming,
}

impl Parser {
    fn addr(&self, name: &str) -> Result<Ipv4Addr, String> {
        self.naming.resolve(name).ok_or_else(|| {
            format!("expected a router name such as 2.3 or an IPv4 address, found {name:?}")
        })
    }

    fn endpoint(&self, t: &mut Tokens<'_>, what: &str) -> Result<SocketAddrV4, String> {
        let addr = self.addr(t.next(what)?)?;
        let port = t.number(&format!("{what} port"))?;
        Ok(SocketAddrV4::new(addr, port))
    }

    /// An address, with a port if written `addr:port`, else `default_port`.
    fn addr_port(&self, text: &str, default_port: u16) -> Result<SocketAddrV4, String> {
        match text.rsplit_once(':') {
            Some((addr, port)) => Ok(SocketAddrV4::new(
                self.addr(addr)?,
                port.parse()
                    .map_err(|_| format!("invalid port in {text:?}"))?,
            )),
            None => Ok(SocketAddrV4::new(self.addr(text)?, default_port)),
        }
    }

    fn prefix(&self, text: &str) -> Result<(Ipv4Addr, u8), String> {
        if let Some((addr, len)) = text.split_once('/') {
            let len: u8 = len
                .parse()
                .ok()
                .filter(|len| *len <= 32)
                .ok_or_else(|| format!("invalid prefix length in {text:?}"))?;
            return Ok((self.addr(addr)?, len));
        }
        let domain: u8 = text
            .parse()
            .map_err(|_| format!("expected a domain number or a CIDR prefix, found {text:?}"))?;
        Ok((Ipv4Addr::new(127, self.naming.net, domain, 0), 24))
    }

    /// `usr.curling.Cafe myport myCRMEaddr myCRMEport nInterDLink <cafeAddr cafePort crmeAddr>…`
    pub fn cafe(&self, router: &str, args: &[&str]) -> Result<CafeConfig, String> {
        let mut t = Tokens {
            items: args.to_vec(),
            at: 0,
        };
        let me = SocketAddrV4::new(self.addr(router)?, t.number("myport")?);
        let crme = self.endpoint(&mut t, "myCRMEaddr")?;
        let links: usize = t.number("nInterDLink")?;
        if links > wire::MAX_LIST_LEN {
            return Err(format!("at most {} inter-domain links", wire::MAX_LIST_LEN));
        }
        let mut neighbours = Vec::new();
        for _ in 0..links {
            let cafe = self.endpoint(&mut t, "neighbourCAFEaddr")?;
            let crme_addr = self.addr_port(t.next("neighbourCRMEaddr")?, crme.port())?;
            neighbours.push(Neighbour {
                cafe,
                crme: crme_addr,
            });
        }
        let mut announce_interval = Duration::from_secs(1);
        for (key, value) in options(t.rest(), &["announce"])? {
            if key == "announce" {
                announce_interval = parse_duration(value)?;
            }
        }
        Ok(CafeConfig {
            me,
            crme,
            neighbours,
            announce_interval,
        })
    }

    /// `usr.curling.Crme myport nNeighbours <crmeAddr relation>… nRoutes <prefix crmeAddr>…`
    pub fn crme(&self, router: &str, args: &[&str]) -> Result<CrmeConfig, String> {
        let mut t = Tokens {
            items: args.to_vec(),
            at: 0,
        };
        let port: u16 = t.number("myport")?;
        let me = SocketAddrV4::new(self.addr(router)?, port);
        let count: usize = t.number("nNeighbours")?;
        let mut neighbours = Vec::new();
        for _ in 0..count {
            let crme = self.addr_port(t.next("neighbourCRMEaddr")?, port)?;
            let relation = match t.next("relation")? {
                "provider" => Relation::Provider,
                "customer" => Relation::Customer,
                "peer" => Relation::Peer,
                other => {
                    return Err(format!(
                        "relation: expected provider, customer or peer, found {other:?}"
                    ))
                }
            };
            neighbours.push((crme, relation));
        }
        let count: usize = t.number("nRoutes")?;
        let mut routes = Vec::new();
        for _ in 0..count {
            let (prefix, len) = self.prefix(t.next("route prefix")?)?;
            let next_hop = self.addr_port(t.next("route next-hop CRME")?, port)?;
            if !neighbours.iter().any(|(crme, _)| *crme == next_hop) {
                return Err(format!("route next hop {next_hop} is not a neighbour CRME"));
            }
            routes.push(Route {
                prefix,
                len,
                next_hop,
            });
        }
        let mut config = CrmeConfig {
            me,
            neighbours,
            routes,
            route_optimisation: true,
            pending_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(30),
            hop_limit: 32,
        };
        for (key, value) in options(t.rest(), &["ro", "pending", "linger"])? {
            match key {
                "ro" => {
                    config.route_optimisation = match value {
                        "on" => true,
                        "off" => false,
                        other => return Err(format!("ro: expected on or off, found {other:?}")),
                    }
                }
                "pending" => config.pending_timeout = parse_duration(value)?,
                _ => config.linger = parse_duration(value)?,
            }
        }
        Ok(config)
    }

    /// `usr.curling.ContentServer myport myCRMEaddr myCRMEport myCAFEaddr myCAFEport [rate=N] [chunk=N]`
    pub fn server(&self, router: &str, args: &[&str]) -> Result<ServerConfig, String> {
        let mut t = Tokens {
            items: args.to_vec(),
            at: 0,
        };
        let me = SocketAddrV4::new(self.addr(router)?, t.number("myport")?);
        let crme = self.endpoint(&mut t, "myCRMEaddr")?;
        let attach_cafe = self.endpoint(&mut t, "myCAFEaddr")?;
        let mut config = ServerConfig {
            me,
            crme,
            attach_cafe,
            chunk_size: 1024,
            rate: 20_000,
            republish_interval: Duration::from_secs(2),
            hop_limit: 32,
        };
        for (key, value) in options(t.rest(), &["rate", "chunk"])? {
            let number: u32 = value
                .parse()
                .map_err(|_| format!("{key}: expected a number, found {value:?}"))?;
            match key {
                "rate" if number > 0 => config.rate = number,
                "chunk" if (1..=8192).contains(&number) => config.chunk_size = number as usize,
                _ => {
                    return Err(format!(
                        "{key}={value} is out of range (rate > 0, chunk 1..=8192)"
                    ))
                }
            }
        }
        Ok(config)
    }

    /// `usr.curling.ContentClient myport myCRMEaddr myCRMEport myCAFEaddr myCAFEport [idle=D] [attempts=N]`
    pub fn client(&self, router: &str, args: &[&str]) -> Result<ClientConfig, String> {
        let mut t = Tokens {
            items: args.to_vec(),
            at: 0,
        };
        let me = SocketAddrV4::new(self.addr(router)?, t.number("myport")?);
        let crme = self.endpoint(&mut t, "myCRMEaddr")?;
        let cafe = self.endpoint(&mut t, "myCAFEaddr")?;
        let mut config = ClientConfig {
            me,
            crme,
            cafe,
            idle_timeout: Duration::from_millis(800),
            max_attempts: 8,
            max_content_bytes: 1 << 30,
            hop_limit: 32,
        };
        for (key, value) in options(t.rest(), &["idle", "attempts"])? {
            match key {
                "idle" => config.idle_timeout = parse_duration(value)?,
                _ => {
                    config.max_attempts = value
                        .parse()
                        .map_err(|_| format!("attempts: expected a number, found {value:?}"))?
                }
            }
        }
        Ok(config)
    }
}

impl Scenario {
    /// Parses scenario text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, naming: Naming) -> Result<Self, ScenarioError> {
        let parser = Parser { naming };
        let mut steps = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let syntax = |message: String| ScenarioError::Syntax {
                file: file.to_string(),
                line,
                message,
            };
            let tokens: Vec<&str> = content.split_whitespace().collect();
            let at = parse_time(tokens[0]).map_err(syntax)?;
            let step = match tokens.get(1).copied() {
                Some("DISPLAY") if tokens.len() == 2 => Step::Display,
                Some("END") if tokens.len() == 2 => Step::End,
                Some("ON_ROUTER") => {
                    let router = tokens
                        .get(2)
                        .ok_or_else(|| syntax("missing router name".into()))?;
                    let what = tokens
                        .get(3)
                        .ok_or_else(|| syntax("missing entity class or command".into()))?;
                    let args = &tokens[4..];
                    match *what {
                        "usr.curling.Cafe" => {
                            let mut drop_every = None;
                            let mut rest = Vec::new();
                            for arg in args {
                                match arg.strip_prefix("loss=") {
                                    Some(n) => {
                                        drop_every = Some(n.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                                            syntax(format!("loss: expected N > 0 (drop every Nth chunk), found {n:?}"))
                                        })?)
                                    }
                                    None => rest.push(*arg),
                                }
                            }
                            Step::Cafe(parser.cafe(router, &rest).map_err(syntax)?, drop_every)
                        }
                        "usr.curling.Crme" => Step::Crme(parser.crme(router, args).map_err(syntax)?),
                        "usr.curling.ContentServer" => {
                            Step::Server(parser.server(router, args).map_err(syntax)?)
                        }
                        "usr.curling.ContentClient" => {
                            Step::Client(parser.client(router, args).map_err(syntax)?)
                        }
                        "publish" | "consume" => {
                            let mut t = Tokens { items: args.to_vec(), at: 0 };
                            let addr = parser.addr(router).map_err(syntax)?;
                            let port: u16 = t.number("port").map_err(syntax)?;
                            let content_id = t.next("ContentID").map_err(syntax)?.to_string();
                            wire::check_content_id(content_id.as_bytes()).map_err(|_| {
                                syntax(format!("invalid content ID {content_id:?} (1-255 bytes, no '/', not . or ..)"))
                            })?;
                            let entity = SocketAddrV4::new(addr, port);
                            let step = if *what == "publish" {
                                Step::Publish {
                                    server: entity,
                                    content_id,
                                    file: PathBuf::from(t.next("file").map_err(syntax)?),
                                }
                            } else {
                                Step::Consume {
                                    client: entity,
                                    content_id,
                                }
                            };
                            if !t.rest().is_empty() {
                                return Err(syntax(format!("unexpected extra arguments {:?}", t.rest())));
                            }
                            step
                        }
                        other => {
                            return Err(syntax(format!(
                                "unknown class or command {other:?}; expected usr.curling.Cafe, usr.curling.Crme, usr.curling.ContentServer, usr.curling.ContentClient, publish or consume"
                            )))
                        }
                    }
                }
                _ => {
                    return Err(syntax(
                        "expected `+time ON_ROUTER router …`, `+time DISPLAY` or `+time END`"
                            .into(),
                    ))
                }
            };
            steps.push(TimedStep { at, line, step });
        }
        steps.sort_by_key(|s| s.at);
        Ok(Self { steps })
    }
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Router naming.
    pub naming: Naming,
    /// Where relative `publish` files are found.
    pub file_dir: PathBuf,
    /// Where clients save content.
    pub content_dir: PathBuf,
    /// Longest run when the scenario has no END and downloads do not finish.
    pub timeout: Duration,
    /// Print log lines and tables to stdout as they happen.
    pub echo: bool,
}

/// What a scenario run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Log lines in order (§6.4.2 style).
    pub log: Vec<String>,
    /// Every entity's final state, in scenario order.
    pub entities: Vec<Snapshot>,
    /// Why the run ended: `end`, `idle` or `timeout`.
    pub ended_by: String,
}

/// Executes `scenario`: starts entities, publishes and consumes at their times, and stops at
/// `END`, when every download and stream is finished (after the last step), or at the timeout.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, ScenarioError> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let log_lines = Arc::new(Mutex::new(Vec::new()));
    let sink: LogSink = {
        let log_lines = log_lines.clone();
        let echo = options.echo;
        Arc::new(move |line: String| {
            if echo {
                println!("{line}");
            }
            tracing::debug!(%line, "curling");
            log_lines
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(line);
        })
    };
    let shell = ShellOptions {
        naming: options.naming,
        content_dir: options.content_dir.clone(),
        stop: stop_rx,
        drop_every: None,
    };
    let mut entities: Vec<Entity> = Vec::new();
    let start = tokio::time::Instant::now();
    let deadline = start + options.timeout;
    let find =
        |entities: &[Entity], addr: SocketAddrV4| entities.iter().position(|e| e.addr() == addr);
    let mut ended_by = "idle";
    let result = async {
        for step in &scenario.steps {
            if start + step.at > deadline {
                ended_by = "timeout";
                return Ok(());
            }
            tokio::time::sleep_until(start + step.at).await;
            let fail =
                |message: String| ScenarioError::Run(format!("line {}: {message}", step.line));
            let core = match &step.step {
                Step::Cafe(config, _) => Some(Core::Cafe(Cafe::new(config.clone()))),
                Step::Crme(config) => Some(Core::Crme(Crme::new(config.clone()))),
                Step::Server(config) => Some(Core::Server(ContentServer::new(config.clone()))),
                Step::Client(config) => Some(Core::Client(ContentClient::new(config.clone()))),
                Step::Publish {
                    server,
                    content_id,
                    file,
                } => {
                    let path = options.file_dir.join(file);
                    let data = std::fs::read(&path).map_err(|source| ScenarioError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    let index = find(&entities, *server)
                        .ok_or_else(|| fail(format!("no content server at {server}")))?;
                    entities[index].with_core(|core| match core {
                        Core::Server(s) => s
                            .publish(content_id, Arc::from(data))
                            .map_err(|err| fail(err.to_string())),
                        _ => Err(fail(format!("{server} is not a content server"))),
                    })?;
                    None
                }
                Step::Consume { client, content_id } => {
                    let index = find(&entities, *client)
                        .ok_or_else(|| fail(format!("no content client at {client}")))?;
                    entities[index].with_core(|core| match core {
                        Core::Client(c) => c
                            .consume(Instant::now(), content_id)
                            .map_err(|err| fail(err.to_string())),
                        _ => Err(fail(format!("{client} is not a content client"))),
                    })?;
                    None
                }
                Step::Display => {
                    for entity in &entities {
                        let table = entity
                            .snapshot()
                            .display_content_state_table(&options.naming);
                        if !table.is_empty() {
                            sink(table.trim_end().to_string());
                        }
                    }
                    None
                }
                Step::End => {
                    ended_by = "end";
                    return Ok(());
                }
            };
            if let Some(core) = core {
                let mut shell = shell.clone();
                if let Step::Cafe(_, drop_every) = &step.step {
                    shell.drop_every = *drop_every;
                }
                let entity = Entity::spawn(core, shell, sink.clone())
                    .map_err(|err| fail(err.to_string()))?;
                entities.push(entity);
            }
        }
        // No END: wait until nothing is in progress (checked a few times so that a Consume
        // still travelling is not mistaken for idleness), or the timeout.
        let mut quiet = 0;
        while quiet < 5 {
            if tokio::time::Instant::now() >= deadline {
                ended_by = "timeout";
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            if entities.iter().any(Entity::is_busy) {
                quiet = 0;
            } else {
                quiet += 1;
            }
        }
        Ok(())
    }
    .await;
    let snapshots: Vec<Snapshot> = entities.iter().map(Entity::snapshot).collect();
    let _ = stop_tx.send(true);
    for entity in entities {
        entity.join().await;
    }
    result?;
    let log = std::mem::take(&mut *log_lines.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Report {
        log,
        entities: snapshots,
        ended_by: ended_by.to_string(),
    })
}

/// Reads and parses a scenario file.
pub fn load(path: &Path, naming: Naming) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Scenario::parse(&text, &path.display().to_string(), naming)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMING: Naming = Naming { net: 0 };

    #[test]
    fn parses_the_document_style() {
        let text = "\
# topology fragment
+0 ON_ROUTER 2.1 usr.curling.Crme 3000 2 1.1 provider 4.1 customer 1 5 1.1 ro=off
+0 ON_ROUTER 2.2 usr.curling.Cafe 2000 2.1 3000 1 1.2 2000 1.1
+0.5 ON_ROUTER 5.3 usr.curling.ContentServer 1000 5.1 3000 5.3 2000 rate=5000
+1 ON_ROUTER 5.3 publish 1000 MyContent1 data.bin
+500ms ON_ROUTER 4.3 consume 1000 MyContent1
+9 END
";
        let scenario = Scenario::parse(text, "t.scn", NAMING).unwrap();
        assert_eq!(scenario.steps.len(), 6);
        match &scenario.steps[1].step {
            Step::Cafe(cafe, _) => {
                assert_eq!(cafe.me, "127.0.2.2:2000".parse().unwrap());
                assert_eq!(cafe.neighbours[0].crme, "127.0.1.1:3000".parse().unwrap());
            }
            other => panic!("{other:?}"),
        }
        match &scenario.steps[0].step {
            Step::Crme(crme) => {
                assert!(!crme.route_optimisation);
                assert_eq!(crme.routes[0].prefix, Ipv4Addr::new(127, 0, 5, 0));
                assert_eq!(crme.neighbours[1].1, Relation::Customer);
            }
            other => panic!("{other:?}"),
        }
        // Sorted by time: the +500ms consume comes before the +1 publish.
        assert!(matches!(scenario.steps[3].step, Step::Consume { .. }));
    }

    #[test]
    fn errors_name_the_line_and_what_was_expected() {
        let cases = [
            (
                "+0 ON_ROUTER 2.2 usr.curling.Cafe 2000 2.1 3000 2 1.2 2000 1.1\n",
                "missing neighbourCAFEaddr",
            ),
            (
                "\n+x ON_ROUTER 2.2 usr.curling.Cafe\n",
                "t.scn:2: invalid time",
            ),
            (
                "+0 ON_ROUTER 2.1 usr.curling.Crme 3000 1 1.1 boss 0\n",
                "relation: expected provider",
            ),
            (
                "+0 ON_ROUTER 2.1 usr.curling.Crme 3000 0 1 5 1.1\n",
                "is not a neighbour CRME",
            ),
            ("+0 ON_ROUTER 2.1 usr.curling.Bogus\n", "unknown class"),
            ("+0 ON_ROUTER 4.3 consume 1000 a/b\n", "invalid content ID"),
            (
                "+0 ON_ROUTER 5.3 usr.curling.ContentServer 1000 5.1 3000 5.3 2000 chunk=0\n",
                "out of range",
            ),
            ("+0 HELLO\n", "expected `+time ON_ROUTER"),
        ];
        for (text, expected) in cases {
            let err = Scenario::parse(text, "t.scn", NAMING)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            assert!(err.starts_with("t.scn:"), "{err}");
        }
    }
}
