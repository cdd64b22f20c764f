//! Fixtures for brasa's tests (a dev-dependency only): real network namespaces, created with a
//! unique name and deleted on drop, so that a failing test leaves nothing behind, and a VLAN
//! tagger for test hosts on kernels without the 802.1Q module.

pub mod netns;
pub mod vlan_shim;
