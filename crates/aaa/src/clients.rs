//! The NAS client table: which source addresses may send requests, and with which secret.

use crate::config::ClientConfig;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;

/// Clients looked up by source address: host entries in a hash map, prefixes by longest match.
#[derive(Debug, Default)]
pub struct ClientTable {
    clients: Vec<ClientConfig>,
    hosts: HashMap<IpAddr, usize, foldhash::fast::RandomState>,
    /// Non-host prefixes, longest first, so the first match is the most specific.
    prefixes: Vec<(IpNet, usize)>,
}

impl ClientTable {
    /// Builds the table; with overlapping entries the longest prefix wins, and for identical
    /// prefixes the first configured one.
    pub fn new(clients: Vec<ClientConfig>) -> Self {
        let mut hosts = HashMap::default();
        let mut prefixes = Vec::new();
        for (index, client) in clients.iter().enumerate() {
            let net = client.network.trunc();
            if net.prefix_len() == net.max_prefix_len() {
                hosts.entry(net.addr()).or_insert(index);
            } else {
                prefixes.push((net, index));
            }
        }
        prefixes.sort_by(|a, b| b.0.prefix_len().cmp(&a.0.prefix_len()).then(a.1.cmp(&b.1)));
        Self {
            clients,
            hosts,
            prefixes,
        }
    }

    /// The index of the client that owns `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<usize> {
        let addr = canonical(addr);
        if let Some(&index) = self.hosts.get(&addr) {
            return Some(index);
        }
        self.prefixes
            .iter()
            .find(|(net, _)| net.contains(&addr))
            .map(|&(_, index)| index)
    }

    /// The client at `index`.
    pub fn get(&self, index: usize) -> Option<&ClientConfig> {
        self.clients.get(index)
    }

    /// All clients in configured order.
    pub fn all(&self) -> &[ClientConfig] {
        &self.clients
    }
}

/// IPv4-mapped IPv6 sources (from dual-stack sockets) are matched as IPv4.
pub fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, net: &str) -> ClientConfig {
        ClientConfig {
            name: name.into(),
            network: net.parse().unwrap(),
            secret: b"s".to_vec(),
            require_message_authenticator: false,
            coa_port: 3799,
        }
    }

    #[test]
    fn longest_prefix_wins_and_hosts_are_exact() {
        let table = ClientTable::new(vec![
            client("wide", "127.0.0.0/8"),
            client("narrow", "127.0.1.0/24"),
            client("host", "127.0.1.7/32"),
            client("v6", "::1/128"),
        ]);
        let name = |ip: &str| {
            table
                .lookup(ip.parse().unwrap())
                .map(|i| table.get(i).unwrap().name.clone())
        };
        assert_eq!(name("127.0.1.7").as_deref(), Some("host"));
        assert_eq!(name("127.0.1.8").as_deref(), Some("narrow"));
        assert_eq!(name("127.9.9.9").as_deref(), Some("wide"));
        assert_eq!(name("::ffff:127.0.1.7").as_deref(), Some("host"));
        assert_eq!(name("::1").as_deref(), Some("v6"));
        assert_eq!(name("192.0.2.1"), None);
    }
}
