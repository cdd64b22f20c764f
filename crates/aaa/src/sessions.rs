//! Which NAS owns which session, learned from the traffic brasa relays, so that a CoA or
//! Disconnect request from the AAA server can be sent to the right NAS (RFC 5176 §3: the request
//! identifies the session by Acct-Session-Id, User-Name or Framed-IP-Address).

use brasa_radius::attr::{ACCT_SESSION_ID, FRAMED_IP_ADDRESS, USER_NAME};
use brasa_radius::AcctStatusType;
use std::collections::HashMap;
use std::net::IpAddr;

/// The index of the NAS client that reported a session, and the NAS's address.
type Owner = (usize, IpAddr);
type Hasher = foldhash::fast::RandomState;

/// Session identifier → owner, one table per kind of identifier. Keys are looked up by the
/// borrowed attribute value, so a session seen again (every Interim-Update) is updated in place
/// without copying its identifiers.
#[derive(Debug, Default)]
pub(crate) struct SessionDirectory {
    by_session_id: HashMap<Box<[u8]>, Owner, Hasher>,
    by_user_name: HashMap<Box<[u8]>, Owner, Hasher>,
    by_framed_ip: HashMap<[u8; 4], Owner, Hasher>,
}

/// Records (or, on a Stop, forgets) `key` in `table`; `owned` makes the table's copy of a
/// new key.
fn learn_key<K, Q>(
    table: &mut HashMap<K, Owner, Hasher>,
    key: &Q,
    owned: impl FnOnce(&Q) -> K,
    owner: Owner,
    stop: bool,
) where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if stop {
        table.remove(key);
    } else if let Some(known) = table.get_mut(key) {
        *known = owner;
    } else {
        table.insert(owned(key), owner);
    }
}

impl SessionDirectory {
    /// Learns from a request (`request`) and, for Access-Accepts, its reply (`reply`) that
    /// `client` owns these sessions; an Accounting Stop forgets them.
    pub fn learn(
        &mut self,
        client: usize,
        nas: IpAddr,
        request: &brasa_radius::Message,
        reply: Option<&brasa_radius::Message>,
    ) {
        let stop = request.acct_status_type() == Some(AcctStatusType::Stop);
        let owner = (client, nas);
        if let Some(id) = request.get(ACCT_SESSION_ID) {
            learn_key(&mut self.by_session_id, id, |id| id.into(), owner, stop);
        }
        if let Some(name) = request.get(USER_NAME) {
            learn_key(
                &mut self.by_user_name,
                name,
                |name| name.into(),
                owner,
                stop,
            );
        }
        let framed = request
            .get(FRAMED_IP_ADDRESS)
            .or_else(|| reply.and_then(|r| r.get(FRAMED_IP_ADDRESS)));
        if let Some(ip) = framed.and_then(|v| <[u8; 4]>::try_from(v).ok()) {
            learn_key(&mut self.by_framed_ip, &ip, |ip| *ip, owner, stop);
        }
    }

    /// The NAS that owns the session a CoA/Disconnect request names, most specific key first.
    pub fn owner(&self, request: &brasa_radius::Message) -> Option<Owner> {
        request
            .get(ACCT_SESSION_ID)
            .and_then(|id| self.by_session_id.get(id).copied())
            .or_else(|| {
                request
                    .get(FRAMED_IP_ADDRESS)
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .and_then(|ip| self.by_framed_ip.get(&ip).copied())
            })
            .or_else(|| {
                request
                    .get(USER_NAME)
                    .and_then(|name| self.by_user_name.get(name).copied())
            })
    }

    /// Session identifiers known (of every kind).
    pub fn len(&self) -> usize {
        self.by_session_id.len() + self.by_user_name.len() + self.by_framed_ip.len()
    }
}
