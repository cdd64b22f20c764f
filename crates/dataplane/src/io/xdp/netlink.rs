//! XDP over rtnetlink: which program an interface has attached (`IFLA_XDP`), and attaching or
//! detaching one the old way (`RTM_SETLINK`), which is how programs are attached on kernels
//! without XDP links and how a program left attached that way is removed.
//!
//! [`xdp_attachment`] is the parser (checked reads, nothing panics); [`query`] and [`set`] make
//! the requests.

use crate::io::cvt;
use crate::io::netlink::{align4, u16_at, u32_at};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const IFLA_XDP: u16 = 43;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const RTA_HDRLEN: usize = 4;

/// `XDP_FLAGS_UPDATE_IF_NOEXIST`: refuse to replace an attached program.
pub const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
/// `XDP_FLAGS_SKB_MODE`: generic XDP (after the skb is built).
pub const XDP_FLAGS_SKB_MODE: u32 = 2;
/// `XDP_FLAGS_DRV_MODE`: native XDP (in the driver).
pub const XDP_FLAGS_DRV_MODE: u32 = 4;

/// How a program is attached (`IFLA_XDP_ATTACHED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// Nothing.
    None,
    /// In the driver (native).
    Driver,
    /// Generic (skb).
    Generic,
    /// Offloaded to the NIC.
    Hardware,
    /// Several at once.
    Multi,
}

/// The program an interface has attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attachment {
    /// How.
    pub mode: Attached,
    /// The program's id (0 when none, or several).
    pub prog_id: u32,
}

impl Attachment {
    /// The `XDP_FLAGS_*` mode flag that detaches it.
    pub fn mode_flags(&self) -> u32 {
        match self.mode {
            Attached::Generic => XDP_FLAGS_SKB_MODE,
            Attached::Driver => XDP_FLAGS_DRV_MODE,
            _ => 0,
        }
    }
}

/// Walks route attributes: `(type without flags, value)`; stops at the first malformed one.
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(bytes, 0)?);
        let kind = u16_at(bytes, 2)? & NLA_TYPE_MASK;
        if len < RTA_HDRLEN || len > bytes.len() {
            return None;
        }
        let value = bytes.get(RTA_HDRLEN..len)?;
        bytes = bytes.get(align4(len)..).unwrap_or(&[]);
        Some((kind, value))
    })
}

/// The XDP attachment described by the `RTM_NEWLINK` message for `ifindex` in `datagram`
/// (the answer to `RTM_GETLINK`); `None` when there is no such message.
pub fn xdp_attachment(datagram: &[u8], ifindex: i32) -> Option<Attachment> {
    let mut rest = datagram;
    loop {
        let len = u32_at(rest, 0)? as usize;
        let kind = u16_at(rest, 4)?;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let body = rest.get(NLMSG_HDRLEN..len)?;
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        if kind != RTM_NEWLINK || u32_at(body, 4)? as i32 != ifindex {
            continue;
        }
        let mut found = Attachment {
            mode: Attached::None,
            prog_id: 0,
        };
        let xdp = attributes(body.get(IFINFOMSG_LEN..)?).find(|(kind, _)| *kind == IFLA_XDP);
        if let Some((_, nested)) = xdp {
            for (kind, value) in attributes(nested) {
                match kind {
                    IFLA_XDP_ATTACHED => {
                        found.mode = match value.first() {
                            Some(1) => Attached::Driver,
                            Some(2) => Attached::Generic,
                            Some(3) => Attached::Hardware,
                            Some(4) => Attached::Multi,
                            _ => Attached::None,
                        }
                    }
                    IFLA_XDP_PROG_ID => found.prog_id = u32_at(value, 0).unwrap_or(0),
                    _ => {}
                }
            }
        }
        return Some(found);
    }
}

/// The error code of an `NLMSG_ERROR` message (0 is an acknowledgement).
fn ack_error(datagram: &[u8]) -> Option<i32> {
    let len = u32_at(datagram, 0)? as usize;
    if u16_at(datagram, 4)? != NLMSG_ERROR || len > datagram.len() {
        return None;
    }
    Some(u32_at(datagram, NLMSG_HDRLEN)? as i32)
}

