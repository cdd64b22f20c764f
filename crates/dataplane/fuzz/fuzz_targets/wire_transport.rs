//! TCP and UDP views over arbitrary bytes: never panic; checksums verify after emit.
#![no_main]
use brasa_dataplane::wire::{TcpPacket, TcpRepr, UdpPacket, UdpRepr};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};

fuzz_target!(|data: &[u8]| {
    let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
    let dst = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    if let Ok(tcp) = TcpPacket::new_checked(data) {
        let _ = (
            tcp.payload(),
            tcp.flags(),
            tcp.window(),
            tcp.verify_checksum(src, dst),
        );
        if let Ok(repr) = TcpRepr::parse(&tcp, src, dst) {
            let mut out = data.to_vec();
            repr.emit(&mut TcpPacket::new_unchecked(&mut out[..]), src, dst);
            assert!(TcpPacket::new_checked(&out[..]).is_ok());
        }
    }
    if let Ok(udp) = UdpPacket::new_checked(data) {
        let _ = (udp.payload(), udp.verify_checksum(src, dst));
        let mut out = data[..usize::from(udp.len())].to_vec();
        let payload_len = out.len() - 8;
        UdpRepr {
            src_port: udp.src_port(),
            dst_port: udp.dst_port(),
        }
        .emit(
            &mut UdpPacket::new_unchecked(&mut out[..]),
            payload_len,
            src,
            dst,
        );
        assert!(UdpPacket::new_checked(&out[..])
            .unwrap()
            .verify_checksum(src, dst));
    }
});
