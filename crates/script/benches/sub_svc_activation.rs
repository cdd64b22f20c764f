//! Subscriber service activations per second through the guide's `alc.sub_svc` script.
//!
//! `cargo bench -p brasa-script --bench sub_svc_activation`: one activation is a run of
//! `examples/python/sub_svc/pcc_rules.py` on an Access-Accept (the default 1 s time limit
//! armed, tracing off), the committed service applied to a subscriber's services and its
//! accounting started (the Start record built), as the daemon will do before pushing the
//! subscriber to its enforcement points. The SM push itself is not part of it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use brasa_radius::{Code, Dictionary, Message};
use brasa_script::{RunOptions, Script, ScriptHost};
use brasa_subsvc::{Accounting, ServiceChange, SubscriberServices, Volume};
use criterion::{criterion_group, Criterion, Throughput};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/python/sub_svc/pcc_rules.py"
);

fn bench(c: &mut Criterion) {
    let host = ScriptHost::new(Instant::now).expect("host starts");
    let script = Script::load("pcc_rules", EXAMPLE).expect("example loads");
    let dict = Dictionary::builtin();
    let options = RunOptions::default();
    let mut accounting = Accounting::new("bench", 1, None);
    let now = Instant::now();
    let mut group = c.benchmark_group("sub_svc");
    group.throughput(Throughput::Elements(1));
    let mut subscriber = 0u64;
    group.bench_function("activation", |b| {
        b.iter(|| {
            let mut accept = Message::new(Code::AccessAccept, 1);
            let report = host.run_sub_svc(&script, &mut accept, &dict, None, &options);
            assert!(report.run.is_ok());
            let mut services = SubscriberServices::new();
            let changes = services.apply_all(report.services).expect("activates");
            subscriber += 1;
            let name = subscriber.to_string();
            for change in &changes {
                if let ServiceChange::Activated(service) = change {
                    let start = accounting
                        .start(&name, &name, service, Volume::default(), now)
                        .expect("starts");
                    black_box(start);
                }
            }
            black_box(services)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}

fn main() {
    // On a thread of its own, as the daemon's script worker runs.
    std::thread::spawn(benches).join().expect("bench thread");
    Criterion::default().configure_from_args().final_summary();
}
