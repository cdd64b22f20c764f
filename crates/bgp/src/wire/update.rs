//! UPDATE (RFC 4271 §4.3) with the path attributes a VPN route needs and the multiprotocol
//! attributes carrying labeled VPN NLRI (RFC 4760, RFC 4364, RFC 4659, RFC 8277).
//!
//! [`Update::parse`] walks the message once, checks every length, and classifies each
//! attribute error the way RFC 7606 prescribes:
//!
//! * **session reset** (an `Err(ProtocolError)`): the attribute list or the NLRI cannot be
//!   located reliably — lengths that overrun, a repeated or malformed MP_REACH_NLRI /
//!   MP_UNREACH_NLRI (flags → (3,4), content → (3,9)), an unrecognised well-known attribute
//!   (3,2), a malformed NLRI or withdrawn-routes field (3,10);
//! * **treat-as-withdraw** ([`Update::treat_as_withdraw`]): a malformed ORIGIN, AS_PATH,
//!   NEXT_HOP, MED, LOCAL_PREF, COMMUNITIES, EXTENDED_COMMUNITIES or LARGE_COMMUNITY, or a
//!   missing mandatory attribute — the NLRI the UPDATE announces are withdrawn instead;
//! * **attribute discard**: a malformed ATOMIC_AGGREGATE, AGGREGATOR, AS4_PATH or
//!   AS4_AGGREGATOR, and repeats of other attributes, are ignored.
//!
//! The NLRI stay borrowed: [`VpnNlriIter`] decodes one route at a time without allocating.

use super::{begin_message, finish_message, MessageType, MAX_MESSAGE_LEN};
use crate::error::ProtocolError;
use crate::types::{
    AfiSafi, Community, ExtendedCommunity, Label, LabelStack, LargeCommunity, RouteDistinguisher,
    VpnFamily, VpnPrefix,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Attribute flag bits.
pub mod flags {
    /// Optional (1) or well-known (0).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial.
    pub const PARTIAL: u8 = 0x20;
    /// Two-byte length.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Path attribute type codes.
pub mod attr {
    /// ORIGIN.
    pub const ORIGIN: u8 = 1;
    /// AS_PATH.
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP.
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC.
    pub const MED: u8 = 4;
    /// LOCAL_PREF.
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE.
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR.
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// EXTENDED_COMMUNITIES (RFC 4360).
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// LARGE_COMMUNITY (RFC 8092).
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// The label value RFC 8277 §2.4 (after RFC 3107) puts in withdrawn labeled NLRI.
pub const WITHDRAWAL_LABEL: [u8; 3] = [0x80, 0x00, 0x00];

/// What the session negotiated that changes how an UPDATE reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateContext {
    /// Both sides announced 4-octet AS: AS_PATH carries 4-byte AS numbers.
    pub four_octet_as: bool,
    /// The Multiple Labels capability was negotiated: a reachable NLRI's label stack ends at
    /// the label with the bottom-of-stack bit; otherwise each NLRI has exactly one label.
    pub multiple_labels: bool,
    /// The session is internal (iBGP): LOCAL_PREF is mandatory.
    pub internal: bool,
}

/// ORIGIN values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Origin {
    /// 0: IGP.
    #[default]
    Igp,
    /// 1: EGP.
    Egp,
    /// 2: INCOMPLETE.
    Incomplete,
}

/// Why an UPDATE's announcements are treated as withdrawals (RFC 7606).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreatAsWithdraw {
    /// A mandatory attribute is missing (its type code).
    Missing(u8),
    /// An attribute is malformed (its type code).
    Malformed(u8),
}

/// The multiprotocol reachable NLRI of an UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpReach<'a> {
    /// The family of the NLRI.
    pub family: AfiSafi,
    /// The next hop: for the VPN families, the address without its zero route distinguisher.
    pub next_hop: Option<IpAddr>,
    /// The NLRI bytes, already validated when `family` is a VPN family.
    pub nlri: &'a [u8],
}

/// The multiprotocol unreachable NLRI of an UPDATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpUnreach<'a> {
    /// The family of the NLRI.
    pub family: AfiSafi,
    /// The NLRI bytes, already validated when `family` is a VPN family.
    pub nlri: &'a [u8],
}

/// A parsed UPDATE: validated slices of the message plus the decoded fixed-size attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update<'a> {
    /// IPv4 unicast withdrawn routes (validated).
    pub withdrawn: &'a [u8],
    /// IPv4 unicast NLRI (validated).
    pub nlri: &'a [u8],
    /// ORIGIN.
    pub origin: Option<Origin>,
    /// AS_PATH body (validated against the AS width of the context).
    pub as_path: Option<&'a [u8]>,
    /// AS4_PATH body (validated; only meaningful on a 2-octet session).
    pub as4_path: Option<&'a [u8]>,
    /// NEXT_HOP (IPv4 unicast only).
    pub next_hop: Option<Ipv4Addr>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// COMMUNITIES body: 4 bytes each.
    pub communities: &'a [u8],
    /// EXTENDED_COMMUNITIES body: 8 bytes each.
    pub extended_communities: &'a [u8],
    /// LARGE_COMMUNITY body: 12 bytes each.
    pub large_communities: &'a [u8],
    /// MP_REACH_NLRI.
    pub mp_reach: Option<MpReach<'a>>,
    /// MP_UNREACH_NLRI.
    pub mp_unreach: Option<MpUnreach<'a>>,
    /// Set when RFC 7606 turns the announcements of this UPDATE into withdrawals.
    pub treat_as_withdraw: Option<TreatAsWithdraw>,
    /// Attributes ignored under RFC 7606's attribute-discard rule (malformed or repeated).
    pub discarded: u8,
}

