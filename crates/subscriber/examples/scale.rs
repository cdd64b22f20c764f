//! Scale benchmark: N subscribers with one IPv4 address each in one index.
//!
//! `cargo run --release -p brasa-subscriber --example scale -- [N] [sessions|properties]`
//! (default 10 000 000) prints the import rate into the in-memory index, resident memory per
//! subscriber (from /proc/self/statm) and IP→subscriber lookups per second on one core, one at
//! a time and in bursts of 256. With `sessions`, each subscriber also holds an
//! `Acct-Session-Id` property (22 characters, as NASes and brasa write them), which puts it in
//! the index's session table; `properties` gives it the same value under another key of the
//! same length (`Class-Attribute`), which no table indexes. The differences of the three runs
//! are what the property and the session table cost.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use brasa_subscriber::{
    IndexConfig, IpSpec, Mapping, SubscriberIndex, SubscriberName, GLOBAL_VPN, SESSION_PROPERTY,
};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // Page size is 4 KiB on the x86-64 and aarch64 Linux hosts this runs on.
    pages * 4096
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let property = match std::env::args().nth(2).as_deref() {
        Some("sessions") => Some(SESSION_PROPERTY),
        Some("properties") => Some("Class-Attribute"),
        _ => None,
    };
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
    let mut index = SubscriberIndex::new(IndexConfig::default()).expect("default config");
    let rss_before = rss_bytes();

    let start = Instant::now();
    index.reserve(n as usize);
    for i in 0..n {
        let mut sub = brasa_subscriber::Subscriber::new(
            SubscriberName::new(&format!("sub{i:08}"), Default::default()).expect("valid name"),
        );
        sub.mappings = vec![Mapping::global(IpSpec::V4Prefix(
            Ipv4Addr::from(base + i),
            32,
        ))];
        sub.logged_in = true;
        if let Some(key) = property {
            sub.properties = vec![(key.to_string(), format!("{i:022X}"))];
        }
        index.upsert(sub).expect("import");
    }
    let import = start.elapsed();
    let rss_after = rss_bytes();
    println!(
        "import: {n} subscribers in {:.2} s = {:.0} subscribers/s",
        import.as_secs_f64(),
        f64::from(n) / import.as_secs_f64()
    );
    println!(
        "memory{}: RSS {:.1} MiB -> {:.1} MiB = {:.1} bytes/subscriber",
        property.map_or_else(String::new, |key| format!(" (with {key})")),
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0,
        (rss_after - rss_before) as f64 / f64::from(n)
    );

    // Random addresses inside the populated block (xorshift, no allocation in the loop).
    let probes: Vec<u32> = {
        let mut x = 0x9e37_79b9_u32;
        (0..(1 << 22))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                base + x % n
            })
            .collect()
    };
    let rounds = 16;
    let start = Instant::now();
    let mut found = 0u64;
    for _ in 0..rounds {
        for &a in &probes {
            found += u64::from(index.lookup_v4(GLOBAL_VPN, black_box(a)).is_some());
        }
    }
    let elapsed = start.elapsed();
    let lookups = (probes.len() * rounds) as f64;
    assert_eq!(found as f64, lookups, "every probe is a populated address");
    println!(
        "lookup: {:.0} lookups in {:.2} s = {:.1} M lookups/s (one core, random addresses)",
        lookups,
        elapsed.as_secs_f64(),
        lookups / elapsed.as_secs_f64() / 1e6
    );
    // The same probes in bursts of 256, as a data plane receives them.
    let mut out = vec![None; 256];
    let start = Instant::now();
    let mut found = 0u64;
    for _ in 0..rounds {
        for burst in probes.chunks(256) {
            index.lookup_v4_batch(GLOBAL_VPN, black_box(burst), &mut out);
            found += out[..burst.len()].iter().filter(|o| o.is_some()).count() as u64;
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(found as f64, lookups, "every probe is a populated address");
    println!(
        "lookup (bursts of 256): {:.0} lookups in {:.2} s = {:.1} M lookups/s (one core)",
        lookups,
        elapsed.as_secs_f64(),
        lookups / elapsed.as_secs_f64() / 1e6
    );
    let name = index
        .lookup_v4(GLOBAL_VPN, base + n / 2)
        .and_then(|id| index.name_of(id));
    println!("check: {} -> {:?}", Ipv4Addr::from(base + n / 2), name);
}
