//! Subscriber services on the control side with real peers: FreeRADIUS as the AAA server
//! behind brasa's proxy returns Alc-Sub-Serv-Activate; the seed's script (Nokia SR OS "PCC
//! rules in a subscriber service") builds `subsvc-pccrule-1`, which the SM record holds;
//! radclient's CoA-Requests activate, refuse (with their Error-Cause, changing nothing) and
//! deactivate; the operator's commands do the same; a kill -9 loses nothing.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use support::*;

const NAS_SECRET: &str = "sc-nas";
const UPSTREAM_SECRET: &str = "sc-aaa";
const COA_SECRET: &str = "sc-coa";
const LIMIT: Duration = Duration::from_secs(20);

/// The services script: "pcc" runs the seed's example unchanged; "NAME;TYPE;ACTION;PIR" builds
/// one rate-limiting rule of that type and type-conflict action (a PIR of 0 is invalid).
const SCRIPT: &str = r#"from alc import radius, sub_svc

value = b"".join(v[1:] for v in radius.attributes.getVSATuple(6527, 151)).decode()
if value == "pcc":
    exec(open(SEED).read())
else:
    name, kind, action, pir = value.split(";")
    service = []
    sub_svc.add_to_service(service, sub_svc.operation, sub_svc.operation_add)
    sub_svc.add_to_service(service, sub_svc.name, name)
    sub_svc.add_to_service(service, sub_svc.type, kind)
    conflict = {"none": sub_svc.type_conflict_action_none,
                "keep-old": sub_svc.type_conflict_action_keep_old,
                "keep-new": sub_svc.type_conflict_action_keep_new}[action]
    sub_svc.add_to_service(service, sub_svc.type_conflict_action, conflict)
    flow = []
    sub_svc.flow.add_to_flow(flow, sub_svc.flow.dst_ip, '10.2.0.0/16')
    rule = []
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.name, name + '-i')
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.direction, sub_svc.pccrule.direction_ingress)
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.flow, flow)
    sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_rate_limit_pir, int(pir))
    sub_svc.add_to_service(service, sub_svc.pccrule, rule)
    sub_svc.commit_service(service)
"#;

fn seed_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python/sub_svc/pcc_rules.py")
}

struct Setup {
    api: SocketAddr,
    auth: SocketAddr,
    acct: SocketAddr,
    coa: SocketAddr,
    config: String,
}

fn setup(dir: &Path, freeradius: &FreeRadius) -> Setup {
    let api: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let grpc = free_tcp_port("127.0.0.1");
    let port = || -> SocketAddr {
        format!("127.0.0.1:{}", free_udp_port("127.0.0.1"))
            .parse()
            .unwrap()
    };
    let (auth, acct, coa) = (port(), port(), port());
    let script = dir.join("sc_services.py");
    std::fs::write(
        &script,
        SCRIPT.replace(
            "SEED",
            &format!("{:?}", seed_script().display().to_string()),
        ),
    )
    .unwrap();
    let head = radius_proxy_config(
        api,
        ("sc-bng", NAS_SECRET),
        ("sc-aaa", auth, acct),
        "",
        freeradius,
        UPSTREAM_SECRET,
    );
    let config = format!(
        r#"{head}[subscriber_manager]
listen = "127.0.0.1:{grpc}"
[subscriber_manager.radius]
servers = ["sc-aaa"]
[subscriber_services]
script = "{}"
servers = ["sc-aaa"]
coa_listen = "{coa}"
[[subscriber_services.coa_client]]
address = "127.0.0.1"
secret = "{COA_SECRET}"
"#,
        script.display()
    );
    Setup {
        api,
        auth,
        acct,
        coa,
        config,
    }
}

fn services(api: SocketAddr, name: &str) -> Vec<serde_json::Value> {
    let out = brasa(api, &["--json", "sm", "show", "subscriber", name]);
    if !out.status.success() {
        return Vec::new();
    }
    let sub: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    sub["services"].as_array().cloned().unwrap_or_default()
}

