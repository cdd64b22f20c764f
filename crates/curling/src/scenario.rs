//! Scenario files in the document's style (§6.3.4.1) and the entity arguments they share with
//! the `brasa curling` daemons. Parsing only: the runner that starts the entities is in
//! `brasa-curling-net`.
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

use crate::cafe::CafeConfig;
use crate::client::ClientConfig;
use crate::crme::{CrmeConfig, Relation, Route};
use crate::naming::Naming;
use crate::server::ServerConfig;
use crate::wire::{self, Neighbour};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

/// A scenario line that does not follow the grammar, located at `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SyntaxError {
    /// The scenario file.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters) of the offending word, or just past the line's end when
    /// a word is missing.
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

/// Entity arguments that cannot be used: which one and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ArgumentError<'a> {
    /// The offending argument (a slice of the input, so a scenario can locate it); `None` when
    /// one is missing at the end.
    pub argument: Option<&'a str>,
    /// What is wrong and what was expected.
    pub message: String,
}

fn bad<'a>(argument: &'a str, message: impl Into<String>) -> ArgumentError<'a> {
    ArgumentError {
        argument: Some(argument),
        message: message.into(),
    }
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
    fn new(items: &[&'a str]) -> Self {
        Self {
            items: items.to_vec(),
            at: 0,
        }
    }

    fn next(&mut self, what: &str) -> Result<&'a str, ArgumentError<'a>> {
        let item = self
            .items
            .get(self.at)
            .copied()
            .ok_or_else(|| ArgumentError {
                argument: None,
                message: format!("missing {what}"),
            })?;
        self.at += 1;
        Ok(item)
    }

    /// The next argument as a number, and the argument itself.
    fn number<T: std::str::FromStr>(
        &mut self,
        what: &str,
    ) -> Result<(T, &'a str), ArgumentError<'a>> {
        let item = self.next(what)?;
        let value = item
            .parse()
            .map_err(|_| bad(item, format!("{what}: expected a number, found {item:?}")))?;
        Ok((value, item))
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

fn parse_duration(text: &str) -> Result<Duration, ArgumentError<'_>> {
    parse_time(&format!("+{text}")).map_err(|message| bad(text, message))
}

/// Options given as trailing `key=value` tokens.
fn options<'a>(
    rest: &[&'a str],
    allowed: &[&str],
) -> Result<Vec<(&'a str, &'a str)>, ArgumentError<'a>> {
    rest.iter()
        .map(|item| {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| bad(item, format!("unexpected extra argument {item:?}")))?;
            if !allowed.contains(&key) {
                return Err(bad(
                    item,
                    format!(
                        "unknown option {key:?}; expected one of: {}",
                        allowed.join(", ")
                    ),
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
    fn addr<'a>(&self, name: &'a str) -> Result<Ipv4Addr, ArgumentError<'a>> {
        self.naming.resolve(name).ok_or_else(|| {
            bad(
                name,
                format!("expected a router name such as 2.3 or an IPv4 address, found {name:?}"),
            )
        })
    }

    fn endpoint<'a>(
        &self,
        t: &mut Tokens<'a>,
        what: &str,
    ) -> Result<SocketAddrV4, ArgumentError<'a>> {
        let addr = self.addr(t.next(what)?)?;
        let (port, _) = t.number(&format!("{what} port"))?;
        Ok(SocketAddrV4::new(addr, port))
    }

    /// An address, with a port if written `addr:port`, else `default_port`.
    fn addr_port<'a>(
        &self,
        text: &'a str,
        default_port: u16,
    ) -> Result<SocketAddrV4, ArgumentError<'a>> {
        match text.rsplit_once(':') {
            Some((addr, port)) => Ok(SocketAddrV4::new(
                self.addr(addr)?,
                port.parse()
                    .map_err(|_| bad(text, format!("invalid port in {text:?}")))?,
            )),
            None => Ok(SocketAddrV4::new(self.addr(text)?, default_port)),
        }
    }

    fn prefix<'a>(&self, text: &'a str) -> Result<(Ipv4Addr, u8), ArgumentError<'a>> {
        if let Some((addr, len)) = text.split_once('/') {
            let len: u8 = len
                .parse()
                .ok()
                .filter(|len| *len <= 32)
                .ok_or_else(|| bad(text, format!("invalid prefix length in {text:?}")))?;
            return Ok((self.addr(addr)?, len));
        }
        let domain: u8 = text.parse().map_err(|_| {
            bad(
                text,
                format!("expected a domain number or a CIDR prefix, found {text:?}"),
            )
        })?;
        Ok((Ipv4Addr::new(127, self.naming.net, domain, 0), 24))
    }

    /// `usr.curling.Cafe myport myCRMEaddr myCRMEport nInterDLink <cafeAddr cafePort crmeAddr>…`
    pub fn cafe<'a>(
        &self,
        router: &'a str,
        args: &[&'a str],
    ) -> Result<CafeConfig, ArgumentError<'a>> {
        let mut t = Tokens::new(args);
        let (port, _) = t.number("myport")?;
        let me = SocketAddrV4::new(self.addr(router)?, port);
        let crme = self.endpoint(&mut t, "myCRMEaddr")?;
        let (links, links_arg): (usize, _) = t.number("nInterDLink")?;
        if links > wire::MAX_LIST_LEN {
            return Err(bad(
                links_arg,
                format!("at most {} inter-domain links", wire::MAX_LIST_LEN),
            ));
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
    pub fn crme<'a>(
        &self,
        router: &'a str,
        args: &[&'a str],
    ) -> Result<CrmeConfig, ArgumentError<'a>> {
        let mut t = Tokens::new(args);
        let (port, _): (u16, _) = t.number("myport")?;
        let me = SocketAddrV4::new(self.addr(router)?, port);
        let (count, _): (usize, _) = t.number("nNeighbours")?;
        let mut neighbours = Vec::new();
        for _ in 0..count {
            let crme = self.addr_port(t.next("neighbourCRMEaddr")?, port)?;
            let relation = match t.next("relation")? {
                "provider" => Relation::Provider,
                "customer" => Relation::Customer,
                "peer" => Relation::Peer,
                other => {
                    return Err(bad(
                        other,
                        format!("relation: expected provider, customer or peer, found {other:?}"),
                    ))
                }
            };
            neighbours.push((crme, relation));
        }
        let (count, _): (usize, _) = t.number("nRoutes")?;
        let mut routes = Vec::new();
        for _ in 0..count {
            let (prefix, len) = self.prefix(t.next("route prefix")?)?;
            let next_hop_arg = t.next("route next-hop CRME")?;
            let next_hop = self.addr_port(next_hop_arg, port)?;
            if !neighbours.iter().any(|(crme, _)| *crme == next_hop) {
                return Err(bad(
                    next_hop_arg,
                    format!("route next hop {next_hop} is not a neighbour CRME"),
                ));
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
                        other => {
                            return Err(bad(
                                other,
                                format!("ro: expected on or off, found {other:?}"),
                            ))
                        }
                    }
                }
                "pending" => config.pending_timeout = parse_duration(value)?,
                _ => config.linger = parse_duration(value)?,
            }
        }
        Ok(config)
    }

    /// `usr.curling.ContentServer myport myCRMEaddr myCRMEport myCAFEaddr myCAFEport [rate=N] [chunk=N]`
    pub fn server<'a>(
        &self,
        router: &'a str,
        args: &[&'a str],
    ) -> Result<ServerConfig, ArgumentError<'a>> {
        let mut t = Tokens::new(args);
        let (port, _) = t.number("myport")?;
        let me = SocketAddrV4::new(self.addr(router)?, port);
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
                .map_err(|_| bad(value, format!("{key}: expected a number, found {value:?}")))?;
            match key {
                "rate" if number > 0 => config.rate = number,
                "chunk" if (1..=8192).contains(&number) => config.chunk_size = number as usize,
                _ => {
                    return Err(bad(
                        value,
                        format!("{key}={value} is out of range (rate > 0, chunk 1..=8192)"),
                    ))
                }
            }
        }
        Ok(config)
    }

    /// `usr.curling.ContentClient myport myCRMEaddr myCRMEport myCAFEaddr myCAFEport [idle=D] [attempts=N]`
    pub fn client<'a>(
        &self,
        router: &'a str,
        args: &[&'a str],
    ) -> Result<ClientConfig, ArgumentError<'a>> {
        let mut t = Tokens::new(args);
        let (port, _) = t.number("myport")?;
        let me = SocketAddrV4::new(self.addr(router)?, port);
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
                    config.max_attempts = value.parse().map_err(|_| {
                        bad(
                            value,
                            format!("attempts: expected a number, found {value:?}"),
                        )
                    })?
                }
            }
        }
        Ok(config)
    }
}

