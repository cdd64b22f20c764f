//! Every link of a node: peer admission by address, and the routing of local changes to the
//! link that carries their cache.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    Inbound, InboundStatus, LinkError, Outbound, OutboundStatus, SyncConfig, SyncConfigError,
};
use crate::{CacheEvent, McsPeer, Millis};

/// Identifies one configured peer of a [`SyncNode`] (its position in [`SyncConfig::peers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(usize);

impl PeerId {
    /// The peer's position in [`SyncConfig::peers`].
    pub fn index(self) -> usize {
        self.0
    }
}

#[derive(Debug)]
struct Peer {
    address: IpAddr,
    tags: Vec<String>,
    outbound: Outbound,
    inbound: Inbound,
}

/// One peer as the operator sees it: both directions of its link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: IpAddr,
    /// The sync tags this node pairs with it.
    pub sync_tags: Vec<String>,
    /// This node's stream to the peer: what it sends.
    pub outbound: OutboundStatus,
    /// The peer's stream to this node: what it applies.
    pub inbound: InboundStatus,
}

/// Every link of the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// This node's id.
    pub node_id: u32,
    /// Streams refused because their source is no configured peer.
    pub unknown_peer_streams: u64,
    /// The source of the last such stream.
    pub last_unknown_peer: Option<IpAddr>,
    /// Per peer.
    pub peers: Vec<PeerStatus>,
}

/// The multi-chassis sync state of a node: for every peer an [`Outbound`] and an [`Inbound`]
/// link. See the [module documentation](super).
#[derive(Debug)]
pub struct SyncNode {
    node_id: u32,
    peers: Vec<Peer>,
    /// Policy → (peer, sync tag).
    routes: BTreeMap<String, (usize, String)>,
    unknown_peer_streams: u64,
    last_unknown_peer: Option<IpAddr>,
}

impl SyncNode {
    /// Checks `config` and builds the links, all down.
    pub fn new(config: SyncConfig) -> Result<SyncNode, SyncConfigError> {
        let limits = &config.limits;
        for (name, value) in [
            ("batch", limits.batch),
            ("window", limits.window),
            ("queue", limits.queue),
        ] {
            if value == 0 {
                return Err(SyncConfigError::ZeroLimit(name));
            }
        }
        let mut peers: Vec<Peer> = Vec::with_capacity(config.peers.len());
        let mut routes = BTreeMap::new();
        for spec in config.peers {
            let address = spec.address.to_canonical();
            if peers.iter().any(|p| p.address == address) {
                return Err(SyncConfigError::DuplicatePeer(address));
            }
            let mut caches = spec.caches;
            caches.sort();
            for cache in &caches {
                if cache.tag.is_empty() || cache.tag.len() > McsPeer::MAX_SYNC_TAG {
                    return Err(SyncConfigError::SyncTag(cache.tag.clone()));
                }
            }
            if let Some(pair) = caches.windows(2).find(|pair| pair[0].tag == pair[1].tag) {
                return Err(SyncConfigError::DuplicateTag {
                    peer: address,
                    tag: pair[0].tag.clone(),
                });
            }
            for cache in &caches {
                routes.insert(cache.policy.clone(), (peers.len(), cache.tag.clone()));
            }
            peers.push(Peer {
                address,
                tags: super::tag_set(&caches),
                outbound: Outbound::new(
                    config.node_id,
                    config.key.clone(),
                    caches.clone(),
                    config.limits.clone(),
                ),
                inbound: Inbound::new(
                    config.node_id,
                    config.key.clone(),
                    caches,
                    config.limits.clone(),
                ),
            });
        }
        Ok(SyncNode {
            node_id: config.node_id,
            peers,
            routes,
            unknown_peer_streams: 0,
            last_unknown_peer: None,
        })
    }

    /// Every peer with its address.
    pub fn peers(&self) -> impl Iterator<Item = (PeerId, IpAddr)> + '_ {
        self.peers
            .iter()
            .enumerate()
            .map(|(index, peer)| (PeerId(index), peer.address))
    }

    /// The sending half of `peer`'s link.
    pub fn outbound(&mut self, peer: PeerId) -> &mut Outbound {
        &mut self.peers[peer.0].outbound
    }

    /// The receiving half of `peer`'s link.
    pub fn inbound(&mut self, peer: PeerId) -> &mut Inbound {
        &mut self.peers[peer.0].inbound
    }

    /// The peer a stream from `remote` belongs to: only configured peers are admitted (by
    /// source address here; by the shared key in the handshake). `::ffff:a.b.c.d` is
    /// `a.b.c.d`.
    pub fn admit(&mut self, remote: IpAddr) -> Result<PeerId, LinkError> {
        let remote = remote.to_canonical();
        match self.peers.iter().position(|p| p.address == remote) {
            Some(index) => Ok(PeerId(index)),
            None => {
                self.unknown_peer_streams += 1;
                self.last_unknown_peer = Some(remote);
                Err(LinkError::UnknownPeer(remote))
            }
        }
    }

    /// Queues local changes of `policy`'s cache for the peer that shares it. Returns the peer
    /// whose shell has something new to send (none when the policy is not replicated or its
    /// link has no session: the next session's resync carries the changes).
    pub fn queue(&mut self, now: Millis, policy: &str, events: Vec<CacheEvent>) -> Option<PeerId> {
        let (index, tag) = self.routes.get(policy)?;
        self.peers[*index]
            .outbound
            .queue(now, tag, events)
            .then_some(PeerId(*index))
    }

    /// Every link as the operator sees it.
    pub fn status(&self) -> SyncStatus {
        SyncStatus {
            node_id: self.node_id,
            unknown_peer_streams: self.unknown_peer_streams,
            last_unknown_peer: self.last_unknown_peer,
            peers: self
                .peers
                .iter()
                .map(|peer| PeerStatus {
                    address: peer.address,
                    sync_tags: peer.tags.clone(),
                    outbound: peer.outbound.status(),
                    inbound: peer.inbound.status(),
                })
                .collect(),
        }
    }
}
