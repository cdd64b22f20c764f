//! Whole CAFE pipeline over arbitrary frames, with forwarding rules, filters and every egress
//! kind configured: never panics, every packet ends with a decision, and transmitted frames
//! are well-formed COMET frames.
#![no_main]
use brasa_dataplane::control::{self, FilterRequest, ForwardRule};
use brasa_dataplane::pipeline::{Batch, IpHandoff, LinkKind, PacketMeta, Pipeline, Port, Verdict};
use brasa_dataplane::wire::MacAddr;
use libfuzzer_sys::fuzz_target;

fn pipeline() -> Pipeline {
    let port = |name: &str, link| Port {
        name: name.into(),
        link,
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
        ip_handoff: IpHandoff::Inject,
    };
    let mut p = Pipeline::new(
        vec![
            port("eth0", LinkKind::Ethernet),
            port("eth1", LinkKind::Ethernet),
            port("gre0", LinkKind::Ip),
        ],
        brasa_dataplane::stages::cafe_stages(),
    );
    for key in 0..=255u8 {
        let rule = match key % 3 {
            0 => ForwardRule::Ethernet {
                key,
                device: "eth1".into(),
                mac: "aa:11:b0:00:00:01".into(),
            },
            1 => ForwardRule::Vlan {
                key,
                device: "eth1".into(),
                mac: "aa:11:b0:00:00:01".into(),
                vid: 100,
            },
            _ => ForwardRule::Device {
                key,
                device: "gre0".into(),
            },
        };
        control::forward_add(&mut p, &rule).unwrap();
    }
    let filter = |id, src: Option<&str>| FilterRequest {
        id,
        timeout: 1,
        src: src.map(|s| s.parse().unwrap()),
        dst: None,
        protocol: 0,
        src_port: 0,
        dst_port: 0,
        keys: "0102".into(),
        bandwidth: 0,
        cos: String::new(),
        as_path: vec![],
    };
    control::intercept_add(&mut p, &filter(1, None), 0).unwrap();
    control::intercept_add(&mut p, &filter(2, Some("fd00::1")), 0).unwrap();
    p
}

fuzz_target!(|data: &[u8]| {
    let mut p = pipeline();
    let mut batch = Batch::new(4);
    let (port, rest) = match data.split_first() {
        Some((first, rest)) => (u16::from(*first % 3), rest),
        None => return,
    };
    let protocol = if rest.first().map(|b| b >> 4) == Some(6) {
        0x86dd
    } else {
        0xcccc
    };
    for _ in 0..2 {
        if !batch.push(rest, PacketMeta::new(port, 0, protocol)) {
            return;
        }
    }
    p.run(&mut batch, 1_000_000_000);
    p.tick(5_000_000_000);
    for (buf, meta) in batch.iter() {
        assert_ne!(meta.verdict, Verdict::Pending);
        if let Verdict::Transmit(1) = meta.verdict {
            assert!(buf.len() >= 14);
        }
    }
});