impl<'a> Update<'a> {
    /// `Some(family)` when this UPDATE is an End-of-RIB marker.
    pub fn end_of_rib(&self) -> Option<AfiSafi> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() || self.mp_reach.is_some() {
            return None;
        }
        match self.mp_unreach {
            Some(u) if u.nlri.is_empty() => Some(u.family),
            Some(_) => None,
            None if self.origin.is_none() && self.as_path.is_none() => Some(AfiSafi::IPV4_UNICAST),
            None => None,
        }
    }

    /// The communities, in order.
    pub fn communities(&self) -> impl Iterator<Item = Community> + '_ {
        self.communities
            .chunks_exact(4)
            .map(|c| Community(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
    }

    /// The extended communities, in order.
    pub fn extended_communities(&self) -> impl Iterator<Item = ExtendedCommunity> + '_ {
        self.extended_communities.chunks_exact(8).map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            ExtendedCommunity(b)
        })
    }

    /// The large communities, in order.
    pub fn large_communities(&self) -> impl Iterator<Item = LargeCommunity> + '_ {
        self.large_communities.chunks_exact(12).map(|c| {
            let word = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
            LargeCommunity {
                global: word(0),
                local1: word(4),
                local2: word(8),
            }
        })
    }

    /// The AS numbers of the path in order (segments flattened), with AS4_PATH merged in on a
    /// 2-octet session as RFC 6793 §4.2.3 describes.
    pub fn as_path_numbers(&self, ctx: &UpdateContext) -> Vec<u32> {
        let width = if ctx.four_octet_as { 4 } else { 2 };
        let path = flatten_as_path(self.as_path.unwrap_or(&[]), width);
        match self.as4_path {
            Some(as4) if !ctx.four_octet_as => {
                let as4 = flatten_as_path(as4, 4);
                if as4.len() > path.len() {
                    return path;
                }
                let mut merged = path[..path.len() - as4.len()].to_vec();
                merged.extend_from_slice(&as4);
                merged
            }
            _ => path,
        }
    }

    /// Reads an UPDATE body under RFC 7606 (see the module documentation).
    pub fn parse(body: &'a [u8], ctx: &UpdateContext) -> Result<Update<'a>, ProtocolError> {
        let list = ProtocolError::MalformedAttributeList;
        let withdrawn_len = body
            .get(..2)
            .ok_or(list("truncated withdrawn routes length"))?;
        let withdrawn_len = usize::from(u16::from_be_bytes([withdrawn_len[0], withdrawn_len[1]]));
        let rest = &body[2..];
        let withdrawn = rest
            .get(..withdrawn_len)
            .ok_or(list("withdrawn routes overrun the message"))?;
        let rest = &rest[withdrawn_len..];
        let attrs_len = rest
            .get(..2)
            .ok_or(list("truncated path attribute length"))?;
        let attrs_len = usize::from(u16::from_be_bytes([attrs_len[0], attrs_len[1]]));
        let rest = &rest[2..];
        let attrs = rest
            .get(..attrs_len)
            .ok_or(list("path attributes overrun the message"))?;
        let nlri = &rest[attrs_len..];
        if !ipv4_nlri_valid(withdrawn) || !ipv4_nlri_valid(nlri) {
            return Err(ProtocolError::InvalidNetworkField);
        }

        let mut update = Update {
            withdrawn,
            nlri,
            ..Update::default()
        };
        let mut seen = [0u64; 4];
        let mut pos = 0;
        while pos < attrs.len() {
            let (flags_byte, code) = match attrs.get(pos..pos + 2) {
                Some(h) => (h[0], h[1]),
                None => return Err(list("truncated attribute header")),
            };
            let (len, header) = if flags_byte & flags::EXTENDED_LENGTH != 0 {
                let b = attrs
                    .get(pos + 2..pos + 4)
                    .ok_or(list("truncated attribute length"))?;
                (usize::from(u16::from_be_bytes([b[0], b[1]])), 4)
            } else {
                (
                    usize::from(
                        *attrs
                            .get(pos + 2)
                            .ok_or(list("truncated attribute length"))?,
                    ),
                    3,
                )
            };
            let whole = attrs
                .get(pos..pos + header + len)
                .ok_or(list("attribute overruns the list"))?;
            let value = &whole[header..];
            pos += header + len;

            let bit = 1u64 << (code % 64);
            let slot = &mut seen[usize::from(code / 64)];
            let repeated = *slot & bit != 0;
            *slot |= bit;
            if repeated {
                if matches!(code, attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI) {
                    return Err(list("MP_REACH_NLRI or MP_UNREACH_NLRI repeated"));
                }
                update.discarded = update.discarded.saturating_add(1);
                continue;
            }
            update.read_attribute(flags_byte, code, value, whole, ctx)?;
        }
        update.check_mandatory(ctx);
        Ok(update)
    }

    fn read_attribute(
        &mut self,
        flags_byte: u8,
        code: u8,
        value: &'a [u8],
        whole: &[u8],
        ctx: &UpdateContext,
    ) -> Result<(), ProtocolError> {
        const WELL_KNOWN: u8 = flags::TRANSITIVE;
        const OPTIONAL_TRANSITIVE: u8 = flags::OPTIONAL | flags::TRANSITIVE;
        const OPTIONAL_NON_TRANSITIVE: u8 = flags::OPTIONAL;
        let kind = flags_byte & (flags::OPTIONAL | flags::TRANSITIVE);
        let u32_value = || <[u8; 4]>::try_from(value).ok().map(u32::from_be_bytes);
        let withdraw = |u: &mut Self| {
            u.treat_as_withdraw
                .get_or_insert(TreatAsWithdraw::Malformed(code));
        };
        match code {
            attr::ORIGIN => match value {
                [o @ 0..=2] if kind == WELL_KNOWN => {
                    self.origin =
                        Some([Origin::Igp, Origin::Egp, Origin::Incomplete][usize::from(*o)])
                }
                _ => withdraw(self),
            },
            attr::AS_PATH => {
                if kind == WELL_KNOWN && as_path_valid(value, if ctx.four_octet_as { 4 } else { 2 })
                {
                    self.as_path = Some(value);
                } else {
                    withdraw(self);
                }
            }
            attr::NEXT_HOP => match <[u8; 4]>::try_from(value) {
                Ok(a) if kind == WELL_KNOWN => self.next_hop = Some(Ipv4Addr::from(a)),
                _ => withdraw(self),
            },
            attr::MED => match u32_value() {
                Some(v) if kind == OPTIONAL_NON_TRANSITIVE => self.med = Some(v),
                _ => withdraw(self),
            },
            attr::LOCAL_PREF => match u32_value() {
                Some(v) if kind == WELL_KNOWN => self.local_pref = Some(v),
                _ => withdraw(self),
            },
            attr::COMMUNITIES | attr::EXTENDED_COMMUNITIES | attr::LARGE_COMMUNITY => {
                let unit = match code {
                    attr::COMMUNITIES => 4,
                    attr::EXTENDED_COMMUNITIES => 8,
                    _ => 12,
                };
                if kind != OPTIONAL_TRANSITIVE
                    || value.is_empty()
                    || !value.len().is_multiple_of(unit)
                {
                    withdraw(self);
                } else {
                    *match code {
                        attr::COMMUNITIES => &mut self.communities,
                        attr::EXTENDED_COMMUNITIES => &mut self.extended_communities,
                        _ => &mut self.large_communities,
                    } = value;
                }
            }
            attr::AS4_PATH => {
                if kind == OPTIONAL_TRANSITIVE && as_path_valid(value, 4) {
                    self.as4_path = Some(value);
                } else {
                    self.discarded = self.discarded.saturating_add(1);
                }
            }
            attr::ATOMIC_AGGREGATE | attr::AGGREGATOR | attr::AS4_AGGREGATOR => {
                // Not used by the LEG; still checked so that a malformed one is counted.
                let ok = match code {
                    attr::ATOMIC_AGGREGATE => kind == WELL_KNOWN && value.is_empty(),
                    attr::AGGREGATOR => {
                        kind == OPTIONAL_TRANSITIVE
                            && value.len() == if ctx.four_octet_as { 8 } else { 6 }
                    }
                    _ => kind == OPTIONAL_TRANSITIVE && value.len() == 8,
                };
                if !ok {
                    self.discarded = self.discarded.saturating_add(1);
                }
            }
            attr::MP_REACH_NLRI | attr::MP_UNREACH_NLRI => {
                if kind != OPTIONAL_NON_TRANSITIVE {
                    return Err(ProtocolError::AttributeFlags(whole.to_vec()));
                }
                let bad = || ProtocolError::OptionalAttribute(whole.to_vec());
                if code == attr::MP_REACH_NLRI {
                    self.mp_reach = Some(parse_mp_reach(value, ctx).ok_or_else(bad)?);
                } else {
                    self.mp_unreach = Some(parse_mp_unreach(value).ok_or_else(bad)?);
                }
            }
            _ if flags_byte & flags::OPTIONAL == 0 => {
                return Err(ProtocolError::UnrecognizedWellKnownAttribute(
                    whole.to_vec(),
                ))
            }
            // Unknown optional attributes: this speaker re-advertises nothing, so it has no use
            // for them and no duty to pass them on.
            _ => {}
        }
        Ok(())
    }

    fn check_mandatory(&mut self, ctx: &UpdateContext) {
        let announces_vpn = self.mp_reach.is_some_and(|r| !r.nlri.is_empty());
        if !announces_vpn && self.nlri.is_empty() {
            return;
        }
        let missing = if self.origin.is_none() {
            Some(attr::ORIGIN)
        } else if self.as_path.is_none() {
            Some(attr::AS_PATH)
        } else if ctx.internal && self.local_pref.is_none() {
            Some(attr::LOCAL_PREF)
        } else if !self.nlri.is_empty() && self.next_hop.is_none() {
            Some(attr::NEXT_HOP)
        } else {
            None
        };
        if let (Some(code), None) = (missing, self.treat_as_withdraw) {
            self.treat_as_withdraw = Some(TreatAsWithdraw::Missing(code));
        }
    }
}

