//! The classifier's rule compiler over arbitrary rule lists, then the compiled form over
//! arbitrary packet keys: never panics, refuses invalid lists with an error, and every
//! compiled list classifies exactly like the reference matcher (a small one split from its
//! inline IPv4 copy too).
#![no_main]
use brasa_dataplane::acl::{
    self, Disposition, IpFamily, IpMatch, MacMask, MacMatch, Match, PacketKey, PortRange, Prefix,
    Rule, RuleAction, VidMatch,
};
use brasa_dataplane::wire::MacAddr;
use libfuzzer_sys::fuzz_target;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Reads fields off the input, zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *first
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn flag(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    fn prefix(&mut self, v6: bool) -> Prefix {
        // Small address pools so rules and keys meet; lengths may be invalid on purpose.
        let len = self.u8() % 140;
        let a = self.u8() % 4;
        if v6 {
            Prefix::new(
                Ipv6Addr::new(0x2001, 0xdb8, 0, u16::from(a), 0, 0, 0, u16::from(a)),
                len,
            )
        } else {
            Prefix::new(Ipv4Addr::new(10, 0, a, a), len)
        }
    }
    fn range(&mut self) -> PortRange {
        PortRange {
            first: u16::from(self.u8() % 10),
            last: u16::from(self.u8() % 10),
        }
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.flag() {
            Some(f(self))
        } else {
            None
        }
    }
    fn vid(&mut self) -> VidMatch {
        if self.flag() {
            VidMatch::Masked {
                value: self.u16() % 4200,
                mask: self.u16() % 4200,
            }
        } else {
            VidMatch::Range {
                first: self.u16() % 4200,
                last: self.u16() % 4200,
            }
        }
    }
    fn matcher(&mut self) -> Match {
        if self.u8() % 4 == 0 {
            Match::Mac(MacMatch {
                src: self.opt(|b| MacMask {
                    mac: MacAddr([2, 0, 0, 0, 0, b.u8() % 4]),
                    mask: MacAddr([0xff, 0xff, 0xff, 0xff, 0xff, b.u8()]),
                }),
                dst: None,
                ethertype: self.opt(|b| [0x0800, 0x86dd, 0x0806][usize::from(b.u8() % 3)]),
                outer_vid: self.opt(Self::vid),
                inner_vid: self.opt(Self::vid),
            })
        } else {
            let v6 = self.flag();
            let family = self.opt(|b| if b.flag() { IpFamily::V6 } else { IpFamily::V4 });
            Match::Ip(IpMatch {
                family,
                src: self.opt(|b| b.prefix(v6)),
                dst: self.opt(|b| b.prefix(v6)),
                protocol: self.opt(|b| [1, 6, 17, 58, 132][usize::from(b.u8() % 5)]),
                src_port: self.opt(Self::range),
                dst_port: self.opt(Self::range),
                dscp: self.opt(|b| b.u8() % 70),
                icmp_type: self.opt(|b| b.u8() % 3),
            })
        }
    }
    fn key(&mut self) -> PacketKey {
        let family = match self.u8() % 3 {
            0 => None,
            1 => Some(IpFamily::V4),
            _ => Some(IpFamily::V6),
        };
        let a = u32::from(self.u8() % 4);
        let d = u32::from(self.u8() % 4);
        let protocol = [1, 6, 17, 58, 132, 50][usize::from(self.u8() % 6)];
        PacketKey {
            src_mac: acl::mac_bits(MacAddr([2, 0, 0, 0, 0, self.u8() % 4])),
            dst_mac: 0,
            ethertype: [0x0800, 0x86dd, 0x0806][usize::from(self.u8() % 3)],
            outer_vid: self.u16() % 4096,
            inner_vid: self.u16() % 4096,
            family,
            src4: 0x0a00_0000 | (a << 8) | a,
            dst4: 0x0a00_0000 | (d << 8) | d,
            src6: (0x2001_0db8u128 << 96) | (u128::from(a) << 64) | u128::from(a),
            dst6: (0x2001_0db8u128 << 96) | (u128::from(d) << 64) | u128::from(d),
            transport: acl::Transport::new(
                protocol,
                self.u8() % 64,
                self.flag()
                    .then(|| (u16::from(self.u8() % 10), u16::from(self.u8() % 10))),
                matches!(protocol, 1 | 58).then(|| self.u8() % 3),
            ),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = Bytes(data);
    let count = usize::from(bytes.u8() % 16);
    let rules: Vec<Rule> = (0..count)
        .map(|_| Rule {
            order: u32::from(bytes.u8() % 24),
            matches: (0..bytes.u8() % 3).map(|_| bytes.matcher()).collect(),
            action: RuleAction {
                disposition: if bytes.flag() {
                    Disposition::Drop
                } else {
                    Disposition::Forward
                },
                policer: bytes.opt(Bytes::u32),
                account: bytes.flag(),
            },
        })
        .collect();
    let default = if bytes.flag() {
        RuleAction::DROP
    } else {
        RuleAction::FORWARD
    };
    let Ok(set) = acl::compile(&rules, default) else {
        return;
    };
    // A small set's block without its IPv4 part, scanned with the inline copy that holds it.
    let split = set.split_inline_v4();
    while !bytes.0.is_empty() {
        let key = bytes.key();
        let hit = set.classify(&key);
        if let Some((rest, inline)) = &split {
            assert_eq!(rest.classify_with(Some(inline), &key, None), hit);
        }
        match acl::reference_classify(&rules, &key) {
            Some(rule) => {
                assert_eq!(hit.rule.and_then(|i| set.order(i)), Some(rule.order));
                assert_eq!(hit.action, rule.action);
            }
            None => assert_eq!((hit.rule, hit.action), (None, default)),
        }
    }
});
