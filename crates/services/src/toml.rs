//! The TOML form of static services, filters and QoS policies in the daemon config:
//! `[[service.epipe]]`, `[[service.vpls]]`, `[[service.ies]]`, `[[service.vprn]]`,
//! `[[filter.ip]]`, `[[filter.ipv6]]`, `[[filter.mac]]`, `[[qos.sap_ingress]]`,
//! `[[qos.sap_egress]]`. Unknown keys are errors.
//!
//! [`ServicesToml::changes`] converts the form into the same [`Change`]s the text form gives, so
//! one validator serves both; each change's [`Origin::Toml`] is the span of the key it came
//! from, which the binary turns into `file:line:col`. Unlike the text form, TOML describes a
//! desired state, so services and dynamic-services contexts are up unless `shutdown = true`.

use std::net::IpAddr;
use std::ops::Range;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_spanned::Spanned;
use thiserror::Error;

use crate::change::{
    Change, DescriptionSetting, Edit, EntrySetting, FilterSetting, InterfaceSetting, MatchSetting,
    NodeOp, Origin, PolicerSetting, RouteSetting, SapOp, SapSetting, ServiceOp, ServiceSetting,
};
use crate::id::{MacAddr, PortMap, SapId};
use crate::model::*;

/// The three top-level tables; the daemon config embeds them as its `service`, `filter` and
/// `qos` fields.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesToml {
    /// `[service]`.
    #[serde(default)]
    pub service: ServiceSection,
    /// `[filter]`.
    #[serde(default)]
    pub filter: FilterSection,
    /// `[qos]`.
    #[serde(default)]
    pub qos: QosSection,
}

/// `[service]`: the port map and the services by kind.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// `[service.port_map]`: SR OS port name → Linux interface (`"1/1/4" = "eth1"`).
    #[serde(default)]
    pub port_map: PortMap,
    /// `[[service.epipe]]`.
    #[serde(default)]
    pub epipe: Vec<EpipeToml>,
    /// `[[service.vpls]]`.
    #[serde(default)]
    pub vpls: Vec<VplsToml>,
    /// `[[service.ies]]`.
    #[serde(default)]
    pub ies: Vec<RoutedToml>,
    /// `[[service.vprn]]`.
    #[serde(default)]
    pub vprn: Vec<RoutedToml>,
}

/// `[[service.epipe]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpipeToml {
    /// Service id.
    pub id: Spanned<u32>,
    /// Customer id.
    pub customer: Spanned<u32>,
    /// Description.
    pub description: Option<Spanned<String>>,
    /// Admin down when true.
    #[serde(default)]
    pub shutdown: bool,
    /// The GRE tunnel endpoint.
    pub gre_tunnel: Option<Spanned<GreToml>>,
    /// `[[service.epipe.sap]]`.
    #[serde(default)]
    pub sap: Vec<SapToml>,
}

/// A GRE tunnel endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GreToml {
    /// Local address.
    pub local: IpAddr,
    /// Remote address.
    pub remote: IpAddr,
    /// GRE key.
    pub key: Option<u32>,
}

/// `[[service.vpls]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VplsToml {
    /// Service id.
    pub id: Spanned<u32>,
    /// Customer id.
    pub customer: Spanned<u32>,
    /// Description.
    pub description: Option<Spanned<String>>,
    /// Admin down when true.
    #[serde(default)]
    pub shutdown: bool,
    /// `fdb-table-size`.
    pub fdb_table_size: Option<Spanned<u32>>,
    /// `local-age`, seconds.
    pub local_age: Option<Spanned<u32>>,
    /// Split-horizon groups.
    #[serde(default)]
    pub split_horizon_group: Vec<GroupToml>,
    /// `[[service.vpls.sap]]`.
    #[serde(default)]
    pub sap: Vec<SapToml>,
}

/// A split-horizon group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupToml {
    /// Name.
    pub name: Spanned<String>,
    /// Description.
    pub description: Option<String>,
}

/// `[[service.ies]]` / `[[service.vprn]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutedToml {
    /// Service id.
    pub id: Spanned<u32>,
    /// Customer id.
    pub customer: Spanned<u32>,
    /// Description.
    pub description: Option<Spanned<String>>,
    /// Admin down when true.
    #[serde(default)]
    pub shutdown: bool,
    /// VPRN route distinguisher.
    pub route_distinguisher: Option<Spanned<String>>,
    /// IP interfaces.
    #[serde(default)]
    pub interface: Vec<InterfaceToml>,
    /// Static routes.
    #[serde(default)]
    pub static_route: Vec<RouteToml>,
}