fn parse_mp_reach<'a>(value: &'a [u8], ctx: &UpdateContext) -> Option<MpReach<'a>> {
    let (head, rest) = value.split_at_checked(4)?;
    let family = AfiSafi {
        afi: u16::from_be_bytes([head[0], head[1]]),
        safi: head[2],
    };
    let nh_len = usize::from(head[3]);
    let nh = rest.get(..nh_len)?;
    let nlri = rest.get(nh_len + 1..)?; // one reserved byte after the next hop
    let mut reach = MpReach {
        family,
        next_hop: None,
        nlri,
    };
    if let Some(vpn) = family.vpn_family() {
        // RFC 4364 §4.3.2 / RFC 4659 §3.2.1: an 8-byte zero RD before the address; IPv6 may be
        // followed by a link-local address (RFC 2545); RFC 5549 allows an IPv6 next hop for
        // VPN-IPv4.
        reach.next_hop = match nh.len() {
            12 if vpn == VpnFamily::Ipv4 => {
                Some(IpAddr::V4(Ipv4Addr::new(nh[8], nh[9], nh[10], nh[11])))
            }
            24 | 48 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&nh[8..24]);
                Some(IpAddr::V6(Ipv6Addr::from(a)))
            }
            _ => return None,
        };
        validate_vpn_nlri(nlri, vpn, label_mode(true, ctx))?;
    }
    Some(reach)
}

