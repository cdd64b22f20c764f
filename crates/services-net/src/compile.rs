//! From brasa-services' configuration to the data plane's service tables.
//!
//! [`Compiler`] keeps the data plane's [`ServiceTablesBuilder`] and the specs it was last given.
//! [`Compiler::prepare`] derives the complete set of specs the new configuration wants (a pure
//! function of the configuration and the ports), compares it with the installed set and applies
//! only the differences — to a copy of the builder, so that a refusal changes nothing. Objects
//! that did not change keep their slots, hence their counters, MACs and policer buckets.
//!
//! Mapping decisions (the data plane is not SR OS):
//! - every SAP direction with a QoS policy gets a policer instance of its own (SR OS's per-SAP
//!   policers), metered with the policy's lowest-numbered policer and the SAP's overrides;
//! - `mode srtcm` is RFC 2697 (CIR, CBS, MBS as EBS), `trtcm1` RFC 2698, `trtcm2` (the
//!   default) RFC 4115 with EIR = PIR − CIR; `max` rates are the data plane's largest;
//! - `stat-mode` `no-stats` and `minimal` are the same in the data plane; every `offered-*`
//!   mode counts per colour (`offered-total-cir`);
//! - an IES/VPRN interface is its SAP cross-connected with its TAP port (see
//!   [`brasa_services::kernel`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use brasa_dataplane::acl::{self, Disposition, IpFamily, Match, PortRange, VidMatch};
use brasa_dataplane::pipeline::PortId;
use brasa_dataplane::policer::{self, ColourMode, Meter, PolicerConfig, MAX_RATE_KBPS};
use brasa_dataplane::sap::{PortEncap, SapEncap, Tag as DpTag};
use brasa_dataplane::service::{
    EpipeSpec, FilterAction, FilterEntrySpec, FilterKind as DpFilterKind, FilterSpec, GreSpec,
    L3Interface, L3Spec, PolicerSpec, PortSpec, SapDirection as DpDirection, SapSpec, ServiceError,
    ServiceSpec, ServiceTables, ServiceTablesBuilder, VplsSpec,
};
use brasa_dataplane::wire::MacAddr as DpMac;
use brasa_services::kernel;
use brasa_services::model::{
    Action, AdminState, Direction, FilterKind, MeterMode, PortMatch, Rate, ServiceBody, ServiceId,
    StatMode,
};
use brasa_services::{Encapsulation, Environment, SapId, SapTags, ServiceConfig, Tag};
use std::sync::Arc;

/// Why a configuration cannot be given to the data plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A port of the configuration is not one of the data plane's.
    #[error("port {0} is not a data-plane interface")]
    NoPort(String),
    /// An interface's TAP is not (yet) a data-plane port.
    #[error("the TAP {tap} of {service} interface {interface:?} is not a data-plane port")]
    NoTap {
        /// The service.
        service: ServiceId,
        /// The interface.
        interface: String,
        /// The TAP's name.
        tap: String,
    },
    /// A match criterion the data plane cannot evaluate.
    #[error("{filter} entry {entry}: {what} is not supported by brasa's data plane")]
    Unsupported {
        /// The filter (`ip-filter 10`).
        filter: String,
        /// The entry id.
        entry: u32,
        /// The criterion.
        what: String,
    },
    /// An empty port range (`lt 0`, `gt 65535`).
    #[error("{filter} entry {entry}: the port criterion matches no port")]
    EmptyPortRange {
        /// The filter.
        filter: String,
        /// The entry id.
        entry: u32,
    },
    /// The GRE tunnel's next hop could not be resolved.
    #[error("epipe {service}: GRE tunnel to {remote}: {reason}")]
    GreNextHop {
        /// The service.
        service: ServiceId,
        /// The far end.
        remote: IpAddr,
        /// Why.
        reason: String,
    },
    /// The data plane refused a spec.
    #[error("data plane: {0}")]
    Refused(#[from] ServiceError),
}

