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
