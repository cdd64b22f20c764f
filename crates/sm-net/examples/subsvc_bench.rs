//! Subscriber-service activations through the SM over real gRPC on 127.0.0.1, with the redb
//! store (fsync per group commit) and a push EP connected.
//!
//! `cargo run --release -p brasa-sm-net --example subsvc_bench -- [SUBSCRIBERS] [STREAMS] [BATCH]`
//! (defaults 100 000, 4, 1000): logs the subscribers in, then activates for each the SR OS
//! guide's PCC-rules example service (`subsvc-pccrule-1`: two rules, rate-limit and account)
//! with `ActivateServices` on Bulk streams, and prints:
//! - activations/s, each counted when its reply (sent after the fsynced commit) says OK;
//! - activations/s as the EP holds them (every subscriber's record with its service, pushed);
//! - the process's CPU time from the first activation until the EP holds the last, per
//!   activation (SM, store, LEG client and EP together: the figure the machine's load does not
//!   move), and the store's group commits in that time.
//!
//! The script run that builds the service on an Access-Accept or CoA is measured apart
//! (`cargo bench -p brasa-script --bench sub_svc_activation`).

use std::time::{Duration, Instant};

use brasa_sm::{EpConfig, EpMode, FailureAction, ReplicaEvent, SmConfig};
use brasa_sm_net::leg::login_op;
use brasa_sm_net::pb;
use brasa_sm_net::{ClientEvent, EpClient, EpClientOptions, LegClient, SmServer, SmService};
use brasa_subscriber::RedbStore;
use brasa_subsvc::{
    AcctStatsType, Direction, Flow, PccRule, RateLimit, ServiceRequest, SubscriberService,
};

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The guide's example service, as its script commits it.
fn pccrule_1() -> ServiceRequest {
    let rule = |name: &str, direction, pir_kbps, flow: Flow, account| {
        let mut rule = PccRule::new(name, direction);
        rule.precedence = Some(10);
        rule.flows.push(flow);
        rule.actions.rate_limit = Some(RateLimit {
            pir_kbps,
            cir_kbps: None,
        });
        rule.actions.account = account;
        rule
    };
    let net = "10.1.1.0/24".parse().unwrap();
    let mut service = SubscriberService::new("subsvc-pccrule-1");
    service.service_type = Some("pccrule".into());
    service.acct_stats_type = AcctStatsType::VolumeTime;
    service.acct_interval = Some(3600);
    service.rules = vec![
        rule(
            "pcc-rule-1-i",
            Direction::Ingress,
            1000,
            Flow {
                dst_ip: Some(net),
                ..Flow::default()
            },
            true,
        ),
        rule(
            "pcc-rule-1-e",
            Direction::Egress,
            5000,
            Flow {
                src_ip: Some(net),
                ..Flow::default()
            },
            false,
        ),
    ];
    ServiceRequest::Add(service)
}

/// Sends `ops(n)` for `n` in `0..total` over `streams` Bulk streams in batches of `batch`;
/// returns how many were answered OK.
async fn bulk(
    url: &str,
    total: usize,
    streams: usize,
    batch: usize,
    ops: fn(usize) -> pb::LegOp,
) -> usize {
    let per_stream = total.div_ceil(streams);
    let mut tasks = Vec::new();
    for s in 0..streams {
        let url = url.to_owned();
        let (from, to) = (s * per_stream, ((s + 1) * per_stream).min(total));
        tasks.push(tokio::spawn(async move {
            let mut leg = LegClient::connect(&url).await.expect("LEG connects");
            let (tx, rx) = tokio::sync::mpsc::channel(64);
            let mut replies = leg
                .grpc()
                .bulk(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("bulk stream")
                .into_inner();
            tokio::spawn(async move {
                let mut i = from;
                while i < to {
                    let end = (i + batch).min(to);
                    let request = pb::BulkRequest {
                        ops: (i..end).map(ops).collect(),
                        tag: i as u64,
                    };
                    if tx.send(request).await.is_err() {
                        break;
                    }
                    i = end;
                }
            });
            let (mut ok, mut seen) = (0, 0);
            while seen < to - from {
                let Some(reply) = replies.message().await.expect("bulk reply") else {
                    break;
                };
                seen += reply.results.len();
                ok += reply.results.iter().filter(|r| r.code == 0).count();
            }
            ok
        }));
    }
    let mut ok = 0;
    for task in tasks {
        ok += task.await.expect("stream task");
    }
    ok
}

fn name(n: usize) -> String {
    format!("sub{n:08}")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total = arg(1, 100_000);
    let streams = arg(2, 4).max(1);
    let batch = arg(3, 1000).max(1);
    let dir = tempfile::tempdir()?;
    let config = SmConfig {
        eps: vec![EpConfig {
            id: "bench".into(),
            domain: "subscribers".into(),
            mode: EpMode::Push,
            failure_action: FailureAction::Ignore,
            cascade_partner: None,
        }],
        ..SmConfig::default()
    };
    let store = RedbStore::open(dir.path())?;
    let service = SmService::open(config, Box::new(store))?;
    let server = SmServer::start(service, "127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", server.local_addr());
    println!("{total} subscribers, {streams} Bulk streams, {batch} operations per batch, redb");

    let logins = bulk(&url, total, streams, batch, |n| {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + n as u32);
        login_op(&name(n), &[&ip.to_string()], None)
    })
    .await;
    let mut ep = EpClient::connect(EpClientOptions::new(&url, "bench")).await?;
    tokio::time::timeout(Duration::from_secs(600), ep.wait_synced()).await??;
    println!("logged in and synced: {logins}");

    let stats_before = server.service().stats();
    let cpu_before = brasa_testkit::cpu::process_cpu_seconds();
    let started = Instant::now();
    let watcher = tokio::spawn(async move {
        let mut pushed = 0;
        while pushed < total {
            match ep.next_event().await {
                Some(ClientEvent::Replica(ReplicaEvent::Upsert(sub)))
                    if !sub.services.is_empty() =>
                {
                    pushed += 1
                }
                Some(ClientEvent::Ended { error, .. }) => panic!("EP ended: {error}"),
                Some(_) => {}
                None => break,
            }
        }
        (pushed, Instant::now())
    });
    let activated = bulk(&url, total, streams, batch, |n| pb::LegOp {
        op: Some(pb::leg_op::Op::ActivateServices(
            pb::ActivateServicesRequest {
                name: name(n),
                requests: vec![brasa_sm::service_proto::request_to_proto(&pccrule_1())],
            },
        )),
    })
    .await;
    let durable = started.elapsed();
    let (pushed, at) = tokio::time::timeout(Duration::from_secs(600), watcher).await??;
    let pushed_after = at.duration_since(started);
    let cpu = brasa_testkit::cpu::process_cpu_seconds() - cpu_before;
    let stats = server.service().stats();
    println!(
        "activations: {activated} durable in {:.2} s = {:.0}/s; {pushed} held by the EP after {:.2} s = {:.0}/s",
        durable.as_secs_f64(),
        activated as f64 / durable.as_secs_f64(),
        pushed_after.as_secs_f64(),
        pushed as f64 / pushed_after.as_secs_f64(),
    );
    println!(
        "CPU {cpu:.2} s = {:.1} µs per activation; {} store commits, {:.2} s committing",
        cpu * 1e6 / total as f64,
        stats.commits - stats_before.commits,
        (stats.commit_micros - stats_before.commit_micros) as f64 / 1e6,
    );
    server.shutdown().await;
    Ok(())
}
