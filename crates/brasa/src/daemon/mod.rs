//! The daemons' config models and wiring. This module itself is the control-plane daemon
//! (`brasa run`): it starts the components its config enables and serves the management API;
//! [`rae`], [`dataplane`] and [`curling`] are the other daemons.

pub mod coa;
pub mod config;
pub mod curling;
pub mod dataplane;
pub mod dynsvc;
pub mod pcc;
pub mod python;
pub mod python_api;
pub mod radius_api;
pub mod radius_rejects;
pub mod rae;
pub mod services;
pub mod sm_api;
pub mod sm_config;
pub mod sm_ha;
pub mod sm_radius;
pub mod subsvc;

use crate::common::access::Access;
use crate::common::mgmt;
use crate::console;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;

/// A running daemon.
pub struct Daemon {
    /// Where the management API listens.
    pub api: SocketAddr,
    /// The subscriber manager, closed cleanly on shutdown.
    sm: Option<Arc<sm_api::SmComponent>>,
    /// The service data plane, whose worker is stopped on shutdown.
    services: Option<Arc<services::ServicesComponent>>,
}

impl Daemon {
    /// Stops what must not just vanish with the process (the SM stops its BGP LEG, finishes
    /// its commits and closes its store).
    pub async fn shutdown(&self) {
        if let Some(sm) = &self.sm {
            sm.shutdown().await;
        }
        if let Some(services) = &self.services {
            services.shutdown().await;
        }
    }
}

/// Starts every configured component and the management API.
pub async fn start(resolved: config::Resolved) -> anyhow::Result<Daemon> {
    std::fs::create_dir_all(&resolved.data_dir).map_err(|err| {
        anyhow::anyhow!(
            "cannot create data_dir {}: {err}",
            resolved.data_dir.display()
        )
    })?;
    let dictionary = resolved
        .radius
        .as_ref()
        .map(|(_, dictionary)| dictionary.clone())
        .unwrap_or_else(|| Arc::new(brasa_radius::Dictionary::builtin()));
    let dictionary_for_dynsvc = dictionary.clone();
    let dictionary_for_subsvc = dictionary.clone();
    // The subscriber-services script runs on the Python worker too.
    let sub_svc_script =
        resolved
            .subscriber_services
            .as_ref()
            .map(|s| brasa_python::worker::SubSvcScript {
                path: s.script.clone(),
                time_limit: s.time_limit,
            });
    let (caches, redis, python) = match resolved.python {
        Some(mut python) => {
            python.worker.sub_svc = sub_svc_script;
            let caches = Arc::new(
                brasa_python::cache_service::CacheService::start(python.caches)
                    .await
                    .map_err(|err| anyhow::anyhow!("python-policy caches: {err}"))?,
            );
            // Redis need not be up: until it is, scripts using it take their action-on-fail.
            let redis = python
                .redis
                .map(|(settings, policies)| {
                    brasa_cache_redis::RedisCaches::start(settings, policies)
                        .map_err(|err| anyhow::anyhow!("python-policy caches in Redis: {err}"))
                })
                .transpose()?;
            let worker = tokio::task::block_in_place(|| {
                brasa_python::worker::PythonPolicies::start(
                    python.worker,
                    dictionary,
                    Some(caches.clone()),
                    redis.clone(),
                )
            })
            .map_err(|err| anyhow::anyhow!("python: {err}"))?;
            (Some(caches), redis, Some(worker))
        }
        None => match sub_svc_script {
            Some(script) => {
                let config = brasa_python::worker::PythonConfig {
                    scripts: Vec::new(),
                    policies: Vec::new(),
                    queue: 1024,
                    sub_svc: Some(script),
                };
                let worker = tokio::task::block_in_place(|| {
                    brasa_python::worker::PythonPolicies::start(config, dictionary, None, None)
                })
                .map_err(|err| anyhow::anyhow!("subscriber services script: {err}"))?;
                (None, None, Some(worker))
            }
            None => (None, None, None),
        },
    };
    let mut radius_config = resolved.radius;
    // Before the RADIUS engine is built: the SM may add its login-event observer to it.
    let sm = match resolved.subscriber_manager {
        Some(sm) => Some(sm_api::start(sm, radius_config.as_mut()).await?),
        None => None,
    };
    let mut coa = coa::CoaListeners::default();
    let subsvc = match (resolved.subscriber_services, &sm, &python) {
        (Some(config), Some(sm), Some(python)) => Some(subsvc::SubscriberServices::start(
            config,
            python.clone(),
            sm.service.clone(),
            dictionary_for_subsvc,
            radius_config.as_mut().map(|(engine, _)| engine),
            &mut coa,
        )?),
        _ => None,
    };
    // After the SM's observer, which it then wraps too.
    let rejects = radius_config
        .as_mut()
        .map(|(engine, _)| radius_rejects::install(engine));
    let radius = match radius_config {
        Some((engine_config, dictionary)) => {
            let mut seed = [0u8; 32];
            getrandom_seed(&mut seed);
            let engine = brasa_aaa::Engine::new(engine_config, dictionary, seed);
            let hooks = python
                .clone()
                .map(|p| p as Arc<dyn brasa_aaa_net::HookProcessor>);
            Some(Arc::new(
                brasa_aaa_net::RadiusService::start_with_hooks(engine, hooks).await?,
            ))
        }
        None => None,
    };
    let services = match resolved.services {
        Some(services) => Some(
            services::start(
                services,
                &resolved.data_dir,
                resolved.subscribers.as_ref().map(|s| s.defaults),
            )
            .await?,
        ),
        None => None,
    };
    let pcc = match (resolved.subscribers, &services) {
        (Some(config), Some(services)) => Some(pcc::start(config, services, &resolved.data_dir)?),
        _ => None,
    };
    let dynsvc = match (resolved.dynamic_services, &services) {
        (Some(config), Some(services)) => Some(
            dynsvc::start(
                config,
                services.clone(),
                dictionary_for_dynsvc,
                &resolved.data_dir,
                &mut coa,
            )
            .await?,
        ),
        _ => None,
    };
    coa.start().await?;
    let access = Arc::new(Access::new(resolved.api.access.clone()));
    let state = ApiState {
        services: services.clone(),
        dynsvc,
        pcc,
        radius,
        rejects,
        sm: sm.clone(),
        python,
        caches,
        redis,
        access: access.clone(),
        subsvc,
    };
    let shell = Arc::new(run_console_shell(&state, resolved.api.tls.is_some()));
    let sampled = state.clone();
    console::series::spawn_sampler(shell.series.clone(), move || {
        let counters = console::overview::run_counters(&sampled);
        async move { Some(counters) }
    });
    let router = Router::new()
        .route("/metrics", get(metrics))
        .nest("/api/v1/radius", radius_api::routes())
        .nest("/api/v1/sm", sm_api::routes())
        .nest("/api/v1/python", python_api::routes())
        .nest("/api/v1/services", services::routes())
        .nest("/api/v1/dynsvc", dynsvc::api::routes())
        .nest("/api/v1/pcc", pcc::api::routes())
        .nest("/api/v1/subsvc", subsvc::api::routes())
        .with_state(state.clone())
        .merge(console::router(shell, run_console_pages(&state), state));
    let router = match &services {
        Some(services) => router.merge(dataplane::port_routes(
            services.handle().clone(),
            access.clone(),
        )),
        None => router,
    };
    let api = mgmt::serve(&resolved.api, access, router).await?;
    Ok(Daemon { api, sm, services })
}

