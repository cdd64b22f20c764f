//! Userspace data plane.
