//! Authentication of a data trigger: the Access-Request of Table 4 and the dynamic services an
//! Access-Accept (or a local-auth-db entry) hands back (Nokia SR OS dynamic data services).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use brasa_radius::attr::{
    tagged_integer, tagged_string, ACCT_SESSION_ID, FRAMED_IP_ADDRESS, NAS_IDENTIFIER,
    NAS_IP_ADDRESS, NAS_PORT_ID, USER_NAME, USER_PASSWORD, VENDOR_SPECIFIC,
};
use brasa_radius::{auth, vsa, Code, Dictionary, Message, PacketError, VendorFormat};
use brasa_services::{MacAddr, PortMap, SapId, SapTags, Tag};
use thiserror::Error;

/// NAS-IPv6-Address (RFC 3162 §2.1).
pub const NAS_IPV6_ADDRESS: u8 = 95;

/// Alcatel-Lucent (Nokia) IANA enterprise number.
pub const VENDOR_ALCATEL: u32 = 6527;
/// Alc-Client-Hardware-Addr (26-6527-27): the trigger frame's MAC, `xx:xx:xx:xx:xx:xx`.
pub const ALC_CLIENT_HARDWARE_ADDR: u32 = 27;
/// Alc-Ipv6-Address (26-6527-99): the trigger frame's IPv6 source.
pub const ALC_IPV6_ADDRESS: u32 = 99;
/// Alc-Dyn-Serv-SAP-Id (tagged string).
pub const ALC_DYN_SERV_SAP_ID: u32 = 164;
/// Alc-Dyn-Serv-Script-Params (tagged string).
pub const ALC_DYN_SERV_SCRIPT_PARAMS: u32 = 165;
/// Alc-Dyn-Serv-Script-Action (tagged integer: setup 1, modify 2, teardown 3).
pub const ALC_DYN_SERV_SCRIPT_ACTION: u32 = 166;
/// Alc-Dyn-Serv-Policy (tagged string).
pub const ALC_DYN_SERV_POLICY: u32 = 167;
/// Alc-Dyn-Serv-Acct-Interim-Ivl-1 (tagged integer, seconds).
pub const ALC_DYN_SERV_ACCT_INTERIM_IVL_1: u32 = 168;
/// Alc-Dyn-Serv-Acct-Interim-Ivl-2 (tagged integer, seconds).
pub const ALC_DYN_SERV_ACCT_INTERIM_IVL_2: u32 = 169;
/// Alc-Dyn-Serv-Acct-Stats-Type-1 (tagged integer: off 1, volume-time 2, time 3).
pub const ALC_DYN_SERV_ACCT_STATS_TYPE_1: u32 = 170;
/// Alc-Dyn-Serv-Acct-Stats-Type-2 (tagged integer).
pub const ALC_DYN_SERV_ACCT_STATS_TYPE_2: u32 = 171;

/// Most dynamic services one Access-Accept (or local-auth-db entry) may set up.
pub const MAX_SERVICES_PER_AUTHENTICATION: usize = 32;

/// The script action of a dynamic service (Alc-Dyn-Serv-Script-Action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScriptAction {
    /// Create the service.
    Setup,
    /// Change it (revert on failure).
    Modify,
    /// Remove it.
    Teardown,
}

impl ScriptAction {
    pub(crate) fn from_wire(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Setup),
            2 => Some(Self::Modify),
            3 => Some(Self::Teardown),
            _ => None,
        }
    }
}

/// What RADIUS accounting of a dynamic service reports (Alc-Dyn-Serv-Acct-Stats-Type-N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatsType {
    /// Accounting off for this destination.
    Off,
    /// Octets, packets and session time.
    VolumeTime,
    /// Session time only.
    Time,
}

impl StatsType {
    fn from_wire(value: u32) -> Option<Self> {
        match value {
            1 => Some(Self::Off),
            2 => Some(Self::VolumeTime),
            3 => Some(Self::Time),
            _ => None,
        }
    }
}