/// An IP interface.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceToml {
    /// Name.
    pub name: Spanned<String>,
    /// Description.
    pub description: Option<String>,
    /// Admin down when true.
    #[serde(default)]
    pub shutdown: bool,
    /// IPv4 address with prefix length.
    pub address: Option<Spanned<Ipv4Net>>,
    /// IPv6 addresses with prefix length.
    #[serde(default)]
    pub ipv6: Vec<Spanned<Ipv6Net>>,
    /// The SAP.
    pub sap: Option<SapToml>,
}

/// A static route: `next_hop` or `black_hole = true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteToml {
    /// Destination.
    pub prefix: Spanned<IpNet>,
    /// Gateway.
    pub next_hop: Option<Spanned<IpAddr>>,
    /// Discard.
    #[serde(default)]
    pub black_hole: bool,
    /// Description.
    pub description: Option<String>,
    /// Admin down when true.
    #[serde(default)]
    pub shutdown: bool,
}

/// A SAP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SapToml {
    /// SAP id (`eth1:100`, or an SR OS name the port map translates).
    pub id: Spanned<String>,
    /// Description.
    pub description: Option<String>,
    /// Admin down when true.
    #[serde(default)]
    pub shutdown: bool,
    /// A VPLS capture SAP.
    #[serde(default)]
    pub capture: bool,
    /// VPLS split-horizon group.
    pub split_horizon_group: Option<String>,
    /// Ingress settings.
    pub ingress: Option<SapDirectionToml>,
    /// Egress settings.
    pub egress: Option<SapDirectionToml>,
    /// `max-nbr-mac-addr`.
    pub max_nbr_mac_addr: Option<Spanned<u32>>,
    /// Static MACs.
    #[serde(default)]
    pub static_mac: Vec<Spanned<MacAddr>>,
    /// `disable-learning`.
    #[serde(default)]
    pub disable_learning: bool,
    /// `disable-aging`.
    #[serde(default)]
    pub disable_aging: bool,
    /// The dynamic-services context of a capture SAP.
    pub dynamic_services: Option<Spanned<DynamicServicesToml>>,
}

/// One direction of a SAP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SapDirectionToml {
    /// QoS policy id.
    pub qos: Option<Spanned<u32>>,
    /// IP filter id.
    pub filter_ip: Option<Spanned<u32>>,
    /// IPv6 filter id.
    pub filter_ipv6: Option<Spanned<u32>>,
    /// MAC filter id.
    pub filter_mac: Option<Spanned<u32>>,
    /// Policer overrides.
    #[serde(default)]
    pub policer_override: Vec<PolicerToml>,
}

/// The dynamic-services context of a capture SAP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicServicesToml {
    /// `dynamic-services-policy`.
    pub policy: Option<String>,
    /// Admin down when true.
    #[serde(default)]
    pub shutdown: bool,
}

/// `[filter]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    /// `[[filter.ip]]`.
    #[serde(default)]
    pub ip: Vec<FilterToml>,
    /// `[[filter.ipv6]]`.
    #[serde(default)]
    pub ipv6: Vec<FilterToml>,
    /// `[[filter.mac]]`.
    #[serde(default)]
    pub mac: Vec<FilterToml>,
}

/// A filter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterToml {
    /// Filter id.
    pub id: Spanned<u32>,
    /// Description.
    pub description: Option<String>,
    /// `forward` or `drop` (default).
    pub default_action: Option<ActionToml>,
    /// MAC filters: `normal` (default) or `vid`.
    #[serde(rename = "type")]
    pub mac_type: Option<Spanned<MacTypeToml>>,
    /// Entries.
    #[serde(default)]
    pub entry: Vec<EntryToml>,
}

/// `forward` / `drop`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionToml {
    /// Forward.
    Forward,
    /// Drop.
    Drop,
}

impl From<ActionToml> for Action {
    fn from(action: ActionToml) -> Self {
        match action {
            ActionToml::Forward => Action::Forward,
            ActionToml::Drop => Action::Drop,
        }
    }
}

