//! Dynamic data services in `brasa run` with real traffic (Nokia SR OS dynamic data
//! services): a customer behind a QinQ trunk sends on a VLAN pair no SAP has; the capture SAP
//! punts the frame, the data trigger is authenticated, the operator's seed-style script sets up
//! an Epipe to a far SAP, and the customer then reaches the far host (ping and TCP).
//!
//! The kernel here has no 802.1Q module: a test VLAN shim tags the hosts' frames as a switch's
//! access ports would. Namespace and interface names start with `dy`.

mod services_support;
mod support;

use brasa_testkit::cpu::pid_cpu_seconds;
use brasa_testkit::netns::Netns;
use services_support::{
    dot1q, ping, ping_eventually, qinq, tcp_echo, Daemon, HostSpec, Trunk, TrunkNames,
};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{
    alcatel_dictionary, radclient, received, reply_lines, start_freeradius_in, FreeRadius,
};

fn trunk(router: &Netns, port: &str, hosts: Vec<HostSpec>) -> Trunk {
    let names = TrunkNames {
        switch_prefix: "dys",
        ipv4_only: true,
    };
    services_support::trunk(router, names, port, hosts)
}

/// The customer trunk `dy1` with one host on QinQ 200.300 (10.77.0.1) and the far trunk `dy2`
/// with the host 10.77.0.2 on VLAN 300.
fn customer_and_far(router: &Netns) -> (Trunk, Trunk) {
    let customers = trunk(router, "dy1", vec![qinq("dyc", "10.77.0.1/24", 200, 300)]);
    let far = trunk(router, "dy2", vec![dot1q("dyf", "10.77.0.2/24", 300)]);
    (customers, far)
}

impl Daemon {
    /// The data triggers, waiting until `condition` holds for them.
    fn triggers_until(
        &self,
        what: &str,
        condition: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let triggers = self.json(&["show", "service", "dynamic-services", "data-triggers"]);
            let triggers = triggers.as_array().cloned().unwrap_or_default();
            if condition(&triggers) {
                return triggers;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: {triggers:?}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the capture SAP `dy1:*.*` counts `count` drops for `label`.
    fn drops_reach(&self, label: &str, count: u64) {
        self.eventually(&format!("{count} drops for {label:?}"), || {
            drop_count(&self.capture_stats("dy1:*.*"), label) == count
        });
    }

    fn capture_stats(&self, sap: &str) -> serde_json::Value {
        self.json(&[
            "show",
            "service",
            "dynamic-services",
            "capture-sap",
            sap,
            "statistics",
        ])
    }
}

fn drop_count(stats: &serde_json::Value, label: &str) -> u64 {
    stats["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0] == label)
        .and_then(|pair| pair[1].as_u64())
        .unwrap_or_else(|| panic!("no counter {label:?} in {stats}"))
}

/// A seed-style script: an action dictionary of function keys; the setup makes an Epipe from
/// the dynamic SAP to the far SAP its parameters name.
const EPIPE_SCRIPT: &str = r#"
from alc import dyn

def describe(kept):
    return """
configure service
    epipe %(service_id)s
        description "%(description)s"
    exit
exit
""" % kept

def setup_epipe(params):
    params['service_id'] = dyn.select_free_id('service-id')
    params['sap'] = dyn.get_sap()
    # No far SAP named: the far trunk's VLAN numbered as the inner tag (the setup benchmark).
    params.setdefault('far', 'dy2:' + params['sap'].split('.')[-1])
    params.setdefault('description', 'dynamic ' + params['sap'])
    if params.get('fail'):
        raise ValueError('the parameters ask for a failure')
    if params.get('slow'):
        import time
        time.sleep(params['slow'])
    # One add_cli per run: brasa joins the calls of a run into one text, in which a second
    # `configure` after the first block's last `exit` would not parse.
    dyn.add_cli("""
configure service
    epipe %(service_id)s customer 1 create
        description "%(description)s"
        sap %(sap)s create
        exit
        sap %(far)s create
        exit
        no shutdown
    exit
exit
""" % params)
    return params

def modify_epipe(kept, params):
    kept['description'] = params['description']
    cli = describe(kept)
    if params.get('bad'):
        cli = cli.replace('exit\nexit', 'frobnicate\n    exit\nexit')
    dyn.add_cli(cli)
    return kept

def revert_epipe(kept, params):
    # kept is what the service had before the failed modify.
    dyn.add_cli(describe(kept))

def teardown_epipe(kept):
    dyn.add_cli("""
configure service
    epipe %(service_id)s
        shutdown
        no sap %(sap)s
        no sap %(far)s
    exit
    no epipe %(service_id)s
exit
""" % kept)

dyn.action({'epipe': (setup_epipe, modify_epipe, revert_epipe, teardown_epipe)})
"#;

/// Writes `dir/dictionary` with the Alc-Dyn-Serv-* attributes of brasa's Alcatel-Lucent
/// dictionary.
fn dyn_serv_dictionary(dir: &Path) {
    alcatel_dictionary(dir, "Alc-Dyn-Serv-");
}

/// The receive buffer of the test FreeRADIUS's sockets, bytes: a burst of data triggers sends
/// up to `max_access_requests` (1 024) Access-Requests at once, about four times what the
/// kernel's default buffer (`net.core.rmem_default`, 208 KiB) holds, and the requests it drops
/// wait for the pool's retry. `DYNSVC_FREERADIUS_RECV_BUFF` sets another (0: the default).
const FREERADIUS_RECV_BUFF: usize = 4 << 20;

/// FreeRADIUS inside `router` (in `dir`/freeradius, with `users` and the Alc-Dyn-Serv
/// dictionary, secret `dynsecret` for 127.0.0.0/8, sockets of [`FREERADIUS_RECV_BUFF`]) as the
/// dynamic services' AAA server, and the `[radius]` section of its pool "aaa" with
/// `pool_settings`.
fn aaa_server(
    router: &Netns,
    dir: &Path,
    users: &str,
    pool_settings: &str,
) -> (FreeRadius, String) {
    let radius_dir = dir.join("freeradius");
    std::fs::create_dir_all(&radius_dir).unwrap();
    dyn_serv_dictionary(&radius_dir);
    let recv_buff = std::env::var("DYNSVC_FREERADIUS_RECV_BUFF")
        .ok()
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(FREERADIUS_RECV_BUFF);
    let listen_settings = match recv_buff {
        0 => String::new(),
        bytes => format!("    recv_buff = {bytes}\n"),
    };
    let radius = start_freeradius_in(
        router,
        &radius_dir,
        &[("127.0.0.0/8", "dynsecret")],
        users,
        &listen_settings,
    );
    let pools = format!(
        "[radius]\n{}",
        radius.radius_pool("aaa", "dynsecret", pool_settings)
    );
    (radius, pools)
}

/// The capture VPLS: every QinQ VLAN pair of `dy1` that no SAP has is a data trigger.
const CAPTURE: &str = "configure service vpls 900 customer 1 create\n\
    sap dy1:*.* capture-sap create\n\
    dynamic-services\n\
    dynamic-services-policy dyn-epipe\n\
    no shutdown\n\
    exit\n\
    exit\n\
    no shutdown\n\
    exit all\n";

/// The daemon's config: the trunks, the capture SAP's lockout policy and a dynamic-services
/// policy authenticating with `authentication`; `extra` adds sections (a local-auth-db, RADIUS
/// pools).
fn config(dir: &Path, authentication: &str, extra: &str) -> String {
    std::fs::write(dir.join("epipe.py"), EPIPE_SCRIPT).unwrap();
    format!(
        r#"data_dir = "{data}"
[api]
listen = "127.0.0.1:7780"
[dataplane]
tun = "dytun0"
[[dataplane.interface]]
name = "dy1"
encap = "qinq"
outer_tpid = "0x88a8"
[[dataplane.interface]]
name = "dy2"
encap = "dot1q"

[dynamic_services]
setup_timeout = "3s"
script_time_limit = "6s"
coa_listen = "127.0.0.1:3799"
[[dynamic_services.coa_client]]
address = "127.0.0.1"
secret = "coasecret"
[[dynamic_services.policy]]
name = "dyn-epipe"
script = "epipe.py"
service_range = [5000, 5999]
authentication = {authentication}
[[dynamic_services.capture_sap]]
sap = "dy1:*.*"
host_lockout_policy = "lock"
[[dynamic_services.host_lockout_policy]]
name = "lock"
lockout_time_min = "60s"
lockout_time_max = "600s"
lockout_reset_time = "60s"
{extra}
"#,
        data = dir.join("data").display()
    )
}

#[test]
fn netns_local_auth_trigger_sets_up_an_epipe_that_forwards_and_failures_leave_nothing() {
    let router = Netns::new("dyr");
    let customers = trunk(
        &router,
        "dy1",
        vec![
            qinq("dyc", "10.77.0.1/24", 200, 300),
            qinq("dyx", "10.78.0.1/24", 201, 301),
            qinq("dys", "10.79.0.1/24", 202, 302),
        ],
    );
    let (customer, failing, slow) = (
        &customers.hosts[0],
        &customers.hosts[1],
        &customers.hosts[2],
    );
    let far_trunk = trunk(&router, "dy2", vec![dot1q("dyf", "10.77.0.2/24", 300)]);
    let far = &far_trunk.hosts[0];
    let dir = tempfile::tempdir().unwrap();
    let users = r##"[[dynamic_services.local_auth_db]]
name = "db"
[[dynamic_services.local_auth_db.user]]
name = "dy1:200.300"
[[dynamic_services.local_auth_db.user.index]]
index = 1
sap_id = "#:#.#"
script_parameters = ["epipe={'far': 'dy2:300'}"]
[[dynamic_services.local_auth_db.user]]
name = "dy1:201.301"
[[dynamic_services.local_auth_db.user.index]]
index = 1
sap_id = "dy1:201.301"
script_parameters = ["epipe={'far': 'dy2:301', ", "'fail': True}"]
[[dynamic_services.local_auth_db.user]]
name = "dy1:202.302"
[[dynamic_services.local_auth_db.user.index]]
index = 1
sap_id = "dy1:202.302"
script_parameters = ["epipe={'far': 'dy2:302', 'slow': 4}"]
"##;
    // Debug logging of the capture SAP: only outer tag 201, only dropped triggers.
    let config = config(dir.path(), r#"{ local_auth_db = "db" }"#, users).replace(
        "host_lockout_policy = \"lock\"\n",
        "host_lockout_policy = \"lock\"\ndebug = { encap_val = \"201\", mode = \"dropped-only\" }\n",
    );
    assert!(config.contains("dropped-only"));
    let daemon = Daemon::start(&router, dir.path(), &config);
    // Without the capture SAP nothing reaches the far host.
    assert!(!ping(customer, "10.77.0.2"));
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));
    ping_eventually(customer, "10.77.0.2", Duration::from_secs(30));
    assert!(
        tcp_echo(far, customer, "10.77.0.2", 5301, 200_000),
        "TCP over the dynamic Epipe\n{}",
        daemon.log_text()
    );
    let triggers = daemon.triggers_until("the trigger is sapCreated", |t| {
        t.iter()
            .any(|t| t["sap"] == "dy1:200.300" && t["state"] == "sapCreated")
    });
    assert_eq!(triggers.len(), 1, "{triggers:?}");
    let trigger = &triggers[0];
    assert_eq!(trigger["capture_sap"], "dy1:*.*");
    assert_eq!(trigger["services"], serde_json::json!(["dy1:200.300"]));
    let service = daemon.json(&["show", "service", "5000"]);
    assert_eq!(service["kind"], "epipe", "{service}");
    assert_eq!(service["oper"], "up", "{service}");
    let stats = daemon.capture_stats("dy1:*.*");
    let received = stats["received"].as_u64().unwrap();
    assert_eq!(
        received,
        1 + drop_count(&stats, "Data-trigger already exists"),
        "one frame made the trigger, the others found it: {stats}\n{}",
        daemon.log_text()
    );
    let commands = daemon.json(&[
        "tools",
        "dump",
        "service",
        "dynamic-services",
        "command-list",
    ]);
    assert_eq!(commands[0]["sap"], "dy1:200.300", "{commands}");
    assert!(commands[0]["cli"].as_str().unwrap().contains("epipe 5000"));

    // Clearing the trigger tears its Epipe down; the next frame makes a new trigger.
    daemon.ok(
        &[
            "clear",
            "service",
            "dynamic-services",
            "data-trigger",
            "sap",
            "dy1:200.300",
        ],
        None,
    );
    daemon.eventually("the Epipe goes", || {
        !daemon
            .brasa(&["show", "service", "5000"], None)
            .status
            .success()
    });
    ping_eventually(customer, "10.77.0.2", Duration::from_secs(30));
    daemon.triggers_until("a new trigger after the clear", |t| {
        t.iter()
            .any(|t| t["sap"] == "dy1:200.300" && t["state"] == "sapCreated")
    });

    // A script exception: counted under "Corresponding dynamic SAP is not created", the
    // trigger SAP is locked out, and no service is left behind.
    let services_before = daemon.json(&["show", "service"]).as_array().unwrap().len();
    let _ = ping(failing, "10.78.0.2");
    daemon.drops_reach("Corresponding dynamic SAP is not created", 1);
    let debug_lines = || -> Vec<String> {
        daemon
            .log_text()
            .lines()
            .filter(|line| line.contains("brasa::dynsvc::debug"))
            .map(str::to_owned)
            .collect()
    };
    daemon.eventually("the debug event of the dropped trigger", || {
        debug_lines()
            .iter()
            .any(|line| line.contains("data trigger dropped") && line.contains("dy1:201.301"))
    });
    for line in debug_lines() {
        assert!(
            line.contains("trigger=dy1:201.301") && !line.contains("data trigger received"),
            "outside the debug filter: {line}"
        );
    }
    let lockouts = daemon.json(&[
        "show",
        "subscriber-mgmt",
        "host-lockout-policy",
        "lock",
        "all",
        "sap",
        "dy1:*.*",
    ]);
    // The cleared trigger left a context in its grace period, never locked.
    let row = |sap: &str| {
        lockouts
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["trigger_sap"] == sap)
            .unwrap_or_else(|| panic!("no lockout context of {sap}: {lockouts}"))
            .clone()
    };
    let cleared = row("dy1:200.300");
    assert_eq!(
        (cleared["active"].clone(), cleared["lockouts"].clone()),
        (false.into(), 0.into())
    );
    let failed = row("dy1:201.301");
    assert_eq!(failed["active"], true, "{failed}");
    assert_eq!(failed["lockouts"], 1, "{failed}");
    assert_eq!(failed["current_lock_time"], 60, "{failed}");
    assert_eq!(failed["next_lock_time"], 120, "{failed}");
    // Locked out: the next frames are dropped under "Lockout is active", no new run.
    let _ = ping(failing, "10.78.0.2");
    let stats = daemon.capture_stats("dy1:*.*");
    assert!(drop_count(&stats, "Lockout is active") >= 1, "{stats}");
    assert_eq!(
        drop_count(&stats, "Corresponding dynamic SAP is not created"),
        1
    );
    assert_eq!(
        daemon.json(&["show", "service"]).as_array().unwrap().len(),
        services_before,
        "a failed setup left a service behind"
    );
    let triggers = daemon.json(&["show", "service", "dynamic-services", "data-triggers"]);
    assert!(
        triggers
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["sap"] != "dy1:201.301"),
        "{triggers}"
    );
    // Clearing the lockout lets the SAP trigger again (and fail again).
    daemon.ok(
        &[
            "clear",
            "subscriber-mgmt",
            "host-lockout-policy",
            "lock",
            "all",
        ],
        None,
    );
    let lockouts = daemon.json(&[
        "show",
        "subscriber-mgmt",
        "host-lockout-policy",
        "lock",
        "all",
    ]);
    assert_eq!(lockouts, serde_json::json!([]));

    // A script slower than the setup timeout: the trigger fails when the timeout passes
    // (counted, locked out), and the service its script applies afterwards is removed.
    let _ = ping(slow, "10.79.0.2");
    daemon.drops_reach("Corresponding dynamic SAP is not created", 2);
    daemon.eventually("the late service removed", || {
        daemon
            .log_text()
            .contains("the script's service came after its trigger failed")
            && daemon.json(&["show", "service"]).as_array().unwrap().len() == services_before
    });
    let lockouts = daemon.json(&[
        "show",
        "subscriber-mgmt",
        "host-lockout-policy",
        "lock",
        "all",
    ]);
    assert_eq!(lockouts[0]["trigger_sap"], "dy1:202.302", "{lockouts}");
    assert_eq!(lockouts[0]["active"], true, "{lockouts}");
}