/// Where the GRE packets of a tunnel leave: resolved by the shell from the kernel's routes and
/// neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreNextHop {
    /// The data-plane port.
    pub port: PortId,
    /// 802.1Q tag on that port, if any.
    pub vlan: Option<u16>,
    /// The next hop's MAC address.
    pub mac: DpMac,
    /// The largest outer IP packet.
    pub mtu: u16,
}

/// Answers where a tunnel's packets go.
pub trait GreResolver {
    /// The next hop towards `remote` from `local`.
    fn resolve(&self, local: IpAddr, remote: IpAddr) -> Result<GreNextHop, String>;
}

/// A resolver for configurations without GRE tunnels: every lookup fails.
pub struct NoGre;

impl GreResolver for NoGre {
    fn resolve(&self, _: IpAddr, _: IpAddr) -> Result<GreNextHop, String> {
        Err("no GRE next-hop resolution in this context".to_string())
    }
}

/// The complete set of specs a configuration wants from the data plane.
#[derive(Debug, Clone, Default, PartialEq)]
struct Plane {
    ports: BTreeMap<PortId, PortSpec>,
    policers: BTreeMap<u32, PolicerSpec>,
    filters: BTreeMap<(DpFilterKind, u32), FilterSpec>,
    services: BTreeMap<ServiceId, ServiceSpec>,
    saps: BTreeMap<brasa_dataplane::sap::SapId, SapSpec>,
}

/// A compiled transaction: the snapshot to install and the compiler state to keep once it is.
pub struct Compiled {
    builder: ServiceTablesBuilder,
    plane: Plane,
    policer_ids: PolicerIds,
    /// The snapshot to install.
    pub tables: Arc<ServiceTables>,
}

/// Policer instance ids, stable per (SAP, direction) while the SAP keeps a policer there.
#[derive(Debug, Clone, Default)]
struct PolicerIds {
    by_sap: HashMap<(SapId, Direction), u32>,
    free: Vec<u32>,
    next: u32,
}

impl PolicerIds {
    fn get(&mut self, key: (SapId, Direction)) -> u32 {
        if let Some(id) = self.by_sap.get(&key) {
            return *id;
        }
        let id = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next
        });
        self.by_sap.insert(key, id);
        id
    }

    /// Frees the ids of keys not in `used`.
    fn keep_only(&mut self, used: &std::collections::HashSet<(SapId, Direction)>) {
        let stale: Vec<(SapId, Direction)> = self
            .by_sap
            .keys()
            .filter(|key| !used.contains(*key))
            .cloned()
            .collect();
        for key in stale {
            if let Some(id) = self.by_sap.remove(&key) {
                self.free.push(id);
            }
        }
    }
}

/// Keeps the data plane's builder in step with the service configuration.
#[derive(Default)]
pub struct Compiler {
    builder: ServiceTablesBuilder,
    plane: Plane,
    policer_ids: PolicerIds,
}

/// How the compiler names data-plane ports.
pub trait PortIds {
    /// The data-plane port of an interface name (access ports, network ports and TAPs).
    fn port_id(&self, name: &str) -> Option<PortId>;
    /// The TPID of the outer tag on an access port (0x8100 unless configured, as in SR OS).
    fn outer_tpid(&self, _name: &str) -> u16 {
        brasa_dataplane::wire::EtherType::VLAN
    }
}

impl<F: Fn(&str) -> Option<PortId>> PortIds for F {
    fn port_id(&self, name: &str) -> Option<PortId> {
        self(name)
    }
}

impl Compiler {
    /// A compiler whose data plane has no services yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles `config` into a snapshot, leaving this compiler as it is until
    /// [`commit`](Self::commit).
    pub fn prepare(
        &self,
        config: &ServiceConfig,
        env: &Environment,
        ports: &dyn PortIds,
        gre: &dyn GreResolver,
    ) -> Result<Compiled, CompileError> {
        let mut policer_ids = self.policer_ids.clone();
        let plane = plane(config, env, ports, gre, &mut policer_ids)?;
        let mut builder = self.builder.clone();
        apply(&mut builder, &self.plane, &plane)?;
        let tables = builder.build();
        Ok(Compiled {
            builder,
            plane,
            policer_ids,
            tables,
        })
    }