/// Accounting settings for one of the two destinations; `None` fields fall back to the
/// dynamic-services-policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AcctOverride {
    /// Stats type.
    pub stats_type: Option<StatsType>,
    /// Interim-Update interval in seconds.
    pub interim_secs: Option<u32>,
}

/// One dynamic service an authentication or a CoA asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynService {
    /// The RADIUS tag that grouped its attributes (0 when untagged or local).
    pub tag: u8,
    /// The dynamic service SAP, `#` wildcards replaced and SR OS port names mapped.
    pub sap: SapId,
    /// Alc-Dyn-Serv-Script-Params (or the four local script-parameters concatenated).
    pub script_params: Option<String>,
    /// Alc-Dyn-Serv-Script-Action; `Setup` when an Access-Accept leaves it out.
    pub action: Option<ScriptAction>,
    /// Alc-Dyn-Serv-Policy; `None` means the capture SAP's (or the "default") policy.
    pub policy: Option<String>,
    /// Accounting overrides for destinations 1 and 2.
    pub accounting: [AcctOverride; 2],
}

/// Why authentication did not produce services for a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthFailure {
    /// Access-Reject.
    #[error("Access-Reject")]
    Rejected,
    /// No answer from any server of the pool.
    #[error("no answer from the RADIUS servers")]
    Timeout,
    /// No (enabled) entry for the user name in the local-auth-db.
    #[error("no local-auth-db entry for {0:?}")]
    LocalLookupFailed(String),
    /// None of the services is the trigger's SAP.
    #[error("no dynamic service has the data trigger SAP {0}")]
    NoTriggerSap(SapId),
    /// An attribute set cannot be a dynamic service.
    #[error("dynamic service (tag {tag}): {reason}")]
    BadService {
        /// The RADIUS tag of the faulty service.
        tag: u8,
        /// What is wrong.
        reason: String,
    },
    /// More than [`MAX_SERVICES_PER_AUTHENTICATION`] services.
    #[error("{0} dynamic services, at most 32 per authentication")]
    TooManyServices(usize),
}

impl AuthFailure {
    /// The capture SAP drop-reason counter (Table 3) this failure is counted under.
    pub fn drop_reason(&self) -> crate::DropReason {
        match self {
            AuthFailure::NoTriggerSap(_) => crate::DropReason::NoTriggerSapInAuthentication,
            _ => crate::DropReason::UnsuccessfulAuthentication,
        }
    }
}

/// The router's identity in RADIUS requests (Table 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NasIdentity {
    /// NAS-IP-Address, sent when the server is reached over IPv4.
    pub ipv4: Option<Ipv4Addr>,
    /// NAS-IPv6-Address, sent when the server is reached over IPv6.
    pub ipv6: Option<Ipv6Addr>,
    /// NAS-Identifier: the system name.
    pub identifier: String,
}

/// The parts of a data trigger its Access-Request describes.
#[derive(Debug, Clone, Copy)]
pub struct TriggerIdentity<'a> {
    /// The data trigger's SAP id (User-Name and NAS-Port-Id).
    pub sap: &'a SapId,
    /// Its Acct-Session-Id.
    pub acct_session_id: &'a str,
    /// The trigger frame's source MAC.
    pub mac: MacAddr,
    /// The trigger frame's IP source, if it was an IP packet.
    pub ip: Option<IpAddr>,
}

/// What the request is sealed with towards one server.
#[derive(Debug, Clone, Copy)]
pub struct RequestSeal<'a> {
    /// The server's shared secret (hides User-Password).
    pub secret: &'a [u8],
    /// The random Request Authenticator the message carries.
    pub request_authenticator: [u8; 16],
    /// The Identifier octet.
    pub identifier: u8,
}

