//! A standby's index, kept up to date with [`SubscriberIndex::apply_stored`] from what a store
//! holds under the keys each commit wrote, equals an index rebuilt from the whole store (a cold
//! take-over) after any sequence of operations: logins that move exact mappings and
//! `community@VPN` network IDs between subscribers, domain changes, logouts, removals, VPNs
//! created by a login, added, removed and re-added in another domain, MPLS entries and labels,
//! and the BGP LEG's routes. The store is the shared stored encoding ([`for_each_write`],
//! `decode_*`), as every backend keeps it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use brasa_subscriber::store::{
    decode_route, decode_route_key, decode_subscriber, decode_vpn, for_each_write,
};
use brasa_subscriber::*;
use proptest::prelude::*;

const SUBS: [&str; 4] = ["s0", "s1", "s2", "s3"];
const DOMAINS: [&str; 2] = [DEFAULT_DOMAIN, "business"];
const MPLS_VPNS: [&str; 2] = ["va", "vb"];

fn config() -> IndexConfig {
    IndexConfig {
        domains: DOMAINS.iter().map(|d| (*d).to_owned()).collect(),
        name_case: NameCase::Sensitive,
    }
}

/// Entry `1000:R@10.0.0.P`.
fn entry(rd: u32, pe: u8) -> MplsVpnId {
    format!("1000:{rd}@10.0.0.{pe}").parse().unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Login {
        who: usize,
        specs: Vec<(u8, u8)>,
        held: Vec<(u16, usize)>,
        additive: bool,
        business: bool,
    },
    Logout(usize),
    Remove(usize),
    LogoutByMapping(u8, u8),
    /// A VLAN VPN `vc` (VLAN 9) in one of the domains.
    AddVpn {
        business: bool,
    },
    RemoveVpn(u8),
    AddEntry {
        vpn: usize,
        rd: u32,
        pe: u8,
    },
    RemoveEntry {
        vpn: usize,
        rd: u32,
        pe: u8,
    },
    SetLabel {
        rd: u32,
        pe: u8,
        label: u32,
    },
    Announce {
        peer: u8,
        rd: u32,
        prefix: u8,
        label: u32,
        pe: u8,
        communities: Vec<u16>,
    },
    Withdraw {
        peer: u8,
        rd: u32,
        prefix: u8,
    },
    /// The standby catches up with what was committed since its last catch-up.
    Sync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0usize..4, proptest::collection::vec((any::<u8>(), 0u8..8), 0..3),
              proptest::collection::vec((0u16..3, 0usize..2), 0..2), any::<bool>(),
              proptest::bool::weighted(0.15))
            .prop_map(|(who, specs, held, additive, business)| Step::Login {
                who, specs, held, additive, business
            }),
        1 => (0usize..4).prop_map(Step::Logout),
        1 => (0usize..4).prop_map(Step::Remove),
        1 => (any::<u8>(), 0u8..8).prop_map(|(s, k)| Step::LogoutByMapping(s, k)),
        1 => any::<bool>().prop_map(|business| Step::AddVpn { business }),
        1 => (0u8..3).prop_map(Step::RemoveVpn),
        1 => (0usize..2, 0u32..3, 0u8..2).prop_map(|(vpn, rd, pe)| Step::AddEntry { vpn, rd, pe }),
        1 => (0usize..2, 0u32..3, 0u8..2).prop_map(|(vpn, rd, pe)| Step::RemoveEntry { vpn, rd, pe }),
        1 => (0u32..3, 0u8..2, 16u32..19).prop_map(|(rd, pe, label)| Step::SetLabel { rd, pe, label }),
        3 => (0u8..2, 0u32..3, 0u8..4, 16u32..19, 0u8..2, proptest::collection::vec(0u16..3, 0..3))
            .prop_map(|(peer, rd, prefix, label, pe, communities)| Step::Announce {
                peer, rd, prefix, label, pe, communities
            }),
        2 => (0u8..2, 0u32..3, 0u8..4).prop_map(|(peer, rd, prefix)| Step::Withdraw { peer, rd, prefix }),
        2 => Just(Step::Sync),
    ]
}

