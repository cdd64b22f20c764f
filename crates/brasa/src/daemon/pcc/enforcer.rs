//! What the enforcement point holds: per subscriber the addresses, services and compiled
//! policy it installed in the PCC stage, and the RADIUS accounting of each service instance.
//! No I/O here: the shell installs what [`Enforcer::prepare`] compiled, reports it with
//! [`Enforcer::installed`] / [`Enforcer::removed`], and sends the records they return.

use super::compile::{self, Addresses, Refused, VpnInstances};
use brasa_dataplane::pcc::{PccCompiler, SubscriberCounters, SubscriberPolicy};
use brasa_radius::AcctTerminateCause;
use brasa_subscriber::Subscriber;
use brasa_subsvc::{
    Accounting, AcctRecord, Counter, CounterSource, InstanceKey, PccRule, SubscriberService,
    SubscriberServices, Volume,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The property whose value links a service's accounting to its subscriber's session
/// (Acct-Multi-Session-Id): what `[subscriber_manager.radius_logins] properties` keeps of
/// the session's Accounting-Request.
pub const SESSION_PROPERTY: &str = "Acct-Session-Id";

/// One subscriber as enforced.
#[derive(Debug)]
pub struct Enforced {
    /// Its addresses (see [`compile::addresses`]).
    pub addresses: Addresses,
    /// Its services as the SM pushed them (refused ones included).
    pub services: SubscriberServices,
    /// Its session's id: Acct-Multi-Session-Id of its services' accounting.
    pub session: String,
    /// The installed policy (its counters are live).
    pub policy: Arc<SubscriberPolicy>,
    /// Services the data plane refused, left out of the policy.
    pub refused: Vec<Refused>,
    /// Per service in force, the subscriber's aggregate forwarded traffic when it came into
    /// force: where the counter rule's aggregate branch counts from.
    pub baselines: Vec<(String, Volume)>,
}

impl Enforced {
    /// The services in force: the pushed ones the data plane took.
    pub fn enforced_services(&self) -> impl Iterator<Item = &SubscriberService> {
        self.services
            .iter()
            .filter(|s| !self.refused.iter().any(|r| r.service == s.name))
    }

    /// The volume of service `service` by the counter rule, from the live counters.
    pub fn service_volume(
        &self,
        service: &SubscriberService,
        counters: &SubscriberCounters,
    ) -> Volume {
        let baseline = self
            .baselines
            .iter()
            .find(|(name, _)| *name == service.name)
            .map(|(_, volume)| *volume)
            .unwrap_or_default();
        brasa_subsvc::service_volume(
            service,
            &ServiceCounters::new(counters, &service.name),
            baseline,
        )
    }
}

/// A subscriber compiled, to install.
#[derive(Debug)]
pub struct Prepared {
    name: String,
    logged_in: bool,
    enforced: Enforced,
}

impl Prepared {
    /// The policy to install.
    pub fn policy(&self) -> &Arc<SubscriberPolicy> {
        &self.enforced.policy
    }

    /// The services the data plane refused (the caller counts and logs them).
    pub fn refused(&self) -> &[Refused] {
        &self.enforced.refused
    }
}

/// The counters of one service instance, read from its subscriber's policy.
pub struct ServiceCounters<'a> {
    counters: &'a SubscriberCounters,
    service: &'a str,
}

impl<'a> ServiceCounters<'a> {
    /// The counters of `service` in `counters`.
    pub fn new(counters: &'a SubscriberCounters, service: &'a str) -> Self {
        Self { counters, service }
    }
}

/// A data plane volume as the accounting model's counter.
pub fn counter(volume: brasa_dataplane::pcc::Volume) -> Counter {
    Counter {
        octets: volume.octets,
        packets: volume.packets,
    }
}

impl CounterSource for ServiceCounters<'_> {
    fn rule_forwarded(&self, rule: &PccRule) -> Counter {
        let name = compile::rule_name(self.service, &rule.name);
        let direction = compile::direction(rule.direction);
        self.counters
            .rules
            .iter()
            .find(|r| r.name == name && r.direction == direction)
            .map(|r| counter(r.forwarded))
            .unwrap_or_default()
    }

    fn subscriber_forwarded(&self) -> Volume {
        Volume {
            ingress: counter(self.counters.ingress),
            egress: counter(self.counters.egress),
        }
    }
}