/// The lockout context of `trigger_sap` under the policy `lock`, if there is one.
fn lockout_row(daemon: &Daemon, trigger_sap: &str) -> Option<serde_json::Value> {
    daemon
        .json(&[
            "show",
            "subscriber-mgmt",
            "host-lockout-policy",
            "lock",
            "all",
        ])
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["trigger_sap"] == trigger_sap)
        .cloned()
}

#[test]
fn netns_lock_time_doubles_up_to_the_max_and_starts_again_at_the_min_after_the_reset_time() {
    let router = Netns::new("dyl");
    let customers = trunk(&router, "dy1", vec![qinq("dyx", "10.78.0.1/24", 201, 301)]);
    let failing = &customers.hosts[0];
    let _far = trunk(&router, "dy2", vec![dot1q("dyf", "10.77.0.2/24", 300)]);
    // A permanent neighbour: each ping is exactly one frame (no ARP requests and retries
    // that could arrive after a lock ended and count as a failure of their own).
    failing.sh("ip neigh replace 10.78.0.2 lladdr 02:00:5e:10:00:02 dev eth0 nud permanent");
    let one_frame = || {
        let _ = failing.output("ping", &["-c", "1", "-W", "0.2", "10.78.0.2"]);
    };
    let dir = tempfile::tempdir().unwrap();
    let users = r##"[[dynamic_services.local_auth_db]]
name = "db"
[[dynamic_services.local_auth_db.user]]
name = "dy1:201.301"
[[dynamic_services.local_auth_db.user.index]]
index = 1
sap_id = "dy1:201.301"
script_parameters = ["epipe={'far': 'dy2:301', 'fail': True}"]
"##;
    let config = config(dir.path(), r#"{ local_auth_db = "db" }"#, users).replace(
        "lockout_time_min = \"60s\"\nlockout_time_max = \"600s\"\nlockout_reset_time = \"60s\"",
        "lockout_time_min = \"2s\"\nlockout_time_max = \"4s\"\nlockout_reset_time = \"4s\"",
    );
    assert!(config.contains("lockout_time_max = \"4s\""));
    let daemon = Daemon::start(&router, dir.path(), &config);
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));
    let sap = "dy1:201.301";
    // Each failure locks for twice the previous lock, at most the max; the frame that comes
    // after a lock ended (in the grace period) fails again.
    for (failures, current, next) in [(1, 2, 4), (2, 4, 4), (3, 4, 4)] {
        if failures > 1 {
            daemon.eventually(
                &format!("lock {} over, in its grace period", failures - 1),
                || lockout_row(&daemon, sap).is_some_and(|row| row["active"] == false),
            );
        }
        one_frame();
        daemon.drops_reach("Corresponding dynamic SAP is not created", failures);
        let row = lockout_row(&daemon, sap).expect("a lockout context after a failure");
        assert_eq!(row["active"], true, "{row}");
        assert_eq!(
            (
                row["lockouts"].as_u64(),
                row["current_lock_time"].as_u64(),
                row["next_lock_time"].as_u64()
            ),
            (Some(failures), Some(current), Some(next)),
            "failure {failures}: {row}"
        );
    }
    // No failure for the reset time after the last lock ended: the context is forgotten,
    // and the next failure locks for the min again.
    daemon.eventually("the context forgotten after the reset time", || {
        lockout_row(&daemon, sap).is_none()
    });
    one_frame();
    daemon.drops_reach("Corresponding dynamic SAP is not created", 4);
    let row = lockout_row(&daemon, sap).expect("a lockout context after a failure");
    assert_eq!(
        (
            row["active"].as_bool(),
            row["lockouts"].as_u64(),
            row["current_lock_time"].as_u64()
        ),
        (Some(true), Some(1), Some(2)),
        "{row}"
    );
}