/// Something on the RADIUS path that sees a server's messages after the server's own policy
/// (the SM's login events, the subscriber services' Access-Accepts). It never drops a message:
/// an observer watches (and may strip what it consumes), the server's policy decides.
pub trait RadiusObserver: Send + Sync {
    /// Sees the message at one hook, after the server's own policy let it through.
    fn observe(&self, context: &mut brasa_aaa::HookContext<'_>);
}

/// Puts `observer` behind the policy of server `index` of `engine`: the server's own policy,
/// if any, runs first and its Drop wins (the observer never sees a dropped message). The
/// combined policy is named `what`, after the inner policy's name and a `+`.
pub fn observe_server(
    engine: &mut brasa_aaa::EngineConfig,
    index: usize,
    what: &str,
    observer: Arc<dyn RadiusObserver>,
) {
    let Some(server) = engine.servers.get_mut(index) else {
        return;
    };
    let inner = server.policy.and_then(|p| engine.policies.get(p).cloned());
    let name = match &inner {
        Some(p) => format!("{}+{what}", p.name()),
        None => what.to_owned(),
    };
    engine.policies.push(Arc::new(Observed {
        name,
        inner,
        observer,
    }));
    server.policy = Some(engine.policies.len() - 1);
}

/// A server's policy followed by an observer (see [`observe_server`]).
struct Observed {
    name: String,
    inner: Option<Arc<dyn brasa_aaa::Policy>>,
    observer: Arc<dyn RadiusObserver>,
}

impl brasa_aaa::Policy for Observed {
    fn name(&self) -> &str {
        &self.name
    }