/// MAC filter type.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MacTypeToml {
    /// `normal`.
    Normal,
    /// `vid`.
    Vid,
}

/// A filter entry with its criteria.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryToml {
    /// Entry id.
    pub id: Spanned<u32>,
    /// Description.
    pub description: Option<String>,
    /// Action; an entry without one is inactive.
    pub action: Option<ActionToml>,
    /// IP protocol (ip) / next header (ipv6): a name or a number.
    pub protocol: Option<Spanned<ProtocolToml>>,
    /// Source prefix.
    pub src_ip: Option<Spanned<IpNet>>,
    /// Destination prefix.
    pub dst_ip: Option<Spanned<IpNet>>,
    /// Source port: `{ eq = 80 }`, `{ range = [80, 443] }`, `{ lt = N }`, `{ gt = N }`.
    pub src_port: Option<Spanned<PortMatchToml>>,
    /// Destination port.
    pub dst_port: Option<Spanned<PortMatchToml>>,
    /// DSCP name (`ef`, `af41`, `cp5`).
    pub dscp: Option<Spanned<String>>,
    /// ICMP type.
    pub icmp_type: Option<u8>,
    /// ICMP code.
    pub icmp_code: Option<u8>,
    /// MAC: `802dot3`, `802dot2-llc`, `802dot2-snap`, `ethernet_II`.
    pub frame_type: Option<Spanned<String>>,
    /// MAC: source address `{ addr = "…", mask = "…" }` (mask optional).
    pub src_mac: Option<Spanned<MacMaskToml>>,
    /// MAC: destination address.
    pub dst_mac: Option<Spanned<MacMaskToml>>,
    /// MAC: ethertype (`0x0800`).
    pub etype: Option<Spanned<u32>>,
    /// MAC (vid): outer tag `{ value = 20, mask = 4095 }` (mask optional).
    pub outer_tag: Option<Spanned<TagMaskToml>>,
    /// MAC (vid): inner tag.
    pub inner_tag: Option<Spanned<TagMaskToml>>,
}

/// A protocol name or number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ProtocolToml {
    /// A number.
    Number(u8),
    /// A name (`tcp`).
    Name(String),
}

/// A port criterion.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum PortMatchToml {
    /// Equal.
    Eq(u16),
    /// Below.
    Lt(u16),
    /// Above.
    Gt(u16),
    /// Inclusive range.
    Range([u16; 2]),
}

/// A MAC address with an optional mask.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MacMaskToml {
    /// Address.
    pub addr: MacAddr,
    /// Mask (all ones when absent).
    pub mask: Option<MacAddr>,
}

/// A tag value with an optional mask.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagMaskToml {
    /// Value.
    pub value: u16,
    /// Mask (4095 when absent).
    pub mask: Option<u16>,
}

/// `[qos]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosSection {
    /// `[[qos.sap_ingress]]`.
    #[serde(default)]
    pub sap_ingress: Vec<QosPolicyToml>,
    /// `[[qos.sap_egress]]`.
    #[serde(default)]
    pub sap_egress: Vec<QosPolicyToml>,
}

/// A QoS policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosPolicyToml {
    /// Policy id.
    pub id: Spanned<u32>,
    /// Description.
    pub description: Option<String>,
    /// Policers.
    #[serde(default)]
    pub policer: Vec<PolicerToml>,
}

/// A policer, or a SAP's override of one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicerToml {
    /// Policer id.
    pub id: Spanned<u32>,
    /// Description (policers only).
    pub description: Option<String>,
    /// PIR in kbps, or `"max"`.
    pub rate: Option<RateToml>,
    /// CIR in kbps, or `"max"` (0 when absent and `rate` is given).
    pub cir: Option<RateToml>,
    /// MBS in bytes.
    pub mbs: Option<u32>,
    /// CBS in bytes.
    pub cbs: Option<u32>,
    /// `srtcm`, `trtcm1` or `trtcm2` (policers only).
    pub mode: Option<Spanned<String>>,
    /// Stat mode (SR OS keyword).
    pub stat_mode: Option<Spanned<String>>,
    /// Bytes added (negative: removed) before metering.
    pub packet_byte_offset: Option<i32>,
}