#[test]
fn netns_radius_trigger_gets_its_services_from_freeradius_and_accounts_the_start() {
    let router = Netns::new("dyr");
    let customers = trunk(
        &router,
        "dy1",
        vec![
            qinq("dyc", "10.77.0.1/24", 200, 300),
            qinq("dyx", "10.78.0.1/24", 201, 301),
            qinq("dyn", "10.80.0.1/24", 203, 303),
            qinq("dyt", "10.81.0.1/24", 204, 304),
        ],
    );
    let far_trunk = trunk(&router, "dy2", vec![dot1q("dyf", "10.77.0.2/24", 300)]);
    let (customer, rejected, elsewhere, unanswered, far) = (
        &customers.hosts[0],
        &customers.hosts[1],
        &customers.hosts[2],
        &customers.hosts[3],
        &far_trunk.hosts[0],
    );
    let dir = tempfile::tempdir().unwrap();
    let users = r##""dy1:200.300" Cleartext-Password := "dynpass"
	Alc-Dyn-Serv-SAP-Id:1 = "#:#.#",
	Alc-Dyn-Serv-Script-Params:1 = "epipe={'far': 'dy2:300'}",
	Alc-Dyn-Serv-Script-Action:1 = setup,
	Alc-Dyn-Serv-Policy:1 = "dyn-epipe"

"dy1:201.301" Auth-Type := Reject

"dy1:204.304" Response-Packet-Type := Do-Not-Respond

"dy1:203.303" Cleartext-Password := "dynpass"
	Alc-Dyn-Serv-SAP-Id:1 = "dy1:203.999",
	Alc-Dyn-Serv-Script-Params:1 = "epipe={'far': 'dy2:303'}",
	Alc-Dyn-Serv-Script-Action:1 = setup
"##;
    let (radius, pools) = aaa_server(
        &router,
        dir.path(),
        users,
        "timeout = \"1s\"\nretries = 1\n",
    );
    let authentication = r#"{ radius_pool = "aaa", password = "dynpass" }
accounting = [{ radius_pool = "aaa", stats_type = "volume-time" }]"#;
    let daemon = Daemon::start(
        &router,
        dir.path(),
        &config(dir.path(), authentication, &pools),
    );
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));

    ping_eventually(customer, "10.77.0.2", Duration::from_secs(30));
    assert!(
        tcp_echo(far, customer, "10.77.0.2", 5302, 200_000),
        "TCP over the dynamic Epipe\n{}",
        daemon.log_text()
    );
    let triggers = daemon.triggers_until("the trigger is sapCreated", |t| {
        t.iter()
            .any(|t| t["sap"] == "dy1:200.300" && t["state"] == "sapCreated")
    });
    let session = triggers[0]["acct_session_id"].as_str().unwrap().to_string();
    // The Start reached FreeRADIUS's detail file, its Acct-Multi-Session-Id the trigger's.
    daemon.eventually("Acct-Status-Type = Start in the detail file", || {
        radius.detail().contains("Acct-Status-Type = Start")
    });
    let detail = radius.detail();
    assert!(
        detail.contains(&format!("Acct-Multi-Session-Id = \"{session}\"")),
        "{detail}"
    );
    assert!(detail.contains("NAS-Port-Id = \"dy1:200.300\""), "{detail}");

    // A CoA modify's Alc-Dyn-Serv-Acct-Interim-Ivl-1 replaces the service's interval (the
    // policy has none): Interim-Updates with its counters reach the detail file.
    assert!(!detail.contains("Interim-Update"), "{detail}");
    let (answer, _) = coa(
        &router,
        &radius.dir,
        "coa",
        &format!(
            "Acct-Session-Id = \"{session}\"\n\
             Alc-Dyn-Serv-SAP-Id:1 = \"dy1:200.300\"\n\
             Alc-Dyn-Serv-Script-Params:1 = \"epipe={{'far': 'dy2:300', 'description': 'accounted'}}\"\n\
             Alc-Dyn-Serv-Script-Action:1 = modify\n\
             Alc-Dyn-Serv-Acct-Interim-Ivl-1:1 = 1"
        ),
    );
    assert_eq!(answer, "CoA-ACK", "{}", daemon.log_text());
    daemon.eventually(
        "Acct-Status-Type = Interim-Update in the detail file",
        || {
            radius
                .detail()
                .contains("Acct-Status-Type = Interim-Update")
        },
    );
    let detail = radius.detail();
    let interim = detail
        .split("\n\n")
        .find(|record| record.contains("Acct-Status-Type = Interim-Update"))
        .unwrap();
    assert!(
        interim.contains("Acct-Input-Packets") && interim.contains("Acct-Session-Time"),
        "{interim}"
    );

    // An Access-Reject: counted, locked out, nothing created.
    let services_before = daemon.json(&["show", "service"]).as_array().unwrap().len();
    let _ = ping(rejected, "10.78.0.2");
    daemon.drops_reach("Unsuccessful authentication", 1);
    let lockouts = daemon.json(&[
        "show",
        "subscriber-mgmt",
        "host-lockout-policy",
        "lock",
        "all",
    ]);
    assert_eq!(lockouts[0]["trigger_sap"], "dy1:201.301", "{lockouts}");
    assert_eq!(lockouts[0]["active"], true, "{lockouts}");
    assert_eq!(
        daemon.json(&["show", "service"]).as_array().unwrap().len(),
        services_before
    );

    // An Access-Accept whose services do not include the trigger's SAP.
    let _ = ping(elsewhere, "10.80.0.2");
    daemon.drops_reach("No data-trigger SAP-id in authentication", 1);
    assert_eq!(
        daemon.json(&["show", "service"]).as_array().unwrap().len(),
        services_before
    );

    // No answer from the AAA server (FreeRADIUS drops the request): after the pool's timeout
    // and retry, Unsuccessful authentication, locked out, nothing created.
    let _ = ping(unanswered, "10.81.0.2");
    daemon.drops_reach("Unsuccessful authentication", 2);
    let lockouts = daemon.json(&[
        "show",
        "subscriber-mgmt",
        "host-lockout-policy",
        "lock",
        "all",
        "sap",
        "dy1:*.*",
    ]);
    assert!(
        lockouts
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["trigger_sap"] == "dy1:204.304" && l["active"] == true),
        "{lockouts}"
    );
    assert_eq!(
        daemon.json(&["show", "service"]).as_array().unwrap().len(),
        services_before
    );

    // Clearing the trigger stops the accounting with Admin-Reset.
    daemon.ok(
        &[
            "clear",
            "service",
            "dynamic-services",
            "data-trigger",
            "sap",
            "dy1:200.300",
        ],
        None,
    );
    daemon.eventually("Acct-Status-Type = Stop in the detail file", || {
        radius.detail().contains("Acct-Status-Type = Stop")
    });
    let detail = radius.detail();
    assert!(
        detail.contains("Acct-Terminate-Cause = Admin-Reset"),
        "{detail}"
    );
    assert!(detail.contains("Acct-Input-Packets"), "{detail}");
}

