//! Shared pieces of the data plane's binary-level tests: network namespaces that clean up after
//! themselves, the `brasa dataplane` daemon inside one, and frame injection/capture with
//! AF_PACKET sockets opened inside a namespace.
#![allow(dead_code, unused_imports)]

use brasa_dataplane::io::afpacket::TxSocket;
use brasa_dataplane::io::netdev::NetDev;
use brasa_dataplane::pipeline::{pkt_type, Batch, PacketMeta, Verdict};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../dataplane/tests/support/capture.rs"]
mod capture;
pub use capture::Capture;

// Not every test that includes this module uses every item (as `dead_code` above).
#[allow(unused_imports)]
pub use brasa_testkit::netns::{run_ok, Netns};

/// The MAC address of an interface inside a namespace.
pub trait NetnsMac {
    fn mac(&self, interface: &str) -> brasa_dataplane::wire::MacAddr;
}

impl NetnsMac for Netns {
    fn mac(&self, interface: &str) -> brasa_dataplane::wire::MacAddr {
        self.sh(&format!("cat /sys/class/net/{interface}/address"))
            .trim()
            .parse()
            .expect("MAC")
    }
}

/// A veth pair between two namespaces, both ends up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    a.sh(&format!(
        "ip link add {a_if} type veth peer name {b_if} netns {}",
        b.name
    ));
    a.sh(&format!("ip link set {a_if} up"));
    b.sh(&format!("ip link set {b_if} up"));
}

/// How the daemon's Ethernet interfaces are read: the CAFE tests run on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Io {
    AfPacket,
    AfXdp,
}

/// `brasa dataplane` running in a namespace, stopped on drop.
pub struct Daemon {
    child: Child,
    pub ns_name: String,
    _dir: tempfile::TempDir,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon with `interfaces` (`(name, "kernel"|"inject")`) and waits for its API.
    pub fn start(ns: &Netns, interfaces: &[(&str, &str)]) -> Self {
        Self::start_with(ns, interfaces, "")
    }

    pub fn start_with(ns: &Netns, interfaces: &[(&str, &str)], extra: &str) -> Self {
        Self::start_io_with(ns, Io::AfPacket, interfaces, extra)
    }

    /// Starts the daemon with its interfaces read through `io`. With AF_XDP, checks that every
    /// Ethernet interface really runs it (a layer-3 device falls back to AF_PACKET): the test
    /// fails, saying why, on a kernel without XDP.
    pub fn start_io(ns: &Netns, io: Io, interfaces: &[(&str, &str)]) -> Self {
        Self::start_io_with(ns, io, interfaces, "")
    }

