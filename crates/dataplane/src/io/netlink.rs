//! Link notifications from the kernel: an `NETLINK_ROUTE` socket subscribed to the
//! `RTNLGRP_LINK` group receives an `RTM_NEWLINK` message whenever an interface of the network
//! namespace changes. The data plane reads them before it transmits, so a new MTU applies to
//! the next frame sent rather than after the next tick.
//!
//! [`link_mtus`] is the parser (sans-IO, checked reads: a message with malformed attributes is
//! skipped, a malformed header ends the walk, nothing panics); [`LinkEvents`] owns the socket.

use super::{cvt, IoError};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `RTMGRP_LINK`: the multicast group bit of link notifications.
const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const IFLA_MTU: u16 = 4;
/// Attribute type bits that are flags, not part of the type (`NLA_F_NESTED`,
/// `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `struct nlmsghdr`: length, type, flags, sequence, port id.
const NLMSG_HDRLEN: usize = 16;
/// `struct ifinfomsg`: family, pad, type, index, flags, change.
const IFINFOMSG_LEN: usize = 16;
/// `struct rtattr`: length, type.
const RTA_HDRLEN: usize = 4;
/// Room for one read: the kernel's link notifications fit in `NLMSG_GOODSIZE` (at most 8 KiB).
const RECV_BUFFER: usize = 32 * 1024;

pub(crate) fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The `(ifindex, MTU)` of each `RTM_NEWLINK` message in `datagram` (one read from a
/// `NETLINK_ROUTE` socket; the kernel writes it in host byte order) that carries `IFLA_MTU`.
pub fn link_mtus(datagram: &[u8]) -> impl Iterator<Item = (i32, u32)> + '_ {
    let mut rest = datagram;
    std::iter::from_fn(move || loop {
        let len = u32_at(rest, 0)? as usize;
        let kind = u16_at(rest, 4)?;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let body = rest.get(NLMSG_HDRLEN..len)?;
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        if kind == RTM_NEWLINK {
            if let Some(found) = newlink_mtu(body) {
                return Some(found);
            }
        }
    })
}

/// The interface index and `IFLA_MTU` of one `RTM_NEWLINK` body.
fn newlink_mtu(body: &[u8]) -> Option<(i32, u32)> {
    let ifindex = u32_at(body, 4)? as i32;
    let mut attributes = body.get(IFINFOMSG_LEN..)?;
    while let (Some(len), Some(kind)) = (u16_at(attributes, 0), u16_at(attributes, 2)) {
        let len = usize::from(len);
        if len < RTA_HDRLEN || len > attributes.len() {
            return None;
        }
        if kind & NLA_TYPE_MASK == IFLA_MTU {
            return Some((ifindex, u32_at(attributes.get(..len)?, RTA_HDRLEN)?));
        }
        attributes = attributes.get(align4(len)..).unwrap_or(&[]);
    }
    None
}

/// Notifications were lost (the socket's queue overflowed): the caller re-reads what they
/// would have told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("link notifications were lost (netlink queue overflow)")]
pub struct EventsLost;

/// A non-blocking `NETLINK_ROUTE` socket that receives the link notifications of the network
/// namespace it was opened in.
pub struct LinkEvents {
    fd: OwnedFd,
    buffer: Box<[u8]>,
}

impl LinkEvents {
    /// Opens the socket and joins the link notification group.
    pub fn open() -> Result<Self, IoError> {
        let setup = |source| IoError::Setup {
            what: "netlink socket for link notifications".into(),
            source,
        };
        // SAFETY: socket(2); the descriptor is owned from here on.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        })
        .map_err(setup)?;
        // SAFETY: fresh descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set below.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = RTMGRP_LINK;
        // SAFETY: binds with a pointer to a properly sized sockaddr_nl.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })
        .map_err(setup)?;
        Ok(Self {
            fd,
            buffer: vec![0u8; RECV_BUFFER].into_boxed_slice(),
        })
    }

    /// Reads every queued notification without waiting and calls `on_mtu(ifindex, mtu)` for
    /// each. `Err(EventsLost)` (after the queue is drained) when the kernel had to drop some.
    pub fn drain(&mut self, mut on_mtu: impl FnMut(i32, u32)) -> Result<(), EventsLost> {
        let mut lost = false;
        loop {
            // SAFETY: receives into our own buffer of `buffer.len()` bytes.
            let received = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            let Ok(received) = usize::try_from(received) else {
                match io::Error::last_os_error().raw_os_error() {
                    Some(libc::ENOBUFS) => {
                        lost = true;
                        continue;
                    }
                    Some(libc::EINTR) => continue,
                    _ => break,
                }
            };
            if received == 0 {
                break;
            }
            let datagram = self.buffer.get(..received).unwrap_or(&[]);
            for (ifindex, mtu) in link_mtus(datagram) {
                on_mtu(ifindex, mtu);
            }
        }
        if lost {
            Err(EventsLost)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `RTM_NEWLINK` message as the kernel writes it: header, ifinfomsg, then attributes.
    fn newlink(ifindex: i32, attributes: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        for (kind, value) in attributes {
            let len = (RTA_HDRLEN + value.len()) as u16;
            body.extend_from_slice(&len.to_ne_bytes());
            body.extend_from_slice(&kind.to_ne_bytes());
            body.extend_from_slice(value);
            body.resize(align4(body.len()), 0);
        }
        message(RTM_NEWLINK, &body)
    }

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut out = ((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes().to_vec();
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(body);
        out.resize(align4(out.len()), 0);
        out
    }

    #[test]
    fn finds_the_mtu_of_every_newlink_message() {
        let ifname = (3u16, &b"c1\0\0"[..]);
        let mut datagram = newlink(7, &[ifname, (IFLA_MTU, &1600u32.to_ne_bytes())]);
        // Another kind of message (RTM_NEWADDR) and a link message without an MTU are skipped.
        datagram.extend(message(20, &[0; 8]));
        datagram.extend(newlink(8, &[ifname]));
        datagram.extend(newlink(9, &[(IFLA_MTU | 0x8000, &9000u32.to_ne_bytes())]));
        assert_eq!(
            link_mtus(&datagram).collect::<Vec<_>>(),
            vec![(7, 1600), (9, 9000)]
        );
    }

    #[test]
    fn malformed_messages_end_the_walk_without_panicking() {
        let good = newlink(7, &[(IFLA_MTU, &1500u32.to_ne_bytes())]);
        for cut in 0..good.len() {
            assert!(link_mtus(&good[..cut]).next().is_none(), "cut at {cut}");
        }
        let mut zero_attribute = newlink(7, &[(IFLA_MTU, &1500u32.to_ne_bytes())]);
        zero_attribute[NLMSG_HDRLEN + IFINFOMSG_LEN..][..2].copy_from_slice(&0u16.to_ne_bytes());
        assert!(link_mtus(&zero_attribute).next().is_none());
        let mut short_header = good.clone();
        short_header[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(link_mtus(&short_header).next().is_none());
    }
}
