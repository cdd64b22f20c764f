//! The printer: a whole configuration in the text form, in an order that applies to an empty
//! configuration as one batch (filters and policies before the SAPs that use them, groups and
//! interfaces before their SAPs, interfaces before the routes that need their subnets).

use std::fmt::Write as _;

use super::lex::quote;
use crate::config::ServiceConfig;
use crate::model::*;

/// Writes `config` in the text form, SR OS style (four-space indentation, `exit` closing each
/// context). [`parse`](super::parse) of the result, applied to an empty configuration, gives
/// `config` back.
pub fn export(config: &ServiceConfig) -> String {
    let mut out = Printer::default();
    out.line("configure");
    out.open();
    let filters: Vec<_> = config.filters().collect();
    if !filters.is_empty() {
        out.block("filter", |out| {
            for (filter, definition) in &filters {
                print_filter(out, *filter, definition);
            }
        });
    }
    let policies: Vec<_> = config.qos_policies().collect();
    if !policies.is_empty() {
        out.block("qos", |out| {
            for (policy, definition) in &policies {
                print_policy(out, *policy, definition);
            }
        });
    }
    if config.services().next().is_some() {
        out.block("service", |out| {
            for (id, service) in config.services() {
                print_service(out, config, id, service);
            }
        });
    }
    out.close();
    out.text
}

#[derive(Default)]
pub(super) struct Printer {
    pub(super) text: String,
    depth: usize,
}

impl Printer {
    pub(super) fn line(&mut self, line: &str) {
        for _ in 0..self.depth {
            self.text.push_str("    ");
        }
        self.text.push_str(line);
        self.text.push('\n');
    }

    pub(super) fn open(&mut self) {
        self.depth += 1;
    }

    pub(super) fn close(&mut self) {
        self.depth -= 1;
        self.line("exit");
    }

    /// `head`, its children indented, then `exit`.
    pub(super) fn block(&mut self, head: &str, body: impl FnOnce(&mut Self)) {
        self.line(head);
        self.open();
        body(self);
        self.close();
    }

    fn description(&mut self, text: &Option<String>) {
        if let Some(text) = text {
            self.line(&format!("description {}", quote(text)));
        }
    }
}

fn action(action: Action) -> &'static str {
    match action {
        Action::Forward => "forward",
        Action::Drop => "drop",
    }
}

pub(super) fn print_filter(out: &mut Printer, filter: FilterRef, definition: &Filter) {
    let head = format!("{} {} create", filter.kind.definition_keyword(), filter.id);
    out.block(&head, |out| {
        out.description(&definition.description);
        if definition.mac_type == MacFilterType::Vid {
            out.line("type vid");
        }
        if definition.default_action != Action::Drop {
            out.line(&format!(
                "default-action {}",
                action(definition.default_action)
            ));
        }
        for (id, entry) in &definition.entries {
            out.block(&format!("entry {id} create"), |out| {
                out.description(&entry.description);
                print_match(out, filter.kind, entry);
                if let Some(a) = entry.action {
                    out.line(&format!("action {}", action(a)));
                }
            });
        }
    });
}