/// A rate: kbps or `"max"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RateToml {
    /// Kbps.
    Kbps(u32),
    /// `"max"`.
    Word(String),
}

/// A TOML value that cannot become a change (the span is the value's).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}")]
pub struct TomlError {
    /// Byte offsets of the value in the file.
    pub span: Range<usize>,
    /// What is wrong.
    pub message: String,
}

struct Out {
    changes: Vec<Change>,
}

impl Out {
    fn push(&mut self, span: &Range<usize>, edit: Edit) {
        self.changes.push(Change {
            origin: Origin::Toml(span.clone()),
            edit,
        });
    }
}

fn error(span: Range<usize>, message: impl Into<String>) -> TomlError {
    TomlError {
        span,
        message: message.into(),
    }
}

fn admin(shutdown: bool) -> AdminState {
    if shutdown {
        AdminState::Down
    } else {
        AdminState::Up
    }
}

impl ServicesToml {
    /// The changes that build this configuration on an empty one: filters, then QoS policies,
    /// then services (each brought up last).
    pub fn changes(&self) -> Result<Vec<Change>, TomlError> {
        let mut out = Out {
            changes: Vec::new(),
        };
        for (kind, filters) in [
            (FilterKind::Ip, &self.filter.ip),
            (FilterKind::Ipv6, &self.filter.ipv6),
            (FilterKind::Mac, &self.filter.mac),
        ] {
            for filter in filters {
                filter_changes(&mut out, kind, filter)?;
            }
        }
        for (kind, policies) in [
            (QosKind::SapIngress, &self.qos.sap_ingress),
            (QosKind::SapEgress, &self.qos.sap_egress),
        ] {
            for policy in policies {
                let span = policy.id.span();
                let policy_ref = QosRef {
                    kind,
                    id: *policy.id.get_ref(),
                };
                let set = |op| Edit::QosPolicy {
                    policy: policy_ref,
                    op,
                };
                out.push(&span, set(NodeOp::Create));
                if policy.description.is_some() {
                    out.push(
                        &span,
                        set(NodeOp::Set(DescriptionSetting(policy.description.clone()))),
                    );
                }
                for policer in &policy.policer {
                    let id = *policer.id.get_ref();
                    let span = policer.id.span();
                    out.push(
                        &span,
                        Edit::Policer {
                            policy: policy_ref,
                            policer: id,
                            op: NodeOp::Create,
                        },
                    );
                    for setting in policer_settings(policer, true)? {
                        out.push(
                            &span,
                            Edit::Policer {
                                policy: policy_ref,
                                policer: id,
                                op: NodeOp::Set(setting),
                            },
                        );
                    }
                }
            }
        }
        let map = &self.service.port_map;
        for epipe in &self.service.epipe {
            let common = service_common(
                &epipe.id,
                &epipe.customer,
                &epipe.description,
                epipe.shutdown,
            );
            let id = service_head(&mut out, &common, ServiceKind::Epipe);
            if let Some(gre) = &epipe.gre_tunnel {
                let tunnel = gre.get_ref();
                out.push(
                    &gre.span(),
                    service_set(
                        id,
                        ServiceKind::Epipe,
                        ServiceSetting::GreTunnel(Some(GreTunnel {
                            local: tunnel.local,
                            remote: tunnel.remote,
                            key: tunnel.key,
                        })),
                    ),
                );
            }
            for sap in &epipe.sap {
                sap_changes(&mut out, map, id, None, sap)?;
            }
            service_admin(&mut out, &common, ServiceKind::Epipe);
        }
        for vpls in &self.service.vpls {
            let common = service_common(&vpls.id, &vpls.customer, &vpls.description, vpls.shutdown);
            let id = service_head(&mut out, &common, ServiceKind::Vpls);
            let kind = ServiceKind::Vpls;
            if let Some(size) = &vpls.fdb_table_size {
                out.push(
                    &size.span(),
                    service_set(
                        id,
                        kind,
                        ServiceSetting::FdbTableSize(Some(*size.get_ref())),
                    ),
                );
            }
            if let Some(age) = &vpls.local_age {
                out.push(
                    &age.span(),
                    service_set(id, kind, ServiceSetting::LocalAge(Some(*age.get_ref()))),
                );
            }
            for group in &vpls.split_horizon_group {
                let span = group.name.span();
                let edit = |op| Edit::SplitHorizonGroup {
                    service: id,
                    name: group.name.get_ref().clone(),
                    op,
                };
                out.push(&span, edit(NodeOp::Create));
                if group.description.is_some() {
                    out.push(
                        &span,
                        edit(NodeOp::Set(DescriptionSetting(group.description.clone()))),
                    );
                }
            }
            for sap in &vpls.sap {
                sap_changes(&mut out, map, id, None, sap)?;
            }
            service_admin(&mut out, &common, kind);
        }
        for (kind, services) in [
            (ServiceKind::Ies, &self.service.ies),
            (ServiceKind::Vprn, &self.service.vprn),
        ] {
            for routed in services {
                routed_changes(&mut out, map, kind, routed)?;
            }
        }
        Ok(out.changes)
    }
}