/// radclient in the router namespace: `kind` (`coa` or `disconnect`) to brasa's CoA listener;
/// returns what it received (`CoA-ACK`, `Disconnect-NAK`, …) and the reply's attributes.
fn coa(router: &Netns, dictionary: &Path, kind: &str, attributes: &str) -> (String, Vec<String>) {
    let dictionary = dictionary.to_str().unwrap().to_string();
    let kind = kind.to_string();
    let input = format!("{attributes}\nMessage-Authenticator = 0x00\n");
    let output = router.enter(move || {
        radclient(
            "127.0.0.1:3799".parse().unwrap(),
            &kind,
            "coasecret",
            &input,
            &["-d", &dictionary],
        )
    });
    let received = received(&output).unwrap_or_else(|| {
        panic!(
            "no answer: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (received, reply_lines(&output))
}

/// The arguments of `tools perform service dynamic-services evaluate-script`.
fn evaluate<'a>(sap: &'a str, session: &'a str, action: &'a str) -> Vec<&'a str> {
    let mut args = vec!["tools", "perform", "service", "dynamic-services"];
    args.extend(["evaluate-script", "sap", sap, "control-session", session]);
    args.extend(["action", action]);
    args
}

#[test]
fn netns_coa_adds_modifies_reverts_and_a_disconnect_removes_everything() {
    let router = Netns::new("dyr");
    let (customers, _far) = customer_and_far(&router);
    let customer = &customers.hosts[0];
    let dir = tempfile::tempdir().unwrap();
    dyn_serv_dictionary(dir.path());
    let users = r##"[[dynamic_services.local_auth_db]]
name = "db"
[[dynamic_services.local_auth_db.user]]
name = "dy1:200.300"
[[dynamic_services.local_auth_db.user.index]]
index = 1
sap_id = "#:#.#"
script_parameters = ["epipe={'far': 'dy2:300'}"]
"##;
    let daemon = Daemon::start(
        &router,
        dir.path(),
        &config(dir.path(), r#"{ local_auth_db = "db" }"#, users),
    );
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));
    ping_eventually(customer, "10.77.0.2", Duration::from_secs(30));
    let triggers = daemon.triggers_until("the trigger is sapCreated", |t| {
        t.iter().any(|t| t["state"] == "sapCreated")
    });
    let session = triggers[0]["acct_session_id"].as_str().unwrap().to_string();

    // A CoA with the trigger's Acct-Session-Id adds a second service.
    let (answer, _) = coa(
        &router,
        dir.path(),
        "coa",
        &format!(
            "Acct-Session-Id = \"{session}\"\n\
             Alc-Dyn-Serv-SAP-Id:1 = \"dy1:200.301\"\n\
             Alc-Dyn-Serv-Script-Params:1 = \"epipe={{'far': 'dy2:301'}}\"\n\
             Alc-Dyn-Serv-Script-Action:1 = setup\n\
             Alc-Dyn-Serv-Policy:1 = \"dyn-epipe\""
        ),
    );
    assert_eq!(answer, "CoA-ACK", "{}", daemon.log_text());
    let second = daemon.json(&["show", "service", "5001"]);
    assert_eq!(second["saps"].as_array().unwrap().len(), 2, "{second}");
    let triggers = daemon.json(&["show", "service", "dynamic-services", "data-triggers"]);
    assert_eq!(
        triggers[0]["services"],
        serde_json::json!(["dy1:200.300", "dy1:200.301"])
    );

    // A modify changes it; a modify whose CLI is refused runs the revert and is NAKed.
    let modify = |description: &str, bad: bool| {
        coa(
            &router,
            dir.path(),
            "coa",
            &format!(
                "Acct-Session-Id = \"{session}\"\n\
                 Alc-Dyn-Serv-SAP-Id:1 = \"dy1:200.301\"\n\
                 Alc-Dyn-Serv-Script-Params:1 = \"epipe={{'far': 'dy2:301', 'description': '{description}', 'bad': {}}}\"\n\
                 Alc-Dyn-Serv-Script-Action:1 = modify",
                if bad { "True" } else { "False" }
            ),
        )
    };
    let (answer, _) = modify("changed", false);
    assert_eq!(answer, "CoA-ACK", "{}", daemon.log_text());
    assert_eq!(
        daemon.json(&["show", "service", "5001"])["description"],
        "changed"
    );

    // evaluate-script --dry-run runs the script with the stored parameters (the last
    // modify's) and shows its CLI without applying it.
    let dry = |sap: &'static str, action: &'static str| {
        let mut args = evaluate(sap, &session, action);
        args.push("--dry-run");
        args
    };
    let evaluated = daemon.json(&dry("dy1:200.301", "modify"));
    assert_eq!(evaluated["failure"], serde_json::Value::Null, "{evaluated}");
    assert!(
        evaluated["cli"]
            .as_str()
            .unwrap()
            .contains("description \"changed\""),
        "{evaluated}"
    );
    let evaluated = daemon.json(&dry("dy1:200.301", "teardown"));
    assert!(
        evaluated["cli"].as_str().unwrap().contains("no epipe 5001"),
        "{evaluated}"
    );
    assert_eq!(evaluated["applied"], false);
    let text = daemon.ok(&dry("dy1:200.301", "teardown"), None);
    assert!(
        text.contains("Generated CLI:") && text.contains("no epipe 5001"),
        "{text}"
    );
    assert_eq!(
        daemon.json(&["show", "service", "5001"])["oper"],
        "up",
        "an evaluated teardown is not applied"
    );
    // Refusals name their reason and change nothing.
    for (sap, session, action, expected) in [
        (
            "dy1:200.399",
            session.as_str(),
            "teardown",
            "no dynamic service SAP dy1:200.399",
        ),
        (
            "dy1:200.301",
            "no-such-session",
            "teardown",
            "no data trigger has control session no-such-session",
        ),
        (
            "dy1:200.301",
            session.as_str(),
            "setup",
            "action setup is not allowed here: dy1:200.301 is a dynamic service already",
        ),
        (
            "dy1:200.301",
            session.as_str(),
            "modify",
            "a modify needs the service's new script parameters (--params)",
        ),
        (
            "dy1:200.302",
            session.as_str(),
            "setup",
            "a setup needs the new service's script parameters",
        ),
    ] {
        let output = daemon.brasa(&evaluate(sap, session, action), None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{stderr}"
        );
    }
    assert_eq!(
        daemon.json(&["show", "service", "5001"])["oper"],
        "up",
        "a refused evaluation changes nothing"
    );

    let (answer, attributes) = modify("refused", true);
    assert_eq!(answer, "CoA-NAK", "{}", daemon.log_text());
    assert!(
        attributes
            .iter()
            .any(|a| a == "Error-Cause = Resources-Unavailable"),
        "{attributes:?}"
    );
    assert_eq!(
        daemon.json(&["show", "service", "5001"])["description"],
        "changed",
        "the revert keeps the service as it was"
    );

    // evaluate-script modify acts as a CoA modify does, and one whose CLI is refused runs the
    // revert and changes nothing.
    let evaluate_modify = |description: &str, bad: bool| {
        let params = format!(
            "epipe={{'far': 'dy2:301', 'description': '{description}', 'bad': {}}}",
            if bad { "True" } else { "False" }
        );
        let mut args = evaluate("dy1:200.301", &session, "modify");
        args.extend(["--params", params.as_str()]);
        daemon.brasa(&args, None)
    };
    let output = evaluate_modify("evaluated", false);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && text.contains("modified dynamic service SAP dy1:200.301"),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        daemon.json(&["show", "service", "5001"])["description"],
        "evaluated"
    );
    let output = evaluate_modify("refused", true);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("nothing of the modify was applied"),
        "{stderr}"
    );
    assert_eq!(
        daemon.json(&["show", "service", "5001"])["description"],
        "evaluated",
        "a failed evaluated modify leaves the service as it was"
    );

    // evaluate-script teardown acts: the second service goes, the trigger keeps its own.
    let evaluated = daemon.json(&evaluate("dy1:200.301", &session, "teardown"));
    assert_eq!(
        (&evaluated["applied"], &evaluated["removed"]),
        (&true.into(), &serde_json::json!(["dy1:200.301"])),
        "{evaluated}"
    );
    assert!(!daemon
        .brasa(&["show", "service", "5001"], None)
        .status
        .success());
    let triggers = daemon.json(&["show", "service", "dynamic-services", "data-triggers"]);
    assert_eq!(triggers[0]["services"], serde_json::json!(["dy1:200.300"]));
    // evaluate-script setup adds a service to the trigger, as a CoA setup does.
    let mut setup = evaluate("dy1:200.302", &session, "setup");
    setup.extend([
        "--params",
        "epipe={'far': 'dy2:302'}",
        "--policy",
        "dyn-epipe",
    ]);
    let text = daemon.ok(&setup, None);
    assert!(
        text.contains("created dynamic service SAP dy1:200.302"),
        "{text}"
    );
    let triggers = daemon.json(&["show", "service", "dynamic-services", "data-triggers"]);
    assert_eq!(
        triggers[0]["services"],
        serde_json::json!(["dy1:200.300", "dy1:200.302"])
    );

    // A key that names nothing is refused with Session-Context-Not-Found.
    let (answer, attributes) = coa(
        &router,
        dir.path(),
        "disconnect",
        "Acct-Session-Id = \"no-such-session\"",
    );
    assert_eq!(answer, "Disconnect-NAK");
    assert!(
        attributes
            .iter()
            .any(|a| a == "Error-Cause = Session-Context-Not-Found"),
        "{attributes:?}"
    );

    // A Disconnect with the trigger's NAS-Port-Id removes the trigger and both services.
    let (answer, _) = coa(
        &router,
        dir.path(),
        "disconnect",
        "NAS-Port-Id = \"dy1:200.300\"",
    );
    assert_eq!(answer, "Disconnect-ACK", "{}", daemon.log_text());
    assert_eq!(
        daemon.json(&["show", "service", "dynamic-services", "data-triggers"]),
        serde_json::json!([])
    );
    for id in ["5000", "5001"] {
        assert!(
            !daemon
                .brasa(&["show", "service", id], None)
                .status
                .success(),
            "service {id} stays after the Disconnect"
        );
    }

    // The next frame triggers again (a Disconnect locks nothing out). evaluate-script teardown
    // on the trigger's own SAP removes the trigger and its services, as the guide's way to
    // remove a data-triggered service; and the next frame triggers once more.
    let new_session = |old: &str| {
        ping_eventually(customer, "10.77.0.2", Duration::from_secs(30));
        let triggers = daemon.triggers_until("the trigger is back", |t| {
            t.iter()
                .any(|t| t["state"] == "sapCreated" && t["acct_session_id"] != old)
        });
        triggers[0]["acct_session_id"].as_str().unwrap().to_string()
    };
    let session = new_session(&session);
    let text = daemon.ok(&evaluate("dy1:200.300", &session, "teardown"), None);
    assert!(
        text.contains("removed dynamic service SAP dy1:200.300"),
        "{text}"
    );
    assert_eq!(
        daemon.json(&["show", "service", "dynamic-services", "data-triggers"]),
        serde_json::json!([])
    );
    assert!(!daemon
        .brasa(&["show", "service", "5000"], None)
        .status
        .success());
    new_session(&session);
}

