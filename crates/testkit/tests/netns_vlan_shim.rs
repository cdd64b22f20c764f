//! The VLAN shim carries a host's traffic across a trunk under its tags, and only there.

use brasa_testkit::capture::Capture;
use brasa_testkit::netns::Netns;
use brasa_testkit::vlan_shim::{host_pair, Access, VlanShim, TPID_8021AD, TPID_8021Q};

fn ping(host: &Netns, address: &str) -> bool {
    host.output("ping", &["-c", "1", "-W", "1", address])
        .status
        .success()
}

/// Two hosts, each behind a shim, the shims joined by a trunk; returns what must live.
fn topology(
    left_tags: Vec<(u16, u16)>,
    right_tags: Vec<(u16, u16)>,
) -> (Netns, Netns, Netns, Netns, VlanShim, VlanShim) {
    let left = Netns::new("shl");
    let right = Netns::new("shr");
    let h1 = Netns::new("h1");
    let h2 = Netns::new("h2");
    left.sh(&format!(
        "ip link add tl mtu 1600 type veth peer name tr mtu 1600 netns {} && ip link set tl up",
        right.name
    ));
    right.sh("ip link set tr up");
    host_pair(&left, "a0", &h1, "h1", "10.0.0.1/24");
    host_pair(&right, "b0", &h2, "h2", "10.0.0.2/24");
    let shim_left = VlanShim::start(
        &left,
        "tl",
        vec![Access {
            interface: "a0".into(),
            tags: left_tags,
        }],
    );
    let shim_right = VlanShim::start(
        &right,
        "tr",
        vec![Access {
            interface: "b0".into(),
            tags: right_tags,
        }],
    );
    (left, right, h1, h2, shim_left, shim_right)
}

#[test]
fn netns_shim_carries_a_dot1q_host_and_the_trunk_sees_the_tag() {
    let tags = vec![(TPID_8021Q, 100)];
    let (left, _right, h1, _h2, _a, _b) = topology(tags.clone(), tags);
    let dump = Capture::start(
        Some(&left),
        &["-c", "2", "-nn", "-e", "-i", "tl", "vlan and icmp"],
        std::time::Duration::from_secs(4),
    );
    let ok = ping(&h1, "10.0.0.2");
    let dump = dump.output();
    assert!(ok, "ping across the trunk failed; the trunk saw:\n{dump}");
    assert!(
        dump.contains("vlan 100") && dump.contains("ICMP echo request"),
        "{dump}"
    );
}

#[test]
fn netns_shim_carries_a_qinq_host_and_drops_other_tags() {
    let qinq = vec![(TPID_8021AD, 200), (TPID_8021Q, 300)];
    let (_left, _right, h1, _h2, _a, _b) = topology(qinq.clone(), qinq);
    assert!(ping(&h1, "10.0.0.2"), "ping across the QinQ trunk failed");

    let (_left, _right, h1, _h2, _a, _b) =
        topology(vec![(TPID_8021Q, 100)], vec![(TPID_8021Q, 101)]);
    assert!(
        !ping(&h1, "10.0.0.2"),
        "frames crossed between different VLANs"
    );
}
