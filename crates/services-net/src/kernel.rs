//! brasa-services' kernel plan, executed over rtnetlink.
//!
//! [`Kernel`] performs [`KernelStep`]s one by one. [`Kernel::apply`] runs a whole
//! [`KernelPlan`] and, when a step fails, runs the inverses of the steps that succeeded (in
//! reverse) before it reports the failure: the kernel ends as it was. TAPs are created and
//! removed by the data plane (it must own their descriptors: [`TapHost`]); the executor gives
//! them their alias and MAC, moves a VPRN's TAP into the VPRN's namespace and turns forwarding
//! on for it. VPRN namespaces are anonymous ([`NetNamespace`]): the executor holds them, each
//! with a netlink connection opened inside it.
//!
//! The daemon's own namespace is that of the thread that calls [`Kernel::connect`]. What a
//! crash can leave there is listed by [`Kernel::brasa_routes`] for
//! [`reconcile`](brasa_services::kernel::reconcile).

use std::net::IpAddr;

use std::sync::{Arc, Mutex};

use brasa_services::kernel::{
    Address, KernelPlan, KernelStep, Namespace, Route, RouteVia, Tap, ROUTE_PROTOCOL,
};
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::namespace::{write_sysctl, NetNamespace};

/// Creates and removes TAPs on behalf of the executor: the data plane, which owns their
/// descriptors and reads and writes their frames.
pub trait TapHost: Send + Sync {
    /// Creates the TAP `name` in the daemon's own namespace (not persistent: it vanishes when
    /// its descriptor closes) and starts using it.
    fn create_tap(&self, name: &str) -> Result<(), String>;
    /// Stops using the TAP `name` and closes it: the device disappears, wherever it is.
    fn delete_tap(&self, name: &str) -> Result<(), String>;
}

