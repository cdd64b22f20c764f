//! Interface facts (index, MAC, link type) and the few settings the data plane changes.

use super::{cvt, IoError};
use crate::pipeline::LinkKind;
use crate::wire::MacAddr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ARPHRD_ETHER: u16 = 1;
const SIOCGIFMTU: libc::c_ulong = 0x8921;
const SIOCGIFNAME: libc::c_ulong = 0x8910;

/// `struct ifreq`: the name and a 24-byte union.
#[repr(C)]
pub(crate) struct IfReq {
    pub name: [u8; libc::IFNAMSIZ],
    pub data: [u8; 24],
}

impl IfReq {
    pub(crate) fn new(name: &str) -> io::Result<Self> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "invalid interface name",
            ));
        }
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        req.name[..bytes.len()].copy_from_slice(bytes);
        Ok(req)
    }
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned from here on.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the data plane needs to know about an interface.
#[derive(Debug, Clone)]
pub struct NetDev {
    /// Name.
    pub name: String,
    /// Kernel index.
    pub ifindex: i32,
    /// MAC address (zero for layer-3 devices).
    pub mac: MacAddr,
    /// Ethernet or layer 3.
    pub link: LinkKind,
}

impl NetDev {
    /// Looks the interface up.
    pub fn lookup(name: &str) -> Result<Self, IoError> {
        let err = |source| IoError::Interface {
            name: name.to_string(),
            source,
        };
        let cname = std::ffi::CString::new(name)
            .map_err(|_| err(io::Error::new(io::ErrorKind::InvalidInput, "NUL in name")))?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(err(io::Error::last_os_error()));
        }
        let socket = control_socket().map_err(err)?;
        let mut req = IfReq::new(name).map_err(err)?;
        // SAFETY: SIOCGIFHWADDR fills the sockaddr in `req.data`, which is large enough.
        cvt(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) })
            .map_err(err)?;
        let family = u16::from_ne_bytes([req.data[0], req.data[1]]);
        let (link, mac) = if family == ARPHRD_ETHER {
            (LinkKind::Ethernet, MacAddr::from_bytes(&req.data[2..8]))
        } else {
            (LinkKind::Ip, MacAddr::default())
        };
        Ok(Self {
            name: name.to_string(),
            ifindex: ifindex as i32,
            mac,
            link,
        })
    }
}

/// The MTU of interface `ifindex` in the network namespace of socket `fd` (the interface is
/// found by index, so a rename does not matter).
pub(crate) fn mtu_by_index(fd: &OwnedFd, ifindex: i32) -> io::Result<u32> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    req.data[..4].copy_from_slice(&ifindex.to_ne_bytes());
    // SAFETY: SIOCGIFNAME reads the index from `req.data` and writes the name into `req.name`.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGIFNAME, &mut req) })?;
    // SAFETY: SIOCGIFMTU writes an int at the start of `req.data`, which is large enough.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), SIOCGIFMTU, &mut req) })?;
    let mtu = i32::from_ne_bytes([req.data[0], req.data[1], req.data[2], req.data[3]]);
    Ok(u32::try_from(mtu).unwrap_or(0))
}

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GCHANNELS: u32 = 0x3c;

/// The number of receive queues of interface `name` (`ETHTOOL_GCHANNELS`: the larger of its
/// receive-only and combined channels); 1 when the driver does not say.
pub fn rx_queues(name: &str) -> Result<u32, IoError> {
    let err = |source| IoError::Interface {
        name: name.to_string(),
        source,
    };
    let socket = control_socket().map_err(err)?;
    let mut req = IfReq::new(name).map_err(err)?;
    // struct ethtool_channels: cmd, then max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count.
    let mut channels = [0u32; 9];
    channels[0] = ETHTOOL_GCHANNELS;
    let pointer = channels.as_mut_ptr() as usize;
    req.data[..std::mem::size_of::<usize>()].copy_from_slice(&pointer.to_ne_bytes());
    // SAFETY: SIOCETHTOOL reads the command from, and writes the answer to, `channels`, which
    // outlives the call; `req` is a valid ifreq naming the interface.
    let answered = cvt(unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut req) });
    match answered {
        Ok(_) => Ok(channels[5].max(channels[8]).max(1)),
        Err(_) => Ok(1),
    }
}

/// The MTU of interface `name`.
pub fn mtu(name: &str) -> Result<u32, IoError> {
    let dev = NetDev::lookup(name)?;
    let socket = control_socket().map_err(|source| IoError::Interface {
        name: name.to_string(),
        source,
    })?;
    let socket_fd = socket;
    mtu_by_index(&socket_fd, dev.ifindex).map_err(|source| IoError::Interface {
        name: name.to_string(),
        source,
    })
}

/// Sets IFF_UP on an interface.
pub fn set_up(name: &str) -> Result<(), IoError> {
    let err = |source| IoError::Interface {
        name: name.to_string(),
        source,
    };
    let socket = control_socket().map_err(err)?;
    let mut req = IfReq::new(name).map_err(err)?;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write a short in `req.data`.
    cvt(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) }).map_err(err)?;
    let flags = i16::from_ne_bytes([req.data[0], req.data[1]]) | libc::IFF_UP as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: as above.
    cvt(unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) }).map_err(err)?;
    Ok(())
}

/// Writes a sysctl below `/proc/sys/net/`, e.g. `ipv4/conf/eth0/forwarding`.
pub fn write_net_sysctl(path: &str, value: &str) -> Result<(), IoError> {
    let full = format!("/proc/sys/net/{path}");
    std::fs::write(&full, value).map_err(|source| IoError::Setup {
        what: format!("writing {full}"),
        source,
    })
}
