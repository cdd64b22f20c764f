//! Shared by the interop tests and the benchmark: a real `gobgpd` in a temp dir (killed by its
//! own PID on drop), a raw BGP peer built from the core's emitters, and an event mirror.
#![allow(dead_code)]

use brasa_bgp::wire::open::{Capabilities, GracefulRestart, OpenRepr};
use brasa_bgp::wire::update::{emit_vpn_update, VpnAttributes, VpnRoute, VpnUpdateKind};
use brasa_bgp::wire::{emit_end_of_rib, emit_keepalive, Message, MessageType};
use brasa_bgp::{
    AfiSafi, Community, Label, LabelStack, LocalConfig, Notification, Route, RouteDistinguisher,
    RouteEvent, RouteTarget, VpnFamily, VpnPrefix,
};
use brasa_bgp_net::{NetPeerConfig, Speaker, SpeakerConfig};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

pub const AS: u32 = 65000;
/// Every address the tests use is in 127.0.23.0/24 ("bgp" tag), so they never meet other
/// suites' loopback addresses.
pub fn addr(host: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 23, host))
}

/// A port that was free a moment ago (for gobgpd's API, which cannot report a port it chose).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Options of one gobgpd.
#[derive(Clone)]
pub struct GoOptions {
    /// gobgpd's BGP identifier and the source address of its session to brasa.
    pub source: IpAddr,
    /// Where brasa listens.
    pub brasa: SocketAddr,
    pub graceful_restart: bool,
    pub hold_time: u16,
    /// Start with the neighbor administratively down (routes can be loaded first).
    pub admin_down: bool,
    /// Pass `-r`: announce itself as restarting (Restart State bit).
    pub restarting: bool,
    /// Extra TOML appended to the configuration (more neighbors).
    pub extra: String,
    /// The neighbor (brasa) is a route-reflector client.
    pub rr_client: bool,
    /// gobgpd listens for BGP on this port (of `source`); -1 for none.
    pub listen_port: i32,
}

impl GoOptions {
    pub fn new(source: IpAddr, brasa: SocketAddr) -> Self {
        GoOptions {
            source,
            brasa,
            graceful_restart: true,
            hold_time: 30,
            admin_down: false,
            restarting: false,
            extra: String::new(),
            rr_client: false,
            listen_port: -1,
        }
    }
}

/// A running gobgpd.
pub struct GoBgp {
    child: Child,
    pub api_port: u16,
    pub options: GoOptions,
    _dir: tempfile::TempDir,
}