/// Every enforced subscriber and the accounting of its services.
#[derive(Debug)]
pub struct Enforcer {
    enforced: HashMap<String, Enforced>,
    accounting: Option<Accounting>,
    /// One for the life of the stage: subscribers with the same services share one compiled
    /// copy of their rules, which is what keeps the packet path in the cache.
    compiler: PccCompiler,
    /// The VPRN holding each SM VPN whose subscribers are enforced.
    vpns: VpnInstances,
}

/// The session id of `subscriber`: its [`SESSION_PROPERTY`], else its name (the SM holds
/// one session per subscriber name).
pub fn session_of(subscriber: &Subscriber) -> String {
    subscriber
        .properties
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(SESSION_PROPERTY))
        .map_or_else(
            || subscriber.name.as_str().to_string(),
            |(_, value)| value.clone(),
        )
}

impl Enforcer {
    /// Nothing enforced; `accounting` when records are to be made; `vpns` places the SM's
    /// VPNs in VPRNs (mappings in other VPNs are not enforced).
    pub fn new(accounting: Option<Accounting>, vpns: VpnInstances) -> Self {
        Self {
            enforced: HashMap::new(),
            accounting,
            compiler: PccCompiler::new(),
            vpns,
        }
    }

    /// Subscriber `name` as enforced.
    pub fn get(&self, name: &str) -> Option<&Enforced> {
        self.enforced.get(name)
    }

    /// Every enforced subscriber, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Enforced)> {
        self.enforced.iter()
    }

    /// How many subscribers are enforced.
    pub fn len(&self) -> usize {
        self.enforced.len()
    }

    /// The Acct-Session-Id of a service instance whose accounting runs.
    pub fn acct_session_id(&self, subscriber: &str, service: &str) -> Option<&str> {
        self.accounting.as_ref()?.acct_session_id(&InstanceKey {
            subscriber: subscriber.to_string(),
            service: service.to_string(),
        })
    }

    /// Compiles `subscriber` as the SM pushed it with its `services`; `None` when what is
    /// installed is that already (a repeated push). A compile error means one of its
    /// addresses is invalid for the data plane: nothing to install.
    pub fn prepare(
        &mut self,
        subscriber: &Subscriber,
        services: &SubscriberServices,
    ) -> Result<Option<Prepared>, brasa_dataplane::pcc::PccError> {
        let name = subscriber.name.as_str();
        let addresses = compile::addresses(subscriber, &self.vpns);
        let session = session_of(subscriber);
        if let Some(current) = self.enforced.get(name) {
            if current.addresses == addresses
                && current.services == *services
                && current.session == session
            {
                return Ok(None);
            }
        }
        let (policy, refused) = compile::compile(&mut self.compiler, name, &addresses, services)?;
        Ok(Some(Prepared {
            name: name.to_string(),
            logged_in: subscriber.logged_in,
            enforced: Enforced {
                addresses,
                services: services.clone(),
                session,
                policy: Arc::new(policy),
                refused,
                baselines: Vec::new(),
            },
        }))
    }

    /// `prepared` is installed: its services that were not in force start their
    /// accounting, those no longer in force stop theirs (counted on the policy they were
    /// in; cause User-Request when the subscriber logged out, Admin-Reset otherwise).
    pub fn installed(&mut self, prepared: Prepared, now: Instant) -> Vec<AcctRecord> {
        let Prepared {
            name,
            logged_in,
            enforced,
        } = prepared;
        let mut enforced = enforced;
        let old = self.enforced.remove(&name);
        let counters = enforced.policy.counters();
        let aggregate = ServiceCounters::new(&counters, "").subscriber_forwarded();
        enforced.baselines = enforced
            .enforced_services()
            .map(|service| {
                let kept = old.as_ref().and_then(|o| {
                    o.baselines
                        .iter()
                        .find(|(name, _)| *name == service.name)
                        .map(|(_, volume)| *volume)
                });
                (service.name.clone(), kept.unwrap_or(aggregate))
            })
            .collect();
        let mut records = Vec::new();
        if let Some(accounting) = &mut self.accounting {
            let new_names: Vec<&str> = enforced
                .enforced_services()
                .map(|s| s.name.as_str())
                .collect();
            if let Some(old) = &old {
                let counters = old.policy.counters();
                let cause = if logged_in {
                    AcctTerminateCause::AdminReset
                } else {
                    AcctTerminateCause::UserRequest
                };
                for service in old.enforced_services() {
                    if !new_names.contains(&service.name.as_str()) {
                        stop(
                            accounting,
                            &name,
                            service,
                            &counters,
                            cause,
                            now,
                            &mut records,
                        );
                    }
                }
            }
            for service in enforced.enforced_services() {
                let running = old
                    .as_ref()
                    .is_some_and(|o| o.enforced_services().any(|s| s.name == service.name));
                if running {
                    continue;
                }
                match accounting.start(&name, &enforced.session, service, aggregate, now) {
                    Ok(record) => records.extend(record),
                    Err(error) => {
                        tracing::warn!(subscriber = %name, service = %service.name, %error, "no accounting Start")
                    }
                }
            }
        }
        self.enforced.insert(name, enforced);
        records
    }

    /// Subscriber `name` is gone (logged out or removed from the SM): the Stop of each of
    /// its services in force (User-Request), counted on its last policy.
    pub fn removed(&mut self, name: &str, now: Instant) -> Vec<AcctRecord> {
        let Some(old) = self.enforced.remove(name) else {
            return Vec::new();
        };
        let mut records = Vec::new();
        if let Some(accounting) = &mut self.accounting {
            let counters = old.policy.counters();
            for service in old.enforced_services() {
                stop(
                    accounting,
                    name,
                    service,
                    &counters,
                    AcctTerminateCause::UserRequest,
                    now,
                    &mut records,
                );
            }
        }
        records
    }

    /// The next Interim-Update deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.accounting.as_ref()?.poll_timeout()
    }

    /// The Interim-Updates due at `now`, counted on the installed policies.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<AcctRecord> {
        let Some(accounting) = &mut self.accounting else {
            return Vec::new();
        };
        let enforced = &self.enforced;
        let empty = SubscriberCounters {
            ingress: Default::default(),
            egress: Default::default(),
            rules: Vec::new(),
        };
        // Read once per subscriber whatever number of its services is due.
        let mut read: HashMap<String, SubscriberCounters> = HashMap::new();
        let records = accounting.handle_timeout(now, |key| {
            let counters = read
                .entry(key.subscriber.clone())
                .or_insert_with(|| {
                    enforced
                        .get(&key.subscriber)
                        .map_or_else(|| empty.clone(), |e| e.policy.counters())
                })
                .clone();
            OwnedCounters {
                counters,
                service: key.service.clone(),
            }
        });
        records.unwrap_or_else(|error| {
            tracing::warn!(%error, "no Interim-Update");
            Vec::new()
        })
    }
}