fn parse_mp_unreach(value: &[u8]) -> Option<MpUnreach<'_>> {
    let (head, nlri) = value.split_at_checked(3)?;
    let family = AfiSafi {
        afi: u16::from_be_bytes([head[0], head[1]]),
        safi: head[2],
    };
    if let Some(vpn) = family.vpn_family() {
        validate_vpn_nlri(nlri, vpn, LabelMode::Single)?;
    }
    Some(MpUnreach { family, nlri })
}

fn label_mode(reachable: bool, ctx: &UpdateContext) -> LabelMode {
    if reachable && ctx.multiple_labels {
        LabelMode::Stack
    } else {
        LabelMode::Single
    }
}

/// How the label field of a labeled NLRI is delimited (RFC 8277 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelMode {
    /// Exactly one 3-byte label field; its bottom-of-stack bit is ignored. Always the case in
    /// MP_UNREACH_NLRI, and in MP_REACH_NLRI without the Multiple Labels capability.
    Single,
    /// Labels up to the one with the bottom-of-stack bit, at most [`LabelStack::MAX`].
    Stack,
}

/// One labeled VPN route of an MP_REACH_NLRI or MP_UNREACH_NLRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpnNlri {
    /// Route distinguisher.
    pub rd: RouteDistinguisher,
    /// The customer prefix.
    pub prefix: VpnPrefix,
    /// Labels, outermost first (for a withdrawal, the label field as sent, usually 0x800000).
    pub labels: LabelStack,
}

/// Decodes the route at the start of `bytes`; returns it and the bytes it used.
fn decode_vpn_nlri(bytes: &[u8], family: VpnFamily, mode: LabelMode) -> Option<(VpnNlri, usize)> {
    let (&bits, rest) = bytes.split_first()?;
    let mut bits = usize::from(bits);
    let mut labels = LabelStack::default();
    let mut pos = 0;
    loop {
        let field = rest.get(pos..pos + 3)?;
        bits = bits.checked_sub(24)?;
        pos += 3;
        let value =
            (u32::from(field[0]) << 12) | (u32::from(field[1]) << 4) | (u32::from(field[2]) >> 4);
        if !labels.push(Label::new(value)?) {
            return None;
        }
        let bottom = field[2] & 1 != 0 || field == WITHDRAWAL_LABEL;
        if mode == LabelMode::Single || bottom {
            break;
        }
    }
    let rd = rest.get(pos..pos + 8)?;
    let rd = RouteDistinguisher(u64::from_be_bytes(rd.try_into().ok()?));
    pos += 8;
    let prefix_bits = u8::try_from(bits.checked_sub(64)?).ok()?;
    let prefix_bytes = usize::from(prefix_bits).div_ceil(8);
    let raw = rest.get(pos..pos + prefix_bytes)?;
    pos += prefix_bytes;
    let prefix = match family {
        VpnFamily::Ipv4 => {
            let mut a = [0u8; 4];
            a.get_mut(..prefix_bytes)?.copy_from_slice(raw);
            VpnPrefix::new_v4(Ipv4Addr::from(a), prefix_bits)?
        }
        VpnFamily::Ipv6 => {
            let mut a = [0u8; 16];
            a.get_mut(..prefix_bytes)?.copy_from_slice(raw);
            VpnPrefix::new_v6(Ipv6Addr::from(a), prefix_bits)?
        }
    };
    Some((VpnNlri { rd, prefix, labels }, 1 + pos))
}

/// Checks that `bytes` is a whole sequence of labeled VPN NLRI; returns the route count.
pub fn validate_vpn_nlri(mut bytes: &[u8], family: VpnFamily, mode: LabelMode) -> Option<usize> {
    let mut count = 0;
    while !bytes.is_empty() {
        let (_, used) = decode_vpn_nlri(bytes, family, mode)?;
        bytes = &bytes[used..];
        count += 1;
    }
    Some(count)
}

/// The routes of a validated VPN NLRI field, decoded one at a time.
#[derive(Debug, Clone)]
pub struct VpnNlriIter<'a> {
    bytes: &'a [u8],
    family: VpnFamily,
    mode: LabelMode,
}

impl<'a> VpnNlriIter<'a> {
    /// Iterates over `bytes`; decoding stops at the first route that does not parse, so pass
    /// bytes that [`Update::parse`] (or [`validate_vpn_nlri`]) accepted.
    pub fn new(bytes: &'a [u8], family: VpnFamily, mode: LabelMode) -> Self {
        Self {
            bytes,
            family,
            mode,
        }
    }

    /// The routes of an UPDATE's MP_REACH_NLRI.
    pub fn reachable(reach: &MpReach<'a>, ctx: &UpdateContext) -> Option<Self> {
        Some(Self::new(
            reach.nlri,
            reach.family.vpn_family()?,
            label_mode(true, ctx),
        ))
    }

    /// The routes of an UPDATE's MP_UNREACH_NLRI.
    pub fn unreachable(unreach: &MpUnreach<'a>) -> Option<Self> {
        Some(Self::new(
            unreach.nlri,
            unreach.family.vpn_family()?,
            LabelMode::Single,
        ))
    }
}

