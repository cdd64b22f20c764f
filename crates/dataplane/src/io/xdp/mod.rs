//! AF_XDP ports: brasa's XDP program on the interface decides per frame, before the kernel
//! builds an skb, whether it goes to the data plane (redirected into the AF_XDP socket of its
//! receive queue) or stays with the kernel (`XDP_PASS`); see [`program`] for the rule.
//!
//! **Why hand-assembled eBPF, loaded with `bpf(2)` directly.** The program is about 80
//! instructions: parse Ethernet and up to two VLAN tags, compare the destination MAC, look an
//! address up in a hash map, redirect. Writing it with the [`asm`] builder keeps the build
//! free of a second toolchain (`aya-ebpf` needs nightly Rust and `bpf-linker`; C needs clang
//! at build time and an ELF loader such as `aya` or `libbpf-rs` at run time), the kernel's
//! verifier checks it at every start exactly as it would a compiled one, and the six `bpf(2)`
//! commands it needs ([`bpf`]) are less code than an ELF loader's glue. The trade-off: the
//! program is written in assembly, so it stays small and every path is tested on a real
//! kernel (`tests/netns_xdp.rs`).
//!
//! **Attachment.** The program is attached with a BPF link: the kernel detaches it when the
//! link's descriptor closes, which happens when brasa exits, however it exits (kill -9
//! included), so a dead brasa never leaves its program on an interface. Kernels without XDP
//! links (before 5.9) get the old netlink attachment, which outlives the process: brasa then
//! detaches it on exit, and on start replaces a program of its own name left by a brasa that
//! was killed ([`PROGRAM_NAME`]). A program of another name is never replaced: the port
//! falls back to AF_PACKET and says why.

pub mod asm;
pub mod bpf;
pub mod netlink;
pub mod program;
pub mod xsk;

use super::IoError;
use crate::wire::MacAddr;
use netlink::{Attached, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE, XDP_FLAGS_UPDATE_IF_NOEXIST};
use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;

/// The name brasa's XDP program is loaded with (what `bpftool prog` and `ip link` show).
pub const PROGRAM_NAME: &str = "brasa_xsk";

/// Most host addresses the program keeps per family.
const MAX_LOCAL_ADDRESSES: u32 = 4096;

/// Where the XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpMode {
    /// In the driver, before an skb exists (the fast mode; veth has it).
    Native,
    /// After the kernel built the skb (every interface has it; no faster than AF_PACKET's
    /// receive, but still spares the kernel's own processing of the data plane's frames).
    Generic,
}

/// Which XDP modes to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum XdpModeRequest {
    /// Native, and generic if the driver has no native XDP.
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic only.
    Generic,
}

/// How the program is attached.
enum Attachment {
    /// A BPF link: detached by the kernel when the descriptor closes.
    Link(#[allow(dead_code)] OwnedFd),
    /// Netlink (kernels without XDP links): detached on drop with these mode flags.
    Netlink(u32),
}

/// brasa's XDP program attached to one interface, with its maps.
pub struct XdpPort {
    name: String,
    ifindex: i32,
    mode: XdpMode,
    xsks: bpf::Map,
    local4: bpf::Map,
    local6: bpf::Map,
    _policy: bpf::Map,
    _program: bpf::Program,
    attachment: Attachment,
    locals: HashSet<IpAddr>,
}

impl Drop for XdpPort {
    fn drop(&mut self) {
        if let Attachment::Netlink(flags) = self.attachment {
            if let Err(err) = netlink::set(self.ifindex, -1, flags) {
                tracing::warn!(%err, interface = %self.name, "could not detach the XDP program");
            }
        }
    }
}

/// The errors of attaching, by what failed, for the log line that explains the fallback.
fn attach_error(name: &str, what: &str, source: io::Error) -> IoError {
    IoError::Setup {
        what: format!("XDP on {name}: {what}"),
        source,
    }
}

impl XdpPort {
    /// Loads the program for interface `name` and attaches it. `queues` is the number of
    /// receive queues (the size of the socket map); `redirect_all` makes every frame the data
    /// plane's (an access port). A program of brasa's left attached the old way by a brasa
    /// that was killed is replaced; any other attached program is an error.
    pub fn attach(
        name: &str,
        ifindex: i32,
        mac: MacAddr,
        queues: u32,
        redirect_all: bool,
        mode: XdpModeRequest,
    ) -> Result<Self, IoError> {
        Self::attach_with(name, ifindex, mac, queues, redirect_all, mode, false)
    }

    /// [`XdpPort::attach`] the old way (netlink), as on a kernel without XDP links: the
    /// attachment outlives the process unless the port is dropped.
    pub fn attach_netlink(
        name: &str,
        ifindex: i32,
        mac: MacAddr,
        queues: u32,
        redirect_all: bool,
        mode: XdpModeRequest,
    ) -> Result<Self, IoError> {
        Self::attach_with(name, ifindex, mac, queues, redirect_all, mode, true)
    }

