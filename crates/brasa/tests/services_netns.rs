//! The service data plane of `brasa run` with real traffic: hosts in network namespaces sit
//! behind VLAN trunks (the kernel here has no 802.1Q module, so a test VLAN shim tags their
//! frames as a switch's access ports would), brasa's access ports are the trunks' far ends,
//! and services are applied through the CLI in the SR OS-like text form.

mod services_support;
mod support;

use brasa_testkit::capture::Capture;
use brasa_testkit::netns::Netns;
use services_support::{
    dot1q, iperf3, ping, ping_eventually, qinq, tcp_echo, tcp_echo_within, Daemon, HostSpec, Trunk,
    TrunkNames,
};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn trunk(router: &Netns, port: &str, hosts: Vec<HostSpec>) -> Trunk {
    let names = TrunkNames {
        switch_prefix: "sw",
        ipv4_only: false,
    };
    services_support::trunk(router, names, port, hosts)
}

fn config(dir: &Path, interfaces: &str) -> String {
    format!(
        r#"data_dir = "{data}"
[api]
listen = "127.0.0.1:7780"
[dataplane]
tun = "brtun0"
{interfaces}
"#,
        data = dir.join("data").display()
    )
}

/// `[[dataplane.interface]]` tables for the access ports `ports`, dot1q-encapsulated.
fn dot1q_ports(ports: &[&str]) -> String {
    ports
        .iter()
        .map(|port| format!("[[dataplane.interface]]\nname = \"{port}\"\nencap = \"dot1q\"\n"))
        .collect()
}

/// brasa in `router` (its data in `dir`) with the dot1q access ports `ports`.
fn start_dot1q(router: &Netns, dir: &Path, ports: &[&str]) -> Daemon {
    Daemon::start(router, dir, &config(dir, &dot1q_ports(ports)))
}

