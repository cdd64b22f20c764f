//! The emulation's router names: the document's `d.r` routers on loopback addresses.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Maps the document's router names (`2.3`) to loopback addresses (`127.N.2.3`) and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Naming {
    /// The second octet `N` (lets several emulations share one host).
    pub net: u8,
}

impl Naming {
    /// `a.b` → 127.N.a.b; a full dotted quad is taken as it is.
    pub fn resolve(&self, name: &str) -> Option<Ipv4Addr> {
        if let Ok(addr) = name.parse::<Ipv4Addr>() {
            return Some(addr);
        }
        let (a, b) = name.split_once('.')?;
        Some(Ipv4Addr::new(
            127,
            self.net,
            a.parse().ok()?,
            b.parse().ok()?,
        ))
    }

    /// The router name of `addr` (`2.3` for 127.N.2.3, the address otherwise).
    pub fn name(&self, addr: Ipv4Addr) -> String {
        let o = addr.octets();
        if o[0] == 127 && o[1] == self.net {
            format!("{}.{}", o[2], o[3])
        } else {
            addr.to_string()
        }
    }

    /// `2.3:2000`.
    pub fn endpoint(&self, endpoint: SocketAddrV4) -> String {
        format!("{}:{}", self.name(*endpoint.ip()), endpoint.port())
    }
}
