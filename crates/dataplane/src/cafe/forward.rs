//! The CAFE forwarding table (seed 004 §5.3.1): a forwarding key (one byte, local meaning) to
//! the egress that reaches the next CAFE, with per-key counters.

use crate::pipeline::PortId;
use crate::wire::MacAddr;
use serde::Serialize;

/// How packets for a key leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EgressKind {
    /// An Ethernet frame to `dst` (source MAC = the port's).
    Ethernet {
        /// Destination MAC address.
        dst: MacAddr,
    },
    /// An 802.1Q-tagged Ethernet frame to `dst` on VLAN `vid`.
    Vlan {
        /// Destination MAC address.
        dst: MacAddr,
        /// VLAN identifier.
        vid: u16,
    },
    /// A layer-3 device (GRE tunnel): the kernel adds the outer headers and resolves ARP.
    Device,
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One forwarding entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardEntry {
    /// Egress port.
    pub port: PortId,
    /// Framing towards the next CAFE.
    pub kind: EgressKind,
}

/// Packets and bytes forwarded with one key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KeyCounters {
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded (COMET header and payload).
    pub bytes: u64,
}

/// The 256-entry table, indexed directly by key.
pub struct ForwardTable {
    entries: [Option<ForwardEntry>; 256],
    counters: [KeyCounters; 256],
}

impl Default for ForwardTable {
    fn default() -> Self {
        Self::new()
    }
}

impl ForwardTable {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            entries: [None; 256],
            counters: [KeyCounters::default(); 256],
        }
    }

    /// Sets the entry for `key` (its counters restart); returns the previous one.
    pub fn insert(&mut self, key: u8, entry: ForwardEntry) -> Option<ForwardEntry> {
        self.counters[usize::from(key)] = KeyCounters::default();
        self.entries[usize::from(key)].replace(entry)
    }

    /// Removes the entry for `key`.
    pub fn remove(&mut self, key: u8) -> Option<ForwardEntry> {
        self.entries[usize::from(key)].take()
    }

    /// The entry for `key`.
    #[inline]
    pub fn get(&self, key: u8) -> Option<ForwardEntry> {
        self.entries[usize::from(key)]
    }

    /// Counts a forwarded packet.
    #[inline]
    pub fn count(&mut self, key: u8, bytes: usize) {
        let counters = &mut self.counters[usize::from(key)];
        counters.packets += 1;
        counters.bytes += bytes as u64;
    }

    /// Counters of `key`.
    pub fn counters(&self, key: u8) -> KeyCounters {
        self.counters[usize::from(key)]
    }

    /// Configured entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, ForwardEntry, KeyCounters)> + '_ {
        (0..=255u8).filter_map(|key| {
            self.entries[usize::from(key)]
                .map(|entry| (key, entry, self.counters[usize::from(key)]))
        })
    }
}
