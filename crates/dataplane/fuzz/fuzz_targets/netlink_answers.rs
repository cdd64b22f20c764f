//! The rtnetlink answers the shell reads (link MTUs, the XDP attachment of an interface, the
//! host's addresses): malformed messages end the walk, nothing panics, and what is found lies
//! inside the input.
#![no_main]
use brasa_dataplane::io::netlink::link_mtus;
use brasa_dataplane::io::xdp::netlink::{local_addresses, xdp_attachment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (_ifindex, _mtu) in link_mtus(data) {}
    let ifindex = data
        .get(20..24)
        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let _ = xdp_attachment(data, ifindex);
    let (addresses, _done) = local_addresses(data);
    assert!(addresses.len() * 8 <= data.len());
});
