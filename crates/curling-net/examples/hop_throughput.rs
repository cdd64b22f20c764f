//! Chunks per second through one CAFE hop over UDP on loopback with batched I/O: a sender
//! blasts 1 KiB chunks with `sendmmsg` at a CAFE entity (the real shell: `recvmmsg`, core
//! decision, sender rewrite, `sendmmsg`), a sink counts what comes out of the CAFE.
//!
//! `cargo run --release -p brasa-curling-net --example hop_throughput [SECONDS]`

use brasa_curling::cafe::{Cafe, CafeConfig};
use brasa_curling::naming::Naming;
use brasa_curling::wire::{self, Message};
use brasa_curling_net::shell::{Core, Entity, LogSink, ShellOptions};
use brasa_udp::{BatchSocket, RecvBatch, SendBatch, MAX_BATCH};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn thread_cpu_time() -> Duration {
    // SAFETY: all-zero is a valid timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn ep(a: u8, b: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 77, a, b), port)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> std::io::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let crme = ep(2, 1, 3000);
    let cafe_addr = ep(2, 2, 2000);
    let sink_addr = ep(2, 3, 2000);
    let mut cafe = Cafe::new(CafeConfig {
        me: cafe_addr,
        crme,
        neighbours: Vec::new(),
        announce_interval: Duration::from_secs(3600),
    });
    let configure = Message::Configure(wire::Configure {
        remove: false,
        cafe: cafe_addr,
        prev_hop: None,
        next_hop: sink_addr,
        content_id: "BenchContent",
    })
    .to_vec()
    .unwrap();
    cafe.handle(crme, &configure);
    // The CAFE runs on its own thread and runtime so that its CPU time can be measured apart
    // from the load generator's: forwarded chunks per CAFE CPU-second is the capacity of one
    // core, whatever else the machine is doing.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (cpu_tx, cpu_rx) = std::sync::mpsc::channel::<(Duration, Duration, u64)>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let measuring = Arc::new(AtomicBool::new(false));
    let measuring_flag = measuring.clone();
    let cafe_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let log: LogSink = Arc::new(|_line| {});
            let entity = Entity::spawn(
                Core::Cafe(cafe),
                ShellOptions {
                    naming: Naming { net: 77 },
                    content_dir: std::env::temp_dir(),
                    stop: stop_rx,
                    drop_every: None,
                },
                log,
            );
            let entity = match entity {
                Ok(entity) => {
                    let _ = ready_tx.send(Ok(()));
                    entity
                }
                Err(err) => {
                    let _ = ready_tx.send(Err(err));
                    return;
                }
            };
            while !measuring_flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let forwarded = |entity: &Entity| match entity.snapshot() {
                brasa_curling_net::shell::Snapshot::Cafe { counters, .. } => {
                    counters.chunks_forwarded
                }
                _ => 0,
            };
            let cpu_start = thread_cpu_time();
            let wall_start = Instant::now();
            let chunks_start = forwarded(&entity);
            while measuring_flag.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = cpu_tx.send((
                thread_cpu_time() - cpu_start,
                wall_start.elapsed(),
                forwarded(&entity) - chunks_start,
            ));
            entity.join().await;
        });
    });
    ready_rx.recv().unwrap()?;

    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sink = BatchSocket::bind(sink_addr)?;
    let counter = received.clone();
    tokio::spawn(async move {
        let mut batch = RecvBatch::default();
        loop {
            if sink.recv(&mut batch).await.is_err() {
                return;
            }
            counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
    });

    let sender = BatchSocket::bind(ep(1, 2, 2000))?;
    let sent = Arc::new(AtomicU64::new(0));
    let sent_counter = sent.clone();
    let stop = done.clone();
    let sender_task = tokio::spawn(async move {
        let mut out = SendBatch::default();
        let mut chunk = Message::Content(
            wire::ChunkHeader {
                last: false,
                seq: 0,
                source: ep(5, 3, 1000),
                sender: ep(1, 2, 2000),
                content_id: "BenchContent",
            },
            &[0x5A; 1024],
        )
        .to_vec()
        .unwrap();
        let mut seq = 0u32;
        while !stop.load(Ordering::Relaxed) {
            out.clear();
            for _ in 0..MAX_BATCH {
                // Sequence number at offset 4 (see docs/curling.md).
                chunk[4..8].copy_from_slice(&seq.to_be_bytes());
                out.push(cafe_addr, &chunk);
                seq = seq.wrapping_add(1);
            }
            if sender.send(&out).await.is_err() {
                return;
            }
            sent_counter.fetch_add(out.len() as u64, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    });

    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let (r0, s0) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let elapsed = start.elapsed().as_secs_f64();
    let (r1, s1) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
    );
    measuring.store(false, Ordering::Relaxed);
    let (cafe_cpu, cafe_wall, cafe_chunks) = cpu_rx.recv().unwrap();
    let _ = stop_tx.send(true);
    let _ = cafe_thread.join();
    done.store(true, Ordering::Relaxed);
    let _ = sender_task.await;
    let forwarded = (r1 - r0) as f64 / elapsed;
    let offered = (s1 - s0) as f64 / elapsed;
    let per_cpu_second = cafe_chunks as f64 / cafe_cpu.as_secs_f64().max(1e-9);
    println!(
        "one CAFE hop, 1 KiB chunks, batches of {MAX_BATCH}: offered {offered:.0} chunks/s, forwarded {forwarded:.0} chunks/s ({:.1} % delivered) over {elapsed:.1} s; CAFE thread: {cafe_chunks} chunks in {:.2} s CPU / {:.2} s wall = {per_cpu_second:.0} chunks per CAFE CPU-second",
        100.0 * forwarded / offered.max(1.0),
        cafe_cpu.as_secs_f64(),
        cafe_wall.as_secs_f64()
    );
    Ok(())
}
