//! Helpers shared by the PCC subscriber-services netns tests (`pcc_netns.rs`, `pcc_e2e.rs`):
//! the lab (a router running `brasa run`, a subscriber host behind an IES interface on a
//! dot1q trunk, a server in the seed's 10.1.1.0/24), iperf3 UDP at a given IP rate, and
//! FreeRADIUS's detail file read by attribute.
#![allow(dead_code)]

use crate::services_support::{self, dot1q, iperf3, Daemon, Trunk, TrunkNames};
use crate::support::{start_freeradius, FreeRadius};
use brasa_testkit::netns::Netns;
use std::path::Path;

/// The subscriber host.
pub const SUBSCRIBER: &str = "10.71.0.2";
/// The server behind the router, in the seed's 10.1.1.0/24.
pub const SERVER: &str = "10.1.1.2";
/// A destination no rule of the seed's service matches (on the server's loopback).
pub const OTHER: &str = "10.2.2.2";

/// The names a lab gives its namespaces and links, so that two tests never share one.
pub struct LabNames {
    /// The router namespace's tag.
    pub router: &'static str,
    /// The trunk's switch namespace: this prefix followed by the port.
    pub switch_prefix: &'static str,
    /// brasa's data-plane port (in the router namespace).
    pub port: &'static str,
    /// The subscriber host namespace's tag.
    pub host: &'static str,
    /// The server namespace's tag.
    pub server: &'static str,
    /// The router's end of the kernel-routed veth to the server.
    pub server_link: &'static str,
    /// The data plane's TAP.
    pub tun: &'static str,
}

pub struct Lab {
    pub names: LabNames,
    pub router: Netns,
    _trunk: Trunk,
    pub host: Netns,
    pub server: Netns,
}

/// The router, the subscriber host behind the trunk (VLAN 10, 10.71.0.2/24, default route
/// via the IES interface's 10.71.0.1), the server on a kernel-routed veth of the router
/// (10.1.1.2, and 10.2.2.2 on its loopback).
pub fn lab(names: LabNames) -> Lab {
    let router = Netns::new(names.router);
    let mut trunk = services_support::trunk(
        &router,
        TrunkNames {
            switch_prefix: names.switch_prefix,
            ipv4_only: true,
        },
        names.port,
        vec![dot1q(names.host, "10.71.0.2/24", 10)],
    );
    let host = trunk.hosts.remove(0);
    host.sh("ip route add default via 10.71.0.1");
    let server = Netns::new(names.server);
    router.sh(&format!(
        "sysctl -qw net.ipv4.ip_forward=1 && \
         ip link add {link} type veth peer name eth0 netns {ns} && \
         ip addr add 10.1.1.1/24 dev {link} && ip link set {link} up",
        link = names.server_link,
        ns = server.name
    ));
    server.sh(&format!(
        "ip addr add {SERVER}/24 dev eth0 && ip link set eth0 up && ip link set lo up && \
         ip addr add {OTHER}/32 dev lo && ip route add default via 10.1.1.1"
    ));
    Lab {
        names,
        router,
        _trunk: trunk,
        host,
        server,
    }
}

impl Lab {
    /// `brasa run`'s data plane on the trunk port (with its TAP), as a TOML fragment.
    pub fn dataplane(&self) -> String {
        format!(
            "[dataplane]\ntun = \"{}\"\n[[dataplane.interface]]\nname = \"{}\"\nencap = \"dot1q\"\n",
            self.names.tun, self.names.port
        )
    }

    /// IES 100 with the subscribers' interface (10.71.0.1/24) on the trunk's VLAN 10.
    pub fn ies(&self) -> String {
        format!(
            r#"configure service
    ies 100 customer 1 create
        interface "subscribers" create
            address 10.71.0.1/24
            sap {}:10 create exit
        exit
        no shutdown
    exit
exit all
"#,
            self.names.port
        )
    }

    /// Routes the server's loopback address; call after brasa's start, which removes the
    /// routes an earlier run of it left.
    pub fn route_other(&self) {
        self.router
            .sh(&format!("ip route replace {OTHER}/32 via {SERVER}"));
    }
}

/// Whether the enforcement point holds `name` (and how `show subscriber-services` shows it).
pub fn enforced(daemon: &Daemon, name: &str) -> bool {
    daemon
        .brasa(&["show", "subscriber-services", name], None)
        .status
        .success()
}

/// `show subscriber-services NAME --json`, when the enforcement point holds `name`.
pub fn enforced_view(daemon: &Daemon, name: &str) -> Option<serde_json::Value> {
    let view = daemon.brasa(&["--json", "show", "subscriber-services", name], None);
    view.status
        .success()
        .then(|| serde_json::from_slice(&view.stdout).unwrap())
}