struct CommonRef<'a> {
    id: &'a Spanned<u32>,
    customer: &'a Spanned<u32>,
    description: &'a Option<Spanned<String>>,
    shutdown: bool,
}

fn service_common<'a>(
    id: &'a Spanned<u32>,
    customer: &'a Spanned<u32>,
    description: &'a Option<Spanned<String>>,
    shutdown: bool,
) -> CommonRef<'a> {
    CommonRef {
        id,
        customer,
        description,
        shutdown,
    }
}

fn service_set(id: ServiceId, kind: ServiceKind, setting: ServiceSetting) -> Edit {
    Edit::Service {
        id,
        kind,
        op: ServiceOp::Set(setting),
    }
}

/// Creates the service and sets its description; returns its id.
fn service_head(out: &mut Out, common: &CommonRef<'_>, kind: ServiceKind) -> ServiceId {
    let id = *common.id.get_ref();
    // A refused creation is about the id (it exists already, or is of another kind).
    out.push(
        &common.id.span(),
        Edit::Service {
            id,
            kind,
            op: ServiceOp::Create {
                customer: *common.customer.get_ref(),
            },
        },
    );
    if let Some(text) = common.description {
        out.push(
            &text.span(),
            service_set(
                id,
                kind,
                ServiceSetting::Description(Some(text.get_ref().clone())),
            ),
        );
    }
    id
}

fn service_admin(out: &mut Out, common: &CommonRef<'_>, kind: ServiceKind) {
    out.push(
        &common.id.span(),
        service_set(
            *common.id.get_ref(),
            kind,
            ServiceSetting::Admin(admin(common.shutdown)),
        ),
    );
}

fn routed_changes(
    out: &mut Out,
    map: &PortMap,
    kind: ServiceKind,
    routed: &RoutedToml,
) -> Result<(), TomlError> {
    let common = service_common(
        &routed.id,
        &routed.customer,
        &routed.description,
        routed.shutdown,
    );
    let id = service_head(out, &common, kind);
    if let Some(rd) = &routed.route_distinguisher {
        out.push(
            &rd.span(),
            service_set(
                id,
                kind,
                ServiceSetting::RouteDistinguisher(Some(rd.get_ref().clone())),
            ),
        );
    }
    for interface in &routed.interface {
        let span = interface.name.span();
        let name = interface.name.get_ref().clone();
        let edit = |op| Edit::Interface {
            service: id,
            name: name.clone(),
            op,
        };
        out.push(&span, edit(NodeOp::Create));
        if interface.description.is_some() {
            out.push(
                &span,
                edit(NodeOp::Set(InterfaceSetting::Description(
                    interface.description.clone(),
                ))),
            );
        }
        if let Some(address) = &interface.address {
            out.push(
                &address.span(),
                edit(NodeOp::Set(InterfaceSetting::Ipv4(Some(
                    *address.get_ref(),
                )))),
            );
        }
        for address in &interface.ipv6 {
            out.push(
                &address.span(),
                edit(NodeOp::Set(InterfaceSetting::Ipv6(
                    *address.get_ref(),
                    true,
                ))),
            );
        }
        if let Some(sap) = &interface.sap {
            sap_changes(out, map, id, Some(name.clone()), sap)?;
        }
        if interface.shutdown {
            out.push(
                &span,
                edit(NodeOp::Set(InterfaceSetting::Admin(AdminState::Down))),
            );
        }
    }
    for route in &routed.static_route {
        let span = route.prefix.span();
        let prefix = *route.prefix.get_ref();
        let edit = |op| Edit::StaticRoute {
            service: id,
            prefix,
            op,
        };
        out.push(&span, edit(NodeOp::Enter));
        let target = match (&route.next_hop, route.black_hole) {
            (Some(gateway), false) => (gateway.span(), RouteSetting::NextHop(*gateway.get_ref())),
            (None, true) => (span.clone(), RouteSetting::BlackHole),
            (Some(gateway), true) => {
                return Err(error(
                    gateway.span(),
                    "a static route has next_hop or black_hole = true, not both",
                ))
            }
            (None, false) => {
                return Err(error(
                    span,
                    "a static route needs next_hop or black_hole = true",
                ))
            }
        };
        out.push(&target.0, edit(NodeOp::Set(target.1)));
        if route.description.is_some() {
            out.push(
                &span,
                edit(NodeOp::Set(RouteSetting::Description(
                    route.description.clone(),
                ))),
            );
        }
        if route.shutdown {
            out.push(
                &span,
                edit(NodeOp::Set(RouteSetting::Admin(AdminState::Down))),
            );
        }
    }
    service_admin(out, &common, kind);
    Ok(())
}

