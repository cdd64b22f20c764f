//! Content-state lookups + forward decisions per second in memory: a CAFE with 1 M content
//! states deciding for pre-built chunks (view check, lookup, notify flag, next hops).

use brasa_curling::cafe::{Action, Cafe, CafeConfig};
use brasa_curling::wire::{self, ContentPacket, Message, Neighbour};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const STATES: usize = 1_000_000;
const BATCH: usize = 4096;

fn ep(a: u8, b: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, a, b), port)
}

fn content_id(i: usize) -> String {
    format!("content-{i:08}")
}

fn loaded_cafe() -> Cafe {
    let crme = ep(2, 1, 3000);
    let mut cafe = Cafe::new(CafeConfig {
        me: ep(2, 2, 2000),
        crme,
        neighbours: vec![Neighbour {
            cafe: ep(1, 2, 2000),
            crme: ep(1, 1, 3000),
        }],
        announce_interval: Duration::from_secs(1),
    });
    cafe.reserve(STATES);
    for i in 0..STATES {
        let id = content_id(i);
        let configure = wire::Configure {
            remove: false,
            cafe: ep(2, 2, 2000),
            prev_hop: Some(ep(1, 2, 2000)),
            next_hop: ep(2, 3, 2000 + (i % 2) as u16),
            content_id: &id,
        };
        cafe.process_configure(crme, &configure);
        while cafe.poll_event().is_some() {}
    }
    cafe
}

fn chunks() -> Vec<Vec<u8>> {
    // A spread of content IDs over the whole table (multiplicative hashing of the index).
    (0..BATCH)
        .map(|i| {
            let id = content_id((i * 2_654_435_761) % STATES);
            Message::Content(
                wire::ChunkHeader {
                    last: false,
                    seq: i as u32,
                    source: ep(5, 3, 1000),
                    sender: ep(1, 2, 2000),
                    content_id: &id,
                },
                &[0u8; 1024],
            )
            .to_vec()
            .unwrap()
        })
        .collect()
}

fn forward(c: &mut Criterion) {
    let mut cafe = loaded_cafe();
    let chunks = chunks();
    let from = ep(1, 2, 2000);
    // Warm the notify flags so the steady state is measured (one Notify per flow is not).
    for chunk in &chunks {
        let packet = ContentPacket::new_checked(&chunk[..]).unwrap();
        let _ = cafe.process_content(from, &packet);
    }
    while cafe.poll_transmit().is_some() {}
    while cafe.poll_event().is_some() {}
    let mut group = c.benchmark_group("cafe");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("lookup_and_forward_decision_1M_states", |b| {
        b.iter(|| {
            let mut hops = 0usize;
            for chunk in &chunks {
                let packet = ContentPacket::new_checked(&chunk[..]).unwrap();
                if let Action::Forward(next) = cafe.process_content(from, &packet) {
                    hops += next.len();
                }
            }
            black_box(hops)
        })
    });
    group.bench_function("lookup_only_1M_states", |b| {
        let ids: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| content_id((i * 2_654_435_761) % STATES).into_bytes())
            .collect();
        b.iter(|| {
            let mut hops = 0usize;
            for id in &ids {
                hops += cafe.lookup(id).map_or(0, <[_]>::len);
            }
            black_box(hops)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = forward
}
criterion_main!(benches);