#[test]
fn netns_epipe_translates_tags_between_dot1q_and_qinq_and_keeps_vlans_apart() {
    let router = Netns::new("epr");
    let left = trunk(
        &router,
        "t1",
        vec![
            dot1q("epa", "10.9.0.1/24", 100),
            dot1q("epx", "10.9.0.3/24", 101),
        ],
    );
    let right = trunk(&router, "t2", vec![qinq("epb", "10.9.0.2/24", 200, 300)]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(
        &router,
        dir.path(),
        &config(
            dir.path(),
            r#"[[dataplane.interface]]
name = "t1"
encap = "dot1q"
[[dataplane.interface]]
name = "t2"
encap = "qinq"
outer_tpid = "0x88a8"
"#,
        ),
    );
    let applied = daemon.apply(
        "configure service epipe 1000 customer 1 create\n\
         sap t1:100 create\nexit\nsap t2:200.300 create\nexit\nno shutdown\nexit all\n",
    );
    assert!(applied.contains("added service 1000"), "{applied}");

    let (a, x) = (&left.hosts[0], &left.hosts[1]);
    let b = &right.hosts[0];
    ping_eventually(a, "10.9.0.2", Duration::from_secs(10));
    assert!(
        tcp_echo(b, a, "10.9.0.2", 5201, 200_000),
        "TCP over the Epipe"
    );
    // A host on another VLAN of the same trunk reaches nobody.
    assert!(!ping(x, "10.9.0.2"));
    assert!(!ping(x, "10.9.0.1"));

    let service = daemon.json(&["show", "service", "1000"]);
    assert_eq!(service["oper"], "up", "{service}");
    let saps = service["saps"].as_array().unwrap();
    assert_eq!(saps.len(), 2);
    for sap in saps {
        let rx = sap["counters"]["rx_packets"].as_u64().unwrap();
        let tx = sap["counters"]["tx_packets"].as_u64().unwrap();
        assert!(rx > 100 && tx > 100, "{sap}");
    }
    // The frames of VLAN 101 matched no SAP: dropped and counted per port.
    let metrics = daemon.ok(&["show", "service"], None);
    assert!(
        metrics.contains("1000") && metrics.contains("epipe"),
        "{metrics}"
    );

    // Removing the service cuts the path, and a bad snippet changes nothing.
    let bad = daemon.brasa(
        &["service", "apply", "-"],
        Some("configure service epipe 1000\nsap t1:100 frobnicate\n"),
    );
    assert!(!bad.status.success());
    let message = String::from_utf8_lossy(&bad.stderr);
    assert!(message.contains("2:"), "line:col expected: {message}");
    assert!(
        ping(a, "10.9.0.2"),
        "a refused snippet must not change the running service"
    );
    daemon.ok(&["service", "remove", "1000"], None);
    assert!(!ping(a, "10.9.0.2"));
}

/// Frames with made-up source MACs, sent into a trunk from the switch side: `count` frames
/// tagged `vid`, each from its own MAC (02:00:00:00:vid:i), to the broadcast address.
fn frames_from_new_macs(switch_ns: &str, trunk: &str, vid: u16, count: u8) {
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind(('{trunk}', 0))\n\
         for i in range({count}):\n    \
         src=bytes([2,0,0,0,{vid} & 255,i])\n    \
         s.send(b'\\xff'*6 + src + bytes([0x81,0,{vid} >> 8,{vid} & 255]) + b'\\x88\\xb5' + bytes(46))\n"
    );
    let output = Command::new("ip")
        .args(["netns", "exec", switch_ns, "python3", "-c", &script])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn netns_vpls_learns_floods_limits_and_ages() {
    let router = Netns::new("vpr");
    let lan = trunk(
        &router,
        "t1",
        vec![
            dot1q("vp1", "10.10.0.1/24", 10),
            dot1q("vp2", "10.10.0.2/24", 20),
            dot1q("vp3", "10.10.0.3/24", 30),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_dot1q(&router, dir.path(), &["t1"]);
    daemon.apply(
        "configure service vpls 10 customer 1 create\n\
         local-age 60\n\
         sap t1:10 create exit\n\
         sap t1:20 create exit\n\
         sap t1:30 create\nmax-nbr-mac-addr 1\nexit\n\
         no shutdown\nexit all\n",
    );
    let (h1, h2, h3) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2]);
    ping_eventually(h1, "10.10.0.2", Duration::from_secs(10));
    ping_eventually(h1, "10.10.0.3", Duration::from_secs(10));
    assert!(
        tcp_echo(h2, h3, "10.10.0.2", 5201, 100_000),
        "TCP across the VPLS"
    );

    // Every host's MAC is learned on its own SAP.
    let fdb = daemon.json(&["show", "service", "fdb", "10"]);
    let on = |sap: &str| {
        fdb.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["sap"] == sap)
            .count()
    };
    assert_eq!((on("t1:10"), on("t1:20"), on("t1:30")), (1, 1, 1), "{fdb}");
    let table = daemon.ok(&["show", "service", "fdb", "10"], None);
    assert!(table.contains("No. of MAC Entries: 3"), "{table}");

    // Broadcasts from new MACs behind SAP 30 are flooded but not learned past its limit.
    let service_before = daemon.json(&["show", "service", "10"]);
    frames_from_new_macs(&lan.switch.name, "upt1", 30, 5);
    let started = Instant::now();
    loop {
        let service = daemon.json(&["show", "service", "10"]);
        let flooded = service["counters"]["flooded"].as_u64().unwrap();
        if flooded >= service_before["counters"]["flooded"].as_u64().unwrap() + 5 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not flooded: {service}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let fdb = daemon.json(&["show", "service", "fdb", "10"]);
    let on_30 = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sap"] == "t1:30")
        .count();
    assert_eq!(on_30, 1, "the MAC limit of SAP t1:30 is 1: {fdb}");

    // Unknown unicast is flooded: a frame to a MAC nobody has is counted as flooded.
    // (The hosts' pings above started with flooded ARP requests as well.)
    assert!(service_before["counters"]["flooded"].as_u64().unwrap() > 0);

    // MACs that are heard once and never again age out after local-age (60 s) plus one sweep.
    // (The hosts themselves are not silent: ARP probes and IPv6 neighbour discovery refresh them.)
    frames_from_new_macs(&lan.switch.name, "upt1", 20, 3);
    let once_heard = |fdb: &serde_json::Value| {
        fdb.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["mac"].as_str().unwrap().starts_with("02:00:00:00:14:"))
            .count()
    };
    let started = Instant::now();
    while once_heard(&daemon.json(&["show", "service", "fdb", "10"])) < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "not learned");
        std::thread::sleep(Duration::from_millis(100));
    }
    let started = Instant::now();
    loop {
        let fdb = daemon.json(&["show", "service", "fdb", "10"]);
        if once_heard(&fdb) == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "MACs did not age out: {fdb}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let service = daemon.json(&["show", "service", "10"]);
    assert!(
        service["counters"]["aged"].as_u64().unwrap() >= 3,
        "{service}"
    );
}

