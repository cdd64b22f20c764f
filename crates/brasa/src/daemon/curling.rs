//! `brasa curling cafe|crme|server|client ROUTER ARGS…`: one CURLING entity (COMET D4.3 §6) as
//! a daemon. The arguments are those of its scenario line; this module builds the entity's core
//! from them, runs it as a real UDP endpoint (`brasa-curling-net`) and serves the management
//! API (`/api/v1/curling`, `/metrics`) until SIGTERM or Ctrl-C.

use crate::common::access::{Access, ApiConfig};
use crate::common::mgmt::{self, ApiError};
use crate::common::prom::{Kind, PromWriter};
use crate::common::signal::ShutdownSignal;
use crate::console;
use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use brasa_curling::cafe::Cafe;
use brasa_curling::client::ContentClient;
use brasa_curling::crme::Crme;
use brasa_curling::naming::Naming;
use brasa_curling::scenario::Parser;
use brasa_curling::server::ContentServer;
use brasa_curling_net::shell::{Core, Entity, LogSink, ShellOptions, Snapshot};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Default management API address of a `brasa curling` entity daemon.
pub const DEFAULT_API: &str = "127.0.0.1:7783";

/// Which entity, with what it starts with.
#[derive(Debug, Clone)]
pub enum EntityKind {
    /// A CAFE.
    Cafe,
    /// A CRME.
    Crme,
    /// A content server publishing these `(content ID, file)` at start.
    Server {
        /// The contents to publish.
        publish: Vec<(String, PathBuf)>,
    },
    /// A content client consuming these content IDs at start.
    Client {
        /// The contents to consume.
        consume: Vec<String>,
    },
}

/// One entity daemon.
#[derive(Debug, Clone)]
pub struct EntityDaemon {
    /// The entity.
    pub kind: EntityKind,
    /// Router name (`2.3` or an IPv4 address), then the scenario-line arguments.
    pub args: Vec<String>,
    /// Second octet of the loopback plan for router names.
    pub net: u8,
    /// Where clients save content (`Content/<router port>/<ContentID>` under it).
    pub content_dir: PathBuf,
    /// Management API listen address.
    pub mgmt_listen: SocketAddr,
}

/// Builds the entity's core from its arguments; errors name the offending argument.
fn build_core(daemon: &EntityDaemon, naming: Naming) -> anyhow::Result<Core> {
    let parser = Parser { naming };
    let (router, rest) = daemon
        .args
        .split_first()
        .context("missing the router name")?;
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let invalid = |err: brasa_curling::scenario::ArgumentError<'_>| match err.argument {
        Some(argument) => anyhow::anyhow!("invalid argument {argument:?}: {}", err.message),
        None => anyhow::anyhow!("invalid arguments: {}", err.message),
    };
    Ok(match &daemon.kind {
        EntityKind::Cafe => Core::Cafe(Cafe::new(parser.cafe(router, &rest).map_err(invalid)?)),
        EntityKind::Crme => Core::Crme(Crme::new(parser.crme(router, &rest).map_err(invalid)?)),
        EntityKind::Server { publish } => {
            let mut server = ContentServer::new(parser.server(router, &rest).map_err(invalid)?);
            for (id, path) in publish {
                let data = std::fs::read(path)
                    .with_context(|| format!("--publish: cannot read {}", path.display()))?;
                server
                    .publish(id, Arc::from(data))
                    .map_err(|err| anyhow::anyhow!("--publish {id:?}: {err}"))?;
            }
            Core::Server(server)
        }
        EntityKind::Client { consume } => {
            let mut client = ContentClient::new(parser.client(router, &rest).map_err(invalid)?);
            for id in consume {
                client
                    .consume(std::time::Instant::now(), id)
                    .map_err(|err| anyhow::anyhow!("--consume {id:?}: {err}"))?;
            }
            Core::Client(client)
        }
    })
}