impl GoBgp {
    pub fn start(options: GoOptions) -> GoBgp {
        let dir = tempfile::tempdir().unwrap();
        let gr = |enabled: bool| if enabled { "true" } else { "false" };
        let families = ["l3vpn-ipv4-unicast", "l3vpn-ipv6-unicast"]
            .iter()
            .map(|f| {
                format!(
                    "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{f}\"\n    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = {}\n",
                    gr(options.graceful_restart)
                )
            })
            .collect::<String>();
        let config = format!(
            r#"[global.config]
  as = {AS}
  router-id = "{source}"
  port = {listen_port}
  local-address-list = ["{source}"]

[[neighbors]]
  [neighbors.config]
    neighbor-address = "{brasa_ip}"
    peer-as = {AS}
    admin-down = {admin_down}
  [neighbors.transport.config]
    local-address = "{source}"
    remote-port = {brasa_port}
  [neighbors.timers.config]
    connect-retry = 1
    idle-hold-time-after-reset = 1
    hold-time = {hold}
    keepalive-interval = {keepalive}
  [neighbors.graceful-restart.config]
    enabled = {gr}
    restart-time = 30
{rr}{families}
{extra}"#,
            source = options.source,
            listen_port = options.listen_port,
            brasa_ip = options.brasa.ip(),
            brasa_port = options.brasa.port(),
            admin_down = options.admin_down,
            hold = options.hold_time,
            keepalive = (options.hold_time / 3).max(1),
            gr = gr(options.graceful_restart),
            extra = options.extra,
            rr = if options.rr_client {
                rr_client(options.source)
            } else {
                String::new()
            },
        );
        let path = dir.path().join("gobgpd.toml");
        std::fs::write(&path, config).unwrap();
        let api_port = free_port();
        let mut cmd = Command::new("gobgpd");
        cmd.arg("-f")
            .arg(&path)
            .arg("--api-hosts")
            .arg(format!("127.0.0.1:{api_port}"))
            .arg("--pprof-disable")
            .arg("-p");
        if options.restarting {
            cmd.arg("-r");
        }
        let log = std::fs::File::create(dir.path().join("gobgpd.log")).unwrap();
        let child = cmd
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("gobgpd (apt-get install gobgpd)");
        let go = GoBgp {
            child,
            api_port,
            options,
            _dir: dir,
        };
        // Ready when its API answers.
        wait_until(
            Duration::from_secs(20),
            || go.try_cli(&["global"]).is_ok(),
            "gobgpd API",
        );
        go
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("gobgpd.log")).unwrap_or_default()
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("gobgp")
            .arg("-p")
            .arg(self.api_port.to_string())
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("gobgp {args:?}: {e}"))
    }

    /// Adds a VPN route with `gobgp global rib add`; `spec` is the text after the prefix.
    pub fn add(&self, family: &str, prefix: &str, spec: &str) {
        let mut args = vec!["global", "rib", "-a", family, "add", prefix];
        args.extend(spec.split_whitespace());
        self.cli(&args);
    }

    pub fn del(&self, family: &str, prefix: &str, spec: &str) {
        let mut args = vec!["global", "rib", "-a", family, "del", prefix];
        args.extend(spec.split_whitespace());
        self.cli(&args);
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: the session ends without a NOTIFICATION, as in a crash.
    pub fn crash(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GoBgp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TOML that makes a neighbor a route-reflector client.
pub fn rr_client(cluster: IpAddr) -> String {
    format!("  [neighbors.route-reflector.config]\n    route-reflector-client = true\n    route-reflector-cluster-id = \"{cluster}\"\n")
}

pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The consumer side: receives events and keeps the mirror a consumer would keep.
pub struct Events {
    pub rx: mpsc::Receiver<RouteEvent>,
    pub mirror: BTreeMap<(IpAddr, RouteDistinguisher, VpnPrefix), Route>,
    pub log: Vec<RouteEvent>,
}

impl Events {
    pub fn new(rx: mpsc::Receiver<RouteEvent>) -> Self {
        Events {
            rx,
            mirror: BTreeMap::new(),
            log: Vec::new(),
        }
    }

    fn apply(&mut self, event: &RouteEvent) {
        match event {
            RouteEvent::Announce { peer, route } => {
                self.mirror
                    .insert((*peer, route.rd, route.prefix), route.clone());
            }
            RouteEvent::Withdraw { peer, rd, prefix } => {
                assert!(
                    self.mirror.remove(&(*peer, *rd, *prefix)).is_some(),
                    "withdrawal of an unknown route: {event:?}"
                );
            }
            _ => {}
        }
    }

    /// Applies events until one matches; returns it.
    pub async fn wait_for(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&RouteEvent) -> bool,
    ) -> RouteEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let event = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {what}; seen {:?}",
                        self.log.iter().rev().take(5).collect::<Vec<_>>()
                    )
                })
                .expect("event channel open");
            self.apply(&event);
            self.log.push(event.clone());
            if pred(&event) {
                return event;
            }
        }
    }

    /// Applies events until `done` holds for the mirror.
    pub async fn settle(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !done(self) {
            let step = (tokio::time::Instant::now() + Duration::from_millis(200)).min(deadline);
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            if let Ok(Some(event)) = tokio::time::timeout_at(step, self.rx.recv()).await {
                self.apply(&event);
                self.log.push(event);
            }
        }
    }

    /// Applies the next event if one comes within 200 ms.
    pub async fn poll_once(&mut self) {
        if let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(200), self.rx.recv()).await
        {
            self.apply(&event);
            self.log.push(event);
        }
    }

    /// Routes of `peer` in the mirror.
    pub fn routes_of(&self, peer: IpAddr) -> Vec<&Route> {
        self.mirror
            .iter()
            .filter(|((p, _, _), _)| *p == peer)
            .map(|(_, r)| r)
            .collect()
    }
}

/// A brasa speaker listening on 127.0.23.1 (ephemeral port) with passive peers.
pub async fn speaker(peers: &[(IpAddr, u16)], capacity: usize) -> (Speaker, Events) {
    let (tx, rx) = mpsc::channel(capacity);
    let peers = peers
        .iter()
        .map(|(address, hold)| {
            let mut peer =
                brasa_bgp::PeerConfig::new(*address, AS, brasa_bgp::ConnectMode::Passive);
            peer.hold_time = *hold;
            NetPeerConfig {
                peer,
                port: 179,
                local_address: None,
            }
        })
        .collect();
    let config = SpeakerConfig {
        local: LocalConfig {
            asn: AS,
            router_id: Ipv4Addr::new(127, 0, 23, 1),
        },
        listen: vec![SocketAddr::new(addr(1), 0)],
        peers,
    };
    let speaker = Speaker::start(config, tx).await.unwrap();
    (speaker, Events::new(rx))
}

