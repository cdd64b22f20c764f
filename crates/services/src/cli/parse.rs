//! The text-form parser: a stack of contexts, one command at a time, several per line.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::lex::{tokens, Token};
use super::{ParseError, ParseErrorKind};
use crate::change::{
    Change, DescriptionSetting, Edit, EntrySetting, FilterSetting, InterfaceSetting, MatchSetting,
    NodeOp, Origin, PolicerSetting, RouteSetting, SapOp, SapSetting, ServiceOp, ServiceSetting,
};
use crate::id::{MacAddr, PortMap, SapId};
use crate::limits;
use crate::model::*;

/// Where the parser is: each variant is one level of SR OS's context tree.
#[derive(Debug, Clone)]
enum Ctx {
    Configure,
    Service,
    Filter,
    Qos,
    Svc(ServiceId, ServiceKind),
    Group(ServiceId, String),
    Sap(SapPath),
    SapDir(SapPath, Direction),
    Overrides(SapPath, Direction),
    Override(SapPath, Direction, PolicerId),
    DynamicServices(SapPath),
    Interface(ServiceId, String),
    Ipv6(ServiceId, String),
    Route(ServiceId, IpNet),
    RouteTarget(ServiceId, IpNet, &'static str),
    FilterDef(FilterRef),
    Entry(FilterRef, EntryId),
    Match(FilterRef, EntryId),
    Policy(QosRef),
    Policer(QosRef, PolicerId),
}

impl Ctx {
    /// The context's name in SR OS's prompt (`config>service>epipe>sap`).
    fn label(&self) -> &'static str {
        match self {
            Ctx::Configure => "config",
            Ctx::Service => "service",
            Ctx::Filter => "filter",
            Ctx::Qos => "qos",
            Ctx::Svc(_, kind) => kind.keyword(),
            Ctx::Group(..) => "split-horizon-group",
            Ctx::Sap(_) => "sap",
            Ctx::SapDir(_, dir) => dir.keyword(),
            Ctx::Overrides(..) => "policer-override",
            Ctx::Override(..) | Ctx::Policer(..) => "policer",
            Ctx::DynamicServices(_) => "dynamic-services",
            Ctx::Interface(..) => "if",
            Ctx::Ipv6(..) => "ipv6",
            Ctx::Route(..) => "static-route-entry",
            Ctx::RouteTarget(_, _, target) => target,
            Ctx::FilterDef(filter) => filter.kind.definition_keyword(),
            Ctx::Entry(..) => "entry",
            Ctx::Match(..) => "match",
            Ctx::Policy(policy) => policy.kind.keyword(),
        }
    }

    /// The commands the context accepts, for error messages.
    fn commands(ctx: Option<&Ctx>) -> Vec<&'static str> {
        let list: &[&str] = match ctx {
            None => &["configure"],
            Some(Ctx::Configure) => &["service", "filter", "qos"],
            Some(Ctx::Service) => &["epipe", "vpls", "ies", "vprn"],
            Some(Ctx::Filter) => &["ip-filter", "ipv6-filter", "mac-filter"],
            Some(Ctx::Qos) => &["sap-ingress", "sap-egress"],
            Some(Ctx::Svc(_, ServiceKind::Epipe)) => {
                &["description", "shutdown", "sap", "gre-tunnel"]
            }
            Some(Ctx::Svc(_, ServiceKind::Vpls)) => &[
                "description",
                "shutdown",
                "sap",
                "split-horizon-group",
                "fdb-table-size",
                "local-age",
            ],
            Some(Ctx::Svc(_, ServiceKind::Ies)) => {
                &["description", "shutdown", "interface", "static-route-entry"]
            }
            Some(Ctx::Svc(_, ServiceKind::Vprn)) => &[
                "description",
                "shutdown",
                "route-distinguisher",
                "interface",
                "static-route-entry",
            ],
            Some(Ctx::Group(..)) => &["description"],
            Some(Ctx::Sap(path)) if path.interface.is_some() => {
                &["description", "shutdown", "ingress", "egress"]
            }
            Some(Ctx::Sap(_)) => &[
                "description",
                "shutdown",
                "ingress",
                "egress",
                "max-nbr-mac-addr",
                "static-mac",
                "disable-learning",
                "disable-aging",
                "dynamic-services",
            ],
            Some(Ctx::SapDir(..)) => &["filter", "qos", "policer-override"],
            Some(Ctx::Overrides(..)) => &["policer"],
            Some(Ctx::Override(..)) => &["rate", "mbs", "cbs", "stat-mode", "packet-byte-offset"],
            Some(Ctx::DynamicServices(_)) => &["dynamic-services-policy", "shutdown"],
            Some(Ctx::Interface(..)) => &["description", "shutdown", "address", "ipv6", "sap"],
            Some(Ctx::Ipv6(..)) => &["address"],
            Some(Ctx::Route(..)) => &["next-hop", "black-hole"],
            Some(Ctx::RouteTarget(..)) => &["description", "shutdown"],
            Some(Ctx::FilterDef(filter)) if filter.kind == FilterKind::Mac => {
                &["description", "default-action", "type", "entry"]
            }
            Some(Ctx::FilterDef(_)) => &["description", "default-action", "entry"],
            Some(Ctx::Entry(..)) => &["description", "match", "action"],
            Some(Ctx::Match(filter, _)) if filter.kind == FilterKind::Mac => {
                &["src-mac", "dst-mac", "etype", "outer-tag", "inner-tag"]
            }
            Some(Ctx::Match(..)) => &[
                "src-ip",
                "dst-ip",
                "src-port",
                "dst-port",
                "dscp",
                "icmp-type",
                "icmp-code",
            ],
            Some(Ctx::Policy(_)) => &["description", "policer"],
            Some(Ctx::Policer(..)) => &[
                "description",
                "rate",
                "mbs",
                "cbs",
                "mode",
                "stat-mode",
                "packet-byte-offset",
            ],
        };
        let mut out = list.to_vec();
        if ctx.is_some() {
            out.extend(["exit", "configure"]);
        }
        out
    }
}