/// Why a kernel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A netlink socket, a namespace or a sysctl could not be set up.
    #[error("{operation}: {source}")]
    System {
        /// What was being done.
        operation: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the operation (or the request could not be sent).
    #[error("{operation}: {source}")]
    Netlink {
        /// What was being done, e.g. `add address 192.0.2.1/24 to brst…`.
        operation: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// The data plane could not create or remove a TAP.
    #[error("{operation}: {message}")]
    Tap {
        /// What was being done.
        operation: String,
        /// The data plane's answer.
        message: String,
    },
    /// A link the step names does not exist.
    #[error("{operation}: no link named {name}")]
    NoSuchLink {
        /// What was being done.
        operation: String,
        /// The missing link.
        name: String,
    },
    /// A namespace the step names does not exist (or already exists, for a creation).
    #[error("{operation}: {message}")]
    Namespace {
        /// What was being done.
        operation: String,
        /// What is wrong.
        message: String,
    },
    /// The address to remove is not on the link.
    #[error("{operation}: the address is not there")]
    NoSuchAddress {
        /// What was being done.
        operation: String,
    },
    /// A route could not be expressed as a netlink message.
    #[error("{operation}: {message}")]
    InvalidRoute {
        /// What was being done.
        operation: String,
        /// Why.
        message: String,
    },
}

impl KernelError {
    /// The errno the kernel answered with, when it refused the operation.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink {
                source: rtnetlink::Error::NetlinkError(message),
                ..
            } => message.code.map(|code| -code.get()),
            KernelError::System { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// A plan that failed, after its rollback.
#[derive(Debug, thiserror::Error)]
#[error("kernel step {} of {} failed: {error}{}", failed_at + 1, steps, rollback_note(.rollback))]
pub struct PlanError {
    /// Index of the step that failed.
    pub failed_at: usize,
    /// Steps in the plan.
    pub steps: usize,
    /// The failure.
    #[source]
    pub error: KernelError,
    /// The rollback's outcome: `Err((index, error))` when undoing also failed at that index of
    /// the rollback sequence (the kernel then holds part of the plan; a restart cleans it).
    pub rollback: Result<(), (usize, String)>,
}

fn rollback_note(rollback: &Result<(), (usize, String)>) -> String {
    match rollback {
        Ok(()) => " (rolled back)".to_string(),
        Err((index, error)) => format!(" (rollback failed at its step {}: {error})", index + 1),
    }
}

/// A netlink connection whose task ends with it.
struct Netlink {
    handle: Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// A connection in the calling thread's network namespace, driven by `runtime`.
    fn open(runtime: &tokio::runtime::Handle) -> std::io::Result<Self> {
        let _entered = runtime.enter();
        let (connection, handle, _) = rtnetlink::new_connection()?;
        let task = runtime.spawn(connection);
        Ok(Self { handle, task })
    }
}

/// A VPRN's routing instance: its namespace and a netlink connection inside it.
struct Instance {
    namespace: NetNamespace,
    netlink: Netlink,
}

/// The executor of kernel plans.
pub struct Kernel {
    root: Netlink,
    runtime: tokio::runtime::Handle,
    instances: Mutex<std::collections::HashMap<String, Arc<Instance>>>,
    taps: Arc<dyn TapHost>,
}

impl Kernel {
    /// An executor in the calling thread's network namespace, creating TAPs through `taps`.
    /// Must run inside a tokio runtime.
    pub fn connect(taps: Arc<dyn TapHost>) -> Result<Self, KernelError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|err| KernelError::System {
            operation: "netlink connection".to_string(),
            source: std::io::Error::other(err),
        })?;
        let root = Netlink::open(&runtime).map_err(|source| KernelError::System {
            operation: "netlink connection".to_string(),
            source,
        })?;
        Ok(Self {
            root,
            runtime,
            instances: Mutex::new(Default::default()),
            taps,
        })
    }

    /// Runs `plan`; on a failure, undoes what succeeded and reports the failure.
    pub async fn apply(&self, plan: &KernelPlan) -> Result<(), PlanError> {
        match self.run(&plan.steps).await {
            Ok(()) => Ok(()),
            Err((failed_at, error)) => {
                tracing::warn!(step = failed_at + 1, %error, "kernel plan failed, rolling back");
                let rollback = self
                    .run(&plan.rollback(failed_at))
                    .await
                    .map_err(|(index, error)| (index, error.to_string()));
                Err(PlanError {
                    failed_at,
                    steps: plan.steps.len(),
                    error,
                    rollback,
                })
            }
        }
    }

    /// Runs `steps` in order and stops at the first failure, returning its index.
    pub async fn run(&self, steps: &[KernelStep]) -> Result<(), (usize, KernelError)> {
        for (index, step) in steps.iter().enumerate() {
            self.execute(step).await.map_err(|error| (index, error))?;
            tracing::debug!(%step, "kernel step done");
        }
        Ok(())
    }

    /// The names of the VPRN namespaces the executor holds.
    pub fn namespaces(&self) -> Vec<String> {
        let mut names: Vec<String> = self.instances().keys().cloned().collect();
        names.sort();
        names
    }

    /// Runs `f` on a thread inside the VPRN namespace `name` (for tests and diagnostics).
    pub fn run_in<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> Option<std::io::Result<T>> {
        let instance = self.instances().get(name).cloned()?;
        Some(instance.namespace.run(f))
    }

    fn instances(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<Instance>>> {
        self.instances
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The netlink handle of `namespace` (the daemon's own for `None`).
    fn handle(&self, namespace: &Namespace, operation: &str) -> Result<Handle, KernelError> {
        match namespace {
            None => Ok(self.root.handle.clone()),
            Some(name) => self
                .instances()
                .get(name)
                .map(|instance| instance.netlink.handle.clone())
                .ok_or_else(|| KernelError::Namespace {
                    operation: operation.to_string(),
                    message: format!("no namespace {name}"),
                }),
        }
    }

    /// Performs one step.
    pub async fn execute(&self, step: &KernelStep) -> Result<(), KernelError> {
        let operation = step.to_string();
        let netlink = |source| KernelError::Netlink {
            operation: operation.clone(),
            source,
        };
        match step {
            KernelStep::CreateNamespace { name } => self.create_namespace(name, &operation),
            KernelStep::DeleteNamespace { name } => match self.instances().remove(name) {
                Some(_) => Ok(()),
                None => Err(KernelError::Namespace {
                    operation,
                    message: format!("no namespace {name}"),
                }),
            },
            KernelStep::CreateTap(tap) => self.create_tap(tap, &operation).await,
            KernelStep::DeleteTap(tap) => self
                .taps
                .delete_tap(&tap.name)
                .map_err(|message| KernelError::Tap { operation, message }),
            KernelStep::SetUp {
                namespace,
                link,
                up,
            } => {
                let handle = self.handle(namespace, &operation)?;
                let index = index(&handle, link, &operation).await?;
                let builder = LinkUnspec::new_with_index(index);
                let message = if *up { builder.up() } else { builder.down() }.build();
                handle.link().set(message).execute().await.map_err(netlink)
            }
            KernelStep::AddAddress(Address {
                namespace,
                link,
                addr,
            }) => {
                let handle = self.handle(namespace, &operation)?;
                let index = index(&handle, link, &operation).await?;
                handle
                    .address()
                    .add(index, addr.addr(), addr.prefix_len())
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::DelAddress(Address {
                namespace,
                link,
                addr,
            }) => {
                let handle = self.handle(namespace, &operation)?;
                let index = index(&handle, link, &operation).await?;
                let found = handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_filter(|message| std::future::ready(address_of(message) == Some(*addr)))
                    .try_next()
                    .await
                    .map_err(netlink)?;
                let Some(message) = found else {
                    return Err(KernelError::NoSuchAddress { operation });
                };
                handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::AddRoute(route) => {
                let handle = self.handle(&route.namespace, &operation)?;
                let message = route_message(route, &operation)?;
                handle.route().add(message).execute().await.map_err(netlink)
            }
            KernelStep::DelRoute(route) => {
                let handle = self.handle(&route.namespace, &operation)?;
                let message = route_message(route, &operation)?;
                handle.route().del(message).execute().await.map_err(netlink)
            }
        }
    }

    fn create_namespace(&self, name: &str, operation: &str) -> Result<(), KernelError> {
        if self.instances().contains_key(name) {
            return Err(KernelError::Namespace {
                operation: operation.to_string(),
                message: format!("namespace {name} exists"),
            });
        }
        let system = |source| KernelError::System {
            operation: operation.to_string(),
            source,
        };
        let namespace = NetNamespace::create().map_err(system)?;
        let runtime = self.runtime.clone();
        let netlink = namespace
            .run(move || Netlink::open(&runtime))
            .map_err(system)?;
        self.instances()
            .insert(name.to_string(), Arc::new(Instance { namespace, netlink }));
        Ok(())
    }

    /// The data plane creates the TAP; the executor names what it is (alias), gives it its MAC,
    /// moves it into its namespace and turns forwarding on for it there. A failure after the
    /// TAP exists removes it again, so the step is whole or nothing.
    async fn create_tap(&self, tap: &Tap, operation: &str) -> Result<(), KernelError> {
        self.taps
            .create_tap(&tap.name)
            .map_err(|message| KernelError::Tap {
                operation: operation.to_string(),
                message,
            })?;
        let configured = self.configure_tap(tap, operation).await;
        if configured.is_err() {
            if let Err(message) = self.taps.delete_tap(&tap.name) {
                tracing::warn!(tap = %tap.name, %message, "could not remove a half-made TAP");
            }
        }
        configured
    }

    async fn configure_tap(&self, tap: &Tap, operation: &str) -> Result<(), KernelError> {
        let netlink = |source| KernelError::Netlink {
            operation: operation.to_string(),
            source,
        };
        let index = index(&self.root.handle, &tap.name, operation).await?;
        let mut message = LinkUnspec::new_with_index(index)
            .address(tap.mac.to_vec())
            .alias(tap.alias.clone());
        let instance =
            match &tap.namespace {
                Some(name) => {
                    let instance = self.instances().get(name).cloned().ok_or_else(|| {
                        KernelError::Namespace {
                            operation: operation.to_string(),
                            message: format!("no namespace {name}"),
                        }
                    })?;
                    message = message.setns_by_fd(instance.namespace.raw_fd());
                    Some(instance)
                }
                None => None,
            };
        self.root
            .handle
            .link()
            .set(message.build())
            .execute()
            .await
            .map_err(netlink)?;
        let name = tap.name.clone();
        let forwarding = move || {
            // IPv4 forwarding follows the receiving interface's flag; IPv6 routes where the
            // namespace forwards (on in a VPRN's; the host's own choice in the daemon's).
            write_sysctl(&format!("net/ipv4/conf/{name}/forwarding"), "1")?;
            write_sysctl(&format!("net/ipv4/conf/{name}/rp_filter"), "0")?;
            // The kernel flushes IPv6 addresses of a link that goes down unless told to keep
            // them; plans (and their inverses) treat addresses and link state apart.
            write_sysctl(&format!("net/ipv6/conf/{name}/keep_addr_on_down"), "1")
        };
        let system = |source| KernelError::System {
            operation: operation.to_string(),
            source,
        };
        match instance {
            Some(instance) => instance.namespace.run(forwarding).map_err(system),
            None => forwarding().map_err(system),
        }
    }

    /// The routes with [`ROUTE_PROTOCOL`] in the daemon's own namespace (what a crash can leave:
    /// see [`reconcile`](brasa_services::kernel::reconcile)).
    pub async fn brasa_routes(&self) -> Result<Vec<Route>, KernelError> {
        let mut routes = Vec::new();
        let dumps = [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ];
        for dump in dumps {
            let messages: Vec<RouteMessage> = self
                .root
                .handle
                .route()
                .get(dump)
                .execute()
                .try_collect()
                .await
                .map_err(|source| KernelError::Netlink {
                    operation: "list routes".to_string(),
                    source,
                })?;
            routes.extend(
                messages
                    .iter()
                    .filter(|message| {
                        message.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL)
                    })
                    .filter_map(route_of),
            );
        }
        Ok(routes)
    }
}

async fn index(handle: &Handle, name: &str, operation: &str) -> Result<u32, KernelError> {
    let found = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(Some(message)) => Ok(message.header.index),
        // The kernel answers ENODEV for an unknown name.
        Ok(None) | Err(rtnetlink::Error::NetlinkError(_)) => Err(KernelError::NoSuchLink {
            operation: operation.to_string(),
            name: name.to_string(),
        }),
        Err(source) => Err(KernelError::Netlink {
            operation: operation.to_string(),
            source,
        }),
    }
}

/// The address and prefix length of an address message (IFA_LOCAL where the kernel gives one:
/// on point-to-point links IFA_ADDRESS is the peer).
fn address_of(message: &AddressMessage) -> Option<IpNet> {
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => address = Some(*ip),
            AddressAttribute::Address(ip) if address.is_none() => address = Some(*ip),
            _ => {}
        }
    }
    IpNet::new(address?, message.header.prefix_len).ok()
}

fn route_message(route: &Route, operation: &str) -> Result<RouteMessage, KernelError> {
    let invalid = |message: String| KernelError::InvalidRoute {
        operation: operation.to_string(),
        message,
    };
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(route.prefix.network(), route.prefix.prefix_len())
        .map_err(|err| invalid(err.to_string()))?
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
    match route.via {
        RouteVia::Gateway(gateway) => {
            builder = builder
                .gateway(gateway)
                .map_err(|err| invalid(err.to_string()))?;
        }
        RouteVia::Blackhole => builder = builder.kind(RouteType::BlackHole),
    }
    Ok(builder.build())
}

/// A route of the daemon's own namespace, as the kernel lists it.
fn route_of(message: &RouteMessage) -> Option<Route> {
    let mut destination = None;
    let mut gateway = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => destination = ip_of(address),
            RouteAttribute::Gateway(address) => gateway = ip_of(address),
            _ => {}
        }
    }
    // A default route carries no destination attribute.
    let unspecified = match message.header.address_family {
        AddressFamily::Inet => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        AddressFamily::Inet6 => Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        _ => None,
    };
    let destination = destination.or(unspecified)?;
    let prefix = IpNet::new(destination, message.header.destination_prefix_length).ok()?;
    let via = if message.header.kind == RouteType::BlackHole {
        RouteVia::Blackhole
    } else {
        RouteVia::Gateway(gateway?)
    };
    Some(Route {
        namespace: None,
        prefix,
        via,
    })
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Where the packets of a GRE tunnel leave this host towards its far end, as the kernel's
/// routes and neighbours say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelHop {
    /// The outgoing interface.
    pub interface: String,
    /// The MAC address of the next hop (the far end itself, or the gateway towards it).
    pub mac: [u8; 6],
    /// The interface's MTU: the largest outer IP packet.
    pub mtu: u16,
}