/// Runs the entity until SIGTERM or Ctrl-C, then stops it and waits until it has ended (a
/// download it was saving is complete on disk).
pub async fn run(daemon: EntityDaemon) -> anyhow::Result<()> {
    let mut shutdown = ShutdownSignal::install()?;
    let api = ApiConfig::loopback(daemon.mgmt_listen).map_err(anyhow::Error::msg)?;
    let naming = Naming { net: daemon.net };
    let core = build_core(&daemon, naming)?;
    // Bound before the entity announces itself: whoever hears from it can query it at once.
    let listener = mgmt::bind(&api).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let log: LogSink = Arc::new(|line: String| {
        println!("{line}");
        tracing::info!(target: "brasa_curling", "{line}");
    });
    let entity = Arc::new(Entity::spawn(
        core,
        ShellOptions {
            naming,
            content_dir: daemon.content_dir.clone(),
            stop: stop_rx,
            drop_every: None,
        },
        log,
    )?);
    tracing::info!(addr = %entity.addr(), "curling entity running");
    let router = Router::new()
        .route("/api/v1/curling", get(api_snapshot))
        .route("/metrics", get(api_metrics))
        .with_state(entity.clone());
    let access = Arc::new(Access::new(api.access.clone()));
    let shell = Arc::new(console::curling::shell(access.clone(), false, &entity));
    let sampled = entity.clone();
    console::series::spawn_sampler(shell.series.clone(), move || {
        let counters = console::curling::counters(&sampled);
        async move { Some(counters) }
    });
    let router = router.merge(console::router(
        shell,
        console::curling::routes(),
        entity.clone(),
    ));
    listener.serve(access, router);
    let signal = shutdown.recv().await;
    tracing::info!(signal, "shutting down");
    let _ = stop_tx.send(true);
    entity.join().await;
    Ok(())
}

async fn api_snapshot(State(entity): State<Arc<Entity>>) -> Result<Json<Snapshot>, ApiError> {
    Ok(Json(entity.snapshot()))
}

async fn api_metrics(
    State(entity): State<Arc<Entity>>,
) -> Result<axum::response::Response, ApiError> {
    let snapshot = entity.snapshot();
    let (kind, counters, gauge) = match &snapshot {
        Snapshot::Cafe {
            table, counters, ..
        } => (
            "cafe",
            serde_json::to_value(counters),
            (
                "brasa_curling_content_states",
                "Content states in the CAFE's table.",
                table.len(),
            ),
        ),
        Snapshot::Crme {
            active_sessions,
            counters,
            ..
        } => (
            "crme",
            serde_json::to_value(counters),
            (
                "brasa_curling_active_sessions",
                "Entries in the CRME's ActiveSessions table.",
                active_sessions.len(),
            ),
        ),
        Snapshot::Server {
            streams, counters, ..
        } => (
            "server",
            serde_json::to_value(counters),
            (
                "brasa_curling_streams",
                "Content streams in progress.",
                streams.len(),
            ),
        ),
        Snapshot::Client {
            downloads,
            counters,
            ..
        } => (
            "client",
            serde_json::to_value(counters),
            (
                "brasa_curling_downloads",
                "Downloads known to the client.",
                downloads.len(),
            ),
        ),
    };
    let counters = counters.map_err(|err| ApiError::internal(err.to_string()))?;
    let addr = snapshot.addr().to_string();
    let labels = [("entity", kind), ("addr", addr.as_str())];
    let mut writer = PromWriter::default();
    if let serde_json::Value::Object(fields) = counters {
        for (field, value) in fields {
            let name = format!("brasa_curling_{kind}_{field}_total");
            writer
                .family(
                    &name,
                    &format!("CURLING {kind} counter `{field}`."),
                    Kind::Counter,
                )
                .sample(&name, &labels, value.as_f64().unwrap_or(0.0));
        }
    }
    writer
        .family(gauge.0, gauge.1, Kind::Gauge)
        .sample(gauge.0, &labels, gauge.2 as f64);
    Ok(mgmt::metrics_response(writer.finish()))
}