#[test]
fn netns_kill_9_and_restart_remove_the_dynamic_services_and_triggers_come_back() {
    let router = Netns::new("dyr");
    let (customers, _far) = customer_and_far(&router);
    let customer = &customers.hosts[0];
    let dir = tempfile::tempdir().unwrap();
    let users = r##"[[dynamic_services.local_auth_db]]
name = "db"
[[dynamic_services.local_auth_db.user]]
name = "dy1:200.300"
[[dynamic_services.local_auth_db.user.index]]
index = 1
sap_id = "#:#.#"
script_parameters = ["epipe={'far': 'dy2:300'}"]
"##;
    let config = config(dir.path(), r#"{ local_auth_db = "db" }"#, users);
    let daemon = Daemon::start(&router, dir.path(), &config);
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));
    ping_eventually(customer, "10.77.0.2", Duration::from_secs(30));
    daemon.triggers_until("the trigger is sapCreated", |t| {
        t.iter().any(|t| t["state"] == "sapCreated")
    });
    assert_eq!(daemon.json(&["show", "service", "5000"])["kind"], "epipe");
    // SIGKILL: no teardown runs.
    drop(daemon);

    // The restart replays the capture VPLS but removes the Epipe of the forgotten trigger.
    let daemon = Daemon::start(&router, dir.path(), &config);
    assert!(
        !daemon
            .brasa(&["show", "service", "5000"], None)
            .status
            .success(),
        "the dynamic Epipe survived the restart without its trigger\n{}",
        daemon.log_text()
    );
    assert_eq!(daemon.json(&["show", "service", "900"])["kind"], "vpls");
    assert_eq!(
        daemon.json(&["show", "service", "dynamic-services", "data-triggers"]),
        serde_json::json!([])
    );
    // The customer's next frames make the trigger and its service again.
    ping_eventually(customer, "10.77.0.2", Duration::from_secs(30));
    daemon.triggers_until("a new trigger after the restart", |t| {
        t.iter().any(|t| t["state"] == "sapCreated")
    });
}

/// How many setups a benchmark runs: `DYNSVC_SETUPS`, else `debug` in a debug build (the
/// suite's run checks the path with fewer) and `release` in a release one; at most `max`.
fn setups_to_run(debug: usize, release: usize, max: usize) -> usize {
    let default = if cfg!(debug_assertions) {
        debug
    } else {
        release
    };
    std::env::var("DYNSVC_SETUPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

/// A local-auth-db `db` with an entry for each trigger SAP `dy1:3000.N`, N in `inners`, each
/// an Epipe to `dy2:N` (the far SAP the script derives from the inner tag).
fn local_auth_db_of(inners: std::ops::RangeInclusive<u16>) -> String {
    let mut text = String::from("[[dynamic_services.local_auth_db]]\nname = \"db\"\n");
    for inner in inners {
        text.push_str(&format!(
            "[[dynamic_services.local_auth_db.user]]\nname = \"dy1:3000.{inner}\"\n\
             [[dynamic_services.local_auth_db.user.index]]\nindex = 1\nsap_id = \"#:#.#\"\n\
             script_parameters = [\"epipe={{}}\"]\n"
        ));
    }
    text
}

/// The daemon's config for a burst of `vlans` setups with local authentication: a
/// local-auth-db entry per VLAN, a setup timeout that outlasts the queue, room for 5 000
/// services.
fn burst_config(dir: &Path, vlans: u16) -> String {
    config(
        dir,
        r#"{ local_auth_db = "db" }"#,
        &local_auth_db_of(1..=vlans),
    )
    .replace("setup_timeout = \"3s\"\n", "setup_timeout = \"120s\"\n")
    .replace(
        "service_range = [5000, 5999]",
        "service_range = [5000, 9999]",
    )
}

/// Starts the FLOOD sender on the customer trunk's switch side: frames on `vlans` new QinQ
/// VLANs (outer 3000), in one fixed order, until the file `stop` exists.
fn start_flood(customers: &Trunk, stop: &Path, vlans: usize) -> KillOnDrop {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &customers.switch.name,
            "python3",
            "-c",
            FLOOD,
            "updy1",
            "1",
        ])
        .arg(stop)
        .arg(vlans.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// What a restart of the daemon whose data directory is `data` would find: the dynamic SAPs
/// (`dy1:3000.N`) the service journal creates and does not remove, and the SAPs the
/// dynamic-services ledger lists and does not strike.
fn journal_and_ledger(data: &Path) -> (std::collections::BTreeSet<String>, Vec<String>) {
    let mut journalled = std::collections::BTreeSet::new();
    let journal = std::fs::read_to_string(data.join("services/journal.jsonl")).unwrap_or_default();
    for line in journal.lines() {
        // A torn last line is no transaction (the replay skips it too).
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let text = entry["text"].as_str().unwrap_or_default();
        for words in text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
        {
            match words.as_slice() {
                ["sap", sap, "create"] if sap.starts_with("dy1:3000.") => {
                    journalled.insert(sap.to_string());
                }
                ["no", "sap", sap] => {
                    journalled.remove(*sap);
                }
                _ => {}
            }
        }
    }
    let mut listed: Vec<String> = Vec::new();
    let ledger = std::fs::read_to_string(data.join("dynsvc/saps")).unwrap_or_default();
    for line in ledger.lines() {
        if let Some(sap) = line.strip_prefix('+') {
            listed.push(sap.to_string());
        } else if let Some(sap) = line.strip_prefix('-') {
            if let Some(at) = listed.iter().position(|s| s == sap) {
                listed.remove(at);
            }
        }
    }
    (journalled, listed)
}

/// kill -9 while hundreds of setups are in flight (authenticated, scripts running, grouped
/// for their disk syncs): every dynamic SAP the journal holds is listed in the ledger, so the
/// restart removes all of each service and keeps only the static capture VPLS.
#[test]
fn netns_kill_9_during_a_burst_of_setups_leaves_no_half_service() {
    let vlans: u16 = 3000;
    let router = Netns::new("dyk");
    let (customers, _far) = customer_and_far(&router);
    let dir = tempfile::tempdir().unwrap();
    let config = burst_config(dir.path(), vlans);
    let daemon = Daemon::start(&router, dir.path(), &config);
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));
    let data = dir.path().join("data");
    let stop = dir.path().join("stop");
    let flood = start_flood(&customers, &stop, vlans.into());
    // Watch the journal itself: the burst is over long before a `show` loop would notice.
    let started = Instant::now();
    while journal_and_ledger(&data).0.len() < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no setups journalled\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let triggers = daemon.json(&["show", "service", "dynamic-services", "data-triggers"]);
    // SIGKILL in the middle of the burst: no teardown runs.
    drop(daemon);
    std::fs::write(&stop, "").unwrap();
    drop(flood);

    let (journalled, listed) = journal_and_ledger(&data);
    assert!(
        journalled.len() < usize::from(vlans),
        "the burst was over before the kill: {} of {vlans} journalled",
        journalled.len()
    );
    // Every service reported (sapCreated) before the kill is durable in the journal.
    let created: Vec<&str> = triggers
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "sapCreated")
        .map(|t| t["sap"].as_str().unwrap())
        .collect();
    for sap in &created {
        assert!(
            journalled.contains(*sap),
            "{sap} was sapCreated but is not journalled"
        );
    }
    let unlisted: Vec<_> = journalled
        .iter()
        .filter(|sap| !listed.contains(sap))
        .collect();
    assert!(
        unlisted.is_empty(),
        "journalled dynamic SAPs the ledger does not list (a restart would keep them): {unlisted:?}"
    );
    eprintln!(
        "killed with {} triggers sapCreated, {} dynamic SAPs journalled, {} listed in the ledger",
        created.len(),
        journalled.len(),
        listed.len()
    );

    // The restart removes every dynamic service, whole: only the capture VPLS is left.
    let daemon = Daemon::start(&router, dir.path(), &config);
    let services = daemon.json(&["show", "service"]);
    let ids: Vec<u64> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![900], "{services}\n{}", daemon.log_text());
    assert_eq!(
        daemon.json(&["show", "service", "dynamic-services", "data-triggers"]),
        serde_json::json!([])
    );
}

/// The data trigger debug lines of `log` (target `brasa::dynsvc::debug`) about `trigger`.
fn debug_lines(log: &str, trigger: &str) -> Vec<String> {
    let field = format!("trigger={trigger}");
    log.lines()
        .filter(|l| l.contains("brasa::dynsvc::debug") && l.split_whitespace().any(|w| w == field))
        .map(str::to_owned)
        .collect()
}

