//! The BGP LEG inside a real `brasa run`, against a real gobgpd on 127.0.25.0/24 (this suite's
//! addresses): VPNs and `community@VPN` subscribers through `brasa sm`, the seed's route, the
//! `bgp show` commands and metrics, kill -9 and restart (the mappings are durable, then
//! reconciled by gobgpd's End-of-RIB), export into a fresh daemon, config errors.

mod support;

#[path = "../../bgp-net/tests/common/mod.rs"]
mod bgp;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use bgp::{GoBgp, GoOptions};
use support::*;

const SEED: &str =
    "label 10 rd 1000:1 rt 1000:1 community 100:100 nexthop 10.10.10.10 local-pref 100";
const LIMIT: Duration = Duration::from_secs(60);

fn addr(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 25, host))
}

struct Setup {
    api: SocketAddr,
    bgp: SocketAddr,
    gobgpd: IpAddr,
}

fn config(s: &Setup) -> String {
    format!(
        r#"data_dir = "data"

[api]
listen = "{api}"

[subscriber_manager]
listen = "127.0.0.1:{grpc}"

[[subscriber_manager.ep]]
id = "sce1"

[subscriber_manager.bgp_leg]
local_as = 65000
router_id = "127.0.25.1"
listen = ["{bgp}"]

[[subscriber_manager.bgp_leg.peer]]
address = "{gobgpd}"
hold_time = "30s"
graceful_restart_time = "2m"
"#,
        api = s.api,
        grpc = free_tcp_port("127.0.0.1"),
        bgp = s.bgp,
        gobgpd = s.gobgpd,
    )
}

/// Who `brasa sm lookup ADDRESS@vpn1` names.
fn owner(api: SocketAddr, address: &str) -> Option<String> {
    let found = brasa_json(api, &["sm", "lookup", &format!("{address}@vpn1")]);
    found["subscriber"]["name"].as_str().map(str::to_owned)
}

