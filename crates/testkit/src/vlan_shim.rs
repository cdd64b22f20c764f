//! A VLAN tagger for test hosts, standing in for the kernel's 802.1Q module.
//!
//! The kernels these tests run on may lack `CONFIG_VLAN_8021Q` (no `ip link add … type vlan`,
//! and no VLAN-filtering bridge either). A test host still needs to sit behind a VLAN, or a QinQ
//! pair of tags, on a trunk: [`VlanShim`] relays frames between untagged access interfaces
//! (each a veth whose other end is in a host's namespace) and a trunk interface, pushing the
//! access's tag stack towards the trunk and popping it on the way back, as a switch with
//! access ports would. Frames on the trunk whose tags match no access are dropped.
//!
//! Hosts behind the shim should have TX checksum offload off on their veth (`ethtool -K IF tx
//! off`), since frames relayed through packet sockets leave the host unfinished otherwise;
//! [`host_pair`] does that. The trunk carries the tags, so give it an MTU of at least 1508.

use crate::netns::Netns;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// 802.1Q customer tag.
pub const TPID_8021Q: u16 = 0x8100;
/// 802.1ad service tag.
pub const TPID_8021AD: u16 = 0x88a8;

/// One access interface and the tags its frames carry on the trunk, outermost first.
#[derive(Debug, Clone)]
pub struct Access {
    /// The untagged interface (in the shim's namespace).
    pub interface: String,
    /// (TPID, VLAN id) pairs, outermost first; empty for untagged on the trunk.
    pub tags: Vec<(u16, u16)>,
}

/// The relay thread; stops and joins on drop.
pub struct VlanShim {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for VlanShim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A host namespace `host` with interface `host_if` (address `cidr`, e.g. `10.0.0.2/24`), whose
/// veth peer `shim_if` is in `shim`'s namespace, both up, TX checksum offload off on the host.
pub fn host_pair(shim: &Netns, shim_if: &str, host: &Netns, host_if: &str, cidr: &str) {
    shim.sh(&format!(
        "ip link add {shim_if} type veth peer name {host_if} netns {}",
        host.name
    ));
    shim.sh(&format!("ip link set {shim_if} up"));
    host.sh(&format!(
        "ethtool -K {host_if} tx off >/dev/null && ip addr add {cidr} dev {host_if} && ip link set {host_if} up"
    ));
}

impl VlanShim {
    /// Starts relaying between `trunk` and `accesses` inside `ns`.
    pub fn start(ns: &Netns, trunk: &str, accesses: Vec<Access>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!("/var/run/netns/{}", ns.name);
        let trunk = trunk.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let sockets = enter_and_open(&path, &trunk, &accesses);
            let ok = sockets.is_ok();
            let _ = ready_tx.send(sockets.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            if let (true, Ok((trunk_socket, access_sockets))) = (ok, sockets) {
                relay(&trunk_socket, &access_sockets, &accesses, &thread_stop);
            }
        });
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => panic!("VLAN shim could not start: {error}"),
            Err(_) => panic!("VLAN shim thread ended before it started"),
        }
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

fn enter_and_open(
    path: &str,
    trunk: &str,
    accesses: &[Access],
) -> io::Result<(OwnedFd, Vec<OwnedFd>)> {
    let file = std::fs::File::open(path)?;
    // SAFETY: setns(2) gets a descriptor this thread owns and open for the call; it changes
    // only the calling thread's namespace, and this thread serves only the shim.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let trunk_socket = packet_socket(trunk)?;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket, a valid int option and its exact size.
    let status = unsafe {
        libc::setsockopt(
            trunk_socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    let access_sockets = accesses
        .iter()
        .map(|access| packet_socket(&access.interface))
        .collect::<io::Result<Vec<_>>>()?;
    Ok((trunk_socket, access_sockets))
}

fn packet_socket(interface: &str) -> io::Result<OwnedFd> {
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the descriptor is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::c_int::from(protocol),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface name"))?;
    // SAFETY: a NUL-terminated name that lives across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set below.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = index as i32;
    // SAFETY: a valid socket and a sockaddr_ll with its exact size.
    let status = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if status != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// A received frame: its bytes with any VLAN tag the kernel moved to metadata put back.
fn receive(socket: &OwnedFd, buffer: &mut [u8]) -> Option<usize> {
    const HEADROOM: usize = 4;
    // SAFETY: all-zero is a valid sockaddr_ll to be filled by the kernel.
    let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buffer[HEADROOM..].as_mut_ptr().cast(),
        iov_len: buffer.len() - HEADROOM,
    };
    // SAFETY: all-zero is a valid msghdr; its pointers are set below to live buffers.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
    message.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: every pointer in `message` refers to a buffer that outlives the call.
    let length = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, 0) };
    if length < 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
        return None;
    }
    let length = length as usize;
    let mut tag = None;
    // SAFETY: CMSG_FIRSTHDR/NXTHDR walk the control buffer the kernel just filled, bounded by
    // msg_controllen; the auxdata is read unaligned from inside it.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(&message);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_PACKET
                && (*header).cmsg_type == libc::PACKET_AUXDATA
            {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(header).cast());
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                    let tpid = if aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        aux.tp_vlan_tpid
                    } else {
                        TPID_8021Q
                    };
                    tag = Some((tpid, aux.tp_vlan_tci));
                }
            }
            header = libc::CMSG_NXTHDR(&message, header);
        }
    }
    if length < 12 {
        return None;
    }
    match tag {
        None => {
            buffer.copy_within(HEADROOM..HEADROOM + length, 0);
            Some(length)
        }
        Some((tpid, tci)) => {
            // MACs move up by the headroom, leaving the room for the tag behind them.
            buffer.copy_within(HEADROOM..HEADROOM + 12, 0);
            buffer[12..14].copy_from_slice(&tpid.to_be_bytes());
            buffer[14..16].copy_from_slice(&tci.to_be_bytes());
            Some(length + 4)
        }
    }
}