fn print_match(out: &mut Printer, kind: FilterKind, entry: &FilterEntry) {
    let mut lines = Vec::new();
    let head = match kind {
        FilterKind::Mac => {
            let m = &entry.mac;
            let mac = |name: &str, v: &MacMask| {
                if v.mask.0 == [0xff; 6] {
                    format!("{name} {}", v.addr)
                } else {
                    format!("{name} {} {}", v.addr, v.mask)
                }
            };
            let tag = |name: &str, v: &TagMask| {
                if v.mask == 4095 {
                    format!("{name} {}", v.value)
                } else {
                    format!("{name} {} {}", v.value, v.mask)
                }
            };
            lines.extend(m.src_mac.as_ref().map(|v| mac("src-mac", v)));
            lines.extend(m.dst_mac.as_ref().map(|v| mac("dst-mac", v)));
            lines.extend(m.etype.map(|v| format!("etype 0x{v:04x}")));
            lines.extend(m.outer_tag.as_ref().map(|v| tag("outer-tag", v)));
            lines.extend(m.inner_tag.as_ref().map(|v| tag("inner-tag", v)));
            m.frame_type
                .map(|t| format!("match frame-type {}", t.keyword()))
        }
        FilterKind::Ip | FilterKind::Ipv6 => {
            let m = &entry.ip;
            let ports = |name: &str, v: &PortMatch| match v {
                PortMatch::Eq(p) => format!("{name} eq {p}"),
                PortMatch::Lt(p) => format!("{name} lt {p}"),
                PortMatch::Gt(p) => format!("{name} gt {p}"),
                PortMatch::Range(a, b) => format!("{name} range {a} {b}"),
            };
            lines.extend(m.src_ip.map(|v| format!("src-ip {v}")));
            lines.extend(m.dst_ip.map(|v| format!("dst-ip {v}")));
            lines.extend(m.src_port.as_ref().map(|v| ports("src-port", v)));
            lines.extend(m.dst_port.as_ref().map(|v| ports("dst-port", v)));
            lines.extend(m.dscp.map(|v| format!("dscp {}", dscp_name(v))));
            lines.extend(m.icmp_type.map(|v| format!("icmp-type {v}")));
            lines.extend(m.icmp_code.map(|v| format!("icmp-code {v}")));
            let word = if kind == FilterKind::Ip {
                "protocol"
            } else {
                "next-header"
            };
            m.protocol.map(|p| match protocol_name(p) {
                Some(name) => format!("match {word} {name}"),
                None => format!("match {word} {p}"),
            })
        }
    };
    if head.is_none() && lines.is_empty() {
        return;
    }
    out.block(head.as_deref().unwrap_or("match"), |out| {
        for line in &lines {
            out.line(line);
        }
    });
}

pub(super) fn print_policy(out: &mut Printer, policy: QosRef, definition: &QosPolicy) {
    out.block(
        &format!("{} {} create", policy.kind.keyword(), policy.id),
        |out| {
            out.description(&definition.description);
            for (id, policer) in &definition.policers {
                out.block(&format!("policer {id} create"), |out| {
                    out.description(&policer.description);
                    print_policer_values(
                        out,
                        Some(policer.rate).filter(|r| *r != PolicerRate::default()),
                        policer.mbs,
                        policer.cbs,
                        Some(policer.stat_mode).filter(|m| *m != StatMode::default()),
                        Some(policer.packet_byte_offset).filter(|o| *o != 0),
                    );
                    if policer.mode != MeterMode::default() {
                        out.line(&format!("mode {}", policer.mode.keyword()));
                    }
                });
            }
        },
    );
}

fn print_policer_values(
    out: &mut Printer,
    rate: Option<PolicerRate>,
    mbs: Option<u32>,
    cbs: Option<u32>,
    stat_mode: Option<StatMode>,
    offset: Option<i32>,
) {
    if let Some(rate) = rate {
        out.line(&format!("rate {} cir {}", rate.pir, rate.cir));
    }
    if let Some(bytes) = mbs {
        out.line(&format!("mbs {bytes} bytes"));
    }
    if let Some(bytes) = cbs {
        out.line(&format!("cbs {bytes} bytes"));
    }
    if let Some(mode) = stat_mode {
        out.line(&format!("stat-mode {}", mode.keyword()));
    }
    match offset {
        Some(n) if n < 0 => out.line(&format!("packet-byte-offset subtract {}", -n)),
        Some(n) => out.line(&format!("packet-byte-offset add {n}")),
        None => {}
    }
}