    fn attach_with(
        name: &str,
        ifindex: i32,
        mac: MacAddr,
        queues: u32,
        redirect_all: bool,
        mode: XdpModeRequest,
        netlink_only: bool,
    ) -> Result<Self, IoError> {
        let map_error = |what: &str| {
            let what = what.to_string();
            move |e| attach_error(name, &format!("creating the {what} map"), e)
        };
        let policy = bpf::Map::create(bpf::MapType::Array, "brasa_policy", 4, 12, 1)
            .map_err(map_error("policy"))?;
        let xsks = bpf::Map::create(bpf::MapType::Xsk, "brasa_xsks", 4, 4, queues.max(1))
            .map_err(map_error("socket"))?;
        let local4 = bpf::Map::create(
            bpf::MapType::Hash,
            "brasa_local4",
            4,
            1,
            MAX_LOCAL_ADDRESSES,
        )
        .map_err(map_error("IPv4 address"))?;
        let local6 = bpf::Map::create(
            bpf::MapType::Hash,
            "brasa_local6",
            16,
            1,
            MAX_LOCAL_ADDRESSES,
        )
        .map_err(map_error("IPv6 address"))?;
        let value = program::PortPolicy {
            flags: if redirect_all {
                program::REDIRECT_ALL
            } else {
                0
            },
            mac: mac.0,
            pad: [0; 2],
        };
        policy
            .update(&0u32.to_ne_bytes(), &value.to_bytes())
            .map_err(|e| attach_error(name, "writing the policy map", e))?;
        let insns = program::instructions(program::ProgramMaps {
            policy: policy.raw_fd(),
            xsks: xsks.raw_fd(),
            local4: local4.raw_fd(),
            local6: local6.raw_fd(),
        })
        .map_err(|e| attach_error(name, "assembling the program", io::Error::other(e)))?;
        let loaded = bpf::Program::load_xdp(PROGRAM_NAME, &insns)
            .map_err(|e| attach_error(name, "loading the program", io::Error::other(e)))?;
        remove_stale(name, ifindex)?;
        let (attachment, mode) = attach_program(name, ifindex, &loaded, mode, netlink_only)?;
        let mut port = Self {
            name: name.to_string(),
            ifindex,
            mode,
            xsks,
            local4,
            local6,
            _policy: policy,
            _program: loaded,
            attachment,
            locals: HashSet::new(),
        };
        port.sync_local_addresses()
            .map_err(|e| attach_error(name, "reading the host's addresses", e))?;
        Ok(port)
    }

    /// Where the program runs.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Redirects queue `queue`'s frames into the socket `xsk_fd` (bound to that queue).
    pub fn register(&self, queue: u32, xsk_fd: i32) -> io::Result<()> {
        self.xsks
            .update(&queue.to_ne_bytes(), &xsk_fd.to_ne_bytes())
    }

    /// Stops redirecting queue `queue` (its frames go to the kernel).
    pub fn unregister(&self, queue: u32) -> io::Result<()> {
        self.xsks.delete(&queue.to_ne_bytes())
    }

    /// Reads the host's addresses again and updates the maps the program checks, so that
    /// traffic to an address added since stays with the kernel.
    pub fn sync_local_addresses(&mut self) -> io::Result<()> {
        let now: HashSet<IpAddr> = netlink::dump_addresses()?.into_iter().collect();
        for gone in self.locals.difference(&now) {
            match gone {
                IpAddr::V4(v4) => self.local4.delete(&v4.octets())?,
                IpAddr::V6(v6) => self.local6.delete(&v6.octets())?,
            }
        }
        for added in now.difference(&self.locals) {
            match added {
                IpAddr::V4(v4) => self.local4.update(&v4.octets(), &[1])?,
                IpAddr::V6(v6) => self.local6.update(&v6.octets(), &[1])?,
            }
        }
        self.locals = now;
        Ok(())
    }
}

/// Removes a program of brasa's that a killed brasa left attached the old way; refuses to
/// touch any other program.
fn remove_stale(name: &str, ifindex: i32) -> Result<(), IoError> {
    let found = netlink::query(ifindex)
        .map_err(|e| attach_error(name, "querying the attached program", e))?;
    if found.mode == Attached::None {
        return Ok(());
    }
    let program = bpf::program_name(found.prog_id).unwrap_or_default();
    if program != PROGRAM_NAME {
        return Err(attach_error(
            name,
            &format!(
                "another XDP program is attached (id {}, name {program:?}); brasa does not replace it",
                found.prog_id
            ),
            io::Error::from_raw_os_error(libc::EBUSY),
        ));
    }
    match netlink::set(ifindex, -1, found.mode_flags()) {
        Ok(()) => {
            tracing::info!(
                interface = name,
                prog_id = found.prog_id,
                "removed a stale brasa XDP program left by a brasa that did not exit cleanly"
            );
            Ok(())
        }
        // A link cannot be detached through netlink: a running brasa holds it.
        Err(err) => Err(attach_error(
            name,
            &format!(
                "brasa's XDP program (id {}) is attached by a running process (another brasa serves this interface)",
                found.prog_id
            ),
            err,
        )),
    }
}

/// Attaches with a link in the first mode that works; on kernels without XDP links, with
/// netlink.
fn attach_program(
    name: &str,
    ifindex: i32,
    program: &bpf::Program,
    request: XdpModeRequest,
    netlink_only: bool,
) -> Result<(Attachment, XdpMode), IoError> {
    let modes: &[XdpMode] = match request {
        XdpModeRequest::Auto => &[XdpMode::Native, XdpMode::Generic],
        XdpModeRequest::Native => &[XdpMode::Native],
        XdpModeRequest::Generic => &[XdpMode::Generic],
    };
    let mut last = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
    for &mode in modes {
        let flags = match mode {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        };
        let linked = if netlink_only {
            Err(io::Error::from_raw_os_error(libc::ENOSYS))
        } else {
            program.attach_link(ifindex, flags)
        };
        match linked {
            Ok(link) => return Ok((Attachment::Link(link), mode)),
            // No XDP links on this kernel: the old way.
            Err(err) if matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {
                match netlink::set(
                    ifindex,
                    program.raw_fd(),
                    flags | XDP_FLAGS_UPDATE_IF_NOEXIST,
                ) {
                    Ok(()) => return Ok((Attachment::Netlink(flags), mode)),
                    Err(err) => last = err,
                }
            }
            Err(err) => last = err,
        }
    }
    Err(attach_error(
        name,
        &format!("attaching the program ({request:?} mode)"),
        last,
    ))
}