impl Iterator for VpnNlriIter<'_> {
    type Item = VpnNlri;

    fn next(&mut self) -> Option<VpnNlri> {
        let (nlri, used) = decode_vpn_nlri(self.bytes, self.family, self.mode)?;
        self.bytes = &self.bytes[used..];
        Some(nlri)
    }
}

fn ipv4_nlri_valid(mut bytes: &[u8]) -> bool {
    while let [bits, rest @ ..] = bytes {
        if *bits > 32 {
            return false;
        }
        let n = usize::from(*bits).div_ceil(8);
        let Some(tail) = rest.get(n..) else {
            return false;
        };
        bytes = tail;
    }
    true
}

fn as_path_valid(mut bytes: &[u8], width: usize) -> bool {
    while let [kind, count, rest @ ..] = bytes {
        let n = usize::from(*count) * width;
        if !(1..=4).contains(kind) || *count == 0 || rest.len() < n {
            return false;
        }
        bytes = &rest[n..];
    }
    bytes.is_empty()
}

fn flatten_as_path(mut bytes: &[u8], width: usize) -> Vec<u32> {
    let mut out = Vec::new();
    while let [_, count, rest @ ..] = bytes {
        let n = (usize::from(*count) * width).min(rest.len());
        out.extend(rest[..n].chunks_exact(width).map(|a| match a {
            [x, y] => u32::from(u16::from_be_bytes([*x, *y])),
            _ => u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
        }));
        bytes = &rest[n..];
    }
    out
}

/// The attributes of an UPDATE announcing VPN routes, for [`emit_vpn_update`].
#[derive(Debug, Clone, Default)]
pub struct VpnAttributes {
    /// ORIGIN.
    pub origin: Origin,
    /// AS numbers of one AS_SEQUENCE (empty on iBGP).
    pub as_path: Vec<u32>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF (mandatory on iBGP).
    pub local_pref: Option<u32>,
    /// COMMUNITIES.
    pub communities: Vec<Community>,
    /// EXTENDED_COMMUNITIES (route targets among them).
    pub extended_communities: Vec<ExtendedCommunity>,
    /// LARGE_COMMUNITY.
    pub large_communities: Vec<LargeCommunity>,
}

/// One route to announce or withdraw with [`emit_vpn_update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpnRoute {
    /// Route distinguisher.
    pub rd: RouteDistinguisher,
    /// Prefix.
    pub prefix: VpnPrefix,
    /// Labels (one unless Multiple Labels was negotiated); ignored in withdrawals.
    pub labels: LabelStack,
}

/// What [`emit_vpn_update`] writes.
#[derive(Debug, Clone, Copy)]
pub enum VpnUpdateKind<'a> {
    /// MP_REACH_NLRI with these attributes and next hop (4-octet AS encoding).
    Announce(&'a VpnAttributes, IpAddr),
    /// MP_UNREACH_NLRI with the withdrawal label.
    Withdraw,
}