/// [`ServiceCounters`] that own what they read (what `Accounting::handle_timeout` needs).
struct OwnedCounters {
    counters: SubscriberCounters,
    service: String,
}

impl CounterSource for OwnedCounters {
    fn rule_forwarded(&self, rule: &PccRule) -> Counter {
        ServiceCounters::new(&self.counters, &self.service).rule_forwarded(rule)
    }

    fn subscriber_forwarded(&self) -> Volume {
        ServiceCounters::new(&self.counters, &self.service).subscriber_forwarded()
    }
}

fn stop(
    accounting: &mut Accounting,
    subscriber: &str,
    service: &SubscriberService,
    counters: &SubscriberCounters,
    cause: AcctTerminateCause,
    now: Instant,
    records: &mut Vec<AcctRecord>,
) {
    let key = InstanceKey {
        subscriber: subscriber.to_string(),
        service: service.name.clone(),
    };
    if !accounting.is_running(&key) {
        return;
    }
    match accounting.stop(
        &key,
        &ServiceCounters::new(counters, &service.name),
        cause,
        now,
    ) {
        Ok(record) => records.push(record),
        Err(error) => {
            tracing::warn!(%subscriber, service = %service.name, %error, "no accounting Stop")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_dataplane::acl::Disposition;
    use brasa_dataplane::build;
    use brasa_dataplane::pcc::{Direction, PccDefaults, PccStage, RoutingInstance};
    use brasa_dataplane::pipeline::{pkt_type, Batch, PacketMeta, Pipeline, Port};
    use brasa_radius::attr::{ACCT_MULTI_SESSION_ID, ACCT_STATUS_TYPE, ACCT_TERMINATE_CAUSE};
    use brasa_subsvc::{AcctStatsType, Actions, Flow, RateLimit};
    use std::net::Ipv4Addr;
    use std::time::Duration;

    const SUBSCRIBER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 7);
    const OTHER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

    fn subscriber(session: Option<&str>) -> Subscriber {
        let mut s = Subscriber::new(
            brasa_subscriber::SubscriberName::new("alice", brasa_subscriber::NameCase::Sensitive)
                .unwrap(),
        );
        s.mappings = vec![SUBSCRIBER.to_string().parse().unwrap()];
        s.logged_in = true;
        if let Some(id) = session {
            s.properties
                .push(("acct-session-id".into(), id.to_string()));
        }
        s
    }

    /// Up to 10.1.1.0/24, accounted or not, volume-time accounting every 5 minutes.
    fn service(name: &str, account: bool) -> SubscriberService {
        let mut rule = PccRule::new("up", brasa_subsvc::Direction::Ingress);
        rule.flows = vec![Flow {
            dst_ip: Some("10.1.1.0/24".parse().unwrap()),
            ..Flow::default()
        }];
        rule.actions = Actions {
            rate_limit: Some(RateLimit {
                pir_kbps: 100_000,
                cir_kbps: None,
            }),
            account,
            ..Actions::default()
        };
        let mut service = SubscriberService::new(name);
        service.rules = vec![rule];
        service.acct_stats_type = AcctStatsType::VolumeTime;
        service.acct_interval = Some(300);
        service
    }

    fn services(list: &[SubscriberService]) -> SubscriberServices {
        let mut out = SubscriberServices::new();
        for s in list {
            out.activate(s.clone()).unwrap();
        }
        out
    }

    fn enforcer() -> Enforcer {
        enforcer_with_vpns(VpnInstances::new())
    }

    fn enforcer_with_vpns(vpns: VpnInstances) -> Enforcer {
        Enforcer::new(Some(Accounting::new("bng1", 0x1234_5678, None)), vpns)
    }

    /// A pipeline running the PCC stage alone on IP packets (ports are IP links).
    fn pipeline(stage: &brasa_dataplane::pipeline::Shared<PccStage>) -> Pipeline {
        let port = Port {
            name: "ip".into(),
            link: brasa_dataplane::pipeline::LinkKind::Ip,
            mac: Default::default(),
            ip_handoff: brasa_dataplane::pipeline::IpHandoff::Kernel,
        };
        Pipeline::new(vec![port], vec![Box::new(stage.clone())])
    }

    /// Sends `count` UDP packets of 100 IP octets from `src` to `dst`.
    fn send(p: &mut Pipeline, src: Ipv4Addr, dst: Ipv4Addr, count: usize) {
        let packet = build::ipv4_udp(src, dst, 1000, 2000, &[0; 72]);
        assert_eq!(packet.len(), 100);
        let mut batch = Batch::new(count);
        for _ in 0..count {
            assert!(batch.push(&packet, PacketMeta::new(0, pkt_type::HOST, 0x0800)));
        }
        for (_, meta) in batch.iter_mut() {
            meta.kind = brasa_dataplane::pipeline::PacketKind::Ipv4;
        }
        p.run(&mut batch, 1);
    }

    fn install(
        enforcer: &mut Enforcer,
        stage: &brasa_dataplane::pipeline::Shared<PccStage>,
        sub: &Subscriber,
        services: &SubscriberServices,
        now: Instant,
    ) -> Vec<AcctRecord> {
        let prepared = enforcer.prepare(sub, services).unwrap().unwrap();
        stage.lock().install(prepared.policy().clone()).unwrap();
        enforcer.installed(prepared, now)
    }

    fn integer(record: &AcctRecord, typ: u8) -> Option<u32> {
        let bytes: [u8; 4] = record.message.get(typ)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes))
    }

    fn text(record: &AcctRecord, typ: u8) -> Option<&str> {
        std::str::from_utf8(record.message.get(typ)?).ok()
    }

    fn status(record: &AcctRecord) -> u32 {
        integer(record, ACCT_STATUS_TYPE).unwrap()
    }

    fn input_octets(record: &AcctRecord) -> u32 {
        integer(record, brasa_radius::attr::ACCT_INPUT_OCTETS).unwrap_or(0)
    }

    #[test]
    fn accounted_rules_count_their_policer_and_a_stop_follows_deactivation() {
        let stage = brasa_dataplane::pipeline::Shared::new(PccStage::new(PccDefaults {
            unknown: Disposition::Forward,
            no_services: Disposition::Forward,
        }));
        let mut p = pipeline(&stage);
        let mut e = enforcer();
        let t0 = Instant::now();
        let sub = subscriber(Some("SESSION-1"));
        let records = install(&mut e, &stage, &sub, &services(&[service("svc", true)]), t0);
        assert_eq!(records.len(), 1);
        assert_eq!(status(&records[0]), 1, "Start");
        assert_eq!(text(&records[0], ACCT_MULTI_SESSION_ID), Some("SESSION-1"));
        // 3 packets match the accounted rule, 2 do not.
        send(&mut p, SUBSCRIBER, SERVER, 3);
        send(&mut p, SUBSCRIBER, OTHER, 2);
        let interims = e.handle_timeout(t0 + Duration::from_secs(300));
        assert_eq!(interims.len(), 1);
        assert_eq!(status(&interims[0]), 3, "Interim-Update");
        assert_eq!(input_octets(&interims[0]), 300);
        // The same push again changes nothing.
        assert!(e
            .prepare(&sub, &services(&[service("svc", true)]))
            .unwrap()
            .is_none());
        // Deactivated while logged in: Stop, Admin-Reset.
        let records = install(&mut e, &stage, &sub, &SubscriberServices::new(), t0);
        assert_eq!(records.len(), 1);
        assert_eq!(status(&records[0]), 2, "Stop");
        assert_eq!(input_octets(&records[0]), 300);
        assert_eq!(
            integer(&records[0], ACCT_TERMINATE_CAUSE),
            Some(u32::from_be_bytes(
                AcctTerminateCause::AdminReset.to_value()
            ))
        );
    }

    /// A subscriber whose only mapping is in a VPN that no VPRN holds is held with no
    /// address, so its traffic meets none of its rules, and its services' accounting runs with
    /// nothing counted (what docs/subscriber-services.md states).
    #[test]
    fn a_subscriber_mapped_only_in_an_unplaced_vpn_is_held_without_an_address() {
        let stage = brasa_dataplane::pipeline::Shared::new(PccStage::new(PccDefaults::default()));
        let mut p = pipeline(&stage);
        let mut e = enforcer();
        let t0 = Instant::now();
        let mut sub = subscriber(Some("SESSION-1"));
        sub.mappings = vec![format!("{SUBSCRIBER}@corp").parse().unwrap()];
        let records = install(&mut e, &stage, &sub, &services(&[service("svc", true)]), t0);
        assert_eq!(records.len(), 1);
        assert_eq!(status(&records[0]), 1, "Start");
        let held = &e.get("alice").unwrap().addresses;
        assert!(held.base.is_empty() && held.vprn.is_empty());
        assert_eq!(held.unplaced_vpns, ["corp"]);
        send(&mut p, SUBSCRIBER, SERVER, 3);
        let interims = e.handle_timeout(t0 + Duration::from_secs(300));
        assert_eq!(input_octets(&interims[0]), 0);
        assert_eq!(stage.lock().stats().unknown_forwarded, 3);
    }

    /// A subscriber mapped in a VPN that a VPRN holds is enforced on that VPRN's interfaces
    /// only: the same address in the base instance (the pipeline's pass) or in another VPRN
    /// is someone else's traffic, and a second subscriber may own it there.
    #[test]
    fn a_vpn_mapping_is_enforced_in_its_vprn_and_only_there() {
        let stage = brasa_dataplane::pipeline::Shared::new(PccStage::new(PccDefaults::default()));
        let mut p = pipeline(&stage);
        let vpns: VpnInstances = [("corp".to_string(), 100)].into_iter().collect();
        let mut e = enforcer_with_vpns(vpns);
        let t0 = Instant::now();
        let mut alice = subscriber(Some("SESSION-1"));
        alice.mappings = vec![format!("{SUBSCRIBER}@corp").parse().unwrap()];
        install(
            &mut e,
            &stage,
            &alice,
            &services(&[service("svc", true)]),
            t0,
        );
        let view = &e.get("alice").unwrap().addresses;
        assert_eq!(view.display(), [format!("{SUBSCRIBER}/32@corp")]);
        // The same address in the global space belongs to bob.
        let mut bob = subscriber(Some("SESSION-2"));
        bob.name =
            brasa_subscriber::SubscriberName::new("bob", brasa_subscriber::NameCase::Sensitive)
                .unwrap();
        bob.mappings = vec![SUBSCRIBER.to_string().parse().unwrap()];
        install(&mut e, &stage, &bob, &SubscriberServices::new(), t0);

        // The pipeline's pass is the base instance: bob's traffic, not alice's.
        send(&mut p, SUBSCRIBER, SERVER, 2);
        let packet = build::ipv4_udp(SUBSCRIBER, SERVER, 1000, 2000, &[0; 72]);
        let on_interface = |instance| {
            let mut ip = packet.clone();
            stage
                .lock()
                .enforce(Direction::Ingress, instance, &mut ip, 1)
        };
        // On VPRN 100's interfaces: alice's (her rule accounts and forwards).
        for _ in 0..3 {
            assert_eq!(on_interface(RoutingInstance::Vprn(100)), Ok(()));
        }
        // On another VPRN's: nobody's.
        assert_eq!(on_interface(RoutingInstance::Vprn(200)), Ok(()));
        let alice_forwarded = e.get("alice").unwrap().policy.counters().ingress;
        let bob_forwarded = e.get("bob").unwrap().policy.counters().ingress;
        assert_eq!((alice_forwarded.packets, alice_forwarded.octets), (3, 300));
        assert_eq!((bob_forwarded.packets, bob_forwarded.octets), (2, 200));
        assert_eq!(stage.lock().stats().unknown_forwarded, 1);
        let interims = e.handle_timeout(t0 + Duration::from_secs(300));
        assert_eq!(input_octets(&interims[0]), 300);
    }

    #[test]
    fn without_accounted_rules_the_aggregate_since_the_start_counts_and_logout_stops() {
        let stage = brasa_dataplane::pipeline::Shared::new(PccStage::new(PccDefaults::default()));
        let mut p = pipeline(&stage);
        let mut e = enforcer();
        let t0 = Instant::now();
        let sub = subscriber(None);
        install(&mut e, &stage, &sub, &SubscriberServices::new(), t0);
        // Before the service: not counted.
        send(&mut p, SUBSCRIBER, OTHER, 4);
        let records = install(
            &mut e,
            &stage,
            &sub,
            &services(&[service("agg", false)]),
            t0,
        );
        assert_eq!(
            text(&records[0], ACCT_MULTI_SESSION_ID),
            Some("alice"),
            "no session property: the subscriber's name"
        );
        send(&mut p, SUBSCRIBER, SERVER, 1);
        send(&mut p, SUBSCRIBER, OTHER, 2);
        let records = e.removed("alice", t0 + Duration::from_secs(10));
        assert_eq!(records.len(), 1);
        assert_eq!(status(&records[0]), 2);
        assert_eq!(input_octets(&records[0]), 300, "everything since the start");
        assert_eq!(
            integer(&records[0], ACCT_TERMINATE_CAUSE),
            Some(u32::from_be_bytes(
                AcctTerminateCause::UserRequest.to_value()
            ))
        );
        assert!(e.removed("alice", t0).is_empty(), "gone already");
    }

    #[test]
    fn a_refused_service_is_not_accounted_and_the_others_are() {
        let stage = brasa_dataplane::pipeline::Shared::new(PccStage::new(PccDefaults::default()));
        let mut e = enforcer();
        let mut huge = service("huge", true);
        if let Some(limit) = &mut huge.rules[0].actions.rate_limit {
            limit.pir_kbps = 4_000_000_000;
        }
        huge.rules[0].name = "up2".into();
        let list = services(&[service("ok", true), huge]);
        let prepared = e.prepare(&subscriber(None), &list).unwrap().unwrap();
        assert_eq!(prepared.refused().len(), 1);
        stage.lock().install(prepared.policy().clone()).unwrap();
        let records = e.installed(prepared, Instant::now());
        assert_eq!(records.len(), 1, "only the enforced service starts");
        assert!(e.acct_session_id("alice", "ok").is_some());
        assert!(e.acct_session_id("alice", "huge").is_none());
    }
}
