//! Text that takes one configuration to another: what the journal keeps when it is compacted.
//!
//! [`transition`] compares two configurations object by object (services with their SAPs,
//! filters, QoS policies) and writes, for each group of changed objects that depend on one
//! another, one transaction in the text form: the old objects removed (SAPs, routes,
//! interfaces and groups first, then the service, shut down; filters and policies after the
//! SAPs that used them), then the new ones created as [`export`](super::export) writes them.
//! Unchanged objects are not mentioned, so a configuration that differs from its base by a
//! few services compacts to a few transactions whatever the history that led there. Groups
//! are independent: one that no longer applies (its base changed) leaves the others applying.
//! [`compact`] checks the result by applying it.

use std::collections::BTreeMap;

use super::lex::quote;
use super::print::{print_filter, print_policy, print_service, Printer};
use crate::config::{Environment, ServiceConfig};
use crate::id::PortMap;
use crate::model::{FilterRef, QosRef, ServiceBody, ServiceId};

/// A top-level object of a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Object {
    Filter(FilterRef),
    Qos(QosRef),
    Service(ServiceId),
}

impl Object {
    fn service(&self) -> Option<ServiceId> {
        match self {
            Object::Service(id) => Some(*id),
            _ => None,
        }
    }

    fn filter(&self) -> Option<FilterRef> {
        match self {
            Object::Filter(filter) => Some(*filter),
            _ => None,
        }
    }

    fn qos(&self) -> Option<QosRef> {
        match self {
            Object::Qos(policy) => Some(*policy),
            _ => None,
        }
    }

    fn present(self, config: &ServiceConfig) -> bool {
        match self {
            Object::Filter(filter) => config.filter(filter).is_some(),
            Object::Qos(policy) => config.qos_policy(policy).is_some(),
            Object::Service(id) => config.service(id).is_some(),
        }
    }

    /// Whether the object is not the same in both (missing from one counts).
    fn differs(self, from: &ServiceConfig, to: &ServiceConfig) -> bool {
        match self {
            Object::Filter(filter) => from.filter(filter) != to.filter(filter),
            Object::Qos(policy) => from.qos_policy(policy) != to.qos_policy(policy),
            Object::Service(id) => from.service(id) != to.service(id),
        }
    }
}

/// The transactions, in the text form, that applied in order to `from` give `to`: one per
/// group of changed objects that reference one another (a SAP that moves between services
/// joins them; a changed filter or policy joins every service whose SAPs use it, which are
/// re-created around it). Empty when the two are equal.
pub fn transition(from: &ServiceConfig, to: &ServiceConfig) -> Vec<String> {
    groups(from, to)
        .into_iter()
        .map(|group| write_group(from, to, &group))
        .collect()
}

/// Why [`compact`] found no text that leads from one configuration to the other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the compacted journal does not reproduce the configuration: {0}")]
pub struct TransitionError(String);

/// [`transition`], checked: the transactions are parsed (through `ports`) and applied to
/// `from` in order, and the result must equal `to`. Where the groups do not apply one by one
/// (objects joined by something the grouping does not see, such as an address moving between
/// interfaces of two services), they are tried as one transaction.
pub fn compact(
    from: &ServiceConfig,
    to: &ServiceConfig,
    env: &Environment,
    ports: &PortMap,
) -> Result<Vec<String>, TransitionError> {
    let texts = transition(from, to);
    if texts.len() <= 1 {
        return replays(from, to, env, ports, &texts).map(|()| texts);
    }
    if replays(from, to, env, ports, &texts).is_ok() {
        return Ok(texts);
    }
    let mut all = groups(from, to);
    let whole: Vec<Object> = all.iter_mut().flat_map(std::mem::take).collect();
    let texts = vec![write_group(from, to, &whole)];
    replays(from, to, env, ports, &texts).map(|()| texts)
}

fn replays(
    from: &ServiceConfig,
    to: &ServiceConfig,
    env: &Environment,
    ports: &PortMap,
    texts: &[String],
) -> Result<(), TransitionError> {
    let mut config = from.clone();
    for (index, text) in texts.iter().enumerate() {
        let changes = super::parse(text, ports)
            .map_err(|error| TransitionError(format!("transaction {}: {error}", index + 1)))?;
        config
            .apply_changes(&changes, env)
            .map_err(|error| TransitionError(format!("transaction {}: {error}", index + 1)))?;
    }
    if config != *to {
        return Err(TransitionError(
            "applied, it gives a different configuration".to_owned(),
        ));
    }
    Ok(())
}

/// The changed objects, grouped by what joins them, each group sorted.
fn groups(from: &ServiceConfig, to: &ServiceConfig) -> Vec<Vec<Object>> {
    let mut joined = UnionFind::default();
    for config in [from, to] {
        let objects = (config.filters().map(|(filter, _)| Object::Filter(filter)))
            .chain(config.qos_policies().map(|(policy, _)| Object::Qos(policy)))
            .chain(config.services().map(|(id, _)| Object::Service(id)));
        for object in objects {
            if object.differs(from, to) {
                joined.add(object);
            }
        }
    }
    // A changed SAP changes its service (both, when it moved); a SAP that uses a changed
    // filter or policy must leave before the old one can go and return after the new one.
    for (config, other) in [(from, to), (to, from)] {
        for (sap_id, sap) in config.saps() {
            let service = Object::Service(sap.service);
            match other.sap(sap_id) {
                Some(same) if same == sap => {}
                Some(moved) => {
                    joined.add(service);
                    joined.join(service, Object::Service(moved.service));
                }
                None => joined.add(service),
            }
            for dir in [
                crate::model::Direction::Ingress,
                crate::model::Direction::Egress,
            ] {
                let settings = sap.direction(dir);
                let used = settings
                    .filters()
                    .map(Object::Filter)
                    .chain(settings.qos.map(|id| {
                        Object::Qos(QosRef {
                            kind: dir.qos_kind(),
                            id,
                        })
                    }));
                for object in used {
                    if joined.contains(object) {
                        joined.add(service);
                        joined.join(service, object);
                    }
                }
            }
        }
    }
    joined.groups()
}

