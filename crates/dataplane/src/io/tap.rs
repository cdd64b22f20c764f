//! A TAP device: the data plane's side of an L3 interface whose IP stack is the kernel's (an
//! IES or VPRN interface). Frames the data plane writes arrive in the kernel as if received on
//! the TAP; frames the kernel sends out of the TAP are read here.
//!
//! The device is not persistent: it disappears when its descriptor closes, so a data plane that
//! ends — cleanly or by kill -9 — leaves no TAP behind.

use super::{netdev, IoError};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// An open TAP device (Ethernet frames, no packet information header, non-blocking).
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    /// Creates the TAP device `name` in the calling thread's network namespace, down. Fails
    /// when a device of that name exists (a TAP is never shared).
    pub fn create(name: &str) -> Result<Self, IoError> {
        let setup = |what: &str, source| IoError::Setup {
            what: format!("TAP {name}: {what}"),
            source,
        };
        if netdev::NetDev::lookup(name).is_ok() {
            return Err(setup("create", io::Error::from_raw_os_error(libc::EEXIST)));
        }
        let fd = super::tun::open_device(name, libc::IFF_TAP, &setup)?;
        Ok(Self {
            fd,
            name: name.to_string(),
        })
    }

    /// The device name (as created; the device may since have moved to another namespace).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands one Ethernet frame to the kernel. A full queue is `WouldBlock`.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        super::tun::write_all(&self.fd, frame)
    }

    /// Reads one frame the kernel sent out of the device into `buffer`; `None` when there is
    /// none.
    pub fn read(&self, buffer: &mut [u8]) -> Option<usize> {
        // SAFETY: reads at most `buffer.len()` bytes into a valid buffer.
        let read = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
            )
        };
        usize::try_from(read).ok().filter(|&n| n > 0)
    }

    /// The descriptor, for polling.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}