fn sap_changes(
    out: &mut Out,
    map: &PortMap,
    service: ServiceId,
    interface: Option<String>,
    sap: &SapToml,
) -> Result<(), TomlError> {
    let span = sap.id.span();
    let id = SapId::parse_mapped(sap.id.get_ref(), map)
        .map_err(|e| error(span.clone(), e.to_string()))?;
    let path = SapPath {
        service,
        interface,
        sap: id,
    };
    out.push(
        &span,
        Edit::Sap {
            path: path.clone(),
            op: SapOp::Create {
                capture: sap.capture,
                split_horizon_group: sap.split_horizon_group.clone(),
            },
        },
    );
    let mut set = |span: &Range<usize>, setting| {
        out.push(
            span,
            Edit::Sap {
                path: path.clone(),
                op: SapOp::Set(setting),
            },
        )
    };
    if sap.description.is_some() {
        set(&span, SapSetting::Description(sap.description.clone()));
    }
    if let Some(limit) = &sap.max_nbr_mac_addr {
        set(
            &limit.span(),
            SapSetting::MaxMacAddresses(Some(*limit.get_ref())),
        );
    }
    for mac in &sap.static_mac {
        set(&mac.span(), SapSetting::StaticMac(*mac.get_ref(), true));
    }
    if sap.disable_learning {
        set(&span, SapSetting::DisableLearning(true));
    }
    if sap.disable_aging {
        set(&span, SapSetting::DisableAging(true));
    }
    let mut overrides = Vec::new();
    for (dir, settings) in [
        (Direction::Ingress, &sap.ingress),
        (Direction::Egress, &sap.egress),
    ] {
        let Some(settings) = settings else { continue };
        if let Some(qos) = &settings.qos {
            set(&qos.span(), SapSetting::Qos(dir, Some(*qos.get_ref())));
        }
        for (kind, filter) in [
            (FilterKind::Ip, &settings.filter_ip),
            (FilterKind::Ipv6, &settings.filter_ipv6),
            (FilterKind::Mac, &settings.filter_mac),
        ] {
            if let Some(filter) = filter {
                set(
                    &filter.span(),
                    SapSetting::Filter(dir, kind, Some(*filter.get_ref())),
                );
            }
        }
        for policer in &settings.policer_override {
            overrides.push((dir, policer));
        }
    }
    if let Some(dynamic) = &sap.dynamic_services {
        let span = dynamic.span();
        let dynamic = dynamic.get_ref();
        if dynamic.policy.is_some() {
            set(
                &span,
                SapSetting::DynamicServicesPolicy(dynamic.policy.clone()),
            );
        }
        set(
            &span,
            SapSetting::DynamicServicesAdmin(admin(dynamic.shutdown)),
        );
    }
    if sap.shutdown {
        set(&span, SapSetting::Admin(AdminState::Down));
    }
    for (dir, policer) in overrides {
        let id = *policer.id.get_ref();
        let span = policer.id.span();
        let edit = |op| Edit::PolicerOverride {
            path: path.clone(),
            dir,
            policer: id,
            op,
        };
        out.push(&span, edit(NodeOp::Create));
        for setting in policer_settings(policer, false)? {
            out.push(&span, edit(NodeOp::Set(setting)));
        }
    }
    Ok(())
}