/// Appends one UPDATE carrying as many of `routes` (all of `family`) as fit in one message and
/// returns how many it took; call again with the rest. Used by route injectors (tests,
/// benchmarks) — the LEG itself announces nothing.
pub fn emit_vpn_update(
    out: &mut Vec<u8>,
    family: VpnFamily,
    kind: VpnUpdateKind<'_>,
    routes: &[VpnRoute],
) -> usize {
    let start = begin_message(out, MessageType::Update);
    out.extend_from_slice(&[0, 0, 0, 0]); // no withdrawn routes; attribute length patched below
    let attrs_at = out.len();
    let push_attr = |out: &mut Vec<u8>, f: u8, code: u8, value: &[u8]| {
        if value.len() > 255 {
            out.extend_from_slice(&[f | flags::EXTENDED_LENGTH, code]);
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        } else {
            out.extend_from_slice(&[f, code, value.len() as u8]);
        }
        out.extend_from_slice(value);
    };
    let mp_code = match kind {
        VpnUpdateKind::Announce(..) => attr::MP_REACH_NLRI,
        VpnUpdateKind::Withdraw => attr::MP_UNREACH_NLRI,
    };
    if let VpnUpdateKind::Announce(a, _) = kind {
        push_attr(out, flags::TRANSITIVE, attr::ORIGIN, &[a.origin as u8]);
        let mut path = Vec::new();
        if !a.as_path.is_empty() {
            path.extend_from_slice(&[2, a.as_path.len() as u8]);
            a.as_path
                .iter()
                .for_each(|asn| path.extend_from_slice(&asn.to_be_bytes()));
        }
        push_attr(out, flags::TRANSITIVE, attr::AS_PATH, &path);
        if let Some(med) = a.med {
            push_attr(out, flags::OPTIONAL, attr::MED, &med.to_be_bytes());
        }
        if let Some(pref) = a.local_pref {
            push_attr(
                out,
                flags::TRANSITIVE,
                attr::LOCAL_PREF,
                &pref.to_be_bytes(),
            );
        }
        let ot = flags::OPTIONAL | flags::TRANSITIVE;
        if !a.communities.is_empty() {
            let v: Vec<u8> = a
                .communities
                .iter()
                .flat_map(|c| c.0.to_be_bytes())
                .collect();
            push_attr(out, ot, attr::COMMUNITIES, &v);
        }
        if !a.extended_communities.is_empty() {
            let v: Vec<u8> = a.extended_communities.iter().flat_map(|c| c.0).collect();
            push_attr(out, ot, attr::EXTENDED_COMMUNITIES, &v);
        }
        if !a.large_communities.is_empty() {
            let v: Vec<u8> = a
                .large_communities
                .iter()
                .flat_map(|c| [c.global, c.local1, c.local2])
                .flat_map(u32::to_be_bytes)
                .collect();
            push_attr(out, ot, attr::LARGE_COMMUNITY, &v);
        }
    }
    out.extend_from_slice(&[flags::OPTIONAL | flags::EXTENDED_LENGTH, mp_code, 0, 0]);
    let mp_len_at = out.len() - 2;
    let f = family.afi_safi();
    out.extend_from_slice(&f.afi.to_be_bytes());
    out.push(f.safi);
    if let VpnUpdateKind::Announce(_, next_hop) = kind {
        // An 8-byte zero route distinguisher before the address (RFC 4364 §4.3.2).
        match next_hop {
            IpAddr::V4(a) => {
                out.extend_from_slice(&[12, 0, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                out.extend_from_slice(&[24, 0, 0, 0, 0, 0, 0, 0, 0]);
                out.extend_from_slice(&a.octets());
            }
        }
        out.push(0);
    }
    let mut taken = 0;
    for route in routes.iter().filter(|r| r.prefix.family() == family) {
        let mut nlri = [0u8; 1 + 3 * LabelStack::MAX + 8 + 16];
        let (fields, count) = match kind {
            VpnUpdateKind::Withdraw => ([WITHDRAWAL_LABEL; LabelStack::MAX], 1),
            VpnUpdateKind::Announce(..) => label_fields(&route.labels),
        };
        let labels = &fields[..count];
        let mut pos = 1;
        for field in labels {
            nlri[pos..pos + 3].copy_from_slice(field);
            pos += 3;
        }
        nlri[pos..pos + 8].copy_from_slice(&route.rd.to_bytes());
        pos += 8;
        let bytes = usize::from(route.prefix.len()).div_ceil(8);
        match route.prefix.addr() {
            IpAddr::V4(a) => nlri[pos..pos + bytes].copy_from_slice(&a.octets()[..bytes]),
            IpAddr::V6(a) => nlri[pos..pos + bytes].copy_from_slice(&a.octets()[..bytes]),
        }
        pos += bytes;
        nlri[0] = (24 * labels.len() + 64 + usize::from(route.prefix.len())) as u8;
        if out.len() - start + pos > MAX_MESSAGE_LEN {
            break;
        }
        out.extend_from_slice(&nlri[..pos]);
        taken += 1;
    }
    let mp_len = (out.len() - mp_len_at - 2) as u16;
    out[mp_len_at..mp_len_at + 2].copy_from_slice(&mp_len.to_be_bytes());
    let attrs_len = (out.len() - attrs_at) as u16;
    out[attrs_at - 2..attrs_at].copy_from_slice(&attrs_len.to_be_bytes());
    finish_message(out, start);
    taken
}

fn label_fields(labels: &LabelStack) -> ([[u8; 3]; LabelStack::MAX], usize) {
    let mut fields = [[0u8; 3]; LabelStack::MAX];
    for (field, label) in fields.iter_mut().zip(labels.iter()) {
        let v = label.value();
        *field = [(v >> 12) as u8, (v >> 4) as u8, (v << 4) as u8];
    }
    let count = labels.len();
    if let Some(last) = count.checked_sub(1).and_then(|i| fields.get_mut(i)) {
        last[2] |= 1; // bottom of stack
    }
    (fields, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RouteTarget;

    const CTX: UpdateContext = UpdateContext {
        four_octet_as: true,
        multiple_labels: false,
        internal: true,
    };

    fn seed_attrs() -> VpnAttributes {
        VpnAttributes {
            local_pref: Some(100),
            communities: vec!["100:100".parse().unwrap()],
            extended_communities: vec!["1000:1".parse::<RouteTarget>().unwrap().to_extended()],
            large_communities: vec![LargeCommunity {
                global: 65000,
                local1: 1,
                local2: 2,
            }],
            ..VpnAttributes::default()
        }
    }

    fn seed_route() -> VpnRoute {
        VpnRoute {
            rd: "1000:1".parse().unwrap(),
            prefix: "1.1.1.0/24".parse().unwrap(),
            labels: LabelStack::single(Label::new(10).unwrap()),
        }
    }

    fn announce(routes: &[VpnRoute], family: VpnFamily, next_hop: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let attrs = seed_attrs();
        let taken = emit_vpn_update(
            &mut out,
            family,
            VpnUpdateKind::Announce(&attrs, next_hop.parse().unwrap()),
            routes,
        );
        assert_eq!(taken, routes.len());
        out
    }

    /// Re-frames `body` as a whole message and returns the body back (so tests can edit bodies).
    fn body(msg: &[u8]) -> &[u8] {
        &msg[19..]
    }

    /// Builds an UPDATE body from raw attribute bytes and NLRI.
    fn raw_body(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0];
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(attrs);
        b.extend_from_slice(nlri);
        b
    }

    fn mp_reach_v4(nlri: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 1, 128, 12, 0, 0, 0, 0, 0, 0, 0, 0, 10, 10, 10, 10, 0];
        v.extend_from_slice(nlri);
        let mut a = vec![flags::OPTIONAL, attr::MP_REACH_NLRI, v.len() as u8];
        a.extend_from_slice(&v);
        a
    }

    fn seed_nlri() -> Vec<u8> {
        // 112 bits: label 10 (bottom of stack), RD 0:1000:1, 1.1.1
        vec![112, 0, 0, 0xa1, 0, 0, 3, 232, 0, 0, 0, 1, 1, 1, 1]
    }

    /// ORIGIN IGP, empty AS_PATH, LOCAL_PREF 100, then `extra`.
    fn with_mandatory(extra: &[u8]) -> Vec<u8> {
        let mut a = vec![0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 5, 4, 0, 0, 0, 100];
        a.extend_from_slice(extra);
        a
    }

    #[test]
    fn the_seed_route_round_trips_with_label_rd_rt_and_communities() {
        let msg = announce(&[seed_route()], VpnFamily::Ipv4, "10.10.10.10");
        let update = Update::parse(body(&msg), &CTX).unwrap();
        assert_eq!(update.treat_as_withdraw, None);
        let reach = update.mp_reach.unwrap();
        assert_eq!(reach.family, AfiSafi::VPN_IPV4);
        assert_eq!(reach.next_hop, Some("10.10.10.10".parse().unwrap()));
        let routes: Vec<_> = VpnNlriIter::reachable(&reach, &CTX).unwrap().collect();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].rd.to_string(), "1000:1");
        assert_eq!(routes[0].prefix.to_string(), "1.1.1.0/24");
        assert_eq!(routes[0].labels.first().map(Label::value), Some(10));
        assert_eq!(reach.nlri, &seed_nlri()[..]);
        let rts: Vec<_> = update
            .extended_communities()
            .filter_map(|c| c.route_target())
            .collect();
        assert_eq!(rts, vec!["1000:1".parse::<RouteTarget>().unwrap()]);
        assert_eq!(
            update
                .communities()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            ["100:100"]
        );
        assert_eq!(
            update
                .large_communities()
                .map(|c| c.to_string())
                .collect::<Vec<_>>(),
            ["65000:1:2"]
        );
        assert_eq!(update.local_pref, Some(100));
        assert_eq!(update.end_of_rib(), None);
    }

    #[test]
    fn vpn_ipv6_with_a_label_stack_and_withdrawal_label() {
        let mut labels = LabelStack::single(Label::new(16).unwrap());
        labels.push(Label::new(17).unwrap());
        let route = VpnRoute {
            rd: "10.0.0.1:5".parse().unwrap(),
            prefix: "2001:db8:1::/48".parse().unwrap(),
            labels,
        };
        let msg = announce(&[route], VpnFamily::Ipv6, "2001:db8::1");
        let stacked = UpdateContext {
            multiple_labels: true,
            ..CTX
        };
        let update = Update::parse(body(&msg), &stacked).unwrap();
        let reach = update.mp_reach.unwrap();
        assert_eq!(reach.next_hop, Some("2001:db8::1".parse().unwrap()));
        let got: Vec<_> = VpnNlriIter::reachable(&reach, &stacked).unwrap().collect();
        assert_eq!(
            got,
            vec![VpnNlri {
                rd: route.rd,
                prefix: route.prefix,
                labels
            }]
        );
        // Read with one label, the same bytes are a different (longer-prefix) route, so the
        // mode matters; the session only uses Stack when Multiple Labels was negotiated.
        let single: Vec<_> = VpnNlriIter::reachable(&reach, &CTX).unwrap().collect();
        assert_ne!(single.first().map(|r| r.prefix), Some(route.prefix));

        let mut out = Vec::new();
        assert_eq!(
            emit_vpn_update(&mut out, VpnFamily::Ipv6, VpnUpdateKind::Withdraw, &[route]),
            1
        );
        let update = Update::parse(body(&out), &stacked).unwrap();
        let unreach = update.mp_unreach.unwrap();
        assert_eq!(&unreach.nlri[1..4], &WITHDRAWAL_LABEL);
        let gone: Vec<_> = VpnNlriIter::unreachable(&unreach)
            .unwrap()
            .map(|r| (r.rd, r.prefix))
            .collect();
        assert_eq!(gone, vec![(route.rd, route.prefix)]);
    }

    #[test]
    fn emitter_splits_large_tables_into_full_messages() {
        let routes: Vec<VpnRoute> = (0..1000u32)
            .map(|i| VpnRoute {
                rd: RouteDistinguisher::as2(1000, i % 7),
                prefix: VpnPrefix::new_v4(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap(),
                labels: LabelStack::single(Label::new(100 + i).unwrap()),
            })
            .collect();
        let attrs = seed_attrs();
        let mut rest = &routes[..];
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let mut out = Vec::new();
            let n = emit_vpn_update(
                &mut out,
                VpnFamily::Ipv4,
                VpnUpdateKind::Announce(&attrs, "1.2.3.4".parse().unwrap()),
                rest,
            );
            assert!(n > 0 && out.len() <= MAX_MESSAGE_LEN);
            let msg = crate::wire::Message::new_unchecked(&out);
            assert_eq!(msg.check().unwrap().map(|(_, l)| l), Some(out.len()));
            let update = Update::parse(msg.body(), &CTX).unwrap();
            seen.extend(
                VpnNlriIter::reachable(&update.mp_reach.unwrap(), &CTX)
                    .unwrap()
                    .map(|r| r.prefix),
            );
            rest = &rest[n..];
        }
        assert_eq!(seen, routes.iter().map(|r| r.prefix).collect::<Vec<_>>());
    }

    #[test]
    fn end_of_rib_markers_are_recognised() {
        for family in [AfiSafi::IPV4_UNICAST, AfiSafi::VPN_IPV4, AfiSafi::VPN_IPV6] {
            let mut out = Vec::new();
            crate::wire::emit_end_of_rib(&mut out, family);
            assert_eq!(
                Update::parse(body(&out), &CTX).unwrap().end_of_rib(),
                Some(family)
            );
        }
    }

    fn reset_code(body: &[u8]) -> (u8, u8, Vec<u8>) {
        let n = Update::parse(body, &CTX).unwrap_err().notification();
        (n.code, n.subcode, n.data)
    }

    #[test]
    fn session_reset_errors_carry_the_rfc_codes_and_the_attribute() {
        // MP_REACH_NLRI marked well-known transitive: attribute flags error with the attribute.
        let mut reach = mp_reach_v4(&seed_nlri());
        reach[0] = flags::TRANSITIVE;
        let (c, s, data) = reset_code(&raw_body(&with_mandatory(&reach), &[]));
        assert_eq!((c, s), (3, 4));
        assert_eq!(data, reach);

        // NLRI cut short inside the MP_REACH_NLRI: optional attribute error.
        let nlri = seed_nlri();
        let truncated = mp_reach_v4(&nlri[..nlri.len() - 1]);
        assert_eq!(
            reset_code(&raw_body(&with_mandatory(&truncated), &[])),
            (3, 9, truncated.clone())
        );

        // Prefix longer than 32 bits inside a VPN-IPv4 NLRI.
        let mut long = nlri.clone();
        long[0] = 24 + 64 + 33;
        long.push(0);
        assert_eq!(
            reset_code(&raw_body(&with_mandatory(&mp_reach_v4(&long)), &[])).1,
            9
        );

        // Two MP_REACH_NLRI: malformed attribute list.
        let mut twice = mp_reach_v4(&nlri);
        twice.extend_from_slice(&mp_reach_v4(&nlri));
        assert_eq!(
            reset_code(&raw_body(&with_mandatory(&twice), &[])),
            (3, 1, vec![])
        );

        // An attribute overrunning the list.
        let overrun = raw_body(&[0x40, 1, 5, 0], &[]);
        assert_eq!(reset_code(&overrun), (3, 1, vec![]));

        // An unknown well-known attribute.
        assert_eq!(
            reset_code(&raw_body(&[0x40, 99, 1, 7], &[])),
            (3, 2, vec![0x40, 99, 1, 7])
        );

        // IPv4 NLRI field with a 33-bit prefix; withdrawn-routes length past the end.
        assert_eq!(
            reset_code(&raw_body(&[], &[33, 1, 2, 3, 4, 5])),
            (3, 10, vec![])
        );
        assert_eq!(reset_code(&[0, 9, 0, 0]), (3, 1, vec![]));
    }

    #[test]
    fn attribute_errors_that_rfc_7606_treats_as_withdraw() {
        let reach = mp_reach_v4(&seed_nlri());
        let cases: Vec<(Vec<u8>, TreatAsWithdraw)> = vec![
            // ORIGIN with optional flag set.
            (
                [
                    &[0xc0, 1, 1, 0][..],
                    &[0x40, 2, 0, 0x40, 5, 4, 0, 0, 0, 100],
                ]
                .concat(),
                TreatAsWithdraw::Malformed(1),
            ),
            // ORIGIN value 3.
            (
                [
                    &[0x40, 1, 1, 3][..],
                    &[0x40, 2, 0, 0x40, 5, 4, 0, 0, 0, 100],
                ]
                .concat(),
                TreatAsWithdraw::Malformed(1),
            ),
            // LOCAL_PREF missing on iBGP.
            (vec![0x40, 1, 1, 0, 0x40, 2, 0], TreatAsWithdraw::Missing(5)),
            // AS_PATH segment count past its end.
            (
                vec![0x40, 1, 1, 0, 0x40, 2, 2, 2, 1, 0x40, 5, 4, 0, 0, 0, 100],
                TreatAsWithdraw::Malformed(2),
            ),
            // COMMUNITIES of 5 bytes.
            (
                with_mandatory(&[0xc0, 8, 5, 0, 100, 0, 100, 1]),
                TreatAsWithdraw::Malformed(8),
            ),
            // LARGE_COMMUNITY of 8 bytes.
            (
                with_mandatory(&[0xc0, 32, 8, 0, 0, 0, 1, 0, 0, 0, 2]),
                TreatAsWithdraw::Malformed(32),
            ),
            // MED marked transitive.
            (
                with_mandatory(&[0xc0, 4, 4, 0, 0, 0, 1]),
                TreatAsWithdraw::Malformed(4),
            ),
        ];
        for (attrs, expected) in cases {
            let mut a = attrs.clone();
            a.extend_from_slice(&reach);
            let body = raw_body(&a, &[]);
            let update = Update::parse(&body, &CTX).unwrap();
            assert_eq!(update.treat_as_withdraw, Some(expected), "{attrs:?}");
            assert!(
                update.mp_reach.is_some(),
                "the NLRI are still located, to be withdrawn"
            );
        }
        // Malformed AGGREGATOR and a repeated ORIGIN are discarded, the update stands.
        let mut a = with_mandatory(&[0xc0, 7, 3, 0, 0, 1, 0x40, 1, 1, 2]);
        a.extend_from_slice(&reach);
        let body = raw_body(&a, &[]);
        let update = Update::parse(&body, &CTX).unwrap();
        assert_eq!(
            (update.treat_as_withdraw, update.discarded, update.origin),
            (None, 2, Some(Origin::Igp))
        );
    }

    #[test]
    fn as4_path_is_merged_on_two_octet_sessions() {
        let two = UpdateContext {
            four_octet_as: false,
            ..CTX
        };
        // AS_PATH: 65001 23456; AS4_PATH: 4200000000.
        let a = [
            &[0x40, 1, 1, 0, 0x40, 2, 6, 2, 2, 0xfd, 0xe9, 0x5b, 0xa0][..],
            &[0xc0, 17, 6, 2, 1, 0xfa, 0x56, 0xea, 0x00],
        ]
        .concat();
        let body = raw_body(&a, &[]);
        let update = Update::parse(&body, &two).unwrap();
        assert_eq!(update.as_path_numbers(&two), vec![65001, 4_200_000_000]);
    }
}