    /// Keeps a prepared compilation once its snapshot is installed.
    pub fn commit(&mut self, compiled: Compiled) {
        self.builder = compiled.builder;
        self.plane = compiled.plane;
        self.policer_ids = compiled.policer_ids;
    }

    /// The data-plane SAP of a configuration SAP, as installed.
    pub fn dataplane_sap(
        &self,
        sap: &SapId,
        ports: &dyn PortIds,
    ) -> Option<brasa_dataplane::sap::SapId> {
        let id = sap_id(sap, ports).ok()?;
        self.plane.saps.contains_key(&id).then_some(id)
    }

    /// The policer instance metering `sap` in `dir`, as installed.
    pub fn sap_policer(&self, sap: &SapId, dir: Direction) -> Option<u32> {
        self.policer_ids.by_sap.get(&(sap.clone(), dir)).copied()
    }
}

/// Applies the differences between two planes: removals first (SAPs, services, filters,
/// policers, ports: what refers before what is referred to), then additions and changes in the
/// opposite order.
fn apply(builder: &mut ServiceTablesBuilder, old: &Plane, new: &Plane) -> Result<(), ServiceError> {
    for id in old.saps.keys().filter(|id| !new.saps.contains_key(id)) {
        builder.remove_sap(id)?;
    }
    // A service whose type changes is removed and added again (the builder refuses a type
    // change while it has SAPs; they are re-added below).
    for (id, spec) in &old.services {
        let retyped = new
            .services
            .get(id)
            .is_some_and(|n| std::mem::discriminant(n) != std::mem::discriminant(spec));
        if !new.services.contains_key(id) || retyped {
            for sap in old.saps.iter().filter(|(_, s)| s.service == *id) {
                if new.saps.contains_key(sap.0) {
                    builder.remove_sap(sap.0)?;
                }
            }
            builder.remove_service(*id)?;
        }
    }
    for key in old.filters.keys().filter(|k| !new.filters.contains_key(k)) {
        builder.remove_filter(key.0, key.1)?;
    }
    for id in old
        .policers
        .keys()
        .filter(|k| !new.policers.contains_key(k))
    {
        builder.remove_policer(*id)?;
    }
    for id in old.ports.keys().filter(|k| !new.ports.contains_key(k)) {
        builder.remove_port(*id)?;
    }
    for (id, spec) in &new.ports {
        if old.ports.get(id) != Some(spec) {
            builder.set_port(*spec)?;
        }
    }
    for (id, spec) in &new.policers {
        if old.policers.get(id) != Some(spec) {
            builder.set_policer(*spec)?;
        }
    }
    for (key, spec) in &new.filters {
        if old.filters.get(key) != Some(spec) {
            builder.set_filter(spec.clone())?;
        }
    }
    for (id, spec) in &new.services {
        if old.services.get(id) != Some(spec) || builder.service(*id).is_none() {
            builder.set_service(spec.clone())?;
        }
    }
    for (id, spec) in &new.saps {
        if old.saps.get(id) != Some(spec) || builder.sap(id).is_none() {
            builder.set_sap(spec.clone())?;
        }
    }
    Ok(())
}

/// The data-plane SAP id of a configuration SAP.
fn sap_id(sap: &SapId, ports: &dyn PortIds) -> Result<brasa_dataplane::sap::SapId, CompileError> {
    let port = ports
        .port_id(sap.port().as_str())
        .ok_or_else(|| CompileError::NoPort(sap.port().to_string()))?;
    let tag = |tag: Tag| match tag {
        Tag::Any => DpTag::Any,
        Tag::Id(0) => DpTag::Untagged,
        Tag::Id(id) => DpTag::Id(id),
    };
    let encap = match sap.tags() {
        SapTags::Null => SapEncap::Null,
        SapTags::Dot1q(t) => SapEncap::Dot1q { tag: tag(t) },
        SapTags::Qinq(outer, inner) => SapEncap::Qinq {
            outer: tag(outer),
            inner: tag(inner),
        },
    };
    Ok(brasa_dataplane::sap::SapId { port, encap })
}

