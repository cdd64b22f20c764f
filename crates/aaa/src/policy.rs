//! Hook points: every packet passes the server's [`Policy`] at (message type, direction).
//!
//! Requests pass at `egress` (towards the AAA server, before upstream selection or local
//! answering); replies pass at `ingress` (from the AAA server, before they are signed for the
//! NAS). A policy may read and modify attributes, or drop the packet. Encrypted attributes are in
//! the NAS-side context at both points (the client's secret and the NAS's request authenticator),
//! so a policy never deals with upstream secrets.

use brasa_radius::{AttrId, Code, Dictionary, Message, Pair};

/// Which way a packet travels, named as on the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the NAS towards the AAA server (requests).
    Egress,
    /// From the AAA server towards the NAS (replies).
    Ingress,
}

impl Direction {
    /// `egress` or `ingress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }
}

/// What a hook decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on with the (possibly modified) packet.
    Continue,
    /// Discard the packet; the exchange ends here and is counted as dropped by policy.
    Drop,
}

/// Everything a policy sees at a hook.
pub struct HookContext<'a> {
    /// The packet's code (its message type).
    pub code: Code,
    /// Where it is going.
    pub direction: Direction,
    /// The packet, modifiable.
    pub packet: &'a mut Message,
    /// For replies, the NAS's request they answer.
    pub request: Option<&'a Message>,
    /// The dictionary in force.
    pub dictionary: &'a Dictionary,
    /// Name of the NAS client.
    pub client: &'a str,
    /// Name of the server (listener) that received the request.
    pub server: &'a str,
    /// The secret encrypted attributes are hidden with at this point.
    pub secret: &'a [u8],
    /// The authenticator encrypted attributes are hidden with at this point.
    pub authenticator: [u8; 16],
}

/// A packet policy. Implementations must be quick: they run on the RADIUS path.
pub trait Policy: Send + Sync {
    /// Name shown in statistics and logs.
    fn name(&self) -> &str;
    /// Inspects or changes the packet at one hook.
    fn apply(&self, context: &mut HookContext<'_>) -> Verdict;
}

/// One rule of the built-in attribute rewrite policy.
#[derive(Clone, Debug, Default)]
pub struct RewriteRule {
    /// Message types the rule applies to; empty means all.
    pub codes: Vec<Code>,
    /// Direction the rule applies to; `None` means both.
    pub direction: Option<Direction>,
    /// Only for requests from (or replies to) these clients; empty means all.
    pub clients: Vec<String>,
    /// Attributes removed (every instance).
    pub remove: Vec<AttrId>,
    /// Pairs that replace every existing instance of their attribute.
    pub set: Vec<Pair>,
    /// Pairs appended.
    pub add: Vec<Pair>,
    /// Drop matching packets (after the edits, which then do not matter).
    pub drop: bool,
}

/// The built-in policy: an ordered list of [`RewriteRule`]s, all matching rules applied in order.
pub struct RewritePolicy {
    name: String,
    rules: Vec<RewriteRule>,
}

impl RewritePolicy {
    /// A policy named `name` with `rules`.
    pub fn new(name: impl Into<String>, rules: Vec<RewriteRule>) -> Self {
        Self {
            name: name.into(),
            rules,
        }
    }
}

impl Policy for RewritePolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&self, context: &mut HookContext<'_>) -> Verdict {
        for rule in &self.rules {
            let matches = (rule.codes.is_empty() || rule.codes.contains(&context.code))
                && rule.direction.is_none_or(|d| d == context.direction)
                && (rule.clients.is_empty() || rule.clients.iter().any(|c| c == context.client));
            if !matches {
                continue;
            }
            if rule.drop {
                return Verdict::Drop;
            }
            for id in &rule.remove {
                remove_attribute(context.packet, context.dictionary, id);
            }
            for pair in &rule.set {
                remove_attribute(context.packet, context.dictionary, &pair.attr);
            }
            for pair in rule.set.iter().chain(&rule.add) {
                if let Err(err) = context.dictionary.add_pair(
                    context.packet,
                    pair,
                    context.secret,
                    &context.authenticator,
                ) {
                    // Pairs were validated when the config was loaded; a failure here means the
                    // packet is full (4096 bytes), which the encoder reports later as well.
                    tracing::warn!(policy = %self.name, %err, "rewrite could not add an attribute");
                }
            }
        }
        Verdict::Continue
    }
}

/// Removes every instance of the attribute `id` from `packet`; returns how many were removed.
/// Sub-TLVs and server-internal attributes are not removable on their own (0).
pub fn remove_attribute(packet: &mut Message, dictionary: &Dictionary, id: &AttrId) -> usize {
    match *id {
        AttrId::Tlv { .. } | AttrId::Internal(_) => 0,
        AttrId::Standard(typ) => packet.remove(typ),
        AttrId::Vendor { vendor, typ } => packet.remove_vsa(dictionary, vendor, typ),
        AttrId::Extended { base, typ } => {
            let before = packet.attributes.len();
            packet
                .attributes
                .retain(|attr| !(attr.typ == base && attr.value.first() == Some(&typ)));
            before - packet.attributes.len()
        }
        AttrId::ExtendedVendor { base, vendor, typ } => {
            let before = packet.attributes.len();
            let vendor_bytes = vendor.to_be_bytes();
            // Long-extended attributes (245, 246) carry a flags byte after the extended type.
            let skip = usize::from(base >= 245);
            packet.attributes.retain(|attr| {
                let v = &attr.value;
                let matches = v.first() == Some(&26)
                    && v.get(1 + skip..5 + skip) == Some(&vendor_bytes[..])
                    && v.get(5 + skip) == Some(&typ);
                !(attr.typ == base && matches)
            });
            before - packet.attributes.len()
        }
    }
}
