//! The handshake's checks and its challenge–response proofs.
//!
//! Both proofs are HMAC-SHA256 under the shared key over the *transcript*: both Hellos in a
//! fixed binary layout (protocol version; then per side node id, nonce and sync tags, dialler
//! first). A label tells the acceptor's proof from the dialler's, so neither can be reflected
//! back as the other; each side's fresh nonce makes a recorded proof useless for a new stream;
//! and because the tags are in the transcript, a tag list altered on the way fails the proof.

use hmac::{Hmac, Mac};

use sha2::Sha256;

use super::{proto, LinkError, ProtocolError, SyncKey};
use crate::McsPeer;

/// The protocol version this module speaks (`Hello.protocol_version`).
pub const PROTOCOL_VERSION: u32 = 1;
/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 32;
/// A handshake nonce: random bytes the shell draws for every stream.
pub type Nonce = [u8; NONCE_LEN];

/// Most sync tags a Hello may carry (a node pairs at most this many caches with one peer).
const MAX_TAGS: usize = 4096;

const LABEL: &[u8] = b"brasa cache-sync 1\0";

/// Which side's proof.
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    Dialler,
    Acceptor,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Dialler => b"dialler\0",
            Role::Acceptor => b"acceptor\0",
        }
    }
}

/// The fields of a Hello that the proofs cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct HelloFields {
    pub(super) node_id: u32,
    pub(super) tags: Vec<String>,
    pub(super) nonce: Nonce,
}

impl HelloFields {
    /// This node's Hello; the acceptor adds its proof.
    pub(super) fn to_proto(&self, proof: Vec<u8>) -> proto::Hello {
        proto::Hello {
            node_id: self.node_id,
            sync_tags: self.tags.clone(),
            nonce: self.nonce.to_vec(),
            proof,
            protocol_version: PROTOCOL_VERSION,
        }
    }

    /// Checks a peer's Hello: version, nonce, tags, and a node id other than `local_node_id`.
    pub(super) fn from_peer(
        hello: &proto::Hello,
        local_node_id: u32,
    ) -> Result<HelloFields, LinkError> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(LinkError::Version {
                peer: hello.protocol_version,
                ours: PROTOCOL_VERSION,
            });
        }
        let nonce: Nonce = hello
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| ProtocolError::Nonce(hello.nonce.len()))?;
        let tags_ok = hello.sync_tags.len() <= MAX_TAGS
            && hello
                .sync_tags
                .iter()
                .all(|t| !t.is_empty() && t.len() <= McsPeer::MAX_SYNC_TAG);
        if !tags_ok {
            return Err(ProtocolError::Tags.into());
        }
        if hello.node_id == local_node_id {
            return Err(LinkError::SameNodeId(hello.node_id));
        }
        Ok(HelloFields {
            node_id: hello.node_id,
            tags: hello.sync_tags.clone(),
            nonce,
        })
    }
}

/// The proof `role` sends for the session whose Hellos are `dialler` and `acceptor`.
pub(super) fn proof(
    key: &SyncKey,
    role: Role,
    dialler: &HelloFields,
    acceptor: &HelloFields,
) -> Vec<u8> {
    transcript_mac(key, role, dialler, acceptor)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Whether `proof` is `role`'s proof for the session (compared in constant time).
pub(super) fn verify(
    key: &SyncKey,
    role: Role,
    dialler: &HelloFields,
    acceptor: &HelloFields,
    proof: &[u8],
) -> bool {
    transcript_mac(key, role, dialler, acceptor)
        .verify_slice(proof)
        .is_ok()
}

fn transcript_mac(
    key: &SyncKey,
    role: Role,
    dialler: &HelloFields,
    acceptor: &HelloFields,
) -> Hmac<Sha256> {
    let mut mac = key.mac().clone();
    mac.update(LABEL);
    mac.update(role.label());
    mac.update(&PROTOCOL_VERSION.to_be_bytes());
    for hello in [dialler, acceptor] {
        mac.update(&hello.node_id.to_be_bytes());
        mac.update(&hello.nonce);
        mac.update(&(hello.tags.len() as u32).to_be_bytes());
        for tag in &hello.tags {
            // Tags are at most 32 bytes (checked), so a one-byte length is unambiguous.
            mac.update(&[tag.len() as u8]);
            mac.update(tag.as_bytes());
        }
    }
    mac
}