/// The names of the services the enforcement point holds for `name`, in its order.
pub fn enforced_services(daemon: &Daemon, name: &str) -> Vec<String> {
    enforced_view(daemon, name)
        .map(|view| service_names(&view))
        .unwrap_or_default()
}

/// The names of the services of one subscriber's `show subscriber-services --json`.
pub fn service_names(view: &serde_json::Value) -> Vec<String> {
    view["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str().map(str::to_owned))
        .collect()
}

/// FreeRADIUS in `ns` on 127.0.0.1 (clients 127.0.0.0/8 with `secret`), with `users` and
/// brasa's Alc-Sub-Serv-* attributes in its dictionary.
pub fn freeradius(ns: &Netns, dir: &Path, secret: &'static str, users: &str) -> FreeRadius {
    let radius_dir = dir.join("freeradius");
    std::fs::create_dir_all(&radius_dir).unwrap();
    crate::support::alcatel_dictionary(&radius_dir, "Alc-Sub-Serv-");
    let users = users.to_owned();
    ns.enter(move || {
        start_freeradius(
            &radius_dir,
            "127.0.0.1",
            &[("127.0.0.0/8", secret)],
            &users,
            "",
            None,
            false,
        )
    })
}

/// UDP payload per datagram: 1200-octet IP packets, what the PCC policers meter.
pub const PAYLOAD: f64 = 1172.0;
pub const IP_PACKET: f64 = PAYLOAD + 28.0;

/// iperf3 UDP at `ip_kbps` of IP packets from the host to `to` (or, `reverse`, from `to` to
/// the host) for `secs`: the receiver's loss in percent and the IP octets it received.
pub fn udp(lab: &Lab, to: &str, port: u16, ip_kbps: f64, reverse: bool, secs: u32) -> (f64, f64) {
    let report = udp_report(lab, to, port, ip_kbps, reverse, secs);
    let sum = &report["end"]["sum"];
    let packets = sum["packets"].as_f64().unwrap();
    let lost = sum["lost_packets"].as_f64().unwrap();
    (
        sum["lost_percent"].as_f64().unwrap(),
        (packets - lost) * IP_PACKET,
    )
}

/// iperf3 UDP as [`udp`] runs it: the client's whole report.
pub fn udp_report(
    lab: &Lab,
    to: &str,
    port: u16,
    ip_kbps: f64,
    reverse: bool,
    secs: u32,
) -> serde_json::Value {
    let payload_bps = (ip_kbps * 1000.0 * PAYLOAD / IP_PACKET) as u64;
    let mut args = vec![
        "-u".to_string(),
        "-l".into(),
        (PAYLOAD as u64).to_string(),
        "-b".into(),
        payload_bps.to_string(),
        "-t".into(),
        secs.to_string(),
    ];
    if reverse {
        args.push("-R".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    iperf3(&lab.server, &lab.host, to, port, &args)
}

/// The IP octets the iperf3 client of `report` had sent by `unix_time` (seconds), from its
/// per-second intervals: 0 before the run, all of them after it, linear within an interval.
pub fn sent_by(report: &serde_json::Value, unix_time: f64) -> f64 {
    let start = report["start"]["timestamp"]["timesecs"].as_f64().unwrap();
    let at = unix_time - start;
    let mut sent = 0.0;
    for interval in report["intervals"].as_array().into_iter().flatten() {
        let sum = &interval["sum"];
        let (from, to) = (sum["start"].as_f64().unwrap(), sum["end"].as_f64().unwrap());
        let octets = sum["bytes"].as_f64().unwrap() / PAYLOAD * IP_PACKET;
        if at >= to {
            sent += octets;
        } else if at > from {
            sent += octets * (at - from) / (to - from);
        }
    }
    sent
}

/// The records of the detail file whose Acct-Status-Type is `status`, in order.
pub fn detail_records<'a>(detail: &'a str, status: &str) -> Vec<&'a str> {
    let wanted = format!("Acct-Status-Type = {status}");
    detail
        .split("\n\n")
        .filter(|record| record.lines().any(|line| line.trim() == wanted))
        .collect()
}

/// The value of `attribute` in a detail-file record, as written (strings keep their quotes;
/// a tag, `Name:0`, is not part of the name).
pub fn detail_value<'a>(record: &'a str, attribute: &str) -> Option<&'a str> {
    record.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(" = ")?;
        let name = key.split_once(':').map_or(key, |(name, _tag)| name);
        (name == attribute).then_some(value)
    })
}

/// The octets of `attribute` in the last record of `status` in the detail file.
pub fn detail_octets(detail: &str, status: &str, attribute: &str) -> Option<u64> {
    let record = detail_records(detail, status).pop()?;
    detail_value(record, attribute)?.parse().ok()
}