fn plane(
    config: &ServiceConfig,
    env: &Environment,
    ports: &dyn PortIds,
    gre: &dyn GreResolver,
    policer_ids: &mut PolicerIds,
) -> Result<Plane, CompileError> {
    let mut plane = Plane::default();
    for (name, encap) in env.ports.iter() {
        let port = ports
            .port_id(name.as_str())
            .ok_or_else(|| CompileError::NoPort(name.to_string()))?;
        let encap = match encap {
            Encapsulation::Null => PortEncap::Null,
            Encapsulation::Dot1q => PortEncap::Dot1q,
            Encapsulation::Qinq => PortEncap::Qinq,
        };
        plane.ports.insert(
            port,
            PortSpec {
                outer_tpid: ports.outer_tpid(name.as_str()),
                ..PortSpec::new(port, encap)
            },
        );
    }
    for (reference, filter) in config.filters() {
        let kind = match reference.kind {
            FilterKind::Ip => DpFilterKind::Ip,
            FilterKind::Ipv6 => DpFilterKind::Ipv6,
            FilterKind::Mac => DpFilterKind::Mac,
        };
        let name = reference.to_string();
        let mut entries = Vec::new();
        for (entry_id, entry) in filter.entries.iter() {
            // An entry without an action is inactive, as in SR OS.
            let Some(action) = entry.action else {
                continue;
            };
            let matcher = match reference.kind {
                FilterKind::Ip | FilterKind::Ipv6 => {
                    Match::Ip(ip_match(&name, *entry_id, reference.kind, &entry.ip)?)
                }
                FilterKind::Mac => Match::Mac(mac_match(&name, *entry_id, &entry.mac)?),
            };
            entries.push(FilterEntrySpec {
                id: *entry_id,
                matcher,
                action: match action {
                    Action::Forward => FilterAction::Forward,
                    Action::Drop => FilterAction::Drop,
                },
            });
        }
        plane.filters.insert(
            (kind, reference.id),
            FilterSpec {
                id: reference.id,
                kind,
                default_action: disposition(filter.default_action),
                entries,
            },
        );
    }
    let mut used_policers = std::collections::HashSet::new();
    let mut taps = Vec::new();
    for (id, service) in config.services() {
        let shutdown = service.admin != AdminState::Up;
        let spec = match &service.body {
            ServiceBody::Epipe(epipe) => {
                let gre = match epipe.gre_tunnel {
                    Some(tunnel) => {
                        let hop = gre.resolve(tunnel.local, tunnel.remote).map_err(|reason| {
                            CompileError::GreNextHop {
                                service: id,
                                remote: tunnel.remote,
                                reason,
                            }
                        })?;
                        Some(GreSpec {
                            port: hop.port,
                            vlan: hop.vlan,
                            local: tunnel.local,
                            remote: tunnel.remote,
                            next_hop: hop.mac,
                            key: tunnel.key,
                            ttl: 64,
                            mtu: hop.mtu,
                        })
                    }
                    None => None,
                };
                ServiceSpec::Epipe(EpipeSpec {
                    shutdown,
                    gre,
                    ..EpipeSpec::new(id)
                })
            }
            ServiceBody::Vpls(vpls) => ServiceSpec::Vpls(VplsSpec {
                shutdown,
                fdb_size: vpls.fdb_table_size,
                age_secs: vpls
                    .local_age
                    .unwrap_or(brasa_services::model::DEFAULT_LOCAL_AGE),
                split_horizon_groups: vpls.split_horizon_groups.keys().cloned().collect(),
                ..VplsSpec::new(id)
            }),
            ServiceBody::Ies(routed) | ServiceBody::Vprn(routed) => {
                let vprn = matches!(service.body, ServiceBody::Vprn(_));
                let kind = if vprn { "vprn" } else { "ies" };
                let mut interfaces = Vec::new();
                // Only interfaces the kernel plan gives a TAP (service, interface and SAP up).
                for (name, interface) in &routed.interfaces {
                    let Some(sap) = &interface.sap else {
                        continue;
                    };
                    let sap_up = config.sap(sap).is_some_and(|s| s.admin == AdminState::Up);
                    if shutdown || interface.admin != AdminState::Up || !sap_up {
                        continue;
                    }
                    let tap = kernel::tap(kind, id, name, None).name;
                    let tap_port = ports.port_id(&tap).ok_or_else(|| CompileError::NoTap {
                        service: id,
                        interface: name.clone(),
                        tap: tap.clone(),
                    })?;
                    let tap_sap = brasa_dataplane::sap::SapId {
                        port: tap_port,
                        encap: SapEncap::Null,
                    };
                    interfaces.push(L3Interface {
                        sap: sap_id(sap, ports)?,
                        tap: tap_sap,
                    });
                    taps.push((tap_port, tap_sap, id));
                }
                ServiceSpec::L3(L3Spec {
                    id,
                    vprn,
                    interfaces,
                })
            }
        };
        plane.services.insert(id, spec);
    }
    for (tap_port, tap_sap, service) in taps {
        plane
            .ports
            .insert(tap_port, PortSpec::new(tap_port, PortEncap::Null));
        plane.saps.insert(tap_sap, SapSpec::new(tap_sap, service));
    }
    for (id, sap) in config.saps() {
        let dp_id = sap_id(id, ports)?;
        let mut spec = SapSpec::new(dp_id, sap.service);
        spec.shutdown = sap.admin != AdminState::Up;
        spec.capture = sap.capture;
        spec.split_horizon_group = sap.split_horizon_group.clone();
        spec.max_mac = sap.max_mac_addresses;
        spec.static_macs = sap.static_macs.iter().map(|m| DpMac(m.0)).collect();
        spec.learning = !sap.disable_learning;
        spec.ageing = !sap.disable_aging;
        for dir in [Direction::Ingress, Direction::Egress] {
            let settings = sap.direction(dir);
            let target: &mut DpDirection = match dir {
                Direction::Ingress => &mut spec.ingress,
                Direction::Egress => &mut spec.egress,
            };
            target.ip_filter = settings.ip_filter;
            target.ipv6_filter = settings.ipv6_filter;
            target.mac_filter = settings.mac_filter;
            if let Some((_, effective)) = config.sap_policer(sap, dir) {
                let key = (id.clone(), dir);
                let policer = policer_ids.get(key.clone());
                used_policers.insert(key);
                plane.policers.insert(
                    policer,
                    PolicerSpec {
                        id: policer,
                        config: policer_config(&effective),
                    },
                );
                target.policer = Some(policer);
            }
        }
        plane.saps.insert(dp_id, spec);
    }
    policer_ids.keep_only(&used_policers);
    Ok(plane)
}