fn push_attr(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((RTA_HDRLEN + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    out.resize(align4(out.len()), 0);
}

fn request(kind: u16, flags: u16, ifindex: i32, attributes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(NLMSG_HDRLEN + IFINFOMSG_LEN + attributes.len());
    let len = (NLMSG_HDRLEN + IFINFOMSG_LEN + attributes.len()) as u32;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    let mut info = [0u8; IFINFOMSG_LEN];
    info[4..8].copy_from_slice(&ifindex.to_ne_bytes());
    out.extend_from_slice(&info);
    out.extend_from_slice(attributes);
    out
}

/// Sends `message` on a fresh rtnetlink socket and returns the answer.
fn exchange(message: &[u8]) -> io::Result<Vec<u8>> {
    let fd = route_socket(0)?;
    send(&fd, message)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let len = receive(&fd, &mut buffer, 0)?.len();
    buffer.truncate(len);
    Ok(buffer)
}

/// What interface `ifindex` has attached.
pub fn query(ifindex: i32) -> io::Result<Attachment> {
    let answer = exchange(&request(RTM_GETLINK, NLM_F_REQUEST, ifindex, &[]))?;
    if let Some(errno) = ack_error(&answer).filter(|&e| e != 0) {
        return Err(io::Error::from_raw_os_error(-errno));
    }
    xdp_attachment(&answer, ifindex).ok_or_else(|| io::Error::other("no answer for the interface"))
}

/// Attaches the program `prog_fd` (or detaches, with -1) with `flags`, the old way.
pub fn set(ifindex: i32, prog_fd: i32, flags: u32) -> io::Result<()> {
    let mut nested = Vec::new();
    push_attr(&mut nested, IFLA_XDP_FD, &prog_fd.to_ne_bytes());
    push_attr(&mut nested, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    let mut attributes = Vec::new();
    push_attr(&mut attributes, IFLA_XDP | NLA_F_NESTED, &nested);
    let answer = exchange(&request(
        RTM_SETLINK,
        NLM_F_REQUEST | NLM_F_ACK,
        ifindex,
        &attributes,
    ))?;
    match ack_error(&answer) {
        Some(0) => Ok(()),
        Some(errno) => Err(io::Error::from_raw_os_error(-errno)),
        None => Err(io::Error::other("no acknowledgement")),
    }
}

const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP: u16 = 0x300;
const IFADDRMSG_LEN: usize = 8;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// `RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR`.
const RTMGRP_IFADDR: u32 = 0x10 | 0x100;

/// The local addresses in the `RTM_NEWADDR` messages of `datagram` (a dump answer or a
/// notification): `IFA_LOCAL` where present (on a point-to-point link `IFA_ADDRESS` is the
/// peer's), `IFA_ADDRESS` otherwise. The second value is true once the dump's `NLMSG_DONE`
/// (or an error) was seen.
pub fn local_addresses(datagram: &[u8]) -> (Vec<IpAddr>, bool) {
    let mut found = Vec::new();
    let mut rest = datagram;
    let mut done = false;
    while let (Some(len), Some(kind)) = (u32_at(rest, 0), u16_at(rest, 4)) {
        let len = len as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            break;
        }
        let body = rest.get(NLMSG_HDRLEN..len).unwrap_or(&[]);
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        match kind {
            NLMSG_DONE | NLMSG_ERROR => done = true,
            RTM_NEWADDR => {
                let family = body.first().copied().map(i32::from);
                let mut local = None;
                let mut address = None;
                for (kind, value) in attributes(body.get(IFADDRMSG_LEN..).unwrap_or(&[])) {
                    let ip = match (family, value.len()) {
                        (Some(libc::AF_INET), 4) => {
                            <[u8; 4]>::try_from(value).ok().map(IpAddr::from)
                        }
                        (Some(libc::AF_INET6), 16) => {
                            <[u8; 16]>::try_from(value).ok().map(IpAddr::from)
                        }
                        _ => None,
                    };
                    match kind {
                        IFA_LOCAL => local = ip,
                        IFA_ADDRESS => address = ip,
                        _ => {}
                    }
                }
                found.extend(local.or(address));
            }
            _ => {}
        }
    }
    (found, done)
}

/// Every local address of the network namespace (a `RTM_GETADDR` dump).
pub fn dump_addresses() -> io::Result<Vec<IpAddr>> {
    let fd = route_socket(0)?;
    let mut message = Vec::with_capacity(NLMSG_HDRLEN + IFADDRMSG_LEN);
    message.extend_from_slice(&((NLMSG_HDRLEN + IFADDRMSG_LEN) as u32).to_ne_bytes());
    message.extend_from_slice(&RTM_GETADDR.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&[0u8; IFADDRMSG_LEN]);
    send(&fd, &message)?;
    let mut all = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let datagram = receive(&fd, &mut buffer, 0)?;
        let (found, done) = local_addresses(datagram);
        all.extend(found);
        if done || datagram.is_empty() {
            return Ok(all);
        }
    }
}

/// A non-blocking socket that becomes readable whenever an address of the network namespace is
/// added or removed.
pub struct AddressEvents {
    fd: OwnedFd,
    buffer: Box<[u8]>,
}

impl AddressEvents {
    /// Subscribes to address notifications.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            fd: route_socket(RTMGRP_IFADDR)?,
            buffer: vec![0u8; 32 * 1024].into_boxed_slice(),
        })
    }

    /// The descriptor, for polling.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Reads every queued notification; true when there was any (or some were lost), so the
    /// caller reads the addresses again.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        loop {
            match receive(&self.fd, &mut self.buffer, libc::MSG_DONTWAIT) {
                Ok([]) => return changed,
                Ok(_) => changed = true,
                Err(err) if err.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Err(_) => return changed,
            }
        }
    }
}

