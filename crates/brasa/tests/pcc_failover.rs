//! The data plane as an enforcement point of an active/standby Subscriber Manager: two SM
//! nodes over one throw-away PostgreSQL, and a `brasa run` data plane whose
//! `[dataplane.subscribers]` lists both. kill -9 of the active: the data plane follows the
//! standby that takes over, keeps enforcing what it had, and enforces what the new active
//! activates — each service once. Everything runs in one namespace (`pf…`), which the data
//! plane's port needs.

mod pcc_support;
mod services_support;
mod support;

use brasa_sm_net::LegClient;
use brasa_testkit::netns::Netns;
use brasa_testkit::postgres::PgInstance;
use pcc_support::service_names;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::*;

const LIMIT: Duration = Duration::from_secs(30);

fn tcp_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap()
}

/// One SM node of the pair (HA over `url`), with the data plane as its EP `dp`.
struct SmNode {
    name: &'static str,
    dir: std::path::PathBuf,
    api: SocketAddr,
    grpc: SocketAddr,
}

impl SmNode {
    fn start(root: &Path, name: &'static str, url: &str) -> (SmNode, Daemon) {
        let node = SmNode {
            name,
            dir: root.join(name),
            api: tcp_addr(),
            grpc: tcp_addr(),
        };
        let config = ha_sm_config(node.api, node.grpc, &["dp"], url, name, "2s");
        let daemon = start_brasa(&node.dir, &config, node.api);
        (node, daemon)
    }

    fn role(&self) -> String {
        show_json(self.api, "sm status")["role"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn wait_role(&self, role: &str) {
        eventually(&format!("{} is {role}", self.name), LIMIT, || {
            brasa(self.api, &["--json", "sm", "status"])
                .status
                .success()
                && self.role() == role
        });
    }

    /// Activates `service` (one rate-limiting rule) for `subscriber` through the LEG.
    fn activate(&self, rt: &tokio::runtime::Runtime, subscriber: &str, service: &str) {
        use brasa_subsvc::{fixtures::rate_limited_service, ServiceRequest, TypeConflictAction};
        let mut add = rate_limited_service(service, TypeConflictAction::None);
        // Untyped: the services this test activates must never replace one another.
        add.service_type = None;
        let request = brasa_sm_net::pb::ActivateServicesRequest {
            name: subscriber.into(),
            requests: vec![brasa_sm::service_proto::request_to_proto(
                &ServiceRequest::Add(add),
            )],
        };
        rt.block_on(async {
            let mut leg = LegClient::connect(&format!("http://{}", self.grpc))
                .await
                .unwrap();
            leg.grpc().activate_services(request).await.unwrap();
        });
    }

    fn login(&self, rt: &tokio::runtime::Runtime, subscriber: &str, address: &str) {
        rt.block_on(async {
            let mut leg = LegClient::connect(&format!("http://{}", self.grpc))
                .await
                .unwrap();
            leg.login(subscriber, &[address], None).await.unwrap();
        });
    }
}

/// The services the data plane enforces for `subscriber`, in order (none when it holds no
/// such subscriber).
fn enforced(dp: SocketAddr, subscriber: &str) -> Vec<String> {
    let out = brasa(dp, &["--json", "show", "subscriber-services", subscriber]);
    if !out.status.success() {
        return Vec::new();
    }
    service_names(&serde_json::from_slice(&out.stdout).unwrap())
}

#[test]
fn serial_netns_the_data_plane_follows_the_sm_fail_over_and_enforces_old_and_new_services_once() {
    let ns = Netns::new("pfr");
    ns.sh("ip link add pf1 type veth peer name pf1p && ip link set pf1 up && ip link set pf1p up");
    ns.enter(body);
}

fn body() {
    let pg = PgInstance::start().unwrap();
    let url = pg.create_database("sm").unwrap();
    let root = tempfile::tempdir().unwrap();
    let (a, mut daemon_a) = SmNode::start(root.path(), "pf-a", &url);
    a.wait_role("active");
    let (b, _daemon_b) = SmNode::start(root.path(), "pf-b", &url);
    b.wait_role("standby");

    let dp_api = tcp_addr();
    let dp_config = format!(
        r#"data_dir = "data"
[api]
listen = "{dp_api}"
[dataplane]
tun = "pftun0"
[[dataplane.interface]]
name = "pf1"
[dataplane.subscribers]
sm = ["{}", "{}"]
ep_id = "dp"
"#,
        a.grpc, b.grpc
    );
    let dp = start_brasa(&root.path().join("dp"), &dp_config, dp_api);
    let status = || show_json(dp_api, "show subscriber-services")["status"].clone();
    eventually("the data plane is the active's EP", LIMIT, || {
        status()["connected"] == true
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    a.login(&rt, "pf-alice", "10.9.0.1");
    a.activate(&rt, "pf-alice", "before");
    eventually("the first service is enforced", LIMIT, || {
        enforced(dp_api, "pf-alice") == ["before"]
    });
    let connects = status()["connects"].as_u64().unwrap();

    daemon_a.child.kill().unwrap(); // SIGKILL
    let _ = daemon_a.child.wait();
    b.wait_role("active");
    eventually("the data plane follows the new active", LIMIT, || {
        let s = status();
        s["connected"] == true && s["connects"].as_u64() > Some(connects)
    });
    // Kept across the fail-over, from the new active's full sync.
    assert_eq!(
        enforced(dp_api, "pf-alice"),
        ["before"],
        "{}",
        dp.log_text()
    );

    b.activate(&rt, "pf-alice", "after");
    b.login(&rt, "pf-bob", "10.9.0.2");
    b.activate(&rt, "pf-bob", "bob-after");
    eventually("the new active's services are enforced", LIMIT, || {
        enforced(dp_api, "pf-alice") == ["before", "after"]
            && enforced(dp_api, "pf-bob") == ["bob-after"]
    });
    // Each service once: one rule each, two subscribers, nothing refused.
    let s = status();
    assert_eq!(s["subscribers"], 2, "{s}");
    assert_eq!(s["rules"], 3, "{s}");
    assert_eq!(s["compile_refused"], 0, "{s}");
    assert_eq!(s["install_refused"], 0, "{s}");
    assert!(
        s["syncs"].as_u64() >= Some(2),
        "a full sync per connection: {s}"
    );
}