/// `brasa debug service dynamic-services capture-sap …` turns a capture SAP's data trigger
/// logging on at run time, filtered by encap-val; `no capture-sap` turns it off again; bad
/// commands are refused with why and change nothing.
#[test]
fn netns_debug_command_turns_capture_sap_logging_on_and_off_at_run_time() {
    let router = Netns::new("dyd");
    let (customers, _far) = customer_and_far(&router);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&router, dir.path(), &burst_config(dir.path(), 2));
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));
    let debug = |args: &[&str]| {
        let mut all = vec!["debug", "service", "dynamic-services"];
        all.extend_from_slice(args);
        daemon.brasa(&all, None)
    };
    let refused = |args: &[&str], why: &str| {
        let output = debug(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    };
    let shown = || daemon.json(&["show", "debug"]);
    assert_eq!(shown(), serde_json::json!([]));

    let on = debug(&["capture-sap", "dy1:*.*", "encap-val", "3000.1"]);
    assert!(on.status.success(), "{on:?}");
    assert!(String::from_utf8_lossy(&on.stdout)
        .contains("capture-sap dy1:*.* encap-val 3000.1 mode all"));
    refused(
        &["capture-sap", "dy2:300"],
        "dy2:300 is not a capture SAP of the running service configuration",
    );
    refused(
        &["capture-sap", "dy1:*.*", "encap-val", "3000.5000"],
        "encap_val \"3000.5000\" is not qtag or qtag.qtag",
    );
    refused(
        &["capture-sap", "dy1:*.*", "mode", "some"],
        "mode \"some\" is not \"all\" or \"dropped-only\"",
    );
    refused(
        &["capture-sap", "dy1:*.*", "colour", "red"],
        "unexpected \"colour\"",
    );
    refused(
        &["no", "capture-sap", "dy1:*.*", "encap-val", "7"],
        "capture SAP dy1:*.* has no debug with encap-val 7",
    );
    let filters = serde_json::json!([
        {"capture_sap": "dy1:*.*", "encap_val": "3000.1", "mode": "all"}
    ]);
    assert_eq!(shown(), filters, "a refused command changed the filters");

    // Two new VLANs: only 3000.1's events are logged.
    let stop = dir.path().join("stop");
    let flood = start_flood(&customers, &stop, 2);
    let created = |t: &[serde_json::Value], sap: &str| {
        t.iter()
            .any(|t| t["sap"] == sap && t["state"] == "sapCreated")
    };
    daemon.triggers_until("both triggers in sapCreated", |t| {
        created(t, "dy1:3000.1") && created(t, "dy1:3000.2")
    });
    std::fs::write(&stop, "").unwrap();
    drop(flood);
    let log = daemon.log_text();
    let first = debug_lines(&log, "dy1:3000.1");
    assert!(
        first.iter().any(|l| l.contains("data trigger received"))
            && first.iter().any(|l| l.contains("data trigger SAP created")),
        "{first:?}"
    );
    assert_eq!(debug_lines(&log, "dy1:3000.2"), Vec::<String>::new());

    // Off: the trigger of 3000.1, cleared, comes back with no debug line.
    let off = debug(&["no", "capture-sap", "dy1:*.*"]);
    assert!(off.status.success(), "{off:?}");
    assert_eq!(shown(), serde_json::json!([]));
    daemon.ok(
        &[
            "clear",
            "service",
            "dynamic-services",
            "data-trigger",
            "sap",
            "dy1:3000.1",
        ],
        None,
    );
    daemon.triggers_until("the trigger cleared", |t| !created(t, "dy1:3000.1"));
    std::fs::remove_file(&stop).unwrap();
    let flood = start_flood(&customers, &stop, 1);
    daemon.triggers_until("the trigger back in sapCreated", |t| {
        created(t, "dy1:3000.1")
    });
    std::fs::write(&stop, "").unwrap();
    drop(flood);
    assert_eq!(debug_lines(&daemon.log_text(), "dy1:3000.1"), first);
}

/// The latency of each setup from the brasa log of a capture SAP debugged with `mode = "all"`:
/// from "data trigger received" (the frame reached the trigger machine) to "data trigger SAP
/// created" (sapCreated, after its disk syncs), by trigger SAP; `(p50, p99)`.
fn setup_latencies(log: &str) -> (Duration, Duration) {
    let trigger = |line: &str| -> Option<String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix("trigger="))
            .map(str::to_owned)
    };
    let mut received = std::collections::HashMap::new();
    let mut latencies = Vec::new();
    for line in log.lines().filter(|l| l.contains("brasa::dynsvc::debug")) {
        let (Some(at), Some(sap)) = (log_stamp(line), trigger(line)) else {
            continue;
        };
        if line.contains("data trigger received") {
            received.entry(sap).or_insert(at);
        } else if line.contains("data trigger SAP created") {
            if let Some(start) = received.get(&sap) {
                latencies.push(Duration::from_secs_f64((at - start).max(0.0)));
            }
        }
    }
    assert!(!latencies.is_empty(), "no setup in the debug log");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// The seconds of the day (UTC) of a brasa log line's timestamp