fn disposition(action: Action) -> Disposition {
    match action {
        Action::Forward => Disposition::Forward,
        Action::Drop => Disposition::Drop,
    }
}

fn kbps(rate: Rate) -> u64 {
    match rate {
        Rate::Kbps(kbps) => u64::from(kbps),
        Rate::Max => MAX_RATE_KBPS,
    }
}

fn policer_config(p: &brasa_services::model::EffectivePolicer) -> PolicerConfig {
    let pir = kbps(p.rate.pir);
    let cir = kbps(p.rate.cir).min(pir);
    let burst = |rate: u64, bytes: u32| (rate > 0).then_some(u64::from(bytes));
    let meter = match p.mode {
        MeterMode::SrTcm => Meter::SrTcm {
            cir_kbps: cir,
            cbs: burst(cir, p.cbs),
            ebs: burst(cir, p.mbs),
        },
        MeterMode::TrTcm1 => Meter::TrTcm {
            pir_kbps: pir,
            mbs: burst(pir, p.mbs),
            cir_kbps: cir,
            cbs: burst(cir, p.cbs),
        },
        MeterMode::TrTcm2 => {
            let eir = pir - cir;
            Meter::Rfc4115 {
                cir_kbps: cir,
                cbs: burst(cir, p.cbs),
                eir_kbps: eir,
                ebs: burst(eir, p.mbs),
            }
        }
    };
    PolicerConfig {
        meter,
        colour_mode: ColourMode::Blind,
        packet_byte_offset: p
            .packet_byte_offset
            .clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16,
        stat_mode: match p.stat_mode {
            StatMode::NoStats => policer::StatMode::NoStats,
            StatMode::Minimal => policer::StatMode::Minimal,
            _ => policer::StatMode::OfferedTotalCir,
        },
    }
}

