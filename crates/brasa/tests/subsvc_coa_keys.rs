//! Which subscriber a subscriber-services CoA-Request is for, with radclient as the NAS and
//! as the CoA client: the keys of Nokia SR OS's subscriber host identification (User-Name,
//! Acct-Session-Id, NAS-Port-Id with an address, the address alone), as the Subscriber
//! Manager keeps them from the NAS's accounting (`properties = ["Acct-Session-Id",
//! "NAS-Port-Id"]`). Keys that name nobody or disagree are Session-Context-Not-Found; an
//! Acct-Session-Id several subscribers hold is Multiple-Session-Selection-Unsupported.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::*;

const NAS_SECRET: &str = "ck-nas";
const COA_SECRET: &str = "ck-coa";

/// One rate-limiting rule per service, named by the Alc-Sub-Serv-Activate value.
const SCRIPT: &str = r#"from alc import radius, sub_svc

name = b"".join(v[1:] for v in radius.attributes.getVSATuple(6527, 151)).decode()
service = []
sub_svc.add_to_service(service, sub_svc.operation, sub_svc.operation_add)
sub_svc.add_to_service(service, sub_svc.name, name)
flow = []
sub_svc.flow.add_to_flow(flow, sub_svc.flow.dst_ip, '10.2.0.0/16')
rule = []
sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.name, name + '-i')
sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.direction, sub_svc.pccrule.direction_ingress)
sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.flow, flow)
sub_svc.pccrule.add_to_pccrule(rule, sub_svc.pccrule.qos_action_rate_limit_pir, 1000)
sub_svc.add_to_service(service, sub_svc.pccrule, rule)
sub_svc.commit_service(service)
"#;

struct Setup {
    api: SocketAddr,
    acct: SocketAddr,
    coa: SocketAddr,
    dictionary: String,
}

fn udp_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_udp_port("127.0.0.1"))
        .parse()
        .unwrap()
}

fn start(dir: &Path) -> (Daemon, Setup) {
    let api: SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let (auth, acct, coa) = (udp_addr(), udp_addr(), udp_addr());
    let grpc = free_tcp_port("127.0.0.1");
    let script = dir.join("ck_services.py");
    std::fs::write(&script, SCRIPT).unwrap();
    alcatel_dictionary(dir, "Alc-Sub-Serv-");
    let config = format!(
        r#"data_dir = "data"
[api]
listen = "{api}"
[radius]
[[radius.client]]
name = "ck-bng"
address = "127.0.0.1"
secret = "{NAS_SECRET}"
[[radius.server]]
name = "ck-aaa"
auth_listen = "{auth}"
acct_listen = "{acct}"
local = "ck-users"
[[radius.local]]
name = "ck-users"
[subscriber_manager]
listen = "127.0.0.1:{grpc}"
[subscriber_manager.radius]
servers = ["ck-aaa"]
properties = ["Acct-Session-Id", "NAS-Port-Id"]
[subscriber_services]
script = "{script}"
coa_listen = "{coa}"
[[subscriber_services.coa_client]]
address = "127.0.0.1"
secret = "{COA_SECRET}"
"#,
        script = script.display()
    );
    let daemon = start_brasa(dir, &config, api);
    let setup = Setup {
        api,
        acct,
        coa,
        dictionary: dir.to_str().unwrap().to_owned(),
    };
    (daemon, setup)
}

/// The NAS's accounting Start of a session: the SM logs `user` in with its address and keeps
/// the session's Acct-Session-Id and NAS-Port-Id.
fn start_session(setup: &Setup, user: &str, session: &str, port: &str, address: &str) {
    let output = radclient(
        setup.acct,
        "acct",
        NAS_SECRET,
        &format!(
            "User-Name = \"{user}\", Acct-Status-Type = Start, Acct-Session-Id = \"{session}\", \
             NAS-Port-Id = \"{port}\", Framed-IP-Address = {address}\n"
        ),
        &[],
    );
    assert_eq!(
        received(&output).as_deref(),
        Some("Accounting-Response"),
        "{}",
        brasa_testkit::radclient::text(&output)
    );
    eventually(
        &format!("{user} logged in"),
        Duration::from_secs(20),
        || {
            let out = brasa(setup.api, &["--json", "sm", "show", "subscriber", user]);
            out.status.success()
                && serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["logged_in"]
                    == true
        },
    );
}