    pub fn start_io_with(ns: &Netns, io: Io, interfaces: &[(&str, &str)], extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config =
            String::from("[dataplane]\ntun = \"brasa0\"\nexpiry_interval = \"100ms\"\n");
        config.push_str(extra);
        let io_line = match io {
            Io::AfPacket => "",
            Io::AfXdp => "io = \"af_xdp\"\numem_frames = 512\n",
        };
        for (name, ip) in interfaces {
            config.push_str(&format!(
                "[[dataplane.interface]]\nname = \"{name}\"\nip = \"{ip}\"\n{io_line}"
            ));
        }
        let path = dir.path().join("dp.toml");
        std::fs::write(&path, config).expect("write config");
        let log = dir.path().join("dp.log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                env!("CARGO_BIN_EXE_brasa"),
                "--log",
                "debug",
                "dataplane",
                "-c",
            ])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn brasa dataplane");
        let daemon = Self {
            child,
            ns_name: ns.name.clone(),
            _dir: dir,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = daemon.cafe(&["stats"]);
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "brasa dataplane did not come up: {}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        if io == Io::AfXdp {
            let ports = daemon.brasa_json(&["show", "dataplane", "ports"]);
            for port in ports.as_array().expect("ports") {
                if let Some(reason) = port["fallback"].as_str() {
                    assert!(
                        reason.contains("not an Ethernet interface"),
                        "AF_XDP did not attach on {}: {reason}\n{}",
                        port["name"],
                        daemon.log_text()
                    );
                } else {
                    assert_eq!(port["io"], "af-xdp", "{port}");
                }
            }
        }
        daemon
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs `brasa cafe ARGS` in the daemon's namespace.
    pub fn cafe(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_name,
                env!("CARGO_BIN_EXE_brasa"),
                "cafe",
            ])
            .args(args)
            .output()
            .expect("brasa cafe")
    }

    /// Runs `brasa cafe ARGS` and asserts success.
    pub fn cafe_ok(&self, args: &[&str]) -> String {
        let out = self.cafe(args);
        assert!(
            out.status.success(),
            "brasa cafe {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cafe_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.cafe_ok(&all)).expect("JSON output")
    }

    /// Runs `brasa --json ARGS` (any subcommand) in the daemon's namespace and parses the output.
    pub fn brasa_json(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_name,
                env!("CARGO_BIN_EXE_brasa"),
                "--json",
            ])
            .args(args)
            .output()
            .expect("brasa");
        assert!(
            out.status.success(),
            "brasa {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Runs `brasa ARGS` (any subcommand) in the daemon's namespace and returns its output.
    pub fn brasa_text(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns_name, env!("CARGO_BIN_EXE_brasa")])
            .args(args)
            .output()
            .expect("brasa");
        assert!(
            out.status.success(),
            "brasa {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// GET a management API path from inside the namespace.
    pub fn http_get(&self, path: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "python3", "-c"])
            .arg(format!(
                "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:7781{path}').read().decode())"
            ))
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Daemon {
    /// Kills the daemon with SIGKILL (no clean-up of its own runs) and reaps it.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signals our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends raw frames out of an interface of a namespace.
pub fn send_frames(ns: &Netns, interface: &str, frames: Vec<Vec<u8>>, protocol: u16) {
    let interface = interface.to_string();
    ns.enter(move || {
        let dev = NetDev::lookup(&interface).expect("send interface");
        let mut socket = TxSocket::open(&interface, dev.ifindex).expect("send socket");
        let mut batch = Batch::new(frames.len().max(1));
        for frame in &frames {
            assert!(batch.push(frame, PacketMeta::new(0, pkt_type::HOST, protocol)));
        }
        for (_, meta) in batch.iter_mut() {
            meta.verdict = Verdict::Transmit(0);
        }
        let (accepted, attempted) = socket.send_from_batch(&batch, 0);
        assert_eq!(accepted, attempted, "frames refused by the kernel");
    });
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// A TUN device opened (and created) by the test inside a namespace, with packet information
/// (so reads show the protocol the sender gave each packet).
pub struct TestTun {
    file: std::fs::File,
}

impl TestTun {
    pub fn create(ns: &Netns, name: &str) -> Self {
        let name = name.to_string();
        let file = ns.enter(move || {
            use std::os::fd::AsRawFd;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .expect("open tun");
            let mut req = [0u8; 40];
            req[..name.len()].copy_from_slice(name.as_bytes());
            req[16..18].copy_from_slice(&(libc::IFF_TUN as i16).to_ne_bytes());
            // SAFETY: TUNSETIFF reads a 40-byte ifreq.
            let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) };
            assert_eq!(ret, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
            // SAFETY: sets O_NONBLOCK on our own descriptor.
            unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
            file
        });
        Self { file }
    }

    /// Packets read within `timeout` whose protocol (from the packet information) is `protocol`.
    pub fn read_packets(&mut self, protocol: u16, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        use std::io::Read;
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while out.len() < count && Instant::now() < deadline {
            match self.file.read(&mut buf) {
                Ok(len) if len >= 4 => {
                    if u16::from_be_bytes([buf[2], buf[3]]) == protocol {
                        out.push(buf[4..len].to_vec());
                    }
                }
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        out
    }
}