fn send(socket: &OwnedFd, frame: &[u8]) {
    // SAFETY: a valid socket and a live buffer of the given length. A refused frame (full
    // queue, too large) is dropped, as a switch would.
    unsafe {
        libc::send(socket.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0);
    }
}

fn relay(trunk: &OwnedFd, access_sockets: &[OwnedFd], accesses: &[Access], stop: &AtomicBool) {
    let mut fds: Vec<libc::pollfd> = std::iter::once(trunk)
        .chain(access_sockets)
        .map(|socket| libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut buffer = vec![0u8; 65_536 + 64];
    let mut out = vec![0u8; 65_536 + 64];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `fds` is a live array of pollfd of the given length.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if ready <= 0 {
            continue;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            while let Some(length) = receive(trunk, &mut buffer) {
                let frame = &buffer[..length];
                if let Some((index, stripped)) = untag(frame, accesses) {
                    out[..12].copy_from_slice(&frame[..12]);
                    out[12..12 + stripped.len()].copy_from_slice(stripped);
                    send(&access_sockets[index], &out[..12 + stripped.len()]);
                }
            }
        }
        for (index, access) in accesses.iter().enumerate() {
            if fds[index + 1].revents & libc::POLLIN == 0 {
                continue;
            }
            while let Some(length) = receive(&access_sockets[index], &mut buffer) {
                let frame = &buffer[..length];
                let tags = access.tags.len() * 4;
                out[..12].copy_from_slice(&frame[..12]);
                for (slot, (tpid, vid)) in access.tags.iter().enumerate() {
                    let at = 12 + slot * 4;
                    out[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
                    out[at + 2..at + 4].copy_from_slice(&vid.to_be_bytes());
                }
                out[12 + tags..12 + tags + length - 12].copy_from_slice(&frame[12..]);
                send(trunk, &out[..length + tags]);
            }
        }
    }
}

/// The access whose tag stack `frame` carries exactly, and the frame after the tags (from the
/// EtherType on).
fn untag<'a>(frame: &'a [u8], accesses: &[Access]) -> Option<(usize, &'a [u8])> {
    let mut tags = Vec::with_capacity(2);
    let mut at = 12;
    while let Some(tpid) = frame.get(at..at + 2) {
        let tpid = u16::from_be_bytes([tpid[0], tpid[1]]);
        if tpid != TPID_8021Q && tpid != TPID_8021AD {
            break;
        }
        let tci = frame.get(at + 2..at + 4)?;
        tags.push((tpid, u16::from_be_bytes([tci[0], tci[1]]) & 0x0fff));
        at += 4;
    }
    let index = accesses.iter().position(|access| access.tags == tags)?;
    Some((index, frame.get(at..)?))
}
