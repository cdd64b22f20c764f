//! Whatever the order of route announcements, withdrawals, sweeps and configuration changes
//! (MPLS entries, `community@VPN` holders, configured mappings), what the index learnt equals
//! what a from-scratch computation over the routes held and the configuration gives: labels per
//! MPLS entry, learnt mappings per subscriber (lowest held community wins, configured mappings
//! shadow), and lookups.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use brasa_subscriber::*;
use proptest::prelude::*;

const VPNS: [&str; 2] = ["va", "vb"];
const SUBS: [&str; 3] = ["s0", "s1", "s2"];

/// Entry `1000:R@10.0.0.P`.
fn entry(rd: u32, pe: u8) -> MplsVpnId {
    format!("1000:{rd}@10.0.0.{pe}").parse().unwrap()
}

#[derive(Debug, Clone)]
enum Step {
    Announce {
        peer: u8,
        rd: u32,
        prefix: u8,
        label: u32,
        pe: u8,
        target: Option<u32>,
        communities: Vec<u16>,
    },
    Withdraw {
        peer: u8,
        rd: u32,
        prefix: u8,
    },
    Sweep {
        peer: u8,
    },
    /// Subscriber `sub` holds exactly these (community, VPN) (a replacing login).
    Hold {
        sub: usize,
        held: Vec<(u16, usize)>,
        configured: Option<(u8, usize)>,
    },
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
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u8..2, 0u32..3, 0u8..4, 16u32..19, 0u8..2, proptest::option::of(0u32..3),
              proptest::collection::vec(0u16..3, 0..3))
            .prop_map(|(peer, rd, prefix, label, pe, target, communities)| Step::Announce {
                peer, rd, prefix, label, pe, target, communities
            }),
        3 => (0u8..2, 0u32..3, 0u8..4).prop_map(|(peer, rd, prefix)| Step::Withdraw { peer, rd, prefix }),
        1 => (0u8..2).prop_map(|peer| Step::Sweep { peer }),
        2 => (0usize..3, proptest::collection::vec((0u16..3, 0usize..2), 0..3),
              proptest::option::of((0u8..4, 0usize..2)))
            .prop_map(|(sub, held, configured)| Step::Hold { sub, held, configured }),
        1 => (0usize..2, 0u32..3, 0u8..2).prop_map(|(vpn, rd, pe)| Step::AddEntry { vpn, rd, pe }),
        1 => (0usize..2, 0u32..3, 0u8..2).prop_map(|(vpn, rd, pe)| Step::RemoveEntry { vpn, rd, pe }),
    ]
}

fn prefix(p: u8) -> Prefix {
    format!("10.1.{p}.0/24").parse().unwrap()
}

fn key(peer: u8, rd: u32, p: u8) -> RouteKey {
    RouteKey {
        peer: IpAddr::from([192, 0, 2, peer]),
        rd: (1000u64 << 32) | u64::from(rd),
        prefix: prefix(p),
    }
}

/// A route of the model: label, an entry naming its next hop, its route target, its
/// communities, whether it is stale.
type ModelRoute = (u32, MplsVpnId, Option<u32>, BTreeSet<u16>, bool);

/// The reference: the routes held and the configuration, and what they must give.
#[derive(Default)]
struct Model {
    routes: BTreeMap<RouteKey, ModelRoute>,
    entries: BTreeMap<MplsVpnId, usize>,
    held: BTreeMap<(u16, usize), usize>,
    configured: BTreeMap<usize, (u8, usize)>,
}

impl Model {
    /// The entries route `k` matches: PE = next hop, RT/RD = its RD or target.
    fn matches(&self, k: &RouteKey) -> Vec<(MplsVpnId, usize)> {
        let (_, nh_entry, target, _, _) = &self.routes[k];
        let rd = (k.rd & 0xffff_ffff) as u32;
        let pe = nh_entry.pe;
        let mut out = Vec::new();
        for r in std::iter::once(rd).chain(*target) {
            let id = MplsVpnId {
                rd: RouteDistinguisher::As {
                    asn: 1000,
                    assigned: r,
                },
                pe,
            };
            if let Some(v) = self.entries.get(&id) {
                if !out.contains(&(id, *v)) {
                    out.push((id, *v));
                }
            }
        }
        out
    }