fn service_names(api: SocketAddr, name: &str) -> Vec<String> {
    services(api, name)
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// radclient's CoA-Request to brasa: the code it received and the Error-Cause, if any.
fn coa(setup: &Setup, dictionary: &Path, attributes: &str) -> (String, Option<String>) {
    let input = format!("{attributes}, Message-Authenticator = 0x00\n");
    let dictionary = dictionary.to_str().unwrap();
    let output = radclient(setup.coa, "coa", COA_SECRET, &input, &["-d", dictionary]);
    support::coa_answer(&output)
}

fn text(output: &Output) -> String {
    brasa_testkit::radclient::text(output)
}

fn accounting(setup: &Setup, status: &str) {
    let output = radclient(
        setup.acct,
        "acct",
        NAS_SECRET,
        &format!(
            "User-Name = \"sc-alice\", Acct-Status-Type = {status}, Acct-Session-Id = \"sc-1\", Framed-IP-Address = 10.9.0.7\n"
        ),
        &[],
    );
    assert_eq!(
        received(&output).as_deref(),
        Some("Accounting-Response"),
        "{}",
        text(&output)
    );
}

#[test]
fn serial_subscriber_services_from_an_access_accept_and_coas_with_freeradius_and_radclient() {
    let dir = tempfile::tempdir().unwrap();
    let radius_dir = dir.path().join("freeradius");
    std::fs::create_dir_all(&radius_dir).unwrap();
    alcatel_dictionary(&radius_dir, "Alc-Sub-Serv-");
    // Tagged, with the accounting attributes SR OS takes from the Accept.
    let users = "\"sc-alice\" Cleartext-Password := \"sc-pw\"\n\
        \tAlc-Sub-Serv-Activate:1 = \"pcc\",\n\
        \tAlc-Sub-Serv-Acct-Stats-Type:1 = volume-time,\n\
        \tAlc-Sub-Serv-Acct-Interim-Ivl:1 = 600\n";
    let freeradius = start_freeradius(
        &radius_dir,
        "127.0.0.1",
        &[("127.0.0.1", UPSTREAM_SECRET)],
        users,
        "",
        None,
        false,
    );
    let brasa_dir = dir.path().join("brasa");
    std::fs::create_dir_all(&brasa_dir).unwrap();
    let setup = setup(&brasa_dir, &freeradius);
    let daemon = start_brasa(&brasa_dir, &setup.config, setup.api);

    // The Accept reaches the NAS without the Alc-Sub-Serv-* attributes (brasa enforces them).
    let output = radclient(
        setup.auth,
        "auth",
        NAS_SECRET,
        "User-Name = \"sc-alice\", User-Password = \"sc-pw\"\n",
        &["-d", radius_dir.to_str().unwrap()],
    );
    assert_eq!(
        received(&output).as_deref(),
        Some("Access-Accept"),
        "{}\n{}",
        text(&output),
        daemon.log_text()
    );
    let reply = reply_lines(&output);
    assert!(
        reply.iter().all(|l| !l.contains("Sub-Serv")),
        "stripped: {reply:?}"
    );
    eventually("the Accept's service in the SM", LIMIT, || {
        service_names(setup.api, "sc-alice") == ["subsvc-pccrule-1"]
    });
    let service = &services(setup.api, "sc-alice")[0];
    assert_eq!(service["type"], "pccrule");
    assert_eq!(service["acct-stats-type"], "volume-time");
    assert_eq!(service["acct-interval"], 600, "the tag's attribute wins");
    let rules: Vec<&str> = service["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["pcc-rule-1-i", "pcc-rule-1-e"]);
    assert_eq!(service["rules"][0]["actions"]["account"], true);
    assert_eq!(service["rules"][1]["actions"]["account"], false);
    assert_eq!(
        service["rules"][1]["actions"]["rate-limit"]["pir-kbps"],
        5000
    );

    // The accounting Start logs sc-alice in; the services stay.
    accounting(&setup, "Start");
    eventually("sc-alice logged in", LIMIT, || {
        let out = brasa(
            setup.api,
            &["--json", "sm", "show", "subscriber", "sc-alice"],
        );
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["logged_in"]
                == true
    });
    assert_eq!(service_names(setup.api, "sc-alice"), ["subsvc-pccrule-1"]);

    let activate =
        |params: &str| format!("User-Name = \"sc-alice\", Alc-Sub-Serv-Activate:1 = \"{params}\"");
    let d = radius_dir.as_path();
    assert_eq!(
        coa(&setup, d, &activate("sc-gold;tier;none;2000")),
        ("CoA-ACK".into(), None)
    );
    assert_eq!(
        service_names(setup.api, "sc-alice"),
        ["subsvc-pccrule-1", "sc-gold"]
    );
    // Found by its address; keep-old against sc-gold of the same type: refused, unchanged.
    let by_address =
        "Framed-IP-Address = 10.9.0.7, Alc-Sub-Serv-Activate:1 = \"sc-bronze;tier;keep-old;500\"";
    assert_eq!(
        coa(&setup, d, by_address),
        ("CoA-NAK".into(), Some("Invalid-Request".into()))
    );
    // An invalid rule (PIR 0): the script's commit fails, nothing changes.
    assert_eq!(
        coa(&setup, d, &activate("sc-bad;other;none;0")),
        ("CoA-NAK".into(), Some("Invalid-Request".into()))
    );
    assert_eq!(
        service_names(setup.api, "sc-alice"),
        ["subsvc-pccrule-1", "sc-gold"]
    );
    // keep-new replaces sc-gold.
    assert_eq!(
        coa(&setup, d, &activate("sc-silver;tier;keep-new;3000")),
        ("CoA-ACK".into(), None)
    );
    assert_eq!(
        service_names(setup.api, "sc-alice"),
        ["subsvc-pccrule-1", "sc-silver"]
    );
    // Nobody of that name or address.
    assert_eq!(
        coa(
            &setup,
            d,
            "User-Name = \"sc-nobody\", Alc-Sub-Serv-Activate:1 = \"x;y;none;1\""
        ),
        ("CoA-NAK".into(), Some("Session-Context-Not-Found".into()))
    );
    assert_eq!(
        coa(
            &setup,
            d,
            "User-Name = \"sc-alice\", Alc-Sub-Serv-Deactivate:1 = \"sc-silver\""
        ),
        ("CoA-ACK".into(), None)
    );
    assert_eq!(service_names(setup.api, "sc-alice"), ["subsvc-pccrule-1"]);

    // The operator's commands go the same way.
    let done = brasa_json(
        setup.api,
        &[
            "tools",
            "perform",
            "subscriber-service",
            "activate",
            "sc-alice",
            "--parameters",
            "sc-op;op;none;100",
            "--acct-stats-type",
            "3",
        ],
    );
    assert_eq!(done["services"][1]["name"], "sc-op");
    assert_eq!(done["services"][1]["acct-stats-type"], "time");
    let refused = brasa(
        setup.api,
        &[
            "tools",
            "perform",
            "subscriber-service",
            "deactivate",
            "sc-alice",
            "sc-none",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("sc-none"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let done = brasa_json(
        setup.api,
        &[
            "tools",
            "perform",
            "subscriber-service",
            "deactivate",
            "sc-alice",
            "sc-op",
        ],
    );
    assert_eq!(done["services"].as_array().unwrap().len(), 1);

    let metrics = http_get(setup.api, "/metrics");
    for line in [
        "brasa_subsvc_coa_answers_total{answer=\"ack\"} 3",
        "brasa_subsvc_coa_answers_total{answer=\"nak\"} 3",
        "brasa_subsvc_refusals_total{reason=\"type-conflict\"} 1",
        "brasa_subsvc_refusals_total{reason=\"script-failed\"} 1",
        "brasa_subsvc_refusals_total{reason=\"not-found\"} 2",
        "brasa_subsvc_script_failures_total 1",
        "brasa_subsvc_accepts_total 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // kill -9: the services are in the SM's store.
    drop(daemon);
    let daemon = start_brasa(&brasa_dir, &setup.config, setup.api);
    assert_eq!(
        service_names(setup.api, "sc-alice"),
        ["subsvc-pccrule-1"],
        "{}",
        daemon.log_text()
    );
    // The Stop logs sc-alice out, and the services go with the session.
    accounting(&setup, "Stop");
    eventually("the logout clears the services", LIMIT, || {
        service_names(setup.api, "sc-alice").is_empty()
    });
}

#[test]
fn subscriber_services_config_errors_name_file_line_and_column() {
    let seed = seed_script().display().to_string();
    let section = format!("[subscriber_services]\nscript = {seed:?}\n");
    let sm = "[subscriber_manager]\nlisten = \"127.0.0.1:1\"\n";
    let radius = "[radius]\n[[radius.server]]\nname = \"aaa\"\nauth_listen = \"127.0.0.1:2\"\nlocal = \"u\"\n[[radius.local]]\nname = \"u\"\n";
    let cases = [
        (section.clone(), "1:1", "configure [subscriber_manager] too"),
        (
            format!("{sm}[subscriber_services]\nscript = \"sc-none.py\"\n"),
            "4:10",
            "sc-none.py does not exist",
        ),
        (
            format!("{sm}{section}servers = [\"x\"]\n"),
            "5:12",
            "configure it in the same file",
        ),
        (
            format!("{radius}{sm}{section}servers = [\"x\"]\n"),
            "12:12",
            "no [[radius.server]] named \"x\" (defined: \"aaa\")",
        ),
        (
            format!("{sm}{section}time_limit = \"0s\"\n"),
            "5:14",
            "time_limit must be more than 0",
        ),
        (
            format!("{sm}{section}[[subscriber_services.coa_client]]\naddress = \"127.0.0.1\"\nsecret = \"s\"\n"),
            "5:1",
            "coa_client needs coa_listen",
        ),
        (
            format!("{sm}{section}bogus = 1\n"),
            "5:1",
            "unknown field `bogus`",
        ),
    ];
    assert_config_errors(&cases);
}