/// The words of one line, consumed command by command.
struct Line<'t> {
    toks: &'t [Token],
    pos: usize,
    number: u32,
    end_col: u32,
}

impl<'t> Line<'t> {
    fn next(&mut self) -> Option<&'t Token> {
        let tok = self.toks.get(self.pos)?;
        self.pos += 1;
        Some(tok)
    }

    fn peek(&self) -> Option<&'t Token> {
        self.toks.get(self.pos)
    }

    /// Consumes the next word when it is the bare keyword `kw`.
    fn eat(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(tok) if !tok.quoted && tok.text == kw => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn error_at(&self, tok: Option<&Token>, kind: ParseErrorKind) -> ParseError {
        ParseError {
            line: self.number,
            col: tok.map_or(self.end_col, |t| t.col),
            kind,
        }
    }

    fn bad(&self, tok: Option<&Token>, command: &str, expected: impl Into<String>) -> ParseError {
        self.error_at(
            tok,
            ParseErrorKind::BadArgument {
                command: command.to_owned(),
                expected: expected.into(),
                found: tok.map(|t| t.text.clone()),
            },
        )
    }

    /// The next word, whatever it is.
    fn arg(&mut self, command: &str, expected: &str) -> Result<&'t Token, ParseError> {
        let tok = self.next();
        tok.ok_or_else(|| self.bad(None, command, expected))
    }

    /// The next word parsed by `f`, or an error naming `expected`.
    fn parsed<T>(
        &mut self,
        command: &str,
        expected: &str,
        f: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, ParseError> {
        let tok = self.arg(command, expected)?;
        f(&tok.text).ok_or_else(|| self.bad(Some(tok), command, expected))
    }

    fn number(
        &mut self,
        command: &str,
        what: &str,
        range: &RangeInclusive<u32>,
    ) -> Result<u32, ParseError> {
        let expected = format!("{what} in {}..={}", range.start(), range.end());
        self.parsed(command, &expected, |text| {
            parse_u32(text).filter(|value| range.contains(value))
        })
    }

    /// One of `choices`.
    fn choice<T: Copy>(&mut self, command: &str, choices: &[(&str, T)]) -> Result<T, ParseError> {
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let expected = format!("one of {}", names.join(", "));
        self.parsed(command, &expected, |text| {
            choices
                .iter()
                .find(|(name, _)| *name == text)
                .map(|(_, value)| *value)
        })
    }

    fn name(&mut self, command: &str) -> Result<String, ParseError> {
        let tok = self.arg(command, "a name")?;
        limits::check_name(&tok.text).map_err(|expected| self.bad(Some(tok), command, expected))?;
        Ok(tok.text.clone())
    }

    fn description(&mut self, command: &str) -> Result<String, ParseError> {
        let tok = self.arg(command, "a description string")?;
        limits::check_description(&tok.text)
            .map_err(|expected| self.bad(Some(tok), command, expected))?;
        Ok(tok.text.clone())
    }

    fn ip(&mut self, command: &str) -> Result<IpAddr, ParseError> {
        self.parsed(command, "an IP address", |t| t.parse().ok())
    }

    /// `A.B.C.D/L`, `X::Y/L`, or a bare address (a host prefix).
    fn prefix(&mut self, command: &str) -> Result<IpNet, ParseError> {
        self.parsed(command, "an IP prefix (address/length)", |t| {
            t.parse::<IpNet>()
                .ok()
                .or_else(|| t.parse::<IpAddr>().ok().map(IpNet::from))
        })
    }

    fn mac(&mut self, command: &str) -> Result<MacAddr, ParseError> {
        self.parsed(command, "a MAC address xx:xx:xx:xx:xx:xx", |t| {
            t.parse().ok()
        })
    }

    /// A byte count with an optional unit (SR OS's default unit is kilobytes), or `default`.
    fn burst(&mut self, command: &str) -> Result<Option<u32>, ParseError> {
        if self.eat("default") {
            return Ok(None);
        }
        let expected = "a size (bytes with 'bytes', else kilobytes) or 'default'";
        let tok = self.arg(command, expected)?;
        let value = parse_u32(&tok.text).ok_or_else(|| self.bad(Some(tok), command, expected))?;
        let bytes = if self.eat("bytes") {
            Some(value)
        } else {
            self.eat("kilobytes");
            value.checked_mul(1024)
        };
        match bytes.filter(|b| limits::BURST_BYTES.contains(b)) {
            Some(bytes) => Ok(Some(bytes)),
            None => Err(self.bad(
                Some(tok),
                command,
                format!("a size of at most {} bytes", limits::BURST_BYTES.end()),
            )),
        }
    }

    fn rate(&mut self, command: &str) -> Result<Rate, ParseError> {
        if self.eat("max") {
            return Ok(Rate::Max);
        }
        Ok(Rate::Kbps(self.number(
            command,
            "a rate in kbps or max",
            &limits::RATE_KBPS,
        )?))
    }

    /// `rate PIR [cir CIR]`; the CIR defaults to 0.
    fn policer_rate(&mut self, command: &str) -> Result<PolicerRate, ParseError> {
        let pir = self.rate(command)?;
        let cir = if self.eat("cir") {
            self.rate(command)?
        } else {
            Rate::Kbps(0)
        };
        Ok(PolicerRate { pir, cir })
    }

    /// `add N` (positive) or `subtract N` (negative).
    fn byte_offset(&mut self, command: &str) -> Result<i32, ParseError> {
        let sign = self.choice(command, &[("add", 1), ("subtract", -1)])?;
        let range = if sign > 0 {
            limits::BYTE_OFFSET_ADD
        } else {
            limits::BYTE_OFFSET_SUBTRACT
        };
        let range = range.start().unsigned_abs()..=range.end().unsigned_abs();
        let count = self.number(command, "a byte count", &range)?;
        Ok(sign * i32::try_from(count).unwrap_or(0))
    }

    fn etype(&mut self, command: &str) -> Result<u16, ParseError> {
        let value = self.number(
            command,
            "an ethertype (0x0600..=0xffff)",
            &limits::ETHERTYPE,
        )?;
        Ok(u16::try_from(value).unwrap_or(u16::MAX))
    }

    fn port_match(&mut self, command: &str) -> Result<PortMatch, ParseError> {
        let op = self.choice(command, &[("eq", 0), ("lt", 1), ("gt", 2), ("range", 3)])?;
        let port = |line: &mut Self| -> Result<u16, ParseError> {
            let value = line.number(command, "a port", &limits::L4_PORT)?;
            Ok(u16::try_from(value).unwrap_or(u16::MAX))
        };
        Ok(match op {
            0 => PortMatch::Eq(port(self)?),
            1 => PortMatch::Lt(port(self)?),
            2 => PortMatch::Gt(port(self)?),
            _ => PortMatch::Range(port(self)?, port(self)?),
        })
    }

    fn tag_mask(&mut self, command: &str) -> Result<TagMask, ParseError> {
        let value = self.number(command, "a tag value", &limits::TAG_MATCH)?;
        let mask = match self.peek() {
            Some(tok) if parse_u32(&tok.text).is_some() => {
                self.number(command, "a tag mask", &limits::TAG_MATCH)?
            }
            _ => 4095,
        };
        Ok(TagMask {
            value: u16::try_from(value).unwrap_or(u16::MAX),
            mask: u16::try_from(mask).unwrap_or(u16::MAX),
        })
    }

    fn mac_mask(&mut self, command: &str) -> Result<MacMask, ParseError> {
        let addr = self.mac(command)?;
        let mask = match self.peek() {
            Some(tok) if tok.text.parse::<MacAddr>().is_ok() => self.mac(command)?,
            _ => MacAddr([0xff; 6]),
        };
        Ok(MacMask { addr, mask })
    }
}