fn rate(span: &Range<usize>, rate: &RateToml) -> Result<Rate, TomlError> {
    match rate {
        RateToml::Kbps(kbps) => Ok(Rate::Kbps(*kbps)),
        RateToml::Word(word) if word == "max" => Ok(Rate::Max),
        RateToml::Word(word) => Err(error(
            span.clone(),
            format!("expected a rate in kbps or \"max\", found {word:?}"),
        )),
    }
}

fn keyword<T: Copy>(
    value: &Spanned<String>,
    what: &str,
    choices: impl Iterator<Item = (&'static str, T)>,
) -> Result<T, TomlError> {
    let choices: Vec<_> = choices.collect();
    choices
        .iter()
        .find(|(name, _)| *name == value.get_ref())
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            error(
                value.span(),
                format!("expected a {what}: one of {}", names.join(", ")),
            )
        })
}

fn policer_settings(policer: &PolicerToml, full: bool) -> Result<Vec<PolicerSetting>, TomlError> {
    let span = policer.id.span();
    let only_policers = |what: &str| {
        error(
            span.clone(),
            format!("{what} is set on a policer, not on a policer override"),
        )
    };
    let mut settings = Vec::new();
    if let Some(text) = &policer.description {
        if !full {
            return Err(only_policers("description"));
        }
        settings.push(PolicerSetting::Description(Some(text.clone())));
    }
    match (&policer.rate, &policer.cir) {
        (Some(pir), cir) => settings.push(PolicerSetting::Rate(Some(PolicerRate {
            pir: rate(&span, pir)?,
            cir: match cir {
                Some(cir) => rate(&span, cir)?,
                None => Rate::Kbps(0),
            },
        }))),
        (None, Some(_)) => return Err(error(span, "cir needs rate")),
        (None, None) => {}
    }
    if let Some(bytes) = policer.mbs {
        settings.push(PolicerSetting::Mbs(Some(bytes)));
    }
    if let Some(bytes) = policer.cbs {
        settings.push(PolicerSetting::Cbs(Some(bytes)));
    }
    if let Some(mode) = &policer.mode {
        if !full {
            return Err(only_policers("mode"));
        }
        let mode = keyword(
            mode,
            "meter mode",
            MeterMode::ALL.iter().map(|m| (m.keyword(), *m)),
        )?;
        settings.push(PolicerSetting::Mode(Some(mode)));
    }
    if let Some(mode) = &policer.stat_mode {
        let mode = keyword(
            mode,
            "stat mode",
            StatMode::ALL.iter().map(|m| (m.keyword(), *m)),
        )?;
        settings.push(PolicerSetting::StatMode(Some(mode)));
    }
    if let Some(offset) = policer.packet_byte_offset {
        settings.push(PolicerSetting::PacketByteOffset(Some(offset)));
    }
    Ok(settings)
}

fn filter_changes(out: &mut Out, kind: FilterKind, filter: &FilterToml) -> Result<(), TomlError> {
    let span = filter.id.span();
    let filter_ref = FilterRef {
        kind,
        id: *filter.id.get_ref(),
    };
    let edit = |op| Edit::Filter {
        filter: filter_ref,
        op,
    };
    out.push(&span, edit(NodeOp::Create));
    if filter.description.is_some() {
        out.push(
            &span,
            edit(NodeOp::Set(FilterSetting::Description(
                filter.description.clone(),
            ))),
        );
    }
    if let Some(mac_type) = &filter.mac_type {
        let value = match mac_type.get_ref() {
            MacTypeToml::Normal => MacFilterType::Normal,
            MacTypeToml::Vid => MacFilterType::Vid,
        };
        out.push(
            &mac_type.span(),
            edit(NodeOp::Set(FilterSetting::MacType(value))),
        );
    }
    if let Some(action) = filter.default_action {
        out.push(
            &span,
            edit(NodeOp::Set(FilterSetting::DefaultAction(Some(
                action.into(),
            )))),
        );
    }
    for entry in &filter.entry {
        let span = entry.id.span();
        let id = *entry.id.get_ref();
        let edit = |op| Edit::FilterEntry {
            filter: filter_ref,
            entry: id,
            op,
        };
        out.push(&span, edit(NodeOp::Create));
        if entry.description.is_some() {
            out.push(
                &span,
                edit(NodeOp::Set(EntrySetting::Description(
                    entry.description.clone(),
                ))),
            );
        }
        for (span, criterion) in criteria(entry)? {
            out.push(&span, edit(NodeOp::Set(EntrySetting::Match(criterion))));
        }
        if let Some(action) = entry.action {
            out.push(
                &span,
                edit(NodeOp::Set(EntrySetting::Action(Some(action.into())))),
            );
        }
    }
    Ok(())
}