/// Builds the Access-Request of Table 4, with exactly: User-Name and NAS-Port-Id = the trigger
/// SAP, User-Password = `password` hidden with the seal's secret over its Request Authenticator, NAS-IP-Address or NAS-IPv6-Address by the server's address family,
/// Acct-Session-Id, NAS-Identifier, Alc-Client-Hardware-Addr, and Framed-IP-Address or
/// Alc-Ipv6-Address when the trigger frame was an IP packet.
pub fn access_request(
    trigger: TriggerIdentity<'_>,
    password: &[u8],
    seal: RequestSeal<'_>,
    nas: &NasIdentity,
    server: IpAddr,
    dict: &Dictionary,
) -> Result<Message, PacketError> {
    let RequestSeal {
        secret,
        request_authenticator,
        identifier,
    } = seal;
    let mut request = Message::new(Code::AccessRequest, identifier);
    request.authenticator = request_authenticator;
    let sap = trigger.sap.to_string();
    request.add(USER_NAME, &sap)?;
    request.add(
        USER_PASSWORD,
        auth::hide_user_password(password, secret, &request_authenticator),
    )?;
    match server {
        IpAddr::V4(_) => {
            if let Some(ip) = nas.ipv4 {
                request.add(NAS_IP_ADDRESS, ip.octets())?;
            }
        }
        IpAddr::V6(_) => {
            if let Some(ip) = nas.ipv6 {
                request.add(NAS_IPV6_ADDRESS, ip.octets())?;
            }
        }
    }
    request.add(ACCT_SESSION_ID, trigger.acct_session_id)?;
    request.add(NAS_PORT_ID, &sap)?;
    request.add(NAS_IDENTIFIER, &nas.identifier)?;
    request.add_vsa(
        dict,
        VENDOR_ALCATEL,
        ALC_CLIENT_HARDWARE_ADDR,
        trigger.mac.to_string().as_bytes(),
    )?;
    match trigger.ip {
        Some(IpAddr::V4(ip)) => request.add(FRAMED_IP_ADDRESS, ip.octets())?,
        Some(IpAddr::V6(ip)) => {
            request.add_vsa(dict, VENDOR_ALCATEL, ALC_IPV6_ADDRESS, &ip.octets())?
        }
        None => {}
    }
    Ok(request)
}

/// The Alc-Dyn-Serv-* attributes of a message grouped by tag, in order of first appearance,
/// before any check of what they mean.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawDynService {
    /// RADIUS tag (0 = untagged).
    pub tag: u8,
    /// Alc-Dyn-Serv-SAP-Id.
    pub sap: Option<String>,
    /// Alc-Dyn-Serv-Script-Params.
    pub script_params: Option<String>,
    /// Alc-Dyn-Serv-Script-Action as received.
    pub action: Option<u32>,
    /// Alc-Dyn-Serv-Policy.
    pub policy: Option<String>,
    /// Alc-Dyn-Serv-Acct-Interim-Ivl-1/2.
    pub interim: [Option<u32>; 2],
    /// Alc-Dyn-Serv-Acct-Stats-Type-1/2 as received.
    pub stats_type: [Option<u32>; 2],
}

