//! brasa-services' kernel plan, executed over rtnetlink.
//!
//! [`Kernel`] performs [`KernelStep`]s one by one. [`Kernel::apply`] runs a whole
//! [`KernelPlan`] and, when a step fails, runs the inverses of the steps that succeeded (in
//! reverse) before it reports the failure: the kernel ends as it was. [`Kernel::snapshot`] reads
//! what [`reconcile`](brasa_services::kernel::reconcile) needs after a crash: every link (name,
//! alias, master, state, addresses) and the routes brasa installed (protocol
//! [`ROUTE_PROTOCOL`]).
//!
//! The netlink socket belongs to the network namespace of the thread that calls
//! [`Kernel::connect`]; everything it does afterwards happens in that namespace.

use std::collections::HashMap;
use std::net::IpAddr;

use brasa_services::kernel::{
    ExistingLink, KernelPlan, KernelStep, LinkKind, Route, RouteVia, VlanProtocol, ROUTE_PROTOCOL,
};
use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteType,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, LinkVlan, LinkVrf, RouteMessageBuilder};

/// Why a kernel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// The kernel refused the operation (or the request could not be sent).
    #[error("{operation}: {source}")]
    Netlink {
        /// What was being done, e.g. `create brsq… (brasa vlan eth1:100)`.
        operation: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// A link the step names does not exist.
    #[error("{operation}: no link named {name}")]
    NoSuchLink {
        /// What was being done.
        operation: String,
        /// The missing link.
        name: String,
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
    /// the rollback sequence (the kernel then holds part of the plan; a restart's reconcile
    /// cleans it).
    pub rollback: Result<(), (usize, String)>,
}

fn rollback_note(rollback: &Result<(), (usize, String)>) -> String {
    match rollback {
        Ok(()) => " (rolled back)".to_string(),
        Err((index, error)) => format!(" (rollback failed at its step {}: {error})", index + 1),
    }
}

/// An rtnetlink connection in one network namespace.
pub struct Kernel {
    handle: Handle,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Kernel {
    /// Opens a netlink socket in the calling thread's network namespace. Must run inside a
    /// tokio runtime (the connection is a task of it).
    pub fn connect() -> Result<Self, KernelError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(KernelError::Connect)?;
        let connection = tokio::spawn(connection);
        Ok(Self { handle, connection })
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

    /// Performs one step.
    pub async fn execute(&self, step: &KernelStep) -> Result<(), KernelError> {
        let operation = step.to_string();
        let netlink = |source| KernelError::Netlink {
            operation: operation.clone(),
            source,
        };
        match step {
            KernelStep::CreateLink { name, alias, kind } => {
                let message = match kind {
                    LinkKind::Vrf { table } => LinkVrf::new(name, *table).alias(alias).build(),
                    LinkKind::Vlan {
                        parent,
                        protocol,
                        id,
                    } => {
                        let parent = self.index(parent, &operation).await?;
                        LinkVlan::new(name, parent, *id)
                            .protocol(vlan_protocol(*protocol))
                            .alias(alias)
                            .build()
                    }
                    // A port exists already: the plan never creates one.
                    LinkKind::Port => return Ok(()),
                };
                self.handle
                    .link()
                    .add(message)
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::DeleteLink { name, .. } => {
                let index = self.index(name, &operation).await?;
                self.handle
                    .link()
                    .del(index)
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::SetMaster { link, master, .. } => {
                let index = self.index(link, &operation).await?;
                let builder = LinkUnspec::new_with_index(index);
                let message = match master {
                    Some(master) => builder
                        .controller(self.index(master, &operation).await?)
                        .build(),
                    None => builder.nocontroller().build(),
                };
                self.handle
                    .link()
                    .set(message)
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::SetUp { link, up } => {
                let index = self.index(link, &operation).await?;
                let builder = LinkUnspec::new_with_index(index);
                let message = if *up { builder.up() } else { builder.down() }.build();
                self.handle
                    .link()
                    .set(message)
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::AddAddress { link, addr } => {
                let index = self.index(link, &operation).await?;
                self.handle
                    .address()
                    .add(index, addr.addr(), addr.prefix_len())
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::DelAddress { link, addr } => {
                let index = self.index(link, &operation).await?;
                let found = self
                    .handle
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
                self.handle
                    .address()
                    .del(message)
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::AddRoute(route) => {
                let message = route_message(route, &operation)?;
                self.handle
                    .route()
                    .add(message)
                    .execute()
                    .await
                    .map_err(netlink)
            }
            KernelStep::DelRoute(route) => {
                let message = route_message(route, &operation)?;
                self.handle
                    .route()
                    .del(message)
                    .execute()
                    .await
                    .map_err(netlink)
            }
        }
    }

    /// Every link with what [`reconcile`](brasa_services::kernel::reconcile) needs, and the
    /// routes with [`ROUTE_PROTOCOL`].
    pub async fn snapshot(&self) -> Result<(Vec<ExistingLink>, Vec<Route>), KernelError> {
        let operation = "list links".to_string();
        let messages: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| KernelError::Netlink {
                operation: operation.clone(),
                source,
            })?;
        let names: HashMap<u32, String> = messages
            .iter()
            .filter_map(|message| Some((message.header.index, link_name(message)?)))
            .collect();
        let addresses: Vec<AddressMessage> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|source| KernelError::Netlink {
                operation: "list addresses".to_string(),
                source,
            })?;
        let mut links = Vec::with_capacity(messages.len());
        for message in &messages {
            let Some(name) = link_name(message) else {
                continue;
            };
            let mut alias = None;
            let mut master = None;
            for attribute in &message.attributes {
                match attribute {
                    LinkAttribute::IfAlias(text) => alias = Some(text.clone()),
                    LinkAttribute::Controller(index) => master = names.get(index).cloned(),
                    _ => {}
                }
            }
            links.push(ExistingLink {
                name,
                alias,
                master,
                up: message.header.flags.contains(LinkFlags::Up),
                addresses: addresses
                    .iter()
                    .filter(|address| address.header.index == message.header.index)
                    .filter_map(address_of)
                    .collect(),
            });
        }
        let routes = self.brasa_routes().await?;
        Ok((links, routes))
    }

    /// The routes of every table that carry [`ROUTE_PROTOCOL`].
    pub async fn brasa_routes(&self) -> Result<Vec<Route>, KernelError> {
        let mut routes = Vec::new();
        let dumps = [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ];
        for dump in dumps {
            let messages: Vec<RouteMessage> = self
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

    async fn index(&self, name: &str, operation: &str) -> Result<u32, KernelError> {
        let found = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        match found {
            Ok(Some(message)) => Ok(message.header.index),
            Ok(None) => Err(KernelError::NoSuchLink {
                operation: operation.to_string(),
                name: name.to_string(),
            }),
            // The kernel answers ENODEV for an unknown name.
            Err(rtnetlink::Error::NetlinkError(message))
                if message.code.map(|code| -code.get()) == Some(libc_enodev()) =>
            {
                Err(KernelError::NoSuchLink {
                    operation: operation.to_string(),
                    name: name.to_string(),
                })
            }
            Err(source) => Err(KernelError::Netlink {
                operation: operation.to_string(),
                source,
            }),
        }
    }
}

/// ENODEV, without a libc dependency for one constant.
const fn libc_enodev() -> i32 {
    19
}

fn vlan_protocol(protocol: VlanProtocol) -> rtnetlink::packet_route::link::VlanProtocol {
    use rtnetlink::packet_route::link::VlanProtocol as Wire;
    match protocol {
        VlanProtocol::Dot1q => Wire::Ieee8021Q,
        VlanProtocol::Dot1ad => Wire::Ieee8021Ad,
    }
}

fn link_name(message: &LinkMessage) -> Option<String> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
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
        .table_id(route.table)
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

fn route_of(message: &RouteMessage) -> Option<Route> {
    let mut destination = None;
    let mut gateway = None;
    let mut table = u32::from(message.header.table);
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => destination = ip_of(address),
            RouteAttribute::Gateway(address) => gateway = ip_of(address),
            RouteAttribute::Table(id) => table = *id,
            _ => {}
        }
    }
    // A default route carries no destination attribute.
    let destination = destination.or_else(|| match message.header.address_family {
        AddressFamily::Inet => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        AddressFamily::Inet6 => Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        _ => None,
    })?;
    let prefix = IpNet::new(destination, message.header.destination_prefix_length).ok()?;
    let via = if message.header.kind == RouteType::BlackHole {
        RouteVia::Blackhole
    } else {
        RouteVia::Gateway(gateway?)
    };
    Some(Route { table, prefix, via })
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}
