//! Fixtures for brasa's tests (a dev-dependency only): real network namespaces, created with a
//! unique name and deleted on drop, so that a failing test leaves nothing behind.

pub mod netns;