/// Collects the Alc-Dyn-Serv-* vendor attributes of `message` by tag. Malformed
/// Vendor-Specific attributes and non-UTF-8 strings are reported, never a panic.
pub fn dyn_services_of(message: &Message) -> Result<Vec<RawDynService>, AuthFailure> {
    let mut services: Vec<RawDynService> = Vec::new();
    for value in message.attributes.all(VENDOR_SPECIFIC) {
        // The Alcatel-Lucent dictionary uses the standard 1-octet type / 1-octet length form.
        let Some(subs) = vsa::vsa_split(value, VENDOR_ALCATEL, VendorFormat::default()) else {
            continue;
        };
        for sub in subs {
            if !(ALC_DYN_SERV_SAP_ID..=ALC_DYN_SERV_ACCT_STATS_TYPE_2).contains(&sub.typ) {
                continue;
            }
            let (tag, field) = match sub.typ {
                ALC_DYN_SERV_SAP_ID | ALC_DYN_SERV_SCRIPT_PARAMS | ALC_DYN_SERV_POLICY => {
                    let (tag, data) = tagged_string(sub.value);
                    std::str::from_utf8(data)
                        .ok()
                        .map(|text| (tag, Field::Text(text.to_owned())))
                }
                _ => tagged_integer(sub.value).map(|(tag, value)| (tag, Field::Integer(value))),
            }
            .ok_or_else(|| AuthFailure::BadService {
                tag: sub.value.first().copied().unwrap_or(0),
                reason: format!("malformed vendor attribute 26-6527-{}", sub.typ),
            })?;
            let index = match services.iter().position(|s| s.tag == tag) {
                Some(index) => index,
                None => {
                    services.push(RawDynService {
                        tag,
                        ..RawDynService::default()
                    });
                    services.len() - 1
                }
            };
            let service = &mut services[index];
            match (sub.typ, field) {
                (ALC_DYN_SERV_SAP_ID, Field::Text(text)) => service.sap = Some(text),
                (ALC_DYN_SERV_SCRIPT_PARAMS, Field::Text(text)) => {
                    service.script_params = Some(text)
                }
                (ALC_DYN_SERV_POLICY, Field::Text(text)) => service.policy = Some(text),
                (ALC_DYN_SERV_SCRIPT_ACTION, Field::Integer(v)) => service.action = Some(v),
                (ALC_DYN_SERV_ACCT_INTERIM_IVL_1, Field::Integer(v)) => {
                    service.interim[0] = Some(v)
                }
                (ALC_DYN_SERV_ACCT_INTERIM_IVL_2, Field::Integer(v)) => {
                    service.interim[1] = Some(v)
                }
                (ALC_DYN_SERV_ACCT_STATS_TYPE_1, Field::Integer(v)) => {
                    service.stats_type[0] = Some(v)
                }
                (_, Field::Integer(v)) => service.stats_type[1] = Some(v),
                (_, Field::Text(_)) => {}
            }
        }
    }
    Ok(services)
}

enum Field {
    Text(String),
    Integer(u32),
}

impl RawDynService {
    /// Checks the attribute set and resolves its SAP against `trigger` (see [`resolve_sap`]).
    pub fn into_service(self, trigger: &SapId, ports: &PortMap) -> Result<DynService, AuthFailure> {
        let tag = self.tag;
        let bad = |reason: String| AuthFailure::BadService { tag, reason };
        let sap_text = self
            .sap
            .as_deref()
            .ok_or_else(|| bad("Alc-Dyn-Serv-SAP-Id is missing".into()))?;
        let sap = resolve_sap(sap_text, trigger, ports).map_err(|e| bad(e.to_string()))?;
        self.with_sap(sap)
    }

    /// Checks the attribute set for the service on `sap`, already known (its
    /// Alc-Dyn-Serv-SAP-Id, if any, is not read).
    pub(crate) fn with_sap(self, sap: SapId) -> Result<DynService, AuthFailure> {
        let tag = self.tag;
        let bad = |reason: String| AuthFailure::BadService { tag, reason };
        let action = self
            .action
            .map(|v| ScriptAction::from_wire(v).ok_or_else(|| bad(format!("script action {v}"))))
            .transpose()?;
        let mut accounting = [AcctOverride::default(); 2];
        for (slot, (stats, interim)) in accounting
            .iter_mut()
            .zip(self.stats_type.into_iter().zip(self.interim))
        {
            slot.stats_type = stats
                .map(|v| StatsType::from_wire(v).ok_or_else(|| bad(format!("stats type {v}"))))
                .transpose()?;
            slot.interim_secs = interim;
        }
        Ok(DynService {
            tag,
            sap,
            script_params: self.script_params,
            action,
            policy: self.policy,
            accounting,
        })
    }
}

