//! Subscriber services enforced by `brasa run`: its data plane is an enforcement point of its
//! own Subscriber Manager (`[dataplane.subscribers]`), the subscriber host sits behind an IES
//! interface (a dot1q SAP of a VLAN trunk, as on a BNG's subscriber interface), and the
//! kernel routes from the interface's TAP to a server namespace. What the SM pushes decides
//! what the subscriber's traffic meets on the interface.

mod services_support;
mod support;

use brasa_testkit::netns::Netns;
use services_support::{dot1q, ping, ping_eventually, Daemon, Trunk, TrunkNames};
use std::path::Path;
use std::time::Duration;

/// The subscriber host.
const SUBSCRIBER: &str = "10.71.0.2";
/// The server behind the router, in the seed's 10.1.1.0/24.
const SERVER: &str = "10.1.1.2";

struct Lab {
    router: Netns,
    _trunk: Trunk,
    host: Netns,
    server: Netns,
}

/// Router `per`, subscriber host `pesub` behind trunk `pt1` (VLAN 10), server `pesrv` on
/// a kernel-routed veth of the router.
fn lab() -> Lab {
    let router = Netns::new("per");
    let mut trunk = services_support::trunk(
        &router,
        TrunkNames {
            switch_prefix: "pesw",
            ipv4_only: true,
        },
        "pt1",
        vec![dot1q("pesub", "10.71.0.2/24", 10)],
    );
    let host = trunk.hosts.remove(0);
    host.sh("ip route add default via 10.71.0.1");
    let server = Netns::new("pesrv");
    router.sh(&format!(
        "sysctl -qw net.ipv4.ip_forward=1 && \
         ip link add pes0 type veth peer name eth0 netns {} && \
         ip addr add 10.1.1.1/24 dev pes0 && ip link set pes0 up",
        server.name
    ));
    server.sh(
        "ip addr add 10.1.1.2/24 dev eth0 && ip link set eth0 up && ip link set lo up && \
         ip route add default via 10.1.1.1",
    );
    Lab {
        router,
        _trunk: trunk,
        host,
        server,
    }
}

fn config(dir: &Path, extra: &str) -> String {
    format!(
        r#"data_dir = "{data}"
[api]
listen = "127.0.0.1:7780"

[subscriber_manager]
listen = "127.0.0.1:7790"
keepalive_interval = "1s"
[[subscriber_manager.ep]]
id = "dp"

[dataplane]
tun = "petun0"
[[dataplane.interface]]
name = "pt1"
encap = "dot1q"

[dataplane.subscribers]
sm = ["127.0.0.1:7790"]
ep_id = "dp"
no_services = "drop"
{extra}
"#,
        data = dir.join("data").display()
    )
}

const IES: &str = r#"configure service
    ies 100 customer 1 create
        interface "subscribers" create
            address 10.71.0.1/24
            sap pt1:10 create exit
        exit
        no shutdown
    exit
exit all
"#;

/// Whether the enforcement point holds `name` (and how `show subscriber-services` shows it).
fn enforced(daemon: &Daemon, name: &str) -> bool {
    daemon
        .brasa(&["show", "subscriber-services", name], None)
        .status
        .success()
}

fn dropped(daemon: &Daemon, reason: &str) -> u64 {
    let status = daemon.json(&["show", "subscriber-services"]);
    status["status"]["packets"][reason].as_u64().unwrap_or(0)
}

/// The SM logs `alice` in with the host's address; the data plane installs her on the
/// interface: without services her traffic gets `no_services = "drop"` (counted), traffic
/// of unknown addresses passes; logout lets her through again. After kill -9 and a
/// restart, the SM's record is enforced again.
#[test]
fn netns_a_subscriber_pushed_by_the_sm_is_enforced_on_the_ies_interface_and_again_after_kill_9() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&lab.router, dir.path(), &config(dir.path(), ""));
    daemon.apply(IES);
    // Unknown to the SM: the default forwards.
    ping_eventually(&lab.host, SERVER, Duration::from_secs(15));
    daemon.eventually("the EP is connected", || {
        daemon.json(&["show", "subscriber-services"])["status"]["connected"] == true
    });

    daemon.ok(&["sm", "login", "alice", "-m", SUBSCRIBER], None);
    daemon.eventually("alice is enforced", || enforced(&daemon, "alice"));
    let view = daemon.json(&["show", "subscriber-services", "alice"]);
    assert_eq!(
        view["addresses"],
        serde_json::json!(["10.71.0.2/32"]),
        "{view}"
    );
    assert!(
        !ping(&lab.host, SERVER),
        "a subscriber without services is dropped"
    );
    assert!(dropped(&daemon, "no_services") > 0);
    // The server's side is no subscriber's ingress: it still reaches the router.
    assert!(ping(&lab.server, "10.1.1.1"));

    daemon.ok(&["sm", "logout", "alice"], None);
    daemon.eventually("logout reaches the data plane", || ping(&lab.host, SERVER));

    // kill -9, restart: the SM's stored record comes back to the data plane.
    daemon.ok(&["sm", "login", "alice", "-m", SUBSCRIBER], None);
    daemon.eventually("alice is enforced", || !ping(&lab.host, SERVER));
    let _ = daemon.child.kill();
    let _ = daemon.child.wait();
    drop(daemon);
    daemon = Daemon::start(&lab.router, dir.path(), &config(dir.path(), ""));
    daemon.eventually("alice is enforced after the restart", || {
        enforced(&daemon, "alice")
    });
    assert!(!ping(&lab.host, SERVER), "enforced again from the SM");
}