/// How long [`Kernel::tunnel_hop`] waits for the kernel to resolve a next hop it did not know.
const NEIGHBOUR_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Kernel {
    /// Resolves the next hop of a GRE tunnel from `local` (which must be one of this host's
    /// addresses) to `remote` in the daemon's namespace: the kernel's route to `remote` gives
    /// the interface and gateway, its neighbour table the gateway's MAC. A next hop the kernel
    /// has not resolved yet is made to resolve by a datagram to `remote`'s discard port (9),
    /// then awaited for up to three seconds.
    pub async fn tunnel_hop(&self, local: IpAddr, remote: IpAddr) -> Result<TunnelHop, String> {
        let handle = &self.root.handle;
        let fail = |what: &str, err: rtnetlink::Error| format!("{what}: {err}");
        let mut addresses = handle.address().get().set_address_filter(local).execute();
        if addresses
            .try_next()
            .await
            .map_err(|err| fail("reading addresses", err))?
            .is_none()
        {
            return Err(format!("{local} is not an address of this host"));
        }
        let query = match remote {
            IpAddr::V4(v4) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .build(),
        };
        let route = handle
            .route()
            .get(query)
            .execute()
            .try_next()
            .await
            .map_err(|err| fail(&format!("no route to {remote}"), err))?
            .ok_or_else(|| format!("no route to {remote}"))?;
        let mut oif = None;
        let mut gateway = remote;
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Oif(index) => oif = Some(*index),
                RouteAttribute::Gateway(RouteAddress::Inet(v4)) => gateway = IpAddr::V4(*v4),
                RouteAttribute::Gateway(RouteAddress::Inet6(v6)) => gateway = IpAddr::V6(*v6),
                _ => {}
            }
        }
        let oif = oif.ok_or_else(|| format!("the route to {remote} has no interface"))?;
        let link = handle
            .link()
            .get()
            .match_index(oif)
            .execute()
            .try_next()
            .await
            .map_err(|err| fail("reading the outgoing interface", err))?
            .ok_or_else(|| format!("no interface with index {oif}"))?;
        let mut interface = String::new();
        let mut mtu = 1500;
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::IfName(name) => interface = name.clone(),
                LinkAttribute::Mtu(value) => mtu = u16::try_from(*value).unwrap_or(u16::MAX),
                _ => {}
            }
        }
        let deadline = tokio::time::Instant::now() + NEIGHBOUR_WAIT;
        let mut provoked = false;
        loop {
            if let Some(mac) = neighbour_mac(handle, oif, gateway).await? {
                return Ok(TunnelHop {
                    interface,
                    mac,
                    mtu,
                });
            }
            if !provoked {
                provoked = true;
                // Any datagram makes the kernel resolve the next hop; port 9 discards it.
                if let Ok(socket) = std::net::UdpSocket::bind((local, 0)) {
                    let _ = socket.send_to(&[], (remote, 9));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the next hop {gateway} on {interface} did not answer ARP/ND"
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// The MAC address of `address` on interface `index`, if the kernel has a usable entry.
async fn neighbour_mac(
    handle: &Handle,
    index: u32,
    address: IpAddr,
) -> Result<Option<[u8; 6]>, String> {
    use rtnetlink::packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourState,
    };
    let family = match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let mut entries = handle
        .neighbours()
        .get()
        .set_address_family(family)
        .execute();
    while let Some(entry) = entries
        .try_next()
        .await
        .map_err(|err| format!("reading the neighbour table: {err}"))?
    {
        if entry.header.ifindex != index
            || matches!(
                entry.header.state,
                NeighbourState::Incomplete | NeighbourState::Failed | NeighbourState::None
            )
        {
            continue;
        }
        let mut destination = None;
        let mut mac = None;
        for attribute in &entry.attributes {
            match attribute {
                NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                    destination = Some(IpAddr::V4(*v4));
                }
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                    destination = Some(IpAddr::V6(*v6));
                }
                NeighbourAttribute::LinkLayerAddress(bytes) => {
                    mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
                }
                _ => {}
            }
        }
        if destination == Some(address) {
            if let Some(mac) = mac {
                return Ok(Some(mac));
            }
        }
    }
    Ok(None)
}