/// A decimal number, or hexadecimal with `0x`.
fn parse_u32(text: &str) -> Option<u32> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        None => None,
    }
}

const SERVICE_KINDS: [(&str, ServiceKind); 4] = [
    ("epipe", ServiceKind::Epipe),
    ("vpls", ServiceKind::Vpls),
    ("ies", ServiceKind::Ies),
    ("vprn", ServiceKind::Vprn),
];
const ACTIONS: [(&str, Action); 2] = [("forward", Action::Forward), ("drop", Action::Drop)];
const FILTER_KINDS: [(&str, FilterKind); 3] = [
    ("ip", FilterKind::Ip),
    ("ipv6", FilterKind::Ipv6),
    ("mac", FilterKind::Mac),
];

pub(crate) struct Parser<'a> {
    ports: &'a PortMap,
    stack: Vec<Ctx>,
    changes: Vec<Change>,
}

/// What a command handler did with the keyword.
type Handled = Result<bool, ParseError>;

/// The command a context's handler reads: whether `no` preceded it, its keyword, the rest of
/// its line, and where it starts (the origin of the changes it emits).
struct Cmd<'a, 't>(bool, &'a str, &'a mut Line<'t>, &'a Origin);

impl<'a> Parser<'a> {
    pub(crate) fn new(ports: &'a PortMap) -> Self {
        Self {
            ports,
            stack: Vec::new(),
            changes: Vec::new(),
        }
    }

    pub(crate) fn run(mut self, text: &str) -> Result<Vec<Change>, ParseError> {
        for (index, raw) in text.lines().enumerate() {
            let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let toks = tokens(raw, number)?;
            let mut line = Line {
                toks: &toks,
                pos: 0,
                number,
                end_col: u32::try_from(raw.chars().count() + 1).unwrap_or(u32::MAX),
            };
            while line.peek().is_some() {
                self.command(&mut line)?;
            }
        }
        Ok(self.changes)
    }

    fn context_label(&self) -> String {
        if self.stack.is_empty() {
            return "the top level".into();
        }
        self.stack
            .iter()
            .map(Ctx::label)
            .collect::<Vec<_>>()
            .join(">")
    }

    fn emit(&mut self, origin: &Origin, edit: Edit) {
        self.changes.push(Change {
            origin: origin.clone(),
            edit,
        });
    }