fn criteria(entry: &EntryToml) -> Result<Vec<(Range<usize>, MatchSetting)>, TomlError> {
    let mut out = Vec::new();
    if let Some(protocol) = &entry.protocol {
        let value = match protocol.get_ref() {
            ProtocolToml::Number(n) => *n,
            ProtocolToml::Name(name) => protocol_value(name)
                .ok_or_else(|| error(protocol.span(), format!("unknown protocol name {name:?}")))?,
        };
        out.push((protocol.span(), MatchSetting::Protocol(Some(value))));
    }
    let port = |p: &PortMatchToml| match *p {
        PortMatchToml::Eq(v) => PortMatch::Eq(v),
        PortMatchToml::Lt(v) => PortMatch::Lt(v),
        PortMatchToml::Gt(v) => PortMatch::Gt(v),
        PortMatchToml::Range([a, b]) => PortMatch::Range(a, b),
    };
    if let Some(v) = &entry.src_ip {
        out.push((v.span(), MatchSetting::SrcIp(Some(*v.get_ref()))));
    }
    if let Some(v) = &entry.dst_ip {
        out.push((v.span(), MatchSetting::DstIp(Some(*v.get_ref()))));
    }
    if let Some(v) = &entry.src_port {
        out.push((v.span(), MatchSetting::SrcPort(Some(port(v.get_ref())))));
    }
    if let Some(v) = &entry.dst_port {
        out.push((v.span(), MatchSetting::DstPort(Some(port(v.get_ref())))));
    }
    if let Some(v) = &entry.dscp {
        let value = dscp_value(v.get_ref())
            .ok_or_else(|| error(v.span(), format!("unknown DSCP name {:?}", v.get_ref())))?;
        out.push((v.span(), MatchSetting::Dscp(Some(value))));
    }
    let span = entry.id.span();
    if let Some(v) = entry.icmp_type {
        out.push((span.clone(), MatchSetting::IcmpType(Some(v))));
    }
    if let Some(v) = entry.icmp_code {
        out.push((span.clone(), MatchSetting::IcmpCode(Some(v))));
    }
    if let Some(v) = &entry.frame_type {
        let value = keyword(
            v,
            "frame type",
            FrameType::ALL.iter().map(|t| (t.keyword(), *t)),
        )?;
        out.push((v.span(), MatchSetting::FrameType(Some(value))));
    }
    let mac = |m: &MacMaskToml| MacMask {
        addr: m.addr,
        mask: m.mask.unwrap_or(MacAddr([0xff; 6])),
    };
    if let Some(v) = &entry.src_mac {
        out.push((v.span(), MatchSetting::SrcMac(Some(mac(v.get_ref())))));
    }
    if let Some(v) = &entry.dst_mac {
        out.push((v.span(), MatchSetting::DstMac(Some(mac(v.get_ref())))));
    }
    if let Some(v) = &entry.etype {
        let etype = u16::try_from(*v.get_ref())
            .map_err(|_| error(v.span(), "expected an ethertype 0x0600..=0xffff"))?;
        out.push((v.span(), MatchSetting::Etype(Some(etype))));
    }
    let tag = |t: &TagMaskToml| TagMask {
        value: t.value,
        mask: t.mask.unwrap_or(4095),
    };
    if let Some(v) = &entry.outer_tag {
        out.push((v.span(), MatchSetting::OuterTag(Some(tag(v.get_ref())))));
    }
    if let Some(v) = &entry.inner_tag {
        out.push((v.span(), MatchSetting::InnerTag(Some(tag(v.get_ref())))));
    }
    Ok(out)
}