#[test]
fn netns_filter_drops_a_tcp_port_and_counts_it() {
    let router = Netns::new("flr");
    let left = trunk(&router, "t1", vec![dot1q("fla", "10.11.0.1/24", 100)]);
    let right = trunk(&router, "t2", vec![dot1q("flb", "10.11.0.2/24", 200)]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_dot1q(&router, dir.path(), &["t1", "t2"]);
    daemon.apply(
        "configure filter ip-filter 10 create\n\
         default-action forward\n\
         entry 10 create\nmatch protocol tcp\ndst-port eq 5202\nexit\naction drop\nexit\n\
         exit all\n\
         configure service epipe 7 customer 1 create\n\
         sap t1:100 create\ningress\nfilter ip 10\nexit\nexit\n\
         sap t2:200 create exit\nno shutdown\nexit all\n",
    );
    let (a, b) = (&left.hosts[0], &right.hosts[0]);
    ping_eventually(a, "10.11.0.2", Duration::from_secs(10));
    assert!(
        tcp_echo(b, a, "10.11.0.2", 5201, 50_000),
        "port 5201 passes"
    );
    assert!(
        !tcp_echo_within(b, a, "10.11.0.2", 5202, 50_000, 3),
        "port 5202 is dropped"
    );
    let filter = daemon.json(&["show", "filter", "ip", "10"]);
    let hits = filter["hits"].as_array().unwrap();
    let entry = hits.iter().find(|h| h["entry"] == 10).unwrap();
    assert!(entry["packets"].as_u64().unwrap() >= 1, "{filter}");
    let default = hits.iter().find(|h| h["entry"].is_null()).unwrap();
    assert!(default["packets"].as_u64().unwrap() > 10, "{filter}");
    let sap = daemon.json(&["show", "service", "7"]);
    let drops = &sap["saps"][0]["counters"]["drops"]["filter"];
    assert!(drops.as_u64().unwrap() >= 1, "{sap}");
    let table = daemon.ok(&["show", "filter", "ip", "10"], None);
    assert!(table.contains("Default action : forward"), "{table}");
    daemon.ok(&["clear", "service", "7", "statistics"], None);
    let sap = daemon.json(&["show", "service", "7"]);
    assert_eq!(sap["saps"][0]["counters"]["rx_packets"], 0, "{sap}");
}

/// The router namespace's brasa TAPs (`brst…`), as `ip -o link` lists them.
fn brasa_taps(router: &Netns) -> Vec<String> {
    router
        .sh("ip -o link show")
        .lines()
        .filter_map(|line| line.split(": ").nth(1))
        .filter(|name| name.starts_with("brst"))
        .map(str::to_string)
        .collect()
}

#[test]
fn netns_ies_and_vprn_route_through_the_kernel_apart_and_leave_nothing_behind() {
    let router = Netns::new("l3r");
    // The VPRN's hosts use the same addresses as the IES's: only the VRFs keep them apart.
    let lan = trunk(
        &router,
        "t1",
        vec![
            dot1q("l3ia", "10.61.0.2/24", 10),
            dot1q("l3ib", "10.62.0.2/24", 20),
            dot1q("l3va", "10.61.0.2/24", 30),
            dot1q("l3vb", "10.62.0.2/24", 40),
        ],
    );
    let (ia, ib, va, vb) = (&lan.hosts[0], &lan.hosts[1], &lan.hosts[2], &lan.hosts[3]);
    for (h, gateway) in [
        (ia, "10.61.0.1"),
        (va, "10.61.0.1"),
        (ib, "10.62.0.1"),
        (vb, "10.62.0.1"),
    ] {
        h.sh(&format!("ip route add default via {gateway}"));
    }
    // Behind ib (and, unreachable, behind vb): the static route's destination.
    ib.sh("ip addr add 10.99.0.1/32 dev lo");
    vb.sh("ip addr add 10.99.0.1/32 dev lo");
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_dot1q(&router, dir.path(), &["t1"]);
    let applied = daemon.apply(
        r#"configure service
    ies 100 customer 1 create
        interface "to-a" create
            address 10.61.0.1/24
            sap t1:10 create exit
        exit
        interface "to-b" create
            address 10.62.0.1/24
            sap t1:20 create exit
        exit
        static-route-entry 10.99.0.0/24 next-hop 10.62.0.2 exit exit
        no shutdown
    exit
    vprn 200 customer 1 create
        interface "to-a" create
            address 10.61.0.1/24
            sap t1:30 create exit
        exit
        interface "to-b" create
            address 10.62.0.1/24
            sap t1:40 create exit
        exit
        no shutdown
    exit
exit all
"#,
    );
    assert!(applied.contains("added service 100"), "{applied}");
    assert_eq!(
        brasa_taps(&router).len(),
        2,
        "the IES's TAPs are in the base instance"
    );

    // The gateways answer, and each instance routes between its own VLANs only: the TCP
    // listener runs in one host of the pair that shares an address, so the exchange succeeds
    // only if the packets reached that one.
    ping_eventually(ia, "10.61.0.1", Duration::from_secs(10));
    ping_eventually(va, "10.61.0.1", Duration::from_secs(10));
    ping_eventually(ia, "10.62.0.2", Duration::from_secs(10));
    ping_eventually(va, "10.62.0.2", Duration::from_secs(10));
    assert!(
        tcp_echo(ib, ia, "10.62.0.2", 5301, 100_000),
        "IES: TCP between VLANs"
    );
    assert!(
        tcp_echo(vb, va, "10.62.0.2", 5302, 100_000),
        "VPRN: TCP between VLANs"
    );
    assert!(
        !tcp_echo_within(ib, va, "10.62.0.2", 5303, 1000, 3),
        "VPRN reached the IES's host"
    );

    // The static route exists in the IES's instance only.
    ping_eventually(ia, "10.99.0.1", Duration::from_secs(10));
    assert!(
        !ping(va, "10.99.0.1"),
        "the VPRN has no route to 10.99.0.0/24"
    );

    let ies = daemon.json(&["show", "service", "100"]);
    assert_eq!(ies["oper"], "up", "{ies}");
    for sap in ies["saps"].as_array().unwrap() {
        assert!(
            sap["counters"]["rx_packets"].as_u64().unwrap() > 10,
            "{sap}"
        );
    }

    // Removing the VPRN takes its namespace and TAPs; the IES keeps routing.
    daemon.ok(&["service", "remove", "200"], None);
    assert!(!ping(va, "10.61.0.1"));
    assert!(ping(ia, "10.62.0.2"));
    // Removing the IES leaves no TAP, address or route of brasa's in the router.
    daemon.ok(&["service", "remove", "100"], None);
    assert!(brasa_taps(&router).is_empty(), "{:?}", brasa_taps(&router));
    assert!(!router.sh("ip route show").contains("10.99.0.0"));
    assert!(!ping(ia, "10.61.0.1"));
}

#[test]
fn netns_ies_taps_vanish_when_brasa_is_killed_and_a_restart_rebuilds_them() {
    let router = Netns::new("l3k");
    let lan = trunk(&router, "t1", vec![dot1q("l3ka", "10.63.0.2/24", 10)]);
    let a = &lan.hosts[0];
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &dot1q_ports(&["t1"]));
    let mut daemon = Daemon::start(&router, dir.path(), &config);
    daemon.apply(
        "configure service ies 100 customer 1 create\ninterface \"to-a\" create\n\
         address 10.63.0.1/24\nsap t1:10 create exit\nexit\n\
         static-route-entry 10.98.0.0/24 black-hole exit exit\nno shutdown\nexit all\n",
    );
    ping_eventually(a, "10.63.0.1", Duration::from_secs(10));
    assert!(router.sh("ip route show").contains("10.98.0.0/24"));

    // kill -9: the TAP goes with the process's descriptors; the black-hole route stays in the
    // kernel until the next start removes it and the journal puts the service back.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(brasa_taps(&router).is_empty(), "{:?}", brasa_taps(&router));
    drop(daemon);
    let daemon = Daemon::start(&router, dir.path(), &config);
    ping_eventually(a, "10.63.0.1", Duration::from_secs(15));
    let routes = router.sh("ip route show");
    assert_eq!(routes.matches("10.98.0.0/24").count(), 1, "{routes}");
    assert_eq!(brasa_taps(&router).len(), 1);

    // A clean stop (SIGTERM) takes everything out of the kernel.
    let mut daemon = daemon;
    let pid = daemon.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = daemon.child.wait().unwrap();
    assert!(status.success(), "{status}:\n{}", daemon.log_text());
    assert!(brasa_taps(&router).is_empty(), "{:?}", brasa_taps(&router));
    assert!(!router.sh("ip route show").contains("10.98.0.0"));
}