/// Global ranges that overlap (so exact mappings move and longest matches change), a VLAN
/// VPN created by the login, a VPN `vc` that may not exist, and a configured mapping in an
/// MPLS/VPN (it shadows a learnt one).
fn spec(start: u8, kind: u8) -> String {
    let a = start % 16;
    match kind {
        0 => format!("127.0.0.{a}"),
        1 => format!("127.0.0.{}/30", a & !3),
        2 => format!("127.0.0.{a}-127.0.0.{}", (a + 5).min(15)),
        3 => "127.0.0.0/28".into(),
        4 => format!("127.0.1.{}@VLAN-7", a % 4),
        5 => format!("127.0.2.{}@vc", a % 4),
        6 => format!("10.1.{}.0/24@{}", a % 4, MPLS_VPNS[usize::from(a / 4 % 2)]),
        _ => format!("127.0.0.{a}/32"),
    }
}

fn community(c: u16) -> Community {
    Community::new(100, c)
}

fn route_key(peer: u8, rd: u32, p: u8) -> RouteKey {
    RouteKey {
        peer: IpAddr::from([192, 0, 2, peer]),
        rd: (1000u64 << 32) | u64::from(rd),
        prefix: format!("10.1.{p}.0/24").parse().unwrap(),
    }
}

/// A store in the shared stored encoding, and the keys written since the standby's last
/// catch-up (what a change log names).
#[derive(Default)]
struct Store {
    vpns: BTreeMap<String, Vec<u8>>,
    subscribers: BTreeMap<String, Vec<u8>>,
    routes: BTreeMap<Vec<u8>, Vec<u8>>,
    written: BTreeSet<(u8, Vec<u8>)>,
}

impl Store {
    fn commit(&mut self, changes: &ChangeSet) {
        fn put<K: Ord>(table: &mut BTreeMap<K, Vec<u8>>, key: K, value: Option<&[u8]>) {
            match value {
                Some(v) => table.insert(key, v.to_vec()),
                None => table.remove(&key),
            };
        }
        for_each_write(std::slice::from_ref(changes), RouteFormat::Binary, |w| {
            match w {
                StoredWrite::Vpn { name, value } => {
                    self.written.insert((0, name.as_bytes().to_vec()));
                    put(&mut self.vpns, name.to_owned(), value);
                }
                StoredWrite::Subscriber { name, value, .. } => {
                    self.written.insert((1, name.as_bytes().to_vec()));
                    put(&mut self.subscribers, name.to_owned(), value);
                }
                StoredWrite::Route { key, value } => {
                    self.written.insert((2, key.to_vec()));
                    put(&mut self.routes, key.to_vec(), value);
                }
            }
            Ok(())
        })
        .unwrap();
    }

    /// The current records under the keys written since the last call.
    fn tail(&mut self) -> StoredRecords {
        let mut out = StoredRecords::default();
        for (table, key) in std::mem::take(&mut self.written) {
            match table {
                0 => {
                    let name = String::from_utf8(key).unwrap();
                    let record = self.vpns.get(&name).map(|v| decode_vpn(&name, v).unwrap());
                    out.vpns.push((name, record));
                }
                1 => {
                    let name = String::from_utf8(key).unwrap();
                    let record = self
                        .subscribers
                        .get(&name)
                        .map(|v| decode_subscriber(&name, v).unwrap());
                    out.subscribers.push((name, record));
                }
                _ => {
                    let record = self
                        .routes
                        .get(&key)
                        .map(|v| decode_route(&key, v).unwrap());
                    out.routes.push((decode_route_key(&key).unwrap(), record));
                }
            }
        }
        out
    }

    /// Every record, as a full read returns them.
    fn load(&self) -> Snapshot {
        Snapshot {
            vpns: self
                .vpns
                .iter()
                .map(|(k, v)| decode_vpn(k, v).unwrap())
                .collect(),
            subscribers: self
                .subscribers
                .iter()
                .map(|(k, v)| decode_subscriber(k, v).unwrap())
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|(k, v)| decode_route(k, v).unwrap())
                .collect(),
        }
    }
}

/// A route as an index shows it: key, label, stale, the VPNs it matches, who holds it.
type RouteView = (RouteKey, u32, bool, Vec<String>, Vec<(String, String)>);

/// Everything an index answers, in a canonical order.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    subscribers: Vec<Subscriber>,
    vpns: Vec<Vpn>,
    routes: Vec<RouteView>,
    domains: Vec<(String, usize)>,
    lookups: Vec<Result<Option<String>, String>>,
}