/// (`2026-12-05T11:58:26.123456Z …`): enough to compare times within one run.
fn log_stamp(line: &str) -> Option<f64> {
    let time = line.split_whitespace().next()?.split('T').nth(1)?;
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Counts the lines of a growing log that contain a marker, reading only what was appended
/// since the last look: a benchmark can watch the daemon's progress often without making
/// the daemon list its triggers (the CLI) or itself re-read the whole log.
struct LogTail {
    file: std::fs::File,
    partial: Vec<u8>,
    count: usize,
}

impl LogTail {
    fn open(path: &Path) -> Self {
        LogTail {
            file: std::fs::File::open(path).unwrap(),
            partial: Vec::new(),
            count: 0,
        }
    }

    /// The lines containing `marker` so far.
    fn count(&mut self, marker: &str) -> usize {
        use std::io::Read;
        let mut appended = Vec::new();
        self.file.read_to_end(&mut appended).unwrap();
        self.partial.extend_from_slice(&appended);
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return self.count;
        };
        let rest = self.partial.split_off(last_newline + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        self.count += String::from_utf8_lossy(&complete)
            .lines()
            .filter(|line| line.contains(marker))
            .count();
        self.count
    }

    /// Waits until the log says `setups` data trigger SAPs were created (at most 60 s from
    /// `started`).
    fn wait_for_setups(&mut self, setups: usize, started: Instant, daemon: &Daemon) {
        while self.count("data trigger SAP created") < setups {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} of {setups} setups done\n{}",
                self.count("data trigger SAP created"),
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Data trigger → dynamic SAP created through `brasa run` with local authentication: 2 000
/// new QinQ VLANs (200 in a debug build; `DYNSVC_SETUPS` to change, ≤ 4 000), each a
/// local-auth-db entry and a seed-style Epipe script. Asserts that every trigger got its
/// service; prints setups/s from the sender's first frame to the last sapCreated in brasa's
/// log (both on the machine's clock: neither the sender's start-up nor the harness's polling
/// counts), the same from the harness's own clock (the figure of earlier rounds), and the
/// p50/p99 latency of a setup (trigger machine → sapCreated, from the capture SAP's debug
/// log) (docs/performance.md; run it with `--release` for the figure).
#[test]
#[ignore = "a benchmark: run it with `--run-ignored ignored-only`"]
fn netns_local_auth_setups_per_second() {
    let setups = setups_to_run(200, 2000, 4000) as u16;
    let router = Netns::new("dyb");
    let (customers, _far) = customer_and_far(&router);
    let dir = tempfile::tempdir().unwrap();
    let config = burst_config(dir.path(), setups).replace(
        "host_lockout_policy = \"lock\"\n",
        "host_lockout_policy = \"lock\"\ndebug = { mode = \"all\" }\n",
    );
    let daemon = Daemon::start(&router, dir.path(), &config);
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));
    let mut log = LogTail::open(&dir.path().join("brasa.log"));
    let stop = dir.path().join("stop");
    let daemon_pid = daemon.child.id();
    let daemon_before = ThreadCpu::of(daemon_pid);
    let started = Instant::now();
    let mut flood = start_flood(&customers, &stop, setups.into());
    // The log says when each is done; the CLI is asked once, at the end.
    log.wait_for_setups(setups.into(), started, &daemon);
    let elapsed = started.elapsed();
    // Read before the sender stops: the setup phase's CPU, the flood's share included.
    let daemon_cpu = ThreadCpu::of(daemon_pid).since(&daemon_before);
    let sender_cpu = pid_cpu_seconds(flood.0.id());
    std::fs::write(&stop, "").unwrap();
    let created = |t: &[serde_json::Value]| t.iter().filter(|t| t["state"] == "sapCreated").count();
    let triggers = daemon.triggers_until("every trigger in sapCreated", |t| {
        created(t) >= usize::from(setups)
    });
    assert_eq!(created(&triggers), usize::from(setups));
    let sent = flood.finished();
    let log_text = daemon.log_text();
    let last_created = log_text
        .lines()
        .filter(|line| line.contains("data trigger SAP created"))
        .filter_map(log_stamp)
        .fold(f64::MIN, f64::max);
    let brasa_seconds = last_created - sent.first_frame_of_day;
    let (p50, p99) = setup_latencies(&log_text);
    eprintln!(
        "local authentication: {setups} data triggers -> sapCreated in {brasa_seconds:.3} s = \
         {:.0} setups/s from the first frame sent to the last sapCreated logged (harness clock, \
         sender start-up and polling included: {:.3} s = {:.0}/s) (frame, local-auth-db, \
         alc.dyn script, service transaction, data plane install, ledger + journal sync); \
         latency trigger -> sapCreated p50 {:.2} ms, p99 {:.2} ms",
        f64::from(setups) / brasa_seconds,
        elapsed.as_secs_f64(),
        f64::from(setups) / elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    let per_setup = |seconds: f64| seconds * 1e6 / f64::from(setups);
    let threads: Vec<String> = daemon_cpu
        .threads
        .iter()
        .map(|(name, seconds)| format!("{name} {:.0}", per_setup(*seconds)))
        .collect();
    eprintln!(
        "CPU per setup (first frame to last sapCreated seen): brasa {:.0} us ({}; {:.3} CPU-s), \
         the frame sender {:.0} us ({:.3} CPU-s)",
        per_setup(daemon_cpu.process),
        threads.join(", "),
        daemon_cpu.process,
        per_setup(sender_cpu),
        sender_cpu,
    );
    // The runner's own account of each setup group, when the daemon logs it
    // (`BRASA_TEST_LOG=info,brasa::dynsvc::timing=debug`).
    for line in log_text
        .lines()
        .filter(|l| l.contains("brasa::dynsvc::timing"))
    {
        eprintln!("{line}");
    }
}

/// The CPU seconds a process used (user + system, every thread, ended ones included) and
/// those of its live threads by name, a pool's numbered threads together
/// (`tokio-runtime-w`, `dp-worker-0` → `dp-worker-`): where a benchmark's CPU went.
struct ThreadCpu {
    process: f64,
    threads: std::collections::BTreeMap<String, f64>,
}

impl ThreadCpu {
    fn of(pid: u32) -> Self {
        let mut threads = std::collections::BTreeMap::new();
        for (name, seconds) in brasa_testkit::cpu::threads_cpu_seconds(pid) {
            let pool = name.trim_end_matches(|c: char| c.is_ascii_digit());
            *threads.entry(pool.to_owned()).or_default() += seconds;
        }
        ThreadCpu {
            process: pid_cpu_seconds(pid),
            threads,
        }
    }

    /// What was used since `before`; a thread that ended meanwhile counts in `process` only.
    fn since(&self, before: &ThreadCpu) -> ThreadCpu {
        ThreadCpu {
            process: self.process - before.process,
            threads: self
                .threads
                .iter()
                .map(|(name, seconds)| {
                    let earlier = before.threads.get(name).copied().unwrap_or(0.0);
                    (name.clone(), seconds - earlier)
                })
                .filter(|(_, seconds)| *seconds > 0.0)
                .collect(),
        }
    }
}

/// A RADIUS server that never answers: it appends the User-Name and Request Authenticator of
/// every Access-Request it receives to the file `argv[1]`, and prints its port first.
const COUNTING_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
# Room for every Access-Request of the flood at once: the throttle passes the first frame of
# each VLAN within milliseconds, and a request lost here is never retried (retries = 0).
s.setsockopt(socket.SOL_SOCKET, getattr(socket, 'SO_RCVBUFFORCE', 33), 16 << 20)
s.bind(('127.0.0.1', 0))
print(s.getsockname()[1], flush=True)
out = open(sys.argv[1], 'a')
while True:
    d, _ = s.recvfrom(4096)
    if len(d) < 20 or d[0] != 1:
        continue
    name, i = b'?', 20
    while i + 2 <= len(d) and d[i + 1] >= 2:
        if d[i] == 1:
            name = d[i + 2:i + d[i + 1]]
        i += d[i + 1]
    out.write(name.decode('latin-1') + ' ' + d[4:20].hex() + '\n')
    out.flush()
"#;

/// Sends QinQ frames (outer 3000, inner 1..=`argv[4]` or 1 000, a local-experimental
/// ethertype) on `argv[1]` with a raw AF_PACKET socket, round after round: at least `argv[2]`
/// rounds, then until the file `argv[3]` exists; never more than 2000 rounds or 60 s. Prints
/// the frames sent, the seconds it took, and when (UTC seconds of the day) it sent the first.
const FLOOD: &str = r#"
import os, socket, struct, sys, time
iface, min_rounds, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
vlans = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
frames = [b'\xff' * 6 + bytes.fromhex('02dd0000') + struct.pack('!H', vlan)
          + struct.pack('!HHHHH', 0x88a8, 3000, 0x8100, vlan, 0x88b5) + bytes(46)
          for vlan in range(1, vlans + 1)]
sent, rounds, start, first_frame = 0, 0, time.monotonic(), time.time()
while (rounds < min_rounds or not os.path.exists(stop)) and rounds < 2000 \
        and time.monotonic() - start < 60:
    # Every round in the same order: without the data plane's throttle the same early VLANs
    # filled the punt queue round after round and the late ones never triggered.
    for frame in frames:
        try:
            s.send(frame)
            sent += 1
        except OSError:
            pass
    rounds += 1
print(sent, time.monotonic() - start, first_frame % 86400, flush=True)
"#;

/// A child process killed (and reaped) when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a FLOOD sender printed when it stopped.
struct FloodReport {
    /// When it sent its first frame, in UTC seconds of the day (as brasa's log stamps).
    first_frame_of_day: f64,
}

impl KillOnDrop {
    /// Waits for a FLOOD sender (told to stop) and reads what it printed.
    fn finished(&mut self) -> FloodReport {
        use std::io::Read;
        let mut printed = String::new();
        if let Some(mut stdout) = self.0.stdout.take() {
            stdout.read_to_string(&mut printed).unwrap();
        }
        let _ = self.0.wait();
        let first_frame_of_day = printed
            .split_whitespace()
            .nth(2)
            .and_then(|field| field.parse().ok())
            .unwrap_or_else(|| panic!("the sender printed {printed:?}"));
        FloodReport { first_frame_of_day }
    }
}

/// The acceptance flood: at least 100 000 trigger frames over 1 000 new QinQ VLANs, sent again
/// and again in one fixed order while their Access-Requests wait for an answer, give exactly
/// one Access-Request per VLAN; the data plane's throttle drops all but one frame per VLAN, so
/// the punt queue carries one frame per VLAN; an Epipe already in place forwards pings all
/// along. Prints the throttle's drops a second and brasa's CPU beside the configured rate limit
/// (docs/performance.md).
#[test]
fn netns_trigger_flood_sends_one_access_request_per_vlan_and_services_keep_forwarding() {
    const VLANS: usize = 1000;
    let router = Netns::new("dyr");
    let (customers, _far) = customer_and_far(&router);
    let customer = &customers.hosts[0];
    let dir = tempfile::tempdir().unwrap();
    let requests = dir.path().join("requests");
    let mut server = KillOnDrop(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &router.name,
                "python3",
                "-c",
                COUNTING_SERVER,
            ])
            .arg(&requests)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(server.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().to_string()
    };
    // No answer within the flood: every trigger stays Pending, so all its later frames meet
    // the throttle.
    let pools = format!(
        r#"[radius]
[[radius.pool]]
name = "aaa"
timeout = "120s"
retries = 0
[[radius.pool.auth_server]]
address = "127.0.0.1:{port}"
secret = "dynsecret"
"#
    );
    let config = config(
        dir.path(),
        r#"{ radius_pool = "aaa", password = "dynpass" }"#,
        &pools,
    )
    .replace(
        "[dynamic_services]\n",
        "[dynamic_services]\nrate_limit = 10000\nrate_burst = 1000\nsetup_timeout = \"120s\"\n",
    )
    .replace("setup_timeout = \"3s\"\n", "");
    let daemon = Daemon::start(&router, dir.path(), &config);
    // The established service: an Epipe from the customer's VLAN pair to the far host.
    daemon.ok(
        &["service", "apply", "-"],
        Some(
            "configure service\n    epipe 10 customer 1 create\n        sap dy1:200.300 create\n        exit\n        sap dy2:300 create\n        exit\n        no shutdown\n    exit\nexit\n",
        ),
    );
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));
    ping_eventually(customer, "10.77.0.2", Duration::from_secs(30));

    let pid = daemon.child.id();
    let (cpu_before, started) = (pid_cpu_seconds(pid), Instant::now());
    let stop = dir.path().join("stop");
    let switch = customers.switch.name.clone();
    let flood = Command::new("ip")
        .args([
            "netns", "exec", &switch, "python3", "-c", FLOOD, "updy1", "100",
        ])
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Pings across the Epipe while the flood runs.
    let pinged = customer.output("ping", &["-c", "10", "-i", "0.2", "-W", "2", "10.77.0.2"]);
    let flood_ran_throughout = std::fs::metadata(&stop).is_err();
    // The flood goes on, round after round, until every VLAN has triggered.
    let request_lines = || std::fs::read_to_string(&requests).unwrap_or_default();
    daemon.eventually("an Access-Request for every VLAN", || {
        request_lines().lines().count() >= VLANS
    });
    std::fs::write(&stop, "").unwrap();
    let flood = flood.wait_with_output().unwrap();
    let (cpu_after, elapsed) = (pid_cpu_seconds(pid), started.elapsed());
    assert!(flood.status.success(), "{flood:?}");
    let report = String::from_utf8_lossy(&flood.stdout).into_owned();
    let mut figures = report.split_whitespace();
    let sent: u64 = figures.next().unwrap().parse().unwrap();
    let flood_seconds: f64 = figures.next().unwrap().parse().unwrap();
    assert!(sent >= 100 * VLANS as u64, "only {sent} frames sent");
    assert!(flood_ran_throughout);
    let ping_text = String::from_utf8_lossy(&pinged.stdout);
    let replies = ping_text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .count();
    // The flood and the pings share the trunk's veth queue and brasa's receive path, so pings
    // are lost with the flood's frames (the figure below says how many); the Epipe must still
    // carry them while the flood runs.
    assert!(
        replies > 0,
        "the Epipe stopped forwarding during the flood: {ping_text}\n{}",
        daemon.log_text()
    );

    // The data plane's counters of the capture SAP (the guide's Table 2): one frame per VLAN
    // crossed the punt queue ("CPM Ingress"), the throttle dropped the rest ("Forwarding
    // Engine Stats Dropped").
    let stats = daemon.capture_stats("dy1:*.*");
    let throttled = stats["forwarding_engine_dropped"][0].as_u64().unwrap();
    let ingress = stats["cpm_ingress"][0].as_u64().unwrap();
    assert_eq!(
        stats["forwarding_engine_dropped"][1].as_u64().unwrap(),
        throttled * 68,
        "octets of the flood's 68-byte frames: {stats}"
    );
    // The text form has the guide's Table 2 layout.
    let text = daemon.ok(
        &[
            "show",
            "service",
            "dynamic-services",
            "capture-sap",
            "dy1:*.*",
            "statistics",
        ],
        None,
    );
    let row = |label: &str| {
        text.lines()
            .find(|line| line.starts_with(label))
            .and_then(|line| line.split_once(':'))
            .map(|(_, figures)| figures.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        row("CPM Ingress ").as_deref(),
        Some(format!("{ingress} {}", stats["cpm_ingress"][1]).as_str()),
        "{text}"
    );
    assert!(text.contains("Forwarding Engine Stats\nDropped "), "{text}");
    assert_eq!(
        row("Dropped ").as_deref(),
        Some(format!("{throttled} {}", throttled * 68).as_str()),
        "{text}"
    );
    // Anything else the customer's side sends on other VLANs is punted too, a frame or two.
    assert!(
        (VLANS as u64..=VLANS as u64 + 10).contains(&ingress),
        "the punt queue carried {ingress} frames for {VLANS} VLANs: {stats}"
    );

    let lines = request_lines();
    let mut names: Vec<&str> = lines
        .lines()
        .map(|line| line.split(' ').next().unwrap())
        .collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(total, VLANS, "Access-Requests: {total}\n{stats}");
    assert_eq!(names.len(), VLANS, "distinct User-Names: {}", names.len());
    assert!(names.iter().all(|name| name.starts_with("dy1:3000.")));
    let triggers = daemon.json(&["show", "service", "dynamic-services", "data-triggers"]);
    assert_eq!(triggers.as_array().unwrap().len(), VLANS);
    assert!(throttled > 0, "{stats}");
    drop(server);
    eprintln!(
        "trigger flood: {sent} frames over {VLANS} VLANs in {flood_seconds:.2} s ({:.0} frames/s sent); \
         brasa saw {} (throttled {throttled}, {:.0}/s; past the throttle {ingress}); \
         Access-Requests {total}; pings across the Epipe meanwhile {replies}/10; brasa CPU {:.0} % of one core over {:.2} s; \
         rate limit 10000 triggers/s, burst 1000",
        sent as f64 / flood_seconds,
        throttled + ingress,
        throttled as f64 / flood_seconds,
        100.0 * (cpu_after - cpu_before) / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
}

/// Data trigger → dynamic SAP created with FreeRADIUS as the AAA server, beside FreeRADIUS's
/// own Access-Request rate from the neutral load generator (`shared/tools/radload.py`) in the
/// same run. 1 000 new QinQ VLANs (150 in a debug build; `DYNSVC_SETUPS` to change) send
/// trigger frames in one fixed order; FreeRADIUS answers every one with the trigger's SAP and
/// an Epipe to the far trunk; the figure is the time from the sender's first frame to the last
/// sapCreated in brasa's log. Asserts that every trigger got its service and that FreeRADIUS
/// answered every direct request; prints both rates and the datagrams the namespace's UDP
/// sockets (and FreeRADIUS's auth socket) dropped for a full receive buffer during the setups
/// (`DYNSVC_FREERADIUS_RECV_BUFF=0` gives FreeRADIUS the kernel's default buffer, and the
/// burst's losses).
#[test]
#[ignore = "a benchmark: run it with `--run-ignored ignored-only`; it needs the shared radload.py (RADLOAD=path)"]
fn netns_freeradius_setups_per_second_beside_freeradius_direct_rate() {
    // A debug build sets up a few tens a second: the suite's run checks the path with fewer.
    let setups = setups_to_run(150, 1000, 1000);
    let router = Netns::new("dyr");
    let (customers, _far) = customer_and_far(&router);
    let dir = tempfile::tempdir().unwrap();
    let users = r##"DEFAULT User-Name =~ "^dy1:", Cleartext-Password := "dynpass"
	Alc-Dyn-Serv-SAP-Id:1 = "#:#.#",
	Alc-Dyn-Serv-Script-Params:1 = "epipe={}",
	Alc-Dyn-Serv-Script-Action:1 = setup,
	Alc-Dyn-Serv-Policy:1 = "dyn-epipe"

DEFAULT Cleartext-Password := "secret"
"##;
    let (radius, pools) = aaa_server(
        &router,
        dir.path(),
        users,
        "timeout = \"2s\"\nretries = 2\n",
    );
    // Every setup queues behind the others on the runner: the setup timeout must outlast them.
    let config = config(
        dir.path(),
        r#"{ radius_pool = "aaa", password = "dynpass" }"#,
        &pools,
    )
    .replace("setup_timeout = \"3s\"\n", "setup_timeout = \"120s\"\n")
    .replace(
        "host_lockout_policy = \"lock\"\n",
        "host_lockout_policy = \"lock\"\ndebug = { mode = \"all\" }\n",
    );
    let daemon = Daemon::start(&router, dir.path(), &config);
    daemon.ok(&["service", "apply", "-"], Some(CAPTURE));

    let auth_port = radius.auth.port();
    let drops_before = udp_drops(&router, auth_port);
    let mut log = LogTail::open(&dir.path().join("brasa.log"));
    let stop = dir.path().join("stop");
    let started = Instant::now();
    let mut flood = start_flood(&customers, &stop, setups);
    log.wait_for_setups(setups, started, &daemon);
    let drops_after = udp_drops(&router, auth_port);
    std::fs::write(&stop, "").unwrap();
    let sent = flood.finished();
    let created = |t: &[serde_json::Value]| t.iter().filter(|t| t["state"] == "sapCreated").count();
    let triggers = daemon.triggers_until("every trigger in sapCreated", |t| created(t) >= setups);
    assert_eq!(created(&triggers), setups);
    assert!(triggers
        .iter()
        .all(|t| t["services"].as_array().is_some_and(|s| s.len() == 1)));
    let last_created = daemon
        .log_text()
        .lines()
        .filter(|line| line.contains("data trigger SAP created"))
        .filter_map(log_stamp)
        .fold(f64::MIN, f64::max);
    let brasa_seconds = last_created - sent.first_frame_of_day;
    let setup_rate = setups as f64 / brasa_seconds;

    // FreeRADIUS alone, same instance, same run: PAP Access-Requests from the load generator.
    // 16 sockets × 16 in flight after a warm-up, as the RADIUS proxy benchmark drives it: more
    // in flight at once overflows FreeRADIUS's socket buffer, and those count as lost.
    let requests = 20 * setups as u64;
    let auth = radius.auth;
    let direct = router.enter(move || {
        support::radload(auth, "dynsecret", "auth", 2000, 8, 16);
        support::radload(auth, "dynsecret", "auth", requests, 16, 16)
    });
    let field = |name: &str| {
        direct
            .split_whitespace()
            .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {direct}"))
            .to_string()
    };
    // Every answer an Accept; a loaded machine may see a few requests lost in FreeRADIUS's
    // socket buffer, which the rate leaves out.
    let answered: u64 = field("answered").parse().unwrap();
    assert!(answered >= requests * 9 / 10, "{direct}");
    assert!(
        direct.contains(&format!("codes={{2: {answered}}}")),
        "{direct}"
    );
    let direct_rate: f64 = field("rate").trim_end_matches("/s").parse().unwrap();
    eprintln!(
        "FreeRADIUS as the AAA server: {setups} data triggers -> sapCreated in {brasa_seconds:.3} s = \
         {setup_rate:.0} setups/s from the first frame sent to the last sapCreated logged \
         (frame, Access-Request/Accept, alc.dyn script, service transaction, data plane install); \
         datagrams the namespace's UDP sockets dropped meanwhile for a full receive buffer: {} \
         (FreeRADIUS's auth socket: {}, its buffer {} bytes); \
         FreeRADIUS direct, same run: {direct_rate:.0} Access-Requests/s ({direct}); \
         brasa's time per setup beyond FreeRADIUS's per request: {:.0} us",
        drops_after.namespace - drops_before.namespace,
        drops_after.socket - drops_before.socket,
        drops_after.socket_buffer,
        1e6 / setup_rate - 1e6 / direct_rate,
    );
}

/// UDP datagrams dropped for a full receive buffer, in a namespace.
struct UdpDrops {
    /// By every socket of the namespace (`/proc/net/snmp`, Udp RcvbufErrors).
    namespace: u64,
    /// By the socket bound to the port asked for (`ss -m`: skmem's `d`).
    socket: u64,
    /// That socket's receive buffer, bytes (skmem's `rb`).
    socket_buffer: u64,
}

/// The UDP receive-buffer drops in `router` so far, all sockets' and the one bound to `port`'s.
fn udp_drops(router: &Netns, port: u16) -> UdpDrops {
    let (snmp, sockets) = router.enter(|| {
        let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
        let ss = Command::new("ss")
            .args(["-u", "-a", "-m", "-n"])
            .output()
            .unwrap();
        (snmp, String::from_utf8_lossy(&ss.stdout).into_owned())
    });
    let udp: Vec<Vec<&str>> = snmp
        .lines()
        .filter_map(|line| line.strip_prefix("Udp: "))
        .map(|line| line.split_whitespace().collect())
        .collect();
    let namespace = udp[0]
        .iter()
        .position(|name| *name == "RcvbufErrors")
        .and_then(|at| udp[1][at].parse().ok())
        .unwrap_or_else(|| panic!("no Udp RcvbufErrors in {snmp}"));
    // `ss -m` prints a socket's line, then its skmem:(r…,rb…,…,d…) on the next.
    // Columns: State Recv-Q Send-Q Local Peer.
    let local = format!(":{port}");
    let skmem = sockets
        .lines()
        .skip_while(|line| {
            line.split_whitespace()
                .nth(3)
                .is_none_or(|address| !address.ends_with(&local))
        })
        .find_map(|line| line.trim().strip_prefix("skmem:("))
        .unwrap_or_else(|| panic!("no socket on port {port} in {sockets}"));
    let field = |name: &str| -> u64 {
        skmem
            .trim_end_matches(')')
            .split(',')
            .find_map(|f| f.strip_prefix(name)?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in skmem:({skmem}"))
    };
    UdpDrops {
        namespace,
        socket: field("d"),
        socket_buffer: field("rb"),
    }
}
