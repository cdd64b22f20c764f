//! A RADIUS datagram read as an Access-Accept (or CoA) for a data trigger: the Alc-Dyn-Serv-*
//! services are grouped, checked and resolved; errors, never panics.
#![no_main]

use brasa_dynsvc::auth;
use brasa_radius::Message;
use brasa_services::{PortMap, SapId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let Ok(trigger) = SapId::parse("eth1:1214.101") else {
        return;
    };
    let _ = auth::parse_access_accept(&message, &trigger, &PortMap::new());
});
