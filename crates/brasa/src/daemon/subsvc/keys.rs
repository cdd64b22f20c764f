//! Which subscriber a CoA-Request about subscriber services is for: the subscriber host
//! identification attributes of Nokia SR OS's CoA, as far as the Subscriber Manager knows
//! them.
//!
//! | attribute | names | needs |
//! |---|---|---|
//! | Framed-IP-Address, Framed-IPv6-Address, Framed-IPv6-Prefix, Delegated-IPv6-Prefix | the holder of the address (longest prefix, global address space) | the address among the subscriber's mappings |
//! | NAS-Port-Id | nothing alone; with an address, that address's holder only if it has this port | the `NAS-Port-Id` property (`[subscriber_manager.radius] properties`) |
//! | Acct-Session-Id | the subscriber of that accounting session | the `Acct-Session-Id` property ([`brasa_subscriber::SESSION_PROPERTY`]) |
//! | User-Name | the subscriber of that name | — |
//!
//! Every key the request carries must name the same subscriber: SR OS NAKs a CoA whose
//! NAS-Port-Id + address host is not the Acct-Session-Id's with Session-Context-Not-Found,
//! and brasa extends the rule to User-Name. A key that names nobody, or keys that disagree,
//! are Session-Context-Not-Found (503); an Acct-Session-Id that several subscribers hold,
//! with no other key to choose, is Multiple-Session-Selection-Unsupported (508, RFC 5176):
//! a service change is for one subscriber.

use super::{Refusal, Refused};
use brasa_radius::attr::{
    ACCT_SESSION_ID, DELEGATED_IPV6_PREFIX, FRAMED_IPV6_ADDRESS, FRAMED_IPV6_PREFIX,
    FRAMED_IP_ADDRESS, NAS_PORT_ID, USER_NAME,
};
use brasa_radius::Message;
use brasa_subscriber::SubscriberIndex;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The property that holds a subscriber's NAS-Port-Id (matched without regard to case).
pub const PORT_PROPERTY: &str = "NAS-Port-Id";

/// The identification attributes of one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionKeys {
    /// User-Name.
    pub user_name: Option<String>,
    /// Acct-Session-Id.
    pub session: Option<String>,
    /// NAS-Port-Id.
    pub port: Option<String>,
    /// Framed-IP-Address, Framed-IPv6-Address, and the first address of Framed-IPv6-Prefix
    /// and Delegated-IPv6-Prefix.
    pub addresses: Vec<IpAddr>,
}

impl SessionKeys {
    /// Reads the keys of `request`; an attribute that is not what its type says (a string
    /// that is not UTF-8, an address of the wrong length) is Invalid-Attribute-Value.
    pub fn of(request: &Message) -> Result<Self, Refused> {
        let text = |typ: u8, name: &str| -> Result<Option<String>, Refused> {
            request
                .get(typ)
                .map(|value| {
                    std::str::from_utf8(value).map(str::to_owned).map_err(|_| {
                        Refused::new(Refusal::Attributes, format!("{name} is not UTF-8"))
                    })
                })
                .transpose()
        };
        let mut addresses = Vec::new();
        let unreadable =
            |name: &str| Refused::new(Refusal::Attributes, format!("unreadable {name}"));
        for value in request.get_all(FRAMED_IP_ADDRESS) {
            let octets = <[u8; 4]>::try_from(value).map_err(|_| unreadable("Framed-IP-Address"))?;
            addresses.push(IpAddr::V4(Ipv4Addr::from(octets)));
        }
        for value in request.get_all(FRAMED_IPV6_ADDRESS) {
            let octets =
                <[u8; 16]>::try_from(value).map_err(|_| unreadable("Framed-IPv6-Address"))?;
            addresses.push(IpAddr::V6(Ipv6Addr::from(octets)));
        }
        for (typ, name) in [
            (FRAMED_IPV6_PREFIX, "Framed-IPv6-Prefix"),
            (DELEGATED_IPV6_PREFIX, "Delegated-IPv6-Prefix"),
        ] {
            for value in request.get_all(typ) {
                addresses.push(IpAddr::V6(
                    prefix_address(value).ok_or_else(|| unreadable(name))?,
                ));
            }
        }
        Ok(SessionKeys {
            user_name: text(USER_NAME, "User-Name")?,
            session: text(ACCT_SESSION_ID, "Acct-Session-Id")?,
            port: text(NAS_PORT_ID, "NAS-Port-Id")?,
            addresses,
        })
    }

