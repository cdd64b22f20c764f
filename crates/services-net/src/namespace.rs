//! Anonymous network namespaces held by a descriptor, and running code inside one.
//!
//! A VPRN's namespace is created by a short-lived thread that `unshare`s into a new network
//! namespace and opens its nsfs file; the descriptor is what keeps the namespace alive. There
//! is no bind mount under /var/run/netns, so when the daemon ends — cleanly or by kill -9 —
//! the namespace and everything in it (TAPs, addresses, routes) go with it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A network namespace kept alive by this descriptor.
#[derive(Debug)]
pub struct NetNamespace {
    fd: OwnedFd,
}

impl NetNamespace {
    /// Creates a namespace with its loopback up and IPv4/IPv6 forwarding on (a VPRN routes).
    pub fn create() -> io::Result<Self> {
        run_in_new_thread(|| {
            // SAFETY: unshare(2) with a constant flag; it affects only this thread, which
            // exists only for this closure.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let path = c"/proc/thread-self/ns/net";
            // SAFETY: open(2) with a valid NUL-terminated path.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
            let namespace = NetNamespace {
                fd: unsafe { OwnedFd::from_raw_fd(fd) },
            };
            set_loopback_up()?;
            // /proc/sys/net shows the namespace of the thread that opens it.
            write_sysctl("net/ipv4/ip_forward", "1")?;
            write_sysctl("net/ipv6/conf/all/forwarding", "1")?;
            Ok(namespace)
        })
    }

    /// Runs `f` on a new thread inside this namespace and returns its result. Sockets `f` opens
    /// belong to the namespace for their whole life, whichever thread uses them later.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let fd = self.fd.try_clone()?;
        run_in_new_thread(move || {
            // SAFETY: setns(2) with a namespace descriptor this closure owns; it changes only
            // the calling thread, which exists only for this closure.
            if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            f()
        })
    }

    /// The descriptor (for IFLA_NET_NS_FD when moving a link into the namespace).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

fn run_in_new_thread<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    std::thread::Builder::new()
        .name("brasa-netns".to_string())
        .spawn(f)?
        .join()
        .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// Writes `value` to `/proc/sys/<path>` as seen by the calling thread's network namespace.
pub fn write_sysctl(path: &str, value: &str) -> io::Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), value)
        .map_err(|err| io::Error::new(err.kind(), format!("/proc/sys/{path}: {err}")))
}

fn set_loopback_up() -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid ifreq; the name and flags are set below.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the named interface into `request`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member SIOCGIFFLAGS just wrote.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `request`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
