//! The Linux shell around the pipeline: AF_PACKET rings on real interfaces, a TUN device into
//! the kernel's stack, interface facts and link notifications, and the worker thread that runs
//! the loop.
//!
//! This is the only part of the crate that makes system calls. It uses no async runtime: each
//! worker thread owns a pipeline and its sockets; control operations reach them as closures
//! through [`worker::Handle`]. AF_XDP ports (brasa's XDP program and AF_XDP sockets) are in
//! [`xdp`]; TAP devices added at run time in [`tap`].

pub mod afpacket;
pub mod netdev;
pub mod netlink;
pub mod tap;
pub mod tun;
pub mod worker;
pub mod xdp;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Sets a socket option to `value`.
pub(crate) fn setsockopt<T>(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: passes a pointer to `value` with its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// Memory mapped for a socket's rings or packet buffers (a TPACKET ring, an AF_XDP ring or
/// UMEM), owned by one value and unmapped when it is dropped.
pub(crate) struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone; its holder touches the memory only through
// `&mut self` (or reads it through `&self`), as it would a `Box<[u8]>`.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of the ring that `fd`'s kernel side allocated at page offset `offset`,
    /// shared with the kernel; `populate` faults the pages in now rather than on first touch.
    pub(crate) fn ring(
        fd: &OwnedFd,
        len: usize,
        offset: libc::off_t,
        populate: bool,
    ) -> io::Result<Self> {
        let populate = if populate { libc::MAP_POPULATE } else { 0 };
        Self::map(len, libc::MAP_SHARED | populate, fd.as_raw_fd(), offset)
    }

    /// `len` bytes of private memory, faulted in now (an AF_XDP UMEM).
    pub(crate) fn anonymous(len: usize) -> io::Result<Self> {
        Self::map(
            len,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
            -1,
            0,
        )
    }

    fn map(
        len: usize,
        flags: libc::c_int,
        fd: libc::c_int,
        offset: libc::off_t,
    ) -> io::Result<Self> {
        // SAFETY: a new mapping at an address the kernel chooses, so it overlaps nothing this
        // process uses; `fd` (or -1 with MAP_ANONYMOUS) is valid for the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `map` mapped, which only this value owns.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Octets of an Ethernet header.
pub(crate) const ETH_HLEN: usize = 14;
/// Octets of an 802.1Q tag.
pub(crate) const VLAN_HLEN: usize = 4;

/// The frame lengths an Ethernet interface takes for transmission, from its MTU. The kernel does
/// not check the frames a ring or an AF_XDP socket hands it, so the data plane does, with the
/// MTU as it is now (the worker passes link notifications on).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameLimit {
    /// Longest untagged frame: MTU + Ethernet header.
    max_untagged: usize,
}

impl FrameLimit {
    /// The limit of an interface whose MTU is `mtu`.
    pub(crate) fn new(mtu: u32) -> Self {
        Self {
            max_untagged: mtu as usize + ETH_HLEN,
        }
    }

    /// What the kernel would accept: at least an Ethernet header, at most MTU + header (+ 4
    /// when the frame carries an 802.1Q tag).
    pub(crate) fn allows(&self, frame: &[u8]) -> bool {
        let tagged = frame.get(12..14) == Some(&crate::wire::EtherType::VLAN.to_be_bytes()[..]);
        frame.len() >= ETH_HLEN
            && frame.len() <= self.max_untagged + if tagged { VLAN_HLEN } else { 0 }
    }
}

/// Errors of the shell, naming the interface or device involved.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// An interface could not be found or queried.
    #[error("interface {name:?}: {source}")]
    Interface {
        /// Interface name.
        name: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A socket, ring or device could not be set up.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A port could not be added or removed.
    #[error(transparent)]
    Port(#[from] crate::pipeline::PortError),
    /// Only ports added at run time (TAPs) can be removed at run time.
    #[error(
        "port {0:?} is a configured interface: only TAP ports added at run time can be removed"
    )]
    NotRemovable(String),
    /// The workers have stopped.
    #[error("the data plane workers have stopped")]
    Stopped,
}