    /// The SM name of the one subscriber every key names (see the module docs).
    pub fn resolve(&self, index: &SubscriberIndex) -> Result<String, Refused> {
        // The subscriber found so far and the key that named it.
        let mut found: Option<(String, String)> = None;
        for address in &self.addresses {
            let holder = index.lookup(*address, None).ok().flatten();
            let holder =
                holder.ok_or_else(|| not_found(format!("no subscriber holds {address}")))?;
            agree(&mut found, holder, format!("address {address}"))?;
        }
        if let Some(user) = &self.user_name {
            let subscriber = index
                .get(user)
                .ok_or_else(|| not_found(format!("no subscriber is called {user:?}")))?;
            agree(
                &mut found,
                subscriber.name.as_str(),
                format!("User-Name {user:?}"),
            )?;
        }
        if let Some(session) = &self.session {
            let holders: Vec<&str> = index.with_session(session).collect();
            let key = format!("Acct-Session-Id {session:?}");
            match (&found, holders.as_slice()) {
                (_, []) => return Err(not_found(format!("no subscriber has {key}"))),
                (None, [one]) => agree(&mut found, one, key)?,
                (None, _) => {
                    return Err(Refused::new(
                        Refusal::Ambiguous,
                        format!("{} subscribers have {key}", holders.len()),
                    ))
                }
                (Some((name, by)), _) => {
                    if !holders.contains(&name.as_str()) {
                        return Err(not_found(format!(
                            "{by} names subscriber {name:?}, which does not have {key}"
                        )));
                    }
                }
            }
        }
        let Some((name, by)) = found else {
            return Err(not_found(
                "no User-Name, Acct-Session-Id or address names a subscriber".to_owned(),
            ));
        };
        if let Some(port) = &self.port {
            let subscriber = index
                .get(&name)
                .ok_or_else(|| not_found(format!("{name:?} is gone")))?;
            let held = subscriber
                .properties
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(PORT_PROPERTY))
                .map(|(_, value)| value.as_str());
            if held != Some(port.as_str()) {
                return Err(not_found(match held {
                    Some(held) => format!("{by} names subscriber {name:?}, on NAS-Port-Id {held:?}, not {port:?}"),
                    None => format!("{by} names subscriber {name:?}, whose NAS-Port-Id the Subscriber Manager does not keep"),
                }));
            }
        }
        Ok(name)
    }
}

fn not_found(message: String) -> Refused {
    Refused::new(Refusal::NotFound, message)
}

/// Notes that `key` names subscriber `name`: the first key decides, the others must agree.
fn agree(found: &mut Option<(String, String)>, name: &str, key: String) -> Result<(), Refused> {
    match found {
        Some((first, by)) if first != name => Err(not_found(format!(
            "{by} names subscriber {first:?}, {key} names {name:?}"
        ))),
        Some(_) => Ok(()),
        None => {
            *found = Some((name.to_owned(), key));
            Ok(())
        }
    }
}

/// The first address of an RFC 3162 prefix value (reserved, length, prefix octets).
fn prefix_address(value: &[u8]) -> Option<Ipv6Addr> {
    let (&length, prefix) = value.get(1..)?.split_first()?;
    if length > 128 || prefix.len() > 16 || prefix.len() * 8 < usize::from(length) {
        return None;
    }
    let mut octets = [0u8; 16];
    octets[..prefix.len()].copy_from_slice(prefix);
    let mask = u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
    Some(Ipv6Addr::from(u128::from_be_bytes(octets) & mask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_radius::Code;
    use brasa_subscriber::{IndexConfig, Login, Mapping};

    fn index() -> SubscriberIndex {
        let mut index = SubscriberIndex::new(IndexConfig::default()).unwrap();
        index
            .login(Login {
                name: "alice".into(),
                mappings: vec!["2001:db8:1::/48".parse::<Mapping>().unwrap()],
                properties: vec![("Acct-Session-Id".into(), "s1".into())],
                ..Login::default()
            })
            .unwrap();
        index
    }

    fn request(attributes: &[(u8, &[u8])]) -> Message {
        let mut message = Message::new(Code::CoaRequest, 1);
        for (typ, value) in attributes {
            message.add(*typ, *value).unwrap();
        }
        message
    }

    #[test]
    fn ipv6_prefixes_name_the_holder_of_their_first_address() {
        // Delegated-IPv6-Prefix 2001:db8:1:2::/64, inside alice's /48.
        let delegated: &[u8] = &[0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2];
        let keys = SessionKeys::of(&request(&[(DELEGATED_IPV6_PREFIX, delegated)])).unwrap();
        assert_eq!(
            keys.addresses,
            ["2001:db8:1:2::".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(keys.resolve(&index()).unwrap(), "alice");
        // Host bits past the length are not part of the address.
        assert_eq!(
            prefix_address(&[0, 16, 0x20, 0x01, 0xff]),
            Some("2001::".parse().unwrap())
        );
        assert_eq!(prefix_address(&[0, 0]), Some(Ipv6Addr::UNSPECIFIED));
    }

    #[test]
    fn unreadable_keys_are_invalid_attribute_values_and_none_is_not_found() {
        for attributes in [
            &[(FRAMED_IP_ADDRESS, &[10u8, 0, 0][..])][..],
            &[(FRAMED_IPV6_PREFIX, &[0u8, 129][..])][..],
            &[(FRAMED_IPV6_PREFIX, &[0u8, 64, 0x20][..])][..],
            &[(ACCT_SESSION_ID, &[0xffu8][..])][..],
        ] {
            let refused = SessionKeys::of(&request(attributes)).unwrap_err();
            assert_eq!(refused.reason, Refusal::Attributes, "{attributes:?}");
        }
        let nothing = SessionKeys::of(&request(&[])).unwrap();
        assert_eq!(
            nothing.resolve(&index()).unwrap_err().reason,
            Refusal::NotFound
        );
        let session = SessionKeys::of(&request(&[(ACCT_SESSION_ID, b"s1")])).unwrap();
        assert_eq!(session.resolve(&index()).unwrap(), "alice");
    }
}