fn port_range(
    filter: &str,
    entry: u32,
    port: Option<PortMatch>,
) -> Result<Option<PortRange>, CompileError> {
    let empty = || CompileError::EmptyPortRange {
        filter: filter.to_string(),
        entry,
    };
    Ok(match port {
        None => None,
        Some(PortMatch::Eq(port)) => Some(PortRange::single(port)),
        Some(PortMatch::Range(first, last)) => Some(PortRange { first, last }),
        Some(PortMatch::Lt(port)) => Some(PortRange {
            first: 0,
            last: port.checked_sub(1).ok_or_else(empty)?,
        }),
        Some(PortMatch::Gt(port)) => Some(PortRange {
            first: port.checked_add(1).ok_or_else(empty)?,
            last: u16::MAX,
        }),
    })
}

fn ip_match(
    filter: &str,
    entry: u32,
    kind: FilterKind,
    m: &brasa_services::model::IpMatch,
) -> Result<acl::IpMatch, CompileError> {
    if m.icmp_code.is_some() {
        return Err(CompileError::Unsupported {
            filter: filter.to_string(),
            entry,
            what: "icmp-code".to_string(),
        });
    }
    let prefix = |net: ipnet::IpNet| acl::Prefix::new(net.network(), net.prefix_len());
    Ok(acl::IpMatch {
        family: Some(if kind == FilterKind::Ipv6 {
            IpFamily::V6
        } else {
            IpFamily::V4
        }),
        src: m.src_ip.map(prefix),
        dst: m.dst_ip.map(prefix),
        protocol: m.protocol,
        src_port: port_range(filter, entry, m.src_port)?,
        dst_port: port_range(filter, entry, m.dst_port)?,
        dscp: m.dscp,
        icmp_type: m.icmp_type,
    })
}

fn mac_match(
    filter: &str,
    entry: u32,
    m: &brasa_services::model::MacMatch,
) -> Result<acl::MacMatch, CompileError> {
    use brasa_services::model::FrameType;
    match m.frame_type {
        // The data plane sees Ethernet II frames; other framings carry no EtherType it reads.
        None | Some(FrameType::EthernetII) => {}
        Some(other) => {
            return Err(CompileError::Unsupported {
                filter: filter.to_string(),
                entry,
                what: format!("frame-type {}", other.keyword()),
            })
        }
    }
    let mac = |mask: brasa_services::model::MacMask| acl::MacMask {
        mac: DpMac(mask.addr.0),
        mask: DpMac(mask.mask.0),
    };
    let vid = |tag: brasa_services::model::TagMask| VidMatch::Masked {
        value: tag.value,
        mask: tag.mask,
    };
    Ok(acl::MacMatch {
        src: m.src_mac.map(mac),
        dst: m.dst_mac.map(mac),
        ethertype: m.etype,
        outer_vid: m.outer_tag.map(vid),
        inner_vid: m.inner_tag.map(vid),
    })
}