pub(super) fn print_service(
    out: &mut Printer,
    config: &ServiceConfig,
    id: ServiceId,
    service: &Service,
) {
    let head = format!(
        "{} {id} customer {} create",
        service.kind().keyword(),
        service.customer
    );
    out.block(&head, |out| {
        out.description(&service.description);
        match &service.body {
            ServiceBody::Epipe(epipe) => {
                if let Some(tunnel) = &epipe.gre_tunnel {
                    out.line(&format!("gre-tunnel {tunnel}"));
                }
            }
            ServiceBody::Vpls(vpls) => {
                if let Some(size) = vpls.fdb_table_size {
                    out.line(&format!("fdb-table-size {size}"));
                }
                if let Some(age) = vpls.local_age {
                    out.line(&format!("local-age {age}"));
                }
                for (name, group) in &vpls.split_horizon_groups {
                    out.block(
                        &format!("split-horizon-group {} create", quote(name)),
                        |out| {
                            out.description(&group.description);
                        },
                    );
                }
            }
            ServiceBody::Ies(routed) | ServiceBody::Vprn(routed) => {
                if let Some(rd) = &routed.route_distinguisher {
                    out.line(&format!("route-distinguisher {rd}"));
                }
                for (name, interface) in &routed.interfaces {
                    print_interface(out, config, name, interface);
                }
                for (prefix, route) in &routed.static_routes {
                    print_route(out, *prefix, route);
                }
            }
        }
        if service.body.routed().is_none() {
            for (sap_id, sap) in config.service_saps(id) {
                let mut head = format!("sap {sap_id}");
                if sap.capture {
                    head.push_str(" capture-sap");
                }
                if let Some(group) = &sap.split_horizon_group {
                    let _ = write!(head, " split-horizon-group {}", quote(group));
                }
                head.push_str(" create");
                out.block(&head, |out| print_sap(out, sap));
            }
        }
        if service.admin == AdminState::Up {
            out.line("no shutdown");
        }
    });
}

fn print_interface(out: &mut Printer, config: &ServiceConfig, name: &str, interface: &Interface) {
    out.block(&format!("interface {} create", quote(name)), |out| {
        out.description(&interface.description);
        if let Some(net) = interface.ipv4 {
            out.line(&format!("address {net}"));
        }
        if !interface.ipv6.is_empty() {
            out.block("ipv6", |out| {
                for net in &interface.ipv6 {
                    out.line(&format!("address {net}"));
                }
            });
        }
        if let Some((sap_id, sap)) = interface
            .sap
            .as_ref()
            .and_then(|id| config.sap(id).map(|s| (id, s)))
        {
            out.block(&format!("sap {sap_id} create"), |out| print_sap(out, sap));
        }
        if interface.admin == AdminState::Down {
            out.line("shutdown");
        }
    });
}

fn print_route(out: &mut Printer, prefix: ipnet::IpNet, route: &StaticRoute) {
    out.block(&format!("static-route-entry {prefix}"), |out| {
        let head = match route.target {
            Some(RouteTarget::NextHop(addr)) => format!("next-hop {addr}"),
            Some(RouteTarget::BlackHole) => "black-hole".to_owned(),
            None => return,
        };
        out.block(&head, |out| {
            out.description(&route.description);
            if route.admin == AdminState::Down {
                out.line("shutdown");
            }
        });
    });
}

fn print_sap(out: &mut Printer, sap: &Sap) {
    out.description(&sap.description);
    if let Some(limit) = sap.max_mac_addresses {
        out.line(&format!("max-nbr-mac-addr {limit}"));
    }
    for mac in &sap.static_macs {
        out.line(&format!("static-mac {mac} create"));
    }
    if sap.disable_learning {
        out.line("disable-learning");
    }
    if sap.disable_aging {
        out.line("disable-aging");
    }
    for dir in [Direction::Ingress, Direction::Egress] {
        let settings = sap.direction(dir);
        if *settings == SapDirection::default() {
            continue;
        }
        out.block(dir.keyword(), |out| {
            if let Some(id) = settings.qos {
                out.line(&format!("qos {id}"));
            }
            for filter in settings.filters() {
                out.line(&format!(
                    "filter {} {}",
                    filter.kind.reference_keyword(),
                    filter.id
                ));
            }
            if !settings.policer_overrides.is_empty() {
                out.block("policer-override", |out| {
                    for (id, over) in &settings.policer_overrides {
                        out.block(&format!("policer {id} create"), |out| {
                            print_policer_values(
                                out,
                                over.rate,
                                over.mbs,
                                over.cbs,
                                over.stat_mode,
                                over.packet_byte_offset,
                            );
                        });
                    }
                });
            }
        });
    }
    if sap.capture && sap.dynamic_services != DynamicServices::default() {
        out.block("dynamic-services", |out| {
            if let Some(policy) = &sap.dynamic_services.policy {
                out.line(&format!("dynamic-services-policy {}", quote(policy)));
            }
            if sap.dynamic_services.admin == AdminState::Up {
                out.line("no shutdown");
            }
        });
    }
    if sap.admin == AdminState::Down {
        out.line("shutdown");
    }
}