/// One group's transaction: what leaves, then what arrives.
fn write_group(from: &ServiceConfig, to: &ServiceConfig, group: &[Object]) -> String {
    let leaving: Vec<Object> = group.iter().copied().filter(|o| o.present(from)).collect();
    let arriving: Vec<Object> = group.iter().copied().filter(|o| o.present(to)).collect();
    let services = |objects: &[Object]| objects.iter().filter_map(Object::service).collect();
    let filters = |objects: &[Object]| objects.iter().filter_map(Object::filter).collect();
    let policies = |objects: &[Object]| objects.iter().filter_map(Object::qos).collect();
    let mut out = Printer::default();
    out.line("configure");
    out.open();
    section(&mut out, "service", services(&leaving), |out, id| {
        write_removal(out, from, id)
    });
    section(&mut out, "filter", filters(&leaving), |out, filter| {
        out.line(&format!(
            "no {} {}",
            filter.kind.definition_keyword(),
            filter.id
        ))
    });
    section(&mut out, "qos", policies(&leaving), |out, policy| {
        out.line(&format!("no {} {}", policy.kind.keyword(), policy.id))
    });
    section(&mut out, "filter", filters(&arriving), |out, filter| {
        if let Some(definition) = to.filter(filter) {
            print_filter(out, filter, definition);
        }
    });
    section(&mut out, "qos", policies(&arriving), |out, policy| {
        if let Some(definition) = to.qos_policy(policy) {
            print_policy(out, policy, definition);
        }
    });
    section(&mut out, "service", services(&arriving), |out, id| {
        if let Some(service) = to.service(id) {
            print_service(out, to, id, service);
        }
    });
    out.close();
    out.text
}

/// `head` and a line or block per item, unless there is none.
fn section<T: Copy>(
    out: &mut Printer,
    head: &str,
    items: Vec<T>,
    mut write: impl FnMut(&mut Printer, T),
) {
    if !items.is_empty() {
        out.block(head, |out| {
            for item in items {
                write(out, item);
            }
        });
    }
}

/// A service's removal as SR OS requires it: its SAPs, routes, interfaces and groups first,
/// then the service shut down and deleted.
fn write_removal(out: &mut Printer, config: &ServiceConfig, id: ServiceId) {
    let Some(service) = config.service(id) else {
        return;
    };
    let kind = service.kind().keyword();
    out.block(&format!("{kind} {id}"), |out| {
        match &service.body {
            ServiceBody::Epipe(_) => {}
            ServiceBody::Vpls(_) => {}
            ServiceBody::Ies(routed) | ServiceBody::Vprn(routed) => {
                for prefix in routed.static_routes.keys() {
                    out.line(&format!("no static-route-entry {prefix}"));
                }
                for (name, interface) in &routed.interfaces {
                    if let Some(sap) = &interface.sap {
                        out.block(&format!("interface {}", quote(name)), |out| {
                            out.line(&format!("no sap {sap}"));
                        });
                    }
                    out.line(&format!("no interface {}", quote(name)));
                }
            }
        }
        if service.body.routed().is_none() {
            for (sap_id, _) in config.service_saps(id) {
                out.line(&format!("no sap {sap_id}"));
            }
        }
        if let ServiceBody::Vpls(vpls) = &service.body {
            for name in vpls.split_horizon_groups.keys() {
                out.line(&format!("no split-horizon-group {}", quote(name)));
            }
        }
        out.line("shutdown");
    });
    out.line(&format!("no {kind} {id}"));
}

/// Disjoint sets of objects.
#[derive(Default)]
struct UnionFind {
    parent: BTreeMap<Object, Object>,
}

impl UnionFind {
    fn add(&mut self, object: Object) {
        self.parent.entry(object).or_insert(object);
    }

    fn contains(&self, object: Object) -> bool {
        self.parent.contains_key(&object)
    }

    fn root(&mut self, object: Object) -> Object {
        let mut root = object;
        while let Some(&parent) = self.parent.get(&root) {
            if parent == root {
                break;
            }
            root = parent;
        }
        // Path compression keeps later look-ups short.
        let mut at = object;
        while at != root {
            let Some(next) = self.parent.insert(at, root) else {
                break;
            };
            at = next;
        }
        root
    }

    fn join(&mut self, a: Object, b: Object) {
        self.add(a);
        self.add(b);
        let (a, b) = (self.root(a), self.root(b));
        if a != b {
            self.parent.insert(a.max(b), a.min(b));
        }
    }

    fn groups(mut self) -> Vec<Vec<Object>> {
        let objects: Vec<Object> = self.parent.keys().copied().collect();
        let mut groups: BTreeMap<Object, Vec<Object>> = BTreeMap::new();
        for object in objects {
            let root = self.root(object);
            groups.entry(root).or_default().push(object);
        }
        groups.into_values().collect()
    }
}