#[test]
fn netns_policer_holds_pir_for_udp_and_tcp() {
    const PIR_KBPS: f64 = 10_000.0;
    // What the policer meters on the dot1q SAP: the Ethernet frame with its tag, so an iperf3
    // UDP datagram of PAYLOAD bytes costs PAYLOAD + 8 (UDP) + 20 (IPv4) + 14 + 4 bytes.
    const PAYLOAD: f64 = 1200.0;
    const FRAME: f64 = PAYLOAD + 46.0;
    let router = Netns::new("plr");
    let left = trunk(&router, "t1", vec![dot1q("pla", "10.64.0.1/24", 100)]);
    let right = trunk(&router, "t2", vec![dot1q("plb", "10.64.0.2/24", 200)]);
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_dot1q(&router, dir.path(), &["t1", "t2"]);
    daemon.apply(&format!(
        r#"configure
    qos
        sap-ingress 10 create
            policer 1 create
                rate {pir}
                mbs 100 kilobytes
            exit
        exit
    exit
    service
        epipe 1000 customer 1 create
            sap t1:100 create
                ingress qos 10 exit
            exit
            sap t2:200 create exit
            no shutdown
        exit
    exit
exit all
"#,
        pir = PIR_KBPS as u64
    ));
    let (a, b) = (&left.hosts[0], &right.hosts[0]);
    ping_eventually(a, "10.64.0.2", Duration::from_secs(10));

    // The offered rate is set in payload bits; the policer sees frames.
    let udp = |frame_kbps: f64, port: u16| {
        let payload_bps = (frame_kbps * 1000.0 * PAYLOAD / FRAME) as u64;
        let report = iperf3(
            b,
            a,
            "10.64.0.2",
            port,
            &[
                "-u",
                "-l",
                "1200",
                "-b",
                &payload_bps.to_string(),
                "-t",
                "8",
            ],
        );
        report["end"]["sum"]["lost_percent"].as_f64().unwrap()
    };
    // Below PIR nothing may be lost. iperf3 paces its datagrams in software: descheduled on a
    // loaded machine, it catches up in a burst that can outrun the 100 kB bucket (one such
    // run lost 6 datagrams of 7 600 at load 5). A policer that drops conforming traffic drops
    // it every time, so a second run, on another port, must then be clean.
    let below = udp(0.95 * PIR_KBPS, 5401);
    if below != 0.0 {
        eprintln!("loss at 0.95×PIR: {below} % (iperf3 burst on a loaded host?); measuring again");
        let again = udp(0.95 * PIR_KBPS, 5404);
        assert!(
            again == 0.0,
            "loss at 0.95×PIR in two runs: {below} %, then {again} %"
        );
    }
    let above = udp(2.0 * PIR_KBPS, 5402);
    let expected = (1.0 - PIR_KBPS / (2.0 * PIR_KBPS)) * 100.0;
    assert!(
        (above - expected).abs() <= 2.0,
        "loss at 2×PIR: {above} %, expected {expected} ± 2 %"
    );
    let service = daemon.json(&["show", "service", "1000"]);
    let sap = service["saps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sap"] == "t1:100")
        .unwrap_or_else(|| panic!("{service}"))
        .clone();
    assert!(
        sap["counters"]["drops"]["policer"].as_u64().unwrap_or(0) > 1000,
        "{sap}"
    );

    // TCP settles just under PIR once the burst size covers its bursts (100 kB held it to
    // 57–73 % of PIR here, 400 kB to 99 %; SR OS sizes MBS the same way): the policer is
    // changed in place, and TCP's goodput, converted back to frame bytes (1448 of 1518 per
    // full frame), is within 10 % of PIR.
    let changed = daemon
        .apply("configure qos sap-ingress 10 policer 1 mbs 400 kilobytes exit exit exit all\n");
    assert!(!changed.contains("error"), "{changed}");
    let tcp = iperf3(b, a, "10.64.0.2", 5403, &["-t", "10", "-O", "2"]);
    let goodput = tcp["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    let frame_kbps = goodput * 1518.0 / 1448.0 / 1000.0;
    assert!(
        (frame_kbps - PIR_KBPS).abs() <= 0.1 * PIR_KBPS,
        "TCP through the policer: {frame_kbps:.0} kbps of frames, PIR {PIR_KBPS} kbps"
    );
}