/// Why a dynamic service SAP id cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SapResolveError {
    /// Not a SAP id, or its port has no mapping.
    #[error("SAP id {text:?}: {reason}")]
    Invalid {
        /// The text as received.
        text: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A `#` stands where the data trigger has no such field.
    #[error("SAP id {0:?}: '#' has no data trigger field to take")]
    NoFieldForWildcard(String),
}

/// Resolves a dynamic service SAP id as received: a `#` in the port, outer or inner tag field
/// takes the data trigger's port, outer or inner VLAN id ("A wildcard hash (#) in the VSA value
/// is replaced with the corresponding … data trigger port or vlan-id field"); SR OS port names
/// go through `ports`.
pub fn resolve_sap(text: &str, trigger: &SapId, ports: &PortMap) -> Result<SapId, SapResolveError> {
    let (port, tags) = match text.rsplit_once(':') {
        Some((port, tags)) => (port, Some(tags)),
        None => (text, None),
    };
    let (outer, inner) = match trigger.tags() {
        SapTags::Null => (None, None),
        SapTags::Dot1q(outer) => (Some(outer), None),
        SapTags::Qinq(outer, inner) => (Some(outer), Some(inner)),
    };
    let field = |part: &str, tag: Option<Tag>| -> Result<String, SapResolveError> {
        if part != "#" {
            return Ok(part.to_owned());
        }
        match tag {
            Some(Tag::Id(id)) => Ok(id.to_string()),
            _ => Err(SapResolveError::NoFieldForWildcard(text.to_owned())),
        }
    };
    let mut resolved = if port == "#" {
        trigger.port().to_string()
    } else {
        port.to_owned()
    };
    if let Some(tags) = tags {
        resolved.push(':');
        let mut parts = tags.splitn(2, '.');
        resolved.push_str(&field(parts.next().unwrap_or_default(), outer)?);
        if let Some(second) = parts.next() {
            resolved.push('.');
            resolved.push_str(&field(second, inner)?);
        }
    }
    let sap = SapId::parse_mapped(&resolved, ports).map_err(|e| SapResolveError::Invalid {
        text: text.to_owned(),
        reason: e.to_string(),
    })?;
    if sap.has_wildcard() {
        return Err(SapResolveError::Invalid {
            text: text.to_owned(),
            reason: "a dynamic service SAP cannot have a '*' tag".into(),
        });
    }
    Ok(sap)
}

/// Checks the services an authentication returned for `trigger`: at most 32, each well formed
/// with a setup (or absent) script action, and one of them the trigger's SAP.
pub fn authorized_services(
    raw: Vec<RawDynService>,
    trigger: &SapId,
    ports: &PortMap,
) -> Result<Vec<DynService>, AuthFailure> {
    if raw.len() > MAX_SERVICES_PER_AUTHENTICATION {
        return Err(AuthFailure::TooManyServices(raw.len()));
    }
    let services = raw
        .into_iter()
        .map(|service| service.into_service(trigger, ports))
        .collect::<Result<Vec<_>, _>>()?;
    for service in &services {
        if matches!(
            service.action,
            Some(ScriptAction::Modify | ScriptAction::Teardown)
        ) {
            return Err(AuthFailure::BadService {
                tag: service.tag,
                reason: "only setup is supported in an Access-Accept".into(),
            });
        }
        if service.script_params.is_none() {
            return Err(AuthFailure::BadService {
                tag: service.tag,
                reason: "Alc-Dyn-Serv-Script-Params is missing".into(),
            });
        }
    }
    if !services.iter().any(|service| &service.sap == trigger) {
        return Err(AuthFailure::NoTriggerSap(trigger.clone()));
    }
    Ok(services)
}

/// Reads an Access-Accept for `trigger`: its dynamic services, checked by
/// [`authorized_services`].
pub fn parse_access_accept(
    accept: &Message,
    trigger: &SapId,
    ports: &PortMap,
) -> Result<Vec<DynService>, AuthFailure> {
    authorized_services(dyn_services_of(accept)?, trigger, ports)
}