/// A CoA-Request activating `service` for the subscriber `keys` name: the answer's code and
/// Error-Cause.
fn activate(setup: &Setup, keys: &str, service: &str) -> (String, Option<String>) {
    let input =
        format!("{keys}, Alc-Sub-Serv-Activate:1 = \"{service}\", Message-Authenticator = 0x00\n");
    let output = radclient(
        setup.coa,
        "coa",
        COA_SECRET,
        &input,
        &["-d", &setup.dictionary],
    );
    coa_answer(&output)
}

fn services(setup: &Setup, user: &str) -> Vec<String> {
    let sub = brasa_json(setup.api, &["sm", "show", "subscriber", user]);
    sub["services"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A CoA answer's code and Error-Cause.
type Answer<'a> = (&'a str, Option<&'a str>);

const ACK: Answer = ("CoA-ACK", None);
const NOT_FOUND: Answer = ("CoA-NAK", Some("Session-Context-Not-Found"));
const AMBIGUOUS: Answer = ("CoA-NAK", Some("Multiple-Session-Selection-Unsupported"));

fn answer(pair: &(String, Option<String>)) -> Answer<'_> {
    (pair.0.as_str(), pair.1.as_deref())
}

#[test]
fn subscriber_services_coas_find_the_subscriber_by_session_port_and_address_or_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, setup) = start(dir.path());
    start_session(&setup, "ck-alice", "ck-s1", "1/1/1:10", "10.9.0.7");
    start_session(&setup, "ck-bob", "ck-s2", "1/1/1:11", "10.9.0.8");
    // The operator's properties may give one session id to two subscribers (a NAS that
    // reuses them); a CoA by that id alone cannot say which.
    start_session(&setup, "ck-carol", "ck-s2", "1/1/1:12", "10.9.0.9");

    let cases: [(&str, &str, Answer); 9] = [
        ("Acct-Session-Id = \"ck-s1\"", "by-session", ACK),
        ("Acct-Session-Id = \"ck-none\"", "x1", NOT_FOUND),
        ("Acct-Session-Id = \"ck-s2\"", "x2", AMBIGUOUS),
        // Another key chooses among the session's holders.
        (
            "Acct-Session-Id = \"ck-s2\", User-Name = \"ck-bob\"",
            "by-session-and-name",
            ACK,
        ),
        (
            "NAS-Port-Id = \"1/1/1:10\", Framed-IP-Address = 10.9.0.7",
            "by-port-and-address",
            ACK,
        ),
        // The address's holder is on another port.
        (
            "NAS-Port-Id = \"1/1/1:11\", Framed-IP-Address = 10.9.0.7",
            "x3",
            NOT_FOUND,
        ),
        // The host of the address is not the session's (SR OS's rule).
        (
            "Framed-IP-Address = 10.9.0.7, Acct-Session-Id = \"ck-s2\"",
            "x4",
            NOT_FOUND,
        ),
        (
            "User-Name = \"ck-alice\", Framed-IP-Address = 10.9.0.8",
            "x5",
            NOT_FOUND,
        ),
        ("NAS-Port-Id = \"1/1/1:10\"", "x6", NOT_FOUND),
    ];
    for (keys, service, expected) in cases {
        let got = activate(&setup, keys, service);
        assert_eq!(answer(&got), expected, "{keys}\n{}", daemon.log_text());
    }
    assert_eq!(
        services(&setup, "ck-alice"),
        ["by-session", "by-port-and-address"],
        "the refused CoAs changed nothing"
    );
    assert_eq!(services(&setup, "ck-bob"), ["by-session-and-name"]);
    assert!(services(&setup, "ck-carol").is_empty());
    let metrics = http_get(setup.api, "/metrics");
    for line in [
        "brasa_subsvc_refusals_total{reason=\"ambiguous-session\"} 1",
        "brasa_subsvc_refusals_total{reason=\"not-found\"} 5",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