/// 1-based column (in characters) of `word` in `line`, when `word` is a slice of `line`.
fn column_of(line: &str, word: &str) -> Option<usize> {
    let offset = (word.as_ptr() as usize).checked_sub(line.as_ptr() as usize)?;
    let before = line.get(..offset)?;
    Some(before.chars().count() + 1)
}

impl Scenario {
    /// Parses scenario text; `file` names it in errors.
    pub fn parse(text: &str, file: &str, naming: Naming) -> Result<Self, SyntaxError> {
        let parser = Parser { naming };
        let mut steps = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or("").trim_end();
            if content.trim_start().is_empty() {
                continue;
            }
            // Where a word is missing: just past the last one.
            let end_column = content.chars().count() + 1;
            let error = |err: ArgumentError<'_>| SyntaxError {
                file: file.to_string(),
                line,
                column: err
                    .argument
                    .and_then(|word| column_of(raw, word))
                    .unwrap_or(end_column),
                message: err.message,
            };
            let tokens: Vec<&str> = content.split_whitespace().collect();
            let at = parse_time(tokens[0]).map_err(|message| error(bad(tokens[0], message)))?;
            let step = parse_line(&parser, &tokens).map_err(error)?;
            steps.push(TimedStep { at, line, step });
        }
        steps.sort_by_key(|s| s.at);
        Ok(Self { steps })
    }
}

