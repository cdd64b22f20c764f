//! Which NAS owns which session, learned from the traffic brasa relays, so that a CoA or
//! Disconnect request from the AAA server can be sent to the right NAS (RFC 5176 §3: the request
//! identifies the session by Acct-Session-Id, User-Name or Framed-IP-Address).

use brasa_radius::attr::{ACCT_SESSION_ID, FRAMED_IP_ADDRESS, USER_NAME};
use brasa_radius::AcctStatusType;
use std::collections::HashMap;
use std::net::IpAddr;

/// The session identifiers brasa learns.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SessionKey {
    AcctSessionId(Vec<u8>),
    UserName(Vec<u8>),
    FramedIp([u8; 4]),
}

/// Session identifier → (index of the NAS client that reported it, the NAS's address).
#[derive(Debug, Default)]
pub(crate) struct SessionDirectory {
    owners: HashMap<SessionKey, (usize, IpAddr)>,
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
        let mut keys = Vec::with_capacity(3);
        if let Some(id) = request.get(ACCT_SESSION_ID) {
            keys.push(SessionKey::AcctSessionId(id.to_vec()));
        }
        if let Some(name) = request.get(USER_NAME) {
            keys.push(SessionKey::UserName(name.to_vec()));
        }
        let framed = request
            .get(FRAMED_IP_ADDRESS)
            .or_else(|| reply.and_then(|r| r.get(FRAMED_IP_ADDRESS)));
        if let Some(ip) = framed.and_then(|v| <[u8; 4]>::try_from(v).ok()) {
            keys.push(SessionKey::FramedIp(ip));
        }
        for key in keys {
            if stop {
                self.owners.remove(&key);
            } else {
                self.owners.insert(key, (client, nas));
            }
        }
    }

    /// The NAS that owns the session a CoA/Disconnect request names, most specific key first.
    pub fn owner(&self, request: &brasa_radius::Message) -> Option<(usize, IpAddr)> {
        let by = |key: SessionKey| self.owners.get(&key).copied();
        request
            .get(ACCT_SESSION_ID)
            .and_then(|id| by(SessionKey::AcctSessionId(id.to_vec())))
            .or_else(|| {
                request
                    .get(FRAMED_IP_ADDRESS)
                    .and_then(|v| <[u8; 4]>::try_from(v).ok())
                    .and_then(|ip| by(SessionKey::FramedIp(ip)))
            })
            .or_else(|| {
                request
                    .get(USER_NAME)
                    .and_then(|name| by(SessionKey::UserName(name.to_vec())))
            })
    }

    /// Sessions known.
    pub fn len(&self) -> usize {
        self.owners.len()
    }
}