    fn apply(&self, context: &mut brasa_aaa::HookContext<'_>) -> brasa_aaa::Verdict {
        if let Some(inner) = &self.inner {
            if inner.apply(context) == brasa_aaa::Verdict::Drop {
                return brasa_aaa::Verdict::Drop;
            }
        }
        self.observer.observe(context);
        brasa_aaa::Verdict::Continue
    }
}

/// What API handlers can reach.
#[derive(Clone)]
pub struct ApiState {
    /// The RADIUS component.
    pub radius: Option<Arc<brasa_aaa_net::RadiusService>>,
    /// The subscriber manager.
    pub sm: Option<Arc<sm_api::SmComponent>>,
    /// The Python worker (python-scripts and python-policies).
    pub python: Option<Arc<brasa_python::worker::PythonPolicies>>,
    /// The python-policy caches.
    pub caches: Option<Arc<brasa_python::cache_service::CacheService>>,
    /// The python-policy caches kept in Redis.
    pub redis: Option<Arc<brasa_cache_redis::RedisCaches>>,
    /// The last Access-Rejects relayed, when RADIUS runs.
    pub rejects: Option<Arc<radius_rejects::RecentRejects>>,
    /// Who may use the API and console; its login counters go to `/metrics`.
    pub access: Arc<Access>,
    /// The service data plane.
    pub services: Option<Arc<services::ServicesComponent>>,
    /// The dynamic data services.
    pub dynsvc: Option<Arc<dynsvc::DynServices>>,
    /// The data plane as the SM's enforcement point (subscriber services).
    pub pcc: Option<Arc<pcc::PccComponent>>,
    /// The subscriber services.
    pub subsvc: Option<Arc<subsvc::SubscriberServices>>,
}

/// The console of `brasa run`: the overview, and a page per component it runs.
fn run_console_shell(state: &ApiState, tls: bool) -> console::Shell {
    let mut nav = vec![console::overview::NAV];
    if state.radius.is_some() {
        nav.push(console::radius::NAV);
    }
    if state.python.is_some() || state.caches.is_some() {
        nav.push(console::python::NAV);
    }
    if state.sm.is_some() {
        nav.push(console::subscribers::NAV);
    }
    console::Shell {
        daemon: "brasa run",
        nav,
        access: state.access.clone(),
        series: Arc::new(console::series::Series::new(
            console::overview::RUN_SERIES.map(String::from).to_vec(),
        )),
        started: std::time::Instant::now(),
        tls,
    }
}

/// The console pages of `brasa run` (each answers 404 for a component that is not running,
/// as its JSON routes do).
fn run_console_pages(_state: &ApiState) -> Router<ApiState> {
    Router::new()
        .merge(console::overview::routes())
        .merge(console::radius::routes())
        .merge(console::python::routes())
        .merge(console::subscribers::routes())
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> axum::response::Response {
    let mut writer = crate::common::prom::PromWriter::default();
    if let Some(radius) = &state.radius {
        radius_api::write_metrics(&radius.stats(), &mut writer);
    }
    if let Some(sm) = &state.sm {
        let neighbors = sm_api::neighbor_views(sm).await;
        sm_api::write_metrics(sm, neighbors.as_deref(), &mut writer);
    }
    let worker = state.python.as_ref().map(|p| p.stats());
    let caches = state.caches.as_ref().map(|c| c.stats());
    let redis = match &state.redis {
        Some(redis) => Some(redis.stats().await),
        None => None,
    };
    python_api::write_metrics(worker.as_ref(), caches.as_ref(), &mut writer);
    if let Some(redis) = &redis {
        python_api::write_redis_metrics(redis, &mut writer);
    }
    if let Some(services) = &state.services {
        services::write_metrics(services, &mut writer).await;
    }
    if let Some(dynsvc) = &state.dynsvc {
        dynsvc::api::write_metrics(dynsvc, &mut writer).await;
    }
    if let Some(pcc) = &state.pcc {
        pcc::api::write_metrics(pcc, &mut writer).await;
    }
    if let Some(subsvc) = &state.subsvc {
        subsvc::api::write_metrics(subsvc, &mut writer);
    }
    state.access.write_metrics(&mut writer);
    mgmt::metrics_response(writer.finish())
}

/// Fills `seed` from the OS (Request Authenticators must be unpredictable, RFC 2865 §3).
fn getrandom_seed(seed: &mut [u8; 32]) {
    use rand::RngCore;
    // ThreadRng is a CSPRNG seeded from the OS.
    rand::rng().fill_bytes(seed);
}