fn route_socket(groups: u32) -> io::Result<OwnedFd> {
    // SAFETY: socket(2); the descriptor is owned from here on.
    let fd = cvt(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })?;
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if groups != 0 {
        // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = groups;
        // SAFETY: binds with a pointer to a properly sized sockaddr_nl.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
    }
    Ok(fd)
}

fn send(fd: &OwnedFd, message: &[u8]) -> io::Result<()> {
    // SAFETY: sends `message.len()` bytes from a valid buffer to the kernel (netlink sockets
    // send to the kernel by default).
    let sent = unsafe { libc::send(fd.as_raw_fd(), message.as_ptr().cast(), message.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn receive<'a>(fd: &OwnedFd, buffer: &'a mut [u8], flags: libc::c_int) -> io::Result<&'a [u8]> {
    // SAFETY: receives into our own buffer.
    let received = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            flags,
        )
    };
    let received = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
    Ok(buffer.get(..received).unwrap_or(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn newlink(ifindex: i32, xdp: &[(u16, &[u8])]) -> Vec<u8> {
        let mut nested = Vec::new();
        for (kind, value) in xdp {
            push_attr(&mut nested, *kind, value);
        }
        let mut attributes = Vec::new();
        push_attr(&mut attributes, 3, b"c0\0\0");
        push_attr(&mut attributes, IFLA_XDP | NLA_F_NESTED, &nested);
        let mut message = request(RTM_NEWLINK, 0, ifindex, &attributes);
        message.resize(align4(message.len()), 0);
        message
    }

    #[test]
    fn reads_mode_and_program_id() {
        let datagram = newlink(
            5,
            &[
                (IFLA_XDP_ATTACHED, &[1]),
                (IFLA_XDP_PROG_ID, &42u32.to_ne_bytes()),
            ],
        );
        let found = xdp_attachment(&datagram, 5).unwrap();
        assert_eq!(
            found,
            Attachment {
                mode: Attached::Driver,
                prog_id: 42
            }
        );
        assert_eq!(found.mode_flags(), XDP_FLAGS_DRV_MODE);
        assert_eq!(xdp_attachment(&datagram, 6), None);
        let none = newlink(5, &[(IFLA_XDP_ATTACHED, &[0])]);
        assert_eq!(xdp_attachment(&none, 5).unwrap().mode, Attached::None);
    }

    #[test]
    fn reads_local_addresses_until_done() {
        let mut v4 = vec![libc::AF_INET as u8, 24, 0, 0];
        v4.extend_from_slice(&7u32.to_ne_bytes());
        push_attr(&mut v4, IFA_ADDRESS, &[198, 18, 0, 2]);
        push_attr(&mut v4, IFA_LOCAL, &[198, 18, 0, 1]);
        let mut v6 = vec![libc::AF_INET6 as u8, 64, 0, 0];
        v6.extend_from_slice(&7u32.to_ne_bytes());
        let fd00: std::net::Ipv6Addr = "fd00::1".parse().unwrap();
        push_attr(&mut v6, IFA_ADDRESS, &fd00.octets());
        let mut datagram = Vec::new();
        for (kind, body) in [(RTM_NEWADDR, &v4), (RTM_NEWADDR, &v6)] {
            datagram.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
            datagram.extend_from_slice(&kind.to_ne_bytes());
            datagram.extend_from_slice(&[0u8; 10]);
            datagram.extend_from_slice(body);
        }
        let (found, done) = local_addresses(&datagram);
        assert_eq!(
            found,
            vec![IpAddr::from([198, 18, 0, 1]), IpAddr::from(fd00)]
        );
        assert!(!done);
        let mut finished = datagram.clone();
        finished.extend_from_slice(&(NLMSG_HDRLEN as u32 + 4).to_ne_bytes());
        finished.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        finished.extend_from_slice(&[0u8; 14]);
        assert!(local_addresses(&finished).1);
        for cut in 0..datagram.len() {
            let _ = local_addresses(&datagram[..cut]);
        }
    }

    #[test]
    fn truncated_answers_do_not_panic() {
        let datagram = newlink(
            5,
            &[
                (IFLA_XDP_ATTACHED, &[2]),
                (IFLA_XDP_PROG_ID, &7u32.to_ne_bytes()),
            ],
        );
        for cut in 0..datagram.len() {
            let _ = xdp_attachment(&datagram[..cut], 5);
            let _ = ack_error(&datagram[..cut]);
        }
    }
}
