//! A TUN device: the path into the kernel's IP stack for decapsulated packets and for IP
//! packets the pipeline hands back.

use super::{cvt, netdev, IoError};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An open TUN device (layer 3, no packet information header).
pub struct Tun {
    fd: OwnedFd,
    name: String,
}

impl Tun {
    /// Creates (or attaches to) the TUN device `name`, brings it up and lets the kernel forward
    /// what arrives on it (reverse-path filtering off: the packets' sources are behind other
    /// interfaces).
    pub fn open(name: &str) -> Result<Self, IoError> {
        let setup = |what: &str, source| IoError::Setup {
            what: format!("TUN {name}: {what}"),
            source,
        };
        let fd = open_device(name, libc::IFF_TUN, &setup)?;
        netdev::set_up(name)?;
        netdev::write_net_sysctl(&format!("ipv4/conf/{name}/rp_filter"), "0")?;
        netdev::write_net_sysctl(&format!("ipv4/conf/{name}/forwarding"), "1")?;
        Ok(Self {
            fd,
            name: name.to_string(),
        })
    }

    /// The device name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands one IP packet to the kernel.
    pub fn write(&self, packet: &[u8]) -> io::Result<()> {
        write_all(&self.fd, packet)
    }

    /// Discards whatever the kernel sent towards the device (router solicitations and the
    /// like), so its queue never fills.
    pub fn drain(&self) {
        let mut scratch = [0u8; 2048];
        for _ in 0..64 {
            // SAFETY: reads into a valid buffer of the given length.
            let read = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                )
            };
            if read <= 0 {
                break;
            }
        }
    }

    /// The descriptor, for polling.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

/// Opens `/dev/net/tun` (non-blocking) and attaches it to the device `name` with `kind`
/// (`IFF_TUN` or `IFF_TAP`), without a packet information header; `setup` names a failure.
pub(super) fn open_device(
    name: &str,
    kind: libc::c_int,
    setup: &dyn Fn(&str, io::Error) -> IoError,
) -> Result<OwnedFd, IoError> {
    let path = c"/dev/net/tun";
    // SAFETY: open(2) with a valid NUL-terminated path.
    let fd = cvt(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| setup("open /dev/net/tun", e))?;
    // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut req = netdev::IfReq::new(name).map_err(|e| setup("name", e))?;
    let flags = (kind | libc::IFF_NO_PI) as i16;
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads the name and flags from `req`, a valid ifreq.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) })
        .map_err(|e| setup("TUNSETIFF", e))?;
    Ok(fd)
}

/// Writes one packet or frame to a TUN/TAP descriptor (the kernel takes it whole or not at
/// all; a full queue is `WouldBlock`).
pub(super) fn write_all(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: writes `bytes.len()` bytes from a valid slice.
    let written = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if written < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
