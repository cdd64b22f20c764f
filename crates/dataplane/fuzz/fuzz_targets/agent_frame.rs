//! CME agent frames: the decoder never panics on any byte stream, consumes whole frames only,
//! and every decoded request gets a response that fits in one frame.
#![no_main]
use brasa_dataplane::agent;
use brasa_dataplane::pipeline::{IpHandoff, LinkKind, Pipeline, Port};
use brasa_dataplane::wire::MacAddr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let port = Port {
        name: "eth0".into(),
        link: LinkKind::Ethernet,
        mac: MacAddr::default(),
        ip_handoff: IpHandoff::Kernel,
    };
    let mut pipeline = Pipeline::new(vec![port], brasa_dataplane::stages::cafe_stages());
    let mut input = data;
    let mut now = 0;
    while let Some((used, request)) = agent::decode_frame(input) {
        assert!(used >= 2 && used <= input.len());
        input = &input[used..];
        let response = match request {
            Ok(request) => agent::handle(&mut pipeline, &request, now),
            Err(malformed) => agent::malformed_response(&malformed),
        };
        let frame = agent::encode_frame(&response).expect("every response fits one frame");
        assert_eq!(
            usize::from(u16::from_be_bytes([frame[0], frame[1]])),
            frame.len() - 2
        );
        let decoded = <brasa_proto::brasa::cafe::GenericResponse as prost::Message>::decode(
            &frame[2..],
        )
        .expect("a frame holds the whole response");
        assert_eq!(decoded, response);
        now += 3_000_000_000;
    }
});
