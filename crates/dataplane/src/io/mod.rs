//! The Linux shell around the pipeline: AF_PACKET rings on real interfaces, a TUN device into
//! the kernel's stack, interface facts and link notifications, and the worker thread that runs
//! the loop.
//!
//! This is the only part of the crate that makes system calls. It uses no async runtime: one
//! worker thread owns the pipeline and its sockets; control operations reach it as closures
//! through [`worker::Handle`].

pub mod afpacket;
pub mod netdev;
pub mod netlink;
pub mod tap;
pub mod tun;
pub mod worker;

use std::io;

pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
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
}