#[test]
fn netns_a_storm_of_broadcasts_and_garbage_leaves_the_other_saps_forwarding() {
    let router = Netns::new("stm");
    let lan = trunk(
        &router,
        "t1",
        vec![
            dot1q("stma", "10.65.0.1/24", 10),
            dot1q("stmb", "10.65.0.2/24", 20),
        ],
    );
    // The storm comes in on a second access port, as from another customer's switch.
    let stormy = trunk(&router, "t2", Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_dot1q(&router, dir.path(), &["t1", "t2"]);
    daemon.apply(
        "configure service vpls 10 customer 1 create\n\
         sap t1:10 create exit\nsap t1:20 create exit\nsap t2:30 create exit\n\
         no shutdown\nexit all\n",
    );
    let (a, b) = (&lan.hosts[0], &lan.hosts[1]);
    ping_eventually(a, "10.65.0.2", Duration::from_secs(10));
    let before = daemon.json(&["show", "dataplane", "statistics"]);

    // For 8 s, the second switch sends as fast as it can: broadcasts into SAP t2:30 (flooded
    // to the other two), frames of VLANs no SAP has, and random bytes. (Frames cut inside
    // their tag never reach brasa over a veth: the kernel's receive path drops them while it
    // takes the tag out; the service stage's own checks are covered by its fuzz target.)
    let storm = "import socket, random, time\n\
         s=socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('upt2', 0))\n\
         src=bytes([2,0,0,0,0x1e,1]); rnd=random.Random(7); end=time.time()+8; n=0\n\
         while time.time() < end:\n    \
           k=n % 3; n+=1\n    \
           if k == 0: f=b'\\xff'*6+src+b'\\x81\\x00\\x00\\x1e\\x08\\x00'+bytes(46)\n    \
           elif k == 1: v=rnd.randrange(100,4095); f=b'\\xff'*6+src+bytes([0x81,0,v>>8,v&255])+b'\\x08\\x00'+bytes(46)\n    \
           else: f=rnd.randbytes(rnd.randrange(60,300))\n    \
           try: s.send(f)\n    \
           except OSError: pass\n\
         print(n)\n";
    let generator = Command::new("ip")
        .args(["netns", "exec", &stormy.switch.name, "python3", "-c", storm])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        tcp_echo(b, a, "10.65.0.2", 5501, 200_000),
        "TCP between SAPs t1:10 and t1:20 during the storm"
    );
    let output = generator.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();

    let after = daemon.json(&["show", "dataplane", "statistics"]);
    let drops = |stats: &serde_json::Value, reason: &str| {
        stats["drops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pair| pair[0] == reason)
            .and_then(|pair| pair[1].as_u64())
            .unwrap_or(0)
    };
    let t2 = |stats: &serde_json::Value, counter: &str| {
        stats["interfaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "t2")
            .and_then(|i| i[counter].as_u64())
            .unwrap_or(0)
    };
    // Every frame sent arrived, or was lost in the receive ring and counted there.
    let arrived = t2(&after, "rx_packets") - t2(&before, "rx_packets");
    let lost = t2(&after, "rx_dropped") - t2(&before, "rx_dropped");
    assert!(
        arrived + lost >= sent * 9 / 10,
        "{arrived} + {lost} of {sent}: {after}"
    );
    // A third had a VLAN no SAP has, and most random ones too.
    assert!(
        drops(&after, "no_sap") - drops(&before, "no_sap") > arrived / 3,
        "frames of unknown VLANs are counted as no_sap ({arrived} arrived): {after}"
    );
    let service = daemon.json(&["show", "service", "10"]);
    assert!(
        service["counters"]["flooded"].as_u64().unwrap() > arrived / 4,
        "the broadcasts were flooded: {service}"
    );
    // After the storm, the service forwards as before.
    assert!(tcp_echo(b, a, "10.65.0.2", 5502, 200_000));
}

#[test]
fn netns_epipe_over_gre_between_two_brasa_routers() {
    let (r1, r2) = (Netns::new("gr1"), Netns::new("gr2"));
    let left = trunk(&r1, "t1", vec![dot1q("gra", "10.66.0.1/24", 100)]);
    let right = trunk(&r2, "t1", vec![dot1q("grb", "10.66.0.2/24", 200)]);
    // The network between the two routers: one IP link, no GRE module in either kernel, its
    // MTU sized for a full customer frame plus 42 bytes of IP, GRE and key.
    r1.sh(&format!(
        "ip link add n1 mtu 1600 type veth peer name n1 mtu 1600 netns {} && ip addr add 198.51.100.1/24 dev n1 && ip link set n1 up",
        r2.name
    ));
    r2.sh("ip addr add 198.51.100.2/24 dev n1 && ip link set n1 up");
    let interfaces = &format!(
        "{}[[dataplane.interface]]\nname = \"n1\"\n",
        dot1q_ports(&["t1"])
    );
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let b1 = Daemon::start(&r1, d1.path(), &config(d1.path(), interfaces));
    let b2 = Daemon::start(&r2, d2.path(), &config(d2.path(), interfaces));

    // A local address that is not the host's is refused, and nothing is applied.
    let refused = b1.brasa(
        &["service", "apply", "-"],
        Some(
            "configure service epipe 1000 customer 1 create\nsap t1:100 create exit\n\
             gre-tunnel local 198.51.100.9 remote 198.51.100.2 key 7\nno shutdown\nexit all\n",
        ),
    );
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("not an address of this host"), "{message}");
    assert!(b1.json(&["show", "service"]).as_array().unwrap().is_empty());

    let epipe = |sap: &str, local: &str, remote: &str| {
        format!(
            "configure service epipe 1000 customer 1 create\nsap {sap} create exit\n\
             gre-tunnel local {local} remote {remote} key 7\nno shutdown\nexit all\n"
        )
    };
    b1.apply(&epipe("t1:100", "198.51.100.1", "198.51.100.2"));
    b2.apply(&epipe("t1:200", "198.51.100.2", "198.51.100.1"));

    // tcpdump, an independent decoder, sees Ethernet over GRE with key 7 on the link.
    let capture = Capture::start(
        Some(&r2),
        &["-i", "n1", "-nn", "-c", "20", "-e", "ip proto 47"],
        Duration::from_secs(20),
    );
    let (a, b) = (&left.hosts[0], &right.hosts[0]);
    ping_eventually(a, "10.66.0.2", Duration::from_secs(15));
    assert!(
        tcp_echo(b, a, "10.66.0.2", 5601, 200_000),
        "TCP over the GRE Epipe"
    );
    let captured = capture.output();
    // Hosts' own IPv6 chatter and ARP may come first; some line must be a customer IPv4
    // packet (the ping or the TCP) inside GRE with key 7.
    assert!(
        captured.lines().any(|line| {
            line.contains("198.51.100.1 > 198.51.100.2: GREv0, key=0x7")
                && line.contains(": 10.66.0.1")
                && line.contains(" > 10.66.0.2")
        }),
        "{captured}"
    );
    // Removing one end cuts the path.
    b2.ok(&["service", "remove", "1000"], None);
    assert!(!ping(a, "10.66.0.2"));
}
