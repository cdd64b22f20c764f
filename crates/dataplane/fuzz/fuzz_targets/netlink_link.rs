//! Link notifications (netlink RTM_NEWLINK): the parser never panics, whatever the bytes, and
//! yields at most one (ifindex, MTU) per 16-byte message header it walks over.
#![no_main]
use brasa_dataplane::io::netlink::link_mtus;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let found = link_mtus(data).count();
    assert!(found <= data.len() / 16);
});
