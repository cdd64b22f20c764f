//! The tokio shell (in progress).