    fn labels(&self) -> BTreeMap<MplsVpnId, BTreeSet<u32>> {
        let mut out: BTreeMap<MplsVpnId, BTreeSet<u32>> =
            self.entries.keys().map(|e| (*e, BTreeSet::new())).collect();
        for k in self.routes.keys() {
            for (e, _) in self.matches(k) {
                out.get_mut(&e).unwrap().insert(self.routes[k].0);
            }
        }
        out
    }

    /// Learnt mappings per subscriber, as text.
    fn learned(&self) -> BTreeMap<usize, BTreeSet<String>> {
        let mut best: BTreeMap<(usize, u8), u16> = BTreeMap::new();
        for k in self.routes.keys() {
            let p = (u32::from(match k.prefix {
                Prefix::V4(a, _) => a,
                Prefix::V6(..) => unreachable!(),
            }) >> 8
                & 0xff) as u8;
            let vpns: BTreeSet<usize> = self.matches(k).into_iter().map(|(_, v)| v).collect();
            for v in vpns {
                for c in &self.routes[k].3 {
                    if self.held.contains_key(&(*c, v)) {
                        let slot = best.entry((v, p)).or_insert(*c);
                        *slot = (*slot).min(*c);
                    }
                }
            }
        }
        let mut out: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for ((v, p), c) in best {
            let shadowed = self.configured.values().any(|cp| *cp == (p, v));
            if !shadowed {
                out.entry(self.held[&(c, v)])
                    .or_default()
                    .insert(format!("10.1.{p}.0/24@{}", VPNS[v]));
            }
        }
        out
    }
}

fn community(c: u16) -> Community {
    Community::new(100, c)
}