#[test]
fn serial_sm_bgp_leg_seed_example_commands_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let s = Setup {
        api: format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
            .parse()
            .unwrap(),
        bgp: SocketAddr::new(addr(1), free_tcp_port("127.0.25.1")),
        gobgpd: addr(10),
    };
    let text = config(&s);
    let mut daemon = start_brasa(dir.path(), &text, s.api);

    // The seed: vpn1 with 1000:1@PE, sub1 with 100:100@vpn1.
    ok(&brasa(
        s.api,
        &["sm", "vpn", "add", "vpn1", "--mpls", "1000:1@10.10.10.10"],
    ));
    ok(&brasa(
        s.api,
        &["sm", "login", "sub1", "-m", "100:100@vpn1"],
    ));
    // A static IP@VPN mapping beside the learnt ones, for the export below.
    ok(&brasa(
        s.api,
        &["sm", "login", "ce2", "-m", "192.0.2.7@vpn1"],
    ));
    assert_eq!(owner(s.api, "192.0.2.7").as_deref(), Some("ce2"));
    let go = GoBgp::start(GoOptions::new(s.gobgpd, s.bgp));
    go.add("vpnv4", "1.1.1.0/24", SEED);
    eventually("sub1 to own 1.1.1.7@vpn1", LIMIT, || {
        owner(s.api, "1.1.1.7").as_deref() == Some("sub1")
    });
    let text_out = ok(&brasa(s.api, &["sm", "lookup", "1.1.1.7@vpn1"]));
    assert!(text_out.contains("sub1"), "{text_out}");
    assert!(text_out.contains("1.1.1.0/24@vpn1"), "{text_out}");

    let vpn = brasa_json(s.api, &["sm", "vpn", "show", "vpn1"]);
    assert_eq!(
        vpn["mpls"][0]["learned_labels"],
        serde_json::json!([[10, ["1.1.1.0/24"]]]),
        "{vpn}"
    );
    let neighbors = brasa_json(s.api, &["sm", "bgp", "show", "neighbors"]);
    assert_eq!(neighbors[0]["address"], "127.0.25.10");
    assert_eq!(neighbors[0]["state"], "established");
    assert_eq!(neighbors[0]["sm_matched"], 1);
    let routes = brasa_json(s.api, &["sm", "bgp", "show", "routes", "--vpn", "vpn1"]);
    assert_eq!(routes["total"], 1);
    assert_eq!(
        routes["routes"][0]["subscribers"],
        serde_json::json!(["sub1@vpn1"])
    );
    let table = ok(&brasa(s.api, &["sm", "bgp", "show", "routes"]));
    assert!(
        table.contains("1.1.1.0/24") && table.contains("sub1@vpn1"),
        "{table}"
    );
    let metrics = http_get(s.api, "/metrics");
    assert!(
        metrics.contains("brasa_sm_bgp_neighbor_up{neighbor=\"127.0.25.10\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("brasa_sm_bgp_sm_routes_matched{neighbor=\"127.0.25.10\"} 1"));

    // The export holds the configuration, not what was learnt.
    let export = ok(&brasa(s.api, &["sm", "export"]));
    assert!(
        export.contains("vpn1,subscribers,,1000:1@10.10.10.10"),
        "{export}"
    );
    assert!(
        export.contains("100:100@vpn1") && !export.contains("1.1.1.0/24"),
        "{export}"
    );

    // kill -9; gobgpd keeps the neighbor down while brasa restarts, and changes its table.
    daemon.child.kill().unwrap();
    let _ = daemon.child.wait();
    go.cli(&["neighbor", &s.bgp.ip().to_string(), "disable"]);
    go.del("vpnv4", "1.1.1.0/24", "label 10 rd 1000:1");
    go.add(
        "vpnv4",
        "1.1.5.0/24",
        "label 15 rd 1000:1 rt 1000:1 community 100:100 nexthop 10.10.10.10",
    );
    let daemon = start_brasa(dir.path(), &text, s.api);
    assert_eq!(
        owner(s.api, "1.1.1.7").as_deref(),
        Some("sub1"),
        "durable across kill -9:\n{}",
        daemon.log_text()
    );
    let routes = brasa_json(s.api, &["sm", "bgp", "show", "routes"]);
    assert_eq!(routes["routes"][0]["stale"], true);
    go.cli(&["neighbor", &s.bgp.ip().to_string(), "enable"]);
    eventually("gobgpd's End-of-RIB to reconcile", LIMIT, || {
        owner(s.api, "1.1.1.7").is_none() && owner(s.api, "1.1.5.7").as_deref() == Some("sub1")
    });
    let vpn = brasa_json(s.api, &["sm", "vpn", "show", "vpn1"]);
    assert_eq!(
        vpn["mpls"][0]["learned_labels"],
        serde_json::json!([[15, ["1.1.5.0/24"]]])
    );

    // Export → a fresh SM → import: the same VPNs, network IDs and IP@VPN mappings.
    let file = dir.path().join("export.csv");
    ok(&brasa(
        s.api,
        &["sm", "export", "-o", file.to_str().unwrap()],
    ));
    let fresh_dir = tempfile::tempdir().unwrap();
    let fresh_api: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let fresh_text = format!(
        "data_dir = \"data\"\n[api]\nlisten = \"{fresh_api}\"\n[subscriber_manager]\nlisten = \"127.0.0.1:{}\"\n",
        free_tcp_port("127.0.0.1")
    );
    let _fresh = start_brasa(fresh_dir.path(), &fresh_text, fresh_api);
    ok(&brasa(fresh_api, &["sm", "import", file.to_str().unwrap()]));
    assert_eq!(
        brasa_json(fresh_api, &["sm", "vpn", "list"])[0]["mpls"][0]["id"],
        "1000:1@10.10.10.10"
    );
    let sub1 = brasa_json(fresh_api, &["sm", "show", "subscriber", "sub1"]);
    assert_eq!(sub1["mappings"], serde_json::json!(["100:100@vpn1"]));
    assert_eq!(sub1["learned"], serde_json::json!([]));
    assert_eq!(owner(fresh_api, "192.0.2.7").as_deref(), Some("ce2"));
    assert_eq!(
        owner(fresh_api, "1.1.5.7"),
        None,
        "the fresh SM has no learnt mappings"
    );
    drop(go);
}

#[test]
fn sm_bgp_leg_config_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let check = |body: &str| -> String {
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            format!("[subscriber_manager]\n\n[subscriber_manager.bgp_leg]\nlocal_as = 65000\nrouter_id = \"192.0.2.1\"\n{body}"),
        )
        .unwrap();
        let out = Command::new(BRASA)
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check("\n[[subscriber_manager.bgp_leg.peer]]\naddress = \"192.0.2.2\"\n");
    assert!(
        err.contains("bad.toml:8:11") && err.contains("passive but bgp_leg.listen is empty"),
        "{err}"
    );
    let err = check(
        "listen = [\"127.0.0.1:1179\"]\n[[subscriber_manager.bgp_leg.peer]]\naddress = \"192.0.2.2\"\nhold_time = \"2s\"\n",
    );
    assert!(
        err.contains("bad.toml:9:13") && err.contains("hold_time must be 0 s or between 3 s"),
        "{err}"
    );
    let err = check("listen = [\"127.0.0.1:1179\"]\n[[subscriber_manager.bgp_leg.peer]]\naddress = \"192.0.2.2\"\nmode = \"eager\"\n");
    assert!(
        err.contains("bad.toml:9:8") && err.contains("\"passive\" or \"active\""),
        "{err}"
    );
    let err = check("hops = 3\n");
    assert!(
        err.contains("bad.toml:6:1") && err.contains("unknown field"),
        "{err}"
    );
}