/// The OPEN (AS 65000, VPN-IPv4, 4-octet AS, graceful restart with forwarding kept) and the
/// KEEPALIVE that bring a session up from the peer's side.
pub fn open_and_keepalive(bgp_id: Ipv4Addr) -> Vec<u8> {
    let open = OpenRepr {
        asn: AS,
        hold_time: 90,
        bgp_id,
        capabilities: Capabilities {
            multiprotocol: vec![AfiSafi::VPN_IPV4],
            four_octet_as: Some(AS),
            graceful_restart: Some(GracefulRestart {
                restart_time: 30,
                families: vec![(AfiSafi::VPN_IPV4, true)],
                ..Default::default()
            }),
            ..Capabilities::default()
        },
    };
    let mut bytes = Vec::new();
    open.emit(&mut bytes);
    emit_keepalive(&mut bytes);
    bytes
}

/// A hand-driven BGP peer for sending what no real speaker would.
pub struct RawPeer {
    pub stream: TcpStream,
}

impl RawPeer {
    /// Connects from `source` and completes the OPEN exchange.
    pub async fn establish(source: IpAddr, to: SocketAddr) -> RawPeer {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let stream = socket.connect(to).await.unwrap();
        let mut peer = RawPeer { stream };
        let bgp_id = match source {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => Ipv4Addr::new(192, 0, 2, 9),
        };
        let bytes = open_and_keepalive(bgp_id);
        peer.stream.write_all(&bytes).await.unwrap();
        // Their OPEN, then their KEEPALIVE.
        assert_eq!(
            peer.read_message().await.map(|m| m.0),
            Some(MessageType::Open)
        );
        assert_eq!(
            peer.read_message().await.map(|m| m.0),
            Some(MessageType::Keepalive)
        );
        peer
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message, or `None` at end of stream.
    pub async fn read_message(&mut self) -> Option<(MessageType, Vec<u8>)> {
        let mut header = [0u8; 19];
        tokio::time::timeout(Duration::from_secs(30), self.stream.read_exact(&mut header))
            .await
            .expect("message in time")
            .ok()?;
        let len = usize::from(u16::from_be_bytes([header[16], header[17]]));
        let mut body = vec![0u8; len - 19];
        self.stream.read_exact(&mut body).await.ok()?;
        let mut whole = header.to_vec();
        whole.extend_from_slice(&body);
        let (kind, _) = Message::new_unchecked(&whole).check().unwrap().unwrap();
        Some((kind, body))
    }

    /// Reads until a NOTIFICATION (skipping keepalives and End-of-RIB) and then end of stream.
    pub async fn expect_notification(&mut self) -> Notification {
        loop {
            match self.read_message().await {
                Some((MessageType::Notification, body)) => {
                    let n = Notification::parse(&body).unwrap();
                    assert!(
                        self.read_message().await.is_none(),
                        "connection closed after the NOTIFICATION"
                    );
                    return n;
                }
                Some(_) => continue,
                None => panic!("connection closed without a NOTIFICATION"),
            }
        }
    }
}

/// A VPN-IPv4 table of `routes` routes (RDs 1000:0..99, /24s from 10.0.0.0, labels 16..1015)
/// in `attribute_sets` groups (community 100:set, route target 1000:set%100, one next hop per
/// set), as the UPDATE messages a speaker sends for it, then its End-of-RIB.
pub fn table_bytes(routes: u32, attribute_sets: u32) -> Vec<u8> {
    let mut by_set: Vec<Vec<VpnRoute>> = vec![Vec::new(); attribute_sets as usize];
    for i in 0..routes {
        by_set[(i % attribute_sets) as usize].push(VpnRoute {
            rd: RouteDistinguisher::as2(1000, i % 100),
            prefix: VpnPrefix::new_v4(Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i << 8)), 24)
                .unwrap(),
            labels: LabelStack::single(Label::new(16 + i % 1000).unwrap()),
        });
    }
    let mut out = Vec::new();
    for (set, routes) in by_set.iter().enumerate() {
        let attrs = VpnAttributes {
            local_pref: Some(100),
            communities: vec![Community::new(100, set as u16)],
            extended_communities: vec![RouteTarget::As2 {
                asn: 1000,
                number: set as u32 % 100,
            }
            .to_extended()],
            ..VpnAttributes::default()
        };
        let next_hop = IpAddr::V4(Ipv4Addr::new(10, 10, (set / 256) as u8, set as u8));
        let mut rest = &routes[..];
        while !rest.is_empty() {
            rest = &rest[emit_vpn_update(
                &mut out,
                VpnFamily::Ipv4,
                VpnUpdateKind::Announce(&attrs, next_hop),
                rest,
            )..];
        }
    }
    emit_end_of_rib(&mut out, AfiSafi::VPN_IPV4);
    out
}

/// Resident memory of this process.
pub fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}
