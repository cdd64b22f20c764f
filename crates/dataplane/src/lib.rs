//! brasa's userspace data plane.
//!
//! * [`wire`]: zero-copy views of the packet formats it reads and writes.
//!
//! The cores here never open sockets, read clocks or spawn threads: the caller passes `now` and
//! owns the I/O (see the `io` module for the AF_PACKET and TUN shells).
#![warn(missing_docs)]

pub mod wire;