fn contents(index: &SubscriberIndex) -> Contents {
    let mut subscribers: Vec<Subscriber> = index.iter().collect();
    subscribers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut vpns: Vec<Vpn> = index.vpns().cloned().collect();
    vpns.sort_by(|a, b| a.name.cmp(&b.name));
    let mut routes: Vec<RouteView> = index
        .learned_routes(None)
        .unwrap()
        .map(|v| {
            let mut vpns: Vec<String> = v.vpns.iter().map(|s| (*s).to_owned()).collect();
            vpns.sort();
            let mut holders: Vec<(String, String)> = v
                .holders
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect();
            holders.sort();
            (v.route.key, v.route.label, v.stale, vpns, holders)
        })
        .collect();
    routes.sort_by_key(|r| r.0);
    let mut lookups = Vec::new();
    for vpn in [None, Some("VLAN-7"), Some("vc"), Some("va"), Some("vb")] {
        for addr in (0..16)
            .map(|h| format!("127.0.0.{h}"))
            .chain((0..4).map(|h| format!("127.0.1.{h}")))
            .chain((0..4).map(|h| format!("127.0.2.{h}")))
            .chain((0..4).map(|p| format!("10.1.{p}.9")))
        {
            let found = index.lookup(addr.parse().unwrap(), vpn);
            lookups.push(
                found
                    .map(|o| o.map(str::to_owned))
                    .map_err(|e| e.to_string()),
            );
        }
    }
    Contents {
        subscribers,
        vpns,
        routes,
        domains: index
            .count_by_domain()
            .into_iter()
            .map(|(d, n)| (d.to_owned(), n))
            .collect(),
        lookups,
    }
}

/// What a store keeps of the routes, without their stale marks: a standby and a cold read
/// restore routes as stale, the active holds them as announced, and also holds those that
/// match no VPN (which are not stored).
fn stored_routes_unmarked(mut c: Contents) -> Contents {
    c.routes.retain(|r| !r.3.is_empty());
    for r in &mut c.routes {
        r.2 = false;
    }
    c
}

fn apply(index: &mut SubscriberIndex, step: &Step) -> Option<ChangeSet> {
    let result = match step {
        Step::Login {
            who,
            specs,
            held,
            additive,
            business,
        } => index.login(Login {
            name: SUBS[*who].into(),
            domain: business.then(|| "business".to_owned()),
            mappings: specs
                .iter()
                .map(|(s, k)| spec(*s, *k).parse().unwrap())
                .collect(),
            communities: held
                .iter()
                .map(|(c, v)| CommunityMapping {
                    community: community(*c),
                    vpn: MPLS_VPNS[*v].into(),
                })
                .collect(),
            additive: *additive,
            properties: vec![("who".into(), who.to_string())],
            auto_logout: Some(1000 + *who as u64),
        }),
        Step::Logout(who) => index.logout(SUBS[*who], None),
        Step::Remove(who) => index.remove(SUBS[*who]),
        Step::LogoutByMapping(s, k) => index.logout_by_mapping(&spec(*s, *k).parse().unwrap()),
        Step::AddVpn { business } => index.add_vpn(Vpn {
            name: "vc".into(),
            domain: DOMAINS[usize::from(*business)].into(),
            kind: VpnKind::Vlan(9),
        }),
        Step::RemoveVpn(v) => index.remove_vpn(["VLAN-7", "vc", "vb"][usize::from(*v)]),
        Step::AddEntry { vpn, rd, pe } => {
            index.add_mpls_entries(MPLS_VPNS[*vpn], &[entry(*rd, *pe)])
        }
        Step::RemoveEntry { vpn, rd, pe } => {
            index.remove_mpls_entries(MPLS_VPNS[*vpn], &[entry(*rd, *pe)])
        }
        Step::SetLabel { rd, pe, label } => index.set_mpls_label(
            entry(*rd, *pe),
            *label,
            vec![format!("10.9.{label}.0/24").parse().unwrap()],
        ),
        Step::Announce {
            peer,
            rd,
            prefix,
            label,
            pe,
            communities,
        } => Ok(index.learn([LearnOp::Announce(LearnedRoute {
            key: route_key(*peer, *rd, *prefix),
            label: *label,
            attrs: Arc::new(RouteAttributes::new(
                format!("10.0.0.{pe}").parse().unwrap(),
                vec![],
                communities.iter().map(|c| community(*c)).collect(),
            )),
        })])),
        Step::Withdraw { peer, rd, prefix } => {
            Ok(index.learn([LearnOp::Withdraw(route_key(*peer, *rd, *prefix))]))
        }
        Step::Sync => return None,
    };
    result.ok()
}