    fn command(&mut self, line: &mut Line<'_>) -> Result<(), ParseError> {
        let Some(first) = line.next() else {
            return Ok(());
        };
        let origin = Origin::Text {
            line: line.number,
            col: first.col,
        };
        if !first.quoted && first.text == "exit" {
            if line.eat("all") {
                self.stack.clear();
            } else if self.stack.pop().is_none() {
                return Err(line.error_at(Some(first), ParseErrorKind::NothingToExit));
            }
            return Ok(());
        }
        // `configure` starts a block wherever the previous one left off: SR OS's `exit` returns
        // to the context a command line was typed in, so a block that opened several levels on
        // one line (`configure service`) and closed them with one `exit` leaves brasa, whose
        // `exit` leaves one level, inside `config`. The word names no object of any context, so
        // restarting from the top can never be a misread command.
        if !first.quoted && first.text == "configure" {
            self.stack.clear();
            self.stack.push(Ctx::Configure);
            return Ok(());
        }
        let (neg, word) = if !first.quoted && first.text == "no" {
            (true, line.arg("no", "a command to negate")?)
        } else {
            (false, first)
        };
        let handled = !word.quoted && {
            let cmd = Cmd(neg, word.text.as_str(), line, &origin);
            match self.stack.last().cloned() {
                None => false,
                Some(Ctx::Configure) => self.configure(cmd),
                Some(Ctx::Service) => self.service_list(cmd)?,
                Some(Ctx::Filter) => self.filter_list(cmd)?,
                Some(Ctx::Qos) => self.qos_list(cmd)?,
                Some(Ctx::Svc(id, kind)) => self.service(cmd, id, kind)?,
                Some(Ctx::Group(service, name)) => self.group(cmd, service, name)?,
                Some(Ctx::Sap(path)) => self.sap(cmd, path)?,
                Some(Ctx::SapDir(path, dir)) => self.sap_dir(cmd, path, dir)?,
                Some(Ctx::Overrides(path, dir)) => self.overrides(cmd, path, dir)?,
                Some(Ctx::Override(path, dir, policer)) => {
                    let setting = self.policer_setting(cmd, false)?;
                    self.emit_opt(&origin, setting, |s| Edit::PolicerOverride {
                        path,
                        dir,
                        policer,
                        op: NodeOp::Set(s),
                    })
                }
                Some(Ctx::DynamicServices(path)) => self.dynamic_services(cmd, path)?,
                Some(Ctx::Interface(service, name)) => self.interface(cmd, service, name)?,
                Some(Ctx::Ipv6(service, name)) => self.ipv6(cmd, service, name)?,
                Some(Ctx::Route(service, prefix)) => self.route(cmd, service, prefix)?,
                Some(Ctx::RouteTarget(service, prefix, _)) => {
                    self.route_target(cmd, service, prefix)?
                }
                Some(Ctx::FilterDef(filter)) => self.filter(cmd, filter)?,
                Some(Ctx::Entry(filter, entry)) => self.entry(cmd, filter, entry)?,
                Some(Ctx::Match(filter, entry)) => {
                    let setting = self.criterion(cmd, filter.kind)?;
                    self.emit_opt(&origin, setting, |m| Edit::FilterEntry {
                        filter,
                        entry,
                        op: NodeOp::Set(EntrySetting::Match(m)),
                    })
                }
                Some(Ctx::Policy(policy)) => self.policy(cmd, policy)?,
                Some(Ctx::Policer(policy, policer)) => {
                    let setting = self.policer_setting(cmd, true)?;
                    self.emit_opt(&origin, setting, |s| Edit::Policer {
                        policy,
                        policer,
                        op: NodeOp::Set(s),
                    })
                }
            }
        };
        if handled {
            return Ok(());
        }
        Err(line.error_at(
            Some(word),
            ParseErrorKind::UnknownCommand {
                context: self.context_label(),
                found: word.text.clone(),
                expected: Ctx::commands(self.stack.last()),
            },
        ))
    }

    fn emit_opt<S>(
        &mut self,
        origin: &Origin,
        setting: Option<S>,
        edit: impl FnOnce(S) -> Edit,
    ) -> bool {
        match setting {
            Some(setting) => {
                self.emit(origin, edit(setting));
                true
            }
            None => false,
        }
    }

    fn enter(&mut self, ctx: Ctx) -> bool {
        self.stack.push(ctx);
        true
    }

    fn configure(&mut self, cmd: Cmd<'_, '_>) -> bool {
        let Cmd(neg, kw, ..) = cmd;
        let ctx = match kw {
            "service" => Ctx::Service,
            "filter" => Ctx::Filter,
            "qos" => Ctx::Qos,
            _ => return false,
        };
        !neg && self.enter(ctx)
    }

    /// `create` at the end of an object's command: `Create` with it, `Enter` without.
    fn create_or_enter<S>(line: &mut Line<'_>) -> NodeOp<S> {
        if line.eat("create") {
            NodeOp::Create
        } else {
            NodeOp::Enter
        }
    }

    /// A child object's command: `no` deletes it; otherwise it is created (with `create`) or
    /// entered, and so is its context.
    fn child<S>(
        &mut self,
        line: &mut Line<'_>,
        neg: bool,
        origin: &Origin,
        edit: impl FnOnce(NodeOp<S>) -> Edit,
        ctx: Ctx,
    ) -> bool {
        let op = if neg {
            NodeOp::Delete
        } else {
            Self::create_or_enter(line)
        };
        self.emit(origin, edit(op));
        if !neg {
            self.enter(ctx);
        }
        true
    }