fn login(sub: usize, held: &[(u16, usize)], configured: Option<(u8, usize)>) -> Login {
    Login {
        name: SUBS[sub].into(),
        mappings: configured
            .map(|(p, v)| format!("10.1.{p}.0/24@{}", VPNS[v]).parse().unwrap())
            .into_iter()
            .collect(),
        communities: held
            .iter()
            .map(|(c, v)| CommunityMapping {
                community: community(*c),
                vpn: VPNS[*v].into(),
            })
            .collect(),
        ..Login::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn learnt_state_is_a_function_of_the_routes_and_the_configuration(
        steps in proptest::collection::vec(step(), 1..60),
        restored in proptest::collection::vec((0u8..2, 0u32..3, 0u8..4, 16u32..19), 0..4),
    ) {
        let mut index = SubscriberIndex::new(IndexConfig::default()).unwrap();
        let mut model = Model::default();
        for (v, name) in VPNS.iter().enumerate() {
            let id = entry(v as u32, 0);
            index.add_vpn(Vpn {
                name: (*name).into(),
                domain: DEFAULT_DOMAIN.into(),
                kind: VpnKind::Mpls(vec![MplsVpnEntry::new(id)]),
            }).unwrap();
            model.entries.insert(id, v);
        }
        // Routes restored from a store, stale until announced again or swept.
        let mut back = Vec::new();
        for (peer, rd, p, label) in restored {
            let k = key(peer, rd, p);
            if model.routes.contains_key(&k) {
                continue;
            }
            back.push(LearnedRoute {
                key: k,
                label,
                attrs: Arc::new(RouteAttributes::new("10.0.0.0".parse().unwrap(), vec![], vec![community(0)])),
            });
            model.routes.insert(k, (label, entry(0, 0), None, [0].into(), true));
        }
        index.restore_learned(back);

        for step in steps {
            match step {
                Step::Announce { peer, rd, prefix: p, label, pe, target, communities } => {
                    let k = key(peer, rd, p);
                    index.learn([LearnOp::Announce(LearnedRoute {
                        key: k,
                        label,
                        attrs: Arc::new(RouteAttributes::new(
                            format!("10.0.0.{pe}").parse().unwrap(),
                            target.iter().map(|t| RouteDistinguisher::As { asn: 1000, assigned: *t }).collect(),
                            communities.iter().map(|c| community(*c)).collect(),
                        )),
                    })]);
                    model.routes.insert(k, (label, entry(0, pe), target, communities.into_iter().collect(), false));
                }
                Step::Withdraw { peer, rd, prefix: p } => {
                    index.learn([LearnOp::Withdraw(key(peer, rd, p))]);
                    model.routes.remove(&key(peer, rd, p));
                }
                Step::Sweep { peer } => {
                    let peer_ip = IpAddr::from([192, 0, 2, peer]);
                    index.learn([LearnOp::SweepStale { peer: peer_ip, family: None }]);
                    model.routes.retain(|k, r| k.peer != peer_ip || !r.4);
                }
                Step::Hold { sub, held, configured } => {
                    // A hold taken from another subscriber moves (login semantics); one given
                    // twice in the call is refused as a whole.
                    let distinct: BTreeSet<_> = held.iter().collect();
                    let clash = configured.is_some_and(|cp| model.configured.iter().any(|(s, c)| *s != sub && *c == cp));
                    let result = index.login(login(sub, &held, configured));
                    if distinct.len() < held.len() {
                        prop_assert!(result.is_err());
                        continue;
                    }
                    prop_assert!(result.is_ok(), "{result:?}");
                    model.held.retain(|_, s| *s != sub);
                    for h in held {
                        model.held.insert(h, sub);
                    }
                    if clash {
                        model.configured.retain(|_, cp| Some(*cp) != configured);
                    }
                    match configured {
                        Some(cp) => { model.configured.insert(sub, cp); }
                        None => { model.configured.remove(&sub); }
                    }
                }
                Step::AddEntry { vpn, rd, pe } => {
                    let id = entry(rd, pe);
                    let result = index.add_mpls_entries(VPNS[vpn], &[id]);
                    prop_assert_eq!(result.is_ok(), !model.entries.contains_key(&id));
                    model.entries.entry(id).or_insert(vpn);
                }
                Step::RemoveEntry { vpn, rd, pe } => {
                    let id = entry(rd, pe);
                    let last = model.entries.values().filter(|v| **v == vpn).count() == 1;
                    let result = index.remove_mpls_entries(VPNS[vpn], &[id]);
                    let ok = model.entries.get(&id) == Some(&vpn) && !last;
                    prop_assert_eq!(result.is_ok(), ok, "{:?}", result);
                    if ok {
                        model.entries.remove(&id);
                    }
                }
            }
            // Labels per entry.
            let mut labels: BTreeMap<MplsVpnId, BTreeSet<u32>> = BTreeMap::new();
            for v in index.vpns() {
                if let VpnKind::Mpls(entries) = &v.kind {
                    for e in entries {
                        prop_assert!(e.learned_labels.windows(2).all(|w| w[0] < w[1]));
                        labels.insert(e.id, e.learned_labels.iter().copied().collect());
                    }
                }
            }
            prop_assert_eq!(&labels, &model.labels());
            // Learnt mappings per subscriber, and lookups.
            let expected = model.learned();
            for (i, name) in SUBS.iter().enumerate() {
                let got: BTreeSet<String> = index
                    .get(name)
                    .map(|s| s.learned.iter().map(ToString::to_string).collect())
                    .unwrap_or_default();
                prop_assert_eq!(&got, &expected.get(&i).cloned().unwrap_or_default(), "{}", name);
                for m in &got {
                    let (ip, vpn) = m.split_once('@').unwrap();
                    let addr = ip.replace(".0/24", ".9").parse().unwrap();
                    prop_assert_eq!(index.lookup(addr, Some(vpn)).unwrap(), Some(*name));
                }
            }
            prop_assert_eq!(index.learned_route_count(), model.routes.len());
            let matched = model.routes.keys().filter(|k| !model.matches(k).is_empty()).count();
            let counted: usize = index.learned_peers().iter().map(|(_, c)| c.matched).sum();
            prop_assert_eq!(counted, matched);
        }
    }
}