fn catch_up(
    standby: SubscriberIndex,
    store: &mut Store,
    active: &SubscriberIndex,
) -> Result<SubscriberIndex, TestCaseError> {
    let standby = standby.apply_stored(store.tail()).unwrap();
    let cold = store.load().into_index(config()).unwrap();
    let warm = contents(&standby);
    prop_assert_eq!(&warm, &contents(&cold));
    prop_assert_eq!(
        stored_routes_unmarked(warm),
        stored_routes_unmarked(contents(active))
    );
    // Applying the same records again changes nothing.
    let twice = standby.apply_stored(store.load_as_tail()).unwrap();
    prop_assert_eq!(contents(&twice), contents(&cold));
    Ok(twice)
}

impl Store {
    /// Every record as a tail (what a standby that re-reads every key would apply).
    fn load_as_tail(&self) -> StoredRecords {
        let all = self.load();
        StoredRecords {
            vpns: all
                .vpns
                .into_iter()
                .map(|v| (v.name.clone(), Some(v)))
                .collect(),
            subscribers: all
                .subscribers
                .into_iter()
                .map(|s| (s.name.as_str().to_owned(), Some(s)))
                .collect(),
            routes: all.routes.into_iter().map(|r| (r.key, Some(r))).collect(),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_standby_index_kept_from_the_store_equals_a_cold_rebuild(
        steps in proptest::collection::vec(step(), 1..50),
    ) {
        let mut active = SubscriberIndex::new(config()).unwrap();
        let mut store = Store::default();
        for (v, name) in MPLS_VPNS.iter().enumerate() {
            let changes = active.add_vpn(Vpn {
                name: (*name).into(),
                domain: DEFAULT_DOMAIN.into(),
                kind: VpnKind::Mpls(vec![MplsVpnEntry::new(entry(v as u32, 0))]),
            }).unwrap();
            store.commit(&changes);
        }
        // The standby starts from a full read, as a follower does.
        let mut standby = store.load().into_index(config()).unwrap();
        store.written.clear();
        for step in &steps {
            if matches!(step, Step::Sync) {
                standby = catch_up(standby, &mut store, &active)?;
            } else if let Some(changes) = apply(&mut active, step) {
                store.commit(&changes);
            }
        }
        catch_up(standby, &mut store, &active)?;
    }
}

#[test]
fn a_route_key_decodes_to_the_key_it_was_stored_under() {
    let mut store = Store::default();
    let mut index = SubscriberIndex::new(config()).unwrap();
    index
        .add_vpn(Vpn {
            name: "va".into(),
            domain: DEFAULT_DOMAIN.into(),
            kind: VpnKind::Mpls(vec![MplsVpnEntry::new(entry(0, 0))]),
        })
        .unwrap();
    let keys = [
        route_key(1, 0, 3),
        RouteKey {
            peer: "2001:db8::1".parse().unwrap(),
            rd: 1000u64 << 32,
            prefix: "2001:db8:5::/48".parse().unwrap(),
        },
    ];
    for key in keys {
        let changes = index.learn([LearnOp::Announce(LearnedRoute {
            key,
            label: 16,
            attrs: Arc::new(RouteAttributes::new(
                "10.0.0.0".parse().unwrap(),
                vec![],
                vec![],
            )),
        })]);
        store.commit(&changes);
    }
    let tail = store.tail();
    let decoded: BTreeSet<RouteKey> = tail.routes.iter().map(|(k, _)| *k).collect();
    assert_eq!(decoded, keys.into_iter().collect());
    assert!(decode_route_key(&[0; 41]).is_err());
    let mut host_bits = [0u8; 42];
    host_bits[24] = 4;
    host_bits[25..41].copy_from_slice(
        &"::ffff:10.1.1.1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    host_bits[41] = 24;
    assert!(
        decode_route_key(&host_bits).is_err(),
        "host bits in a prefix"
    );
}