    fn service_list(&mut self, cmd: Cmd<'_, '_>) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let Some(kind) = SERVICE_KINDS
            .iter()
            .find(|(k, _)| *k == kw)
            .map(|(_, k)| *k)
        else {
            return Ok(false);
        };
        let id = line.number(kw, "a service id", &limits::SERVICE_ID)?;
        if neg {
            self.emit(
                origin,
                Edit::Service {
                    id,
                    kind,
                    op: ServiceOp::Delete,
                },
            );
            return Ok(true);
        }
        let customer = if line.eat("customer") {
            Some(line.number(kw, "a customer id", &limits::CUSTOMER_ID)?)
        } else {
            None
        };
        let op = match (line.eat("create"), customer) {
            (true, Some(customer)) => ServiceOp::Create { customer },
            (true, None) => {
                return Err(line.bad(
                    line.toks.get(line.pos - 1),
                    kw,
                    "'customer N' before 'create'",
                ))
            }
            (false, customer) => ServiceOp::Enter { customer },
        };
        self.emit(origin, Edit::Service { id, kind, op });
        Ok(self.enter(Ctx::Svc(id, kind)))
    }

    fn filter_list(&mut self, cmd: Cmd<'_, '_>) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let kind = match kw {
            "ip-filter" => FilterKind::Ip,
            "ipv6-filter" => FilterKind::Ipv6,
            "mac-filter" => FilterKind::Mac,
            _ => return Ok(false),
        };
        let id = line.number(kw, "a filter id", &limits::FILTER_ID)?;
        let filter = FilterRef { kind, id };
        let edit = |op| Edit::Filter { filter, op };
        Ok(self.child(line, neg, origin, edit, Ctx::FilterDef(filter)))
    }

    fn qos_list(&mut self, cmd: Cmd<'_, '_>) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let kind = match kw {
            "sap-ingress" => QosKind::SapIngress,
            "sap-egress" => QosKind::SapEgress,
            _ => return Ok(false),
        };
        let id = line.number(kw, "a policy id", &limits::QOS_POLICY_ID)?;
        let policy = QosRef { kind, id };
        let edit = |op| Edit::QosPolicy { policy, op };
        Ok(self.child(line, neg, origin, edit, Ctx::Policy(policy)))
    }

    fn service(&mut self, cmd: Cmd<'_, '_>, id: ServiceId, kind: ServiceKind) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let set = |setting| Edit::Service {
            id,
            kind,
            op: ServiceOp::Set(setting),
        };
        let applies = Ctx::commands(Some(&Ctx::Svc(id, kind))).contains(&kw);
        if !applies {
            return Ok(false);
        }
        match kw {
            "description" => {
                let text = unless(neg, || line.description(kw))?;
                self.emit(origin, set(ServiceSetting::Description(text)));
            }
            "shutdown" => self.emit(origin, set(ServiceSetting::Admin(admin(neg)))),
            "sap" => {
                let sap = self.sap_id(line, kw)?;
                let path = SapPath {
                    service: id,
                    interface: None,
                    sap,
                };
                if neg {
                    self.emit(
                        origin,
                        Edit::Sap {
                            path,
                            op: SapOp::Delete,
                        },
                    );
                    return Ok(true);
                }
                let capture = line.eat("capture-sap");
                let split_horizon_group = if line.eat("split-horizon-group") {
                    Some(line.name("split-horizon-group")?)
                } else {
                    None
                };
                let op = if line.eat("create") {
                    SapOp::Create {
                        capture,
                        split_horizon_group,
                    }
                } else {
                    SapOp::Enter
                };
                self.emit(
                    origin,
                    Edit::Sap {
                        path: path.clone(),
                        op,
                    },
                );
                self.enter(Ctx::Sap(path));
            }
            "gre-tunnel" => {
                let tunnel = if neg {
                    None
                } else {
                    if !line.eat("local") {
                        return Err(line.bad(line.peek(), kw, "'local ADDRESS'"));
                    }
                    let local = line.ip(kw)?;
                    if !line.eat("remote") {
                        return Err(line.bad(line.peek(), kw, "'remote ADDRESS'"));
                    }
                    let remote = line.ip(kw)?;
                    let key = if line.eat("key") {
                        Some(line.number(kw, "a GRE key", &limits::GRE_KEY)?)
                    } else {
                        None
                    };
                    Some(GreTunnel { local, remote, key })
                };
                self.emit(origin, set(ServiceSetting::GreTunnel(tunnel)));
            }
            "split-horizon-group" => {
                let name = line.name(kw)?;
                let edit = |op| Edit::SplitHorizonGroup {
                    service: id,
                    name: name.clone(),
                    op,
                };
                self.child(line, neg, origin, edit, Ctx::Group(id, name.clone()));
            }
            "fdb-table-size" => {
                let size = unless(neg, || {
                    line.number(kw, "a table size", &limits::FDB_TABLE_SIZE)
                })?;
                self.emit(origin, set(ServiceSetting::FdbTableSize(size)));
            }
            "local-age" => {
                let age = unless(neg, || {
                    line.number(kw, "an age in seconds", &limits::LOCAL_AGE_SECONDS)
                })?;
                self.emit(origin, set(ServiceSetting::LocalAge(age)));
            }
            "route-distinguisher" => {
                let rd = if neg {
                    None
                } else {
                    Some(line.arg(kw, "a route distinguisher")?.text.clone())
                };
                self.emit(origin, set(ServiceSetting::RouteDistinguisher(rd)));
            }
            "interface" => {
                let name = line.name(kw)?;
                let edit = |op| Edit::Interface {
                    service: id,
                    name: name.clone(),
                    op,
                };
                self.child(line, neg, origin, edit, Ctx::Interface(id, name.clone()));
            }
            "static-route-entry" => {
                let prefix = line.prefix(kw)?;
                let op = if neg { NodeOp::Delete } else { NodeOp::Enter };
                self.emit(
                    origin,
                    Edit::StaticRoute {
                        service: id,
                        prefix,
                        op,
                    },
                );
                if !neg {
                    self.enter(Ctx::Route(id, prefix));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn sap_id(&self, line: &mut Line<'_>, command: &str) -> Result<SapId, ParseError> {
        let tok = line.arg(command, "a SAP id (port:outer[.inner])")?;
        SapId::parse_mapped(&tok.text, self.ports)
            .map_err(|error| line.error_at(Some(tok), ParseErrorKind::Sap(error)))
    }

    fn group(&mut self, cmd: Cmd<'_, '_>, service: ServiceId, name: String) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        if kw != "description" {
            return Ok(false);
        }
        let text = unless(neg, || line.description(kw))?;
        self.emit(
            origin,
            Edit::SplitHorizonGroup {
                service,
                name,
                op: NodeOp::Set(DescriptionSetting(text)),
            },
        );
        Ok(true)
    }

    fn sap(&mut self, cmd: Cmd<'_, '_>, path: SapPath) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        if !Ctx::commands(Some(&Ctx::Sap(path.clone()))).contains(&kw) {
            return Ok(false);
        }
        let setting = match kw {
            "description" => SapSetting::Description(unless(neg, || line.description(kw))?),
            "shutdown" => SapSetting::Admin(admin(neg)),
            "ingress" | "egress" if !neg => {
                let dir = if kw == "ingress" {
                    Direction::Ingress
                } else {
                    Direction::Egress
                };
                return Ok(self.enter(Ctx::SapDir(path, dir)));
            }
            "dynamic-services" if !neg => return Ok(self.enter(Ctx::DynamicServices(path))),
            "max-nbr-mac-addr" => SapSetting::MaxMacAddresses(unless(neg, || {
                line.number(kw, "a MAC count", &limits::MAC_LIMIT)
            })?),
            "static-mac" => {
                let mac = line.mac(kw)?;
                if !neg {
                    line.eat("create");
                }
                SapSetting::StaticMac(mac, !neg)
            }
            "disable-learning" => SapSetting::DisableLearning(!neg),
            "disable-aging" => SapSetting::DisableAging(!neg),
            _ => return Ok(false),
        };
        self.emit(
            origin,
            Edit::Sap {
                path,
                op: SapOp::Set(setting),
            },
        );
        Ok(true)
    }

    fn sap_dir(&mut self, cmd: Cmd<'_, '_>, path: SapPath, dir: Direction) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let settings: Vec<SapSetting> = match (kw, neg) {
            ("filter", false) => {
                let kind = line.choice(kw, &FILTER_KINDS)?;
                let id = line.number(kw, "a filter id", &limits::FILTER_ID)?;
                vec![SapSetting::Filter(dir, kind, Some(id))]
            }
            ("filter", true) => {
                let kinds: Vec<FilterKind> = match line.peek() {
                    Some(tok) if FILTER_KINDS.iter().any(|(k, _)| *k == tok.text) => {
                        let kind = line.choice(kw, &FILTER_KINDS)?;
                        if line.peek().is_some_and(|t| parse_u32(&t.text).is_some()) {
                            line.number(kw, "a filter id", &limits::FILTER_ID)?;
                        }
                        vec![kind]
                    }
                    _ => FilterKind::ALL.to_vec(),
                };
                kinds
                    .into_iter()
                    .map(|kind| SapSetting::Filter(dir, kind, None))
                    .collect()
            }
            ("qos", false) => vec![SapSetting::Qos(
                dir,
                Some(line.number(kw, "a QoS policy id", &limits::QOS_POLICY_ID)?),
            )],
            ("qos", true) => {
                if line.peek().is_some_and(|t| parse_u32(&t.text).is_some()) {
                    line.number(kw, "a QoS policy id", &limits::QOS_POLICY_ID)?;
                }
                vec![SapSetting::Qos(dir, None)]
            }
            ("policer-override", false) => return Ok(self.enter(Ctx::Overrides(path, dir))),
            ("policer-override", true) => vec![SapSetting::ClearPolicerOverrides(dir)],
            _ => return Ok(false),
        };
        for setting in settings {
            self.emit(
                origin,
                Edit::Sap {
                    path: path.clone(),
                    op: SapOp::Set(setting),
                },
            );
        }
        Ok(true)
    }

    fn overrides(&mut self, cmd: Cmd<'_, '_>, path: SapPath, dir: Direction) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        if kw != "policer" {
            return Ok(false);
        }
        let policer = line.number(kw, "a policer id", &limits::POLICER_ID)?;
        let edit = |op| Edit::PolicerOverride {
            path: path.clone(),
            dir,
            policer,
            op,
        };
        Ok(self.child(
            line,
            neg,
            origin,
            edit,
            Ctx::Override(path.clone(), dir, policer),
        ))
    }

    fn dynamic_services(&mut self, cmd: Cmd<'_, '_>, path: SapPath) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let setting = match kw {
            "dynamic-services-policy" => {
                SapSetting::DynamicServicesPolicy(unless(neg, || line.name(kw))?)
            }
            "shutdown" => SapSetting::DynamicServicesAdmin(admin(neg)),
            _ => return Ok(false),
        };
        self.emit(
            origin,
            Edit::Sap {
                path,
                op: SapOp::Set(setting),
            },
        );
        Ok(true)
    }

    fn interface(&mut self, cmd: Cmd<'_, '_>, service: ServiceId, name: String) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let setting = match kw {
            "description" => InterfaceSetting::Description(unless(neg, || line.description(kw))?),
            "shutdown" => InterfaceSetting::Admin(admin(neg)),
            "address" if neg => {
                // `no address` takes the address optionally.
                if line
                    .peek()
                    .is_some_and(|t| t.text.parse::<Ipv4Net>().is_ok())
                {
                    line.next();
                }
                InterfaceSetting::Ipv4(None)
            }
            "address" => InterfaceSetting::Ipv4(Some(line.parsed(
                kw,
                "an IPv4 address with its prefix length (IPv6 addresses go in the ipv6 context)",
                |t| t.parse::<Ipv4Net>().ok(),
            )?)),
            "ipv6" if !neg => return Ok(self.enter(Ctx::Ipv6(service, name))),
            "sap" => {
                let sap = self.sap_id(line, kw)?;
                let path = SapPath {
                    service,
                    interface: Some(name),
                    sap,
                };
                let op = match (neg, line.eat("create")) {
                    (true, _) => SapOp::Delete,
                    (false, true) => SapOp::Create {
                        capture: false,
                        split_horizon_group: None,
                    },
                    (false, false) => SapOp::Enter,
                };
                self.emit(
                    origin,
                    Edit::Sap {
                        path: path.clone(),
                        op,
                    },
                );
                if !neg {
                    self.enter(Ctx::Sap(path));
                }
                return Ok(true);
            }
            _ => return Ok(false),
        };
        self.emit(
            origin,
            Edit::Interface {
                service,
                name,
                op: NodeOp::Set(setting),
            },
        );
        Ok(true)
    }

    fn ipv6(&mut self, cmd: Cmd<'_, '_>, service: ServiceId, name: String) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        if kw != "address" {
            return Ok(false);
        }
        let net = line.parsed(kw, "an IPv6 address with its prefix length", |t| {
            t.parse::<Ipv6Net>().ok()
        })?;
        self.emit(
            origin,
            Edit::Interface {
                service,
                name,
                op: NodeOp::Set(InterfaceSetting::Ipv6(net, !neg)),
            },
        );
        Ok(true)
    }

    fn route(&mut self, cmd: Cmd<'_, '_>, service: ServiceId, prefix: IpNet) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let (setting, target) = match (kw, neg) {
            ("next-hop", false) => (RouteSetting::NextHop(line.ip(kw)?), "next-hop"),
            ("next-hop", true) => (RouteSetting::NoNextHop(line.ip(kw)?), ""),
            ("black-hole", false) => (RouteSetting::BlackHole, "black-hole"),
            ("black-hole", true) => (RouteSetting::NoBlackHole, ""),
            _ => return Ok(false),
        };
        self.emit(
            origin,
            Edit::StaticRoute {
                service,
                prefix,
                op: NodeOp::Set(setting),
            },
        );
        if !neg {
            self.enter(Ctx::RouteTarget(service, prefix, target));
        }
        Ok(true)
    }

    fn route_target(&mut self, cmd: Cmd<'_, '_>, service: ServiceId, prefix: IpNet) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let setting = match kw {
            "shutdown" => RouteSetting::Admin(admin(neg)),
            "description" => RouteSetting::Description(unless(neg, || line.description(kw))?),
            _ => return Ok(false),
        };
        self.emit(
            origin,
            Edit::StaticRoute {
                service,
                prefix,
                op: NodeOp::Set(setting),
            },
        );
        Ok(true)
    }

    fn filter(&mut self, cmd: Cmd<'_, '_>, filter: FilterRef) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let setting = match kw {
            "description" => FilterSetting::Description(unless(neg, || line.description(kw))?),
            "default-action" => {
                FilterSetting::DefaultAction(unless(neg, || line.choice(kw, &ACTIONS))?)
            }
            "type" if filter.kind == FilterKind::Mac => FilterSetting::MacType(if neg {
                MacFilterType::Normal
            } else {
                line.choice(
                    kw,
                    &[
                        ("normal", MacFilterType::Normal),
                        ("vid", MacFilterType::Vid),
                    ],
                )?
            }),
            "entry" => {
                let entry = line.number(kw, "an entry id", &limits::ENTRY_ID)?;
                let edit = |op| Edit::FilterEntry { filter, entry, op };
                return Ok(self.child(line, neg, origin, edit, Ctx::Entry(filter, entry)));
            }
            _ => return Ok(false),
        };
        self.emit(
            origin,
            Edit::Filter {
                filter,
                op: NodeOp::Set(setting),
            },
        );
        Ok(true)
    }

    fn entry(&mut self, cmd: Cmd<'_, '_>, filter: FilterRef, entry: EntryId) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        let mut settings = Vec::new();
        match (kw, neg) {
            ("description", _) => settings.push(EntrySetting::Description(unless(neg, || {
                line.description(kw)
            })?)),
            ("action", _) => settings.push(EntrySetting::Action(unless(neg, || {
                line.choice(kw, &ACTIONS)
            })?)),
            ("match", true) => settings.push(EntrySetting::ClearMatch),
            ("match", false) => {
                let head = match filter.kind {
                    FilterKind::Ip => "protocol",
                    FilterKind::Ipv6 => "next-header",
                    FilterKind::Mac => "frame-type",
                };
                if line.eat(head) {
                    let criterion = if filter.kind == FilterKind::Mac {
                        let types: Vec<(&str, FrameType)> =
                            FrameType::ALL.iter().map(|t| (t.keyword(), *t)).collect();
                        MatchSetting::FrameType(Some(line.choice(head, &types)?))
                    } else {
                        MatchSetting::Protocol(Some(line.parsed(
                            head,
                            "a protocol name (tcp, udp, icmp, …) or number 0..=255",
                            |t| {
                                protocol_value(t)
                                    .or_else(|| parse_u32(t).and_then(|v| u8::try_from(v).ok()))
                            },
                        )?))
                    };
                    settings.push(EntrySetting::Match(criterion));
                }
                self.enter(Ctx::Match(filter, entry));
            }
            _ => return Ok(false),
        }
        for setting in settings {
            self.emit(
                origin,
                Edit::FilterEntry {
                    filter,
                    entry,
                    op: NodeOp::Set(setting),
                },
            );
        }
        Ok(true)
    }

    fn criterion(
        &mut self,
        cmd: Cmd<'_, '_>,
        kind: FilterKind,
    ) -> Result<Option<MatchSetting>, ParseError> {
        let Cmd(neg, kw, line, _) = cmd;
        let ip = kind != FilterKind::Mac;
        Ok(Some(match kw {
            "src-ip" if ip => MatchSetting::SrcIp(unless(neg, || line.prefix(kw))?),
            "dst-ip" if ip => MatchSetting::DstIp(unless(neg, || line.prefix(kw))?),
            "src-port" if ip => MatchSetting::SrcPort(unless(neg, || line.port_match(kw))?),
            "dst-port" if ip => MatchSetting::DstPort(unless(neg, || line.port_match(kw))?),
            "dscp" if ip => MatchSetting::Dscp(unless(neg, || {
                line.parsed(
                    kw,
                    "a DSCP name (be, ef, af11 … af43, cs1 … cs5, nc1, nc2, cpN)",
                    dscp_value,
                )
            })?),
            "icmp-type" if ip => MatchSetting::IcmpType(unless(neg, || icmp(line, kw))?),
            "icmp-code" if ip => MatchSetting::IcmpCode(unless(neg, || icmp(line, kw))?),
            "src-mac" if !ip => MatchSetting::SrcMac(unless(neg, || line.mac_mask(kw))?),
            "dst-mac" if !ip => MatchSetting::DstMac(unless(neg, || line.mac_mask(kw))?),
            "etype" if !ip => MatchSetting::Etype(unless(neg, || line.etype(kw))?),
            "outer-tag" if !ip => MatchSetting::OuterTag(unless(neg, || line.tag_mask(kw))?),
            "inner-tag" if !ip => MatchSetting::InnerTag(unless(neg, || line.tag_mask(kw))?),
            _ => return Ok(None),
        }))
    }

    fn policy(&mut self, cmd: Cmd<'_, '_>, policy: QosRef) -> Handled {
        let Cmd(neg, kw, line, origin) = cmd;
        match kw {
            "description" => {
                let text = unless(neg, || line.description(kw))?;
                self.emit(
                    origin,
                    Edit::QosPolicy {
                        policy,
                        op: NodeOp::Set(DescriptionSetting(text)),
                    },
                );
            }
            "policer" => {
                let policer = line.number(kw, "a policer id", &limits::POLICER_ID)?;
                let edit = |op| Edit::Policer {
                    policy,
                    policer,
                    op,
                };
                self.child(line, neg, origin, edit, Ctx::Policer(policy, policer));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A policer command; `full` adds the policer-only `description` and `mode`.
    fn policer_setting(
        &mut self,
        cmd: Cmd<'_, '_>,
        full: bool,
    ) -> Result<Option<PolicerSetting>, ParseError> {
        let Cmd(neg, kw, line, _) = cmd;
        Ok(Some(match kw {
            "description" if full => {
                PolicerSetting::Description(unless(neg, || line.description(kw))?)
            }
            "rate" => PolicerSetting::Rate(unless(neg, || line.policer_rate(kw))?),
            "mbs" => PolicerSetting::Mbs(if neg { None } else { line.burst(kw)? }),
            "cbs" => PolicerSetting::Cbs(if neg { None } else { line.burst(kw)? }),
            "mode" if full => {
                let modes: Vec<(&str, MeterMode)> =
                    MeterMode::ALL.iter().map(|m| (m.keyword(), *m)).collect();
                PolicerSetting::Mode(unless(neg, || line.choice(kw, &modes))?)
            }
            "stat-mode" => {
                let modes: Vec<(&str, StatMode)> =
                    StatMode::ALL.iter().map(|m| (m.keyword(), *m)).collect();
                PolicerSetting::StatMode(unless(neg, || line.choice(kw, &modes))?)
            }
            "packet-byte-offset" => {
                PolicerSetting::PacketByteOffset(unless(neg, || line.byte_offset(kw))?)
            }
            _ => return Ok(None),
        }))
    }
}

/// The value `parse` reads, or `None` for the `no` form.
fn unless<T>(
    neg: bool,
    parse: impl FnOnce() -> Result<T, ParseError>,
) -> Result<Option<T>, ParseError> {
    if neg {
        Ok(None)
    } else {
        parse().map(Some)
    }
}

fn admin(neg: bool) -> AdminState {
    if neg {
        AdminState::Up
    } else {
        AdminState::Down
    }
}

fn icmp(line: &mut Line<'_>, command: &str) -> Result<u8, ParseError> {
    let value = line.number(command, "an ICMP value", &limits::ICMP_VALUE)?;
    Ok(u8::try_from(value).unwrap_or(u8::MAX))
}