fn missing(message: &str) -> ArgumentError<'static> {
    ArgumentError {
        argument: None,
        message: message.to_string(),
    }
}

/// One line's step (its words after the time).
fn parse_line<'a>(parser: &Parser, tokens: &[&'a str]) -> Result<Step, ArgumentError<'a>> {
    let step = match tokens.get(1).copied() {
        Some("DISPLAY") if tokens.len() == 2 => Step::Display,
        Some("END") if tokens.len() == 2 => Step::End,
        Some("ON_ROUTER") => {
            let router = tokens
                .get(2)
                .copied()
                .ok_or_else(|| missing("missing router name"))?;
            let what = tokens
                .get(3)
                .copied()
                .ok_or_else(|| missing("missing entity class or command"))?;
            let args = &tokens[4..];
            match what {
                "usr.curling.Cafe" => {
                    let mut drop_every = None;
                    let mut rest = Vec::new();
                    for &arg in args {
                        match arg.strip_prefix("loss=") {
                            Some(n) => {
                                drop_every =
                                    Some(n.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(
                                        || {
                                            bad(
                                                arg,
                                                format!("loss: expected N > 0 (drop every Nth chunk), found {n:?}"),
                                            )
                                        },
                                    )?)
                            }
                            None => rest.push(arg),
                        }
                    }
                    Step::Cafe(parser.cafe(router, &rest)?, drop_every)
                }
                "usr.curling.Crme" => Step::Crme(parser.crme(router, args)?),
                "usr.curling.ContentServer" => Step::Server(parser.server(router, args)?),
                "usr.curling.ContentClient" => Step::Client(parser.client(router, args)?),
                "publish" | "consume" => {
                    let mut t = Tokens::new(args);
                    let addr = parser.addr(router)?;
                    let (port, _) = t.number("port")?;
                    let content_id = t.next("ContentID")?;
                    wire::check_content_id(content_id.as_bytes()).map_err(|_| {
                        bad(
                            content_id,
                            format!("invalid content ID {content_id:?} (1-255 bytes, no '/', not . or ..)"),
                        )
                    })?;
                    let entity = SocketAddrV4::new(addr, port);
                    let step = if what == "publish" {
                        Step::Publish {
                            server: entity,
                            content_id: content_id.to_string(),
                            file: PathBuf::from(t.next("file")?),
                        }
                    } else {
                        Step::Consume {
                            client: entity,
                            content_id: content_id.to_string(),
                        }
                    };
                    if let Some(extra) = t.rest().first() {
                        return Err(bad(
                            extra,
                            format!("unexpected extra arguments {:?}", t.rest()),
                        ));
                    }
                    step
                }
                other => {
                    return Err(bad(
                        other,
                        format!(
                            "unknown class or command {other:?}; expected usr.curling.Cafe, usr.curling.Crme, usr.curling.ContentServer, usr.curling.ContentClient, publish or consume"
                        ),
                    ))
                }
            }
        }
        _ => {
            return Err(bad(
                tokens.get(1).copied().unwrap_or(tokens[0]),
                "expected `+time ON_ROUTER router …`, `+time DISPLAY` or `+time END`",
            ))
        }
    };
    Ok(step)
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
    fn errors_name_the_line_column_and_what_was_expected() {
        let cases = [
            (
                "+0 ON_ROUTER 2.2 usr.curling.Cafe 2000 2.1 3000 2 1.2 2000 1.1\n",
                "t.scn:1:63: missing neighbourCAFEaddr",
            ),
            (
                "\n+x ON_ROUTER 2.2 usr.curling.Cafe\n",
                "t.scn:2:1: invalid time",
            ),
            (
                "+0 ON_ROUTER 2.1 usr.curling.Crme 3000 1 1.1 boss 0\n",
                "t.scn:1:46: relation: expected provider",
            ),
            (
                "+0 ON_ROUTER 2.1 usr.curling.Crme 3000 0 1 5 1.1 # comment\n",
                "t.scn:1:46: route next hop 127.0.1.1:3000 is not a neighbour CRME",
            ),
            (
                "+0 ON_ROUTER 2.1 usr.curling.Bogus\n",
                "t.scn:1:18: unknown class",
            ),
            (
                "+0 ON_ROUTER 4.3 consume 1000 a/b\n",
                "t.scn:1:31: invalid content ID",
            ),
            (
                "+0 ON_ROUTER 5.3 usr.curling.ContentServer 1000 5.1 3000 5.3 2000 chunk=0\n",
                "t.scn:1:73: chunk=0 is out of range",
            ),
            ("+0 HELLO\n", "t.scn:1:4: expected `+time ON_ROUTER"),
            (
                "\t+0 ON_ROUTER 2.2 usr.curling.Cafe 2000 2.1 3000 0 loss=0\n",
                "t.scn:1:52: loss: expected N > 0",
            ),
        ];
        for (text, expected) in cases {
            let err = Scenario::parse(text, "t.scn", NAMING)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{text:?}: {err}");
        }
    }

    #[test]
    fn daemon_arguments_name_the_offending_one() {
        let parser = Parser { naming: NAMING };
        let args = ["2000", "2.1", "port", "0"];
        let err = parser.cafe("2.2", &args).unwrap_err();
        assert_eq!(err.argument, Some("port"));
        assert!(err.message.contains("expected a number"), "{err}");
        let err = parser.server("5.3", &["1000", "5.1"]).unwrap_err();
        assert_eq!(err.argument, None);
        assert_eq!(err.message, "missing myCRMEaddr port");
    }
}
