//! The running service configuration and its transactions.
//!
//! [`ServiceManager::apply`] takes a batch of changes (from the text form, the TOML form or an
//! API call) through every stage, all or nothing:
//!
//! 1. brasa-services validates the complete candidate configuration ([`ServiceConfig::prepare`]);
//! 2. the kernel plan runs (TAPs, VPRN namespaces, addresses, routes), rolled back on failure;
//! 3. the candidate is compiled into the data plane's tables ([`Compiler`]);
//! 4. the data plane installs the snapshot between two batches;
//! 5. only then the candidate becomes the running configuration and is journalled.
//!
//! A failure at 3 or 4 runs the kernel plan's inverse, so the kernel, the data plane and the
//! running configuration all stay as they were. Transactions are serialised.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use brasa_dataplane::pipeline::PortId;
use brasa_dataplane::service::ServiceTables;
use brasa_services::model::ServiceBody;
use brasa_services::{cli, Change, Environment, PortMap, ServiceConfig, TxnError};

use crate::compile::{CompileError, Compiler, GreNextHop, GreResolver, PortIds};
use crate::kernel::{Kernel, PlanError};

/// The data plane as the manager needs it.
pub trait ServicePlane: crate::kernel::TapHost {
    /// The data-plane port of an interface name (configured ports and TAPs).
    fn port_id(&self, name: &str) -> Option<PortId>;
    /// The TPID of the outer tag on an access port.
    fn outer_tpid(&self, name: &str) -> u16;
    /// Installs a snapshot between two batches; `Err` when the data plane is gone.
    fn install(&self, tables: Arc<ServiceTables>) -> Result<(), String>;
}

/// The plane seen as the compiler's port naming.
struct PlanePorts<'a>(&'a dyn ServicePlane);

impl PortIds for PlanePorts<'_> {
    fn port_id(&self, name: &str) -> Option<PortId> {
        self.0.port_id(name)
    }

    fn outer_tpid(&self, name: &str) -> u16 {
        self.0.outer_tpid(name)
    }
}

/// Why a transaction was refused; in every case nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The text form does not parse.
    #[error("{0}")]
    Parse(#[from] cli::ParseError),
    /// The configuration would break a rule.
    #[error("{0}")]
    Invalid(#[from] TxnError),
    /// The kernel refused a step (rolled back).
    #[error("{0}")]
    Kernel(#[from] PlanError),
    /// The data plane cannot carry the configuration.
    #[error("{0}")]
    Compile(#[from] CompileError),
    /// The data plane did not take the tables.
    #[error("the data plane did not take the new tables: {0}")]
    Install(String),
}

/// What a transaction did (or, dry, would do).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ApplySummary {
    /// Services added, changed, removed.
    pub services: Vec<String>,
    /// SAPs added, changed, removed.
    pub saps: Vec<String>,
    /// Filters added, changed, removed.
    pub filters: Vec<String>,
    /// QoS policies added, changed, removed.
    pub qos_policies: Vec<String>,
    /// The kernel steps, in order.
    pub kernel_steps: Vec<String>,
    /// True when nothing was changed because it was a dry run.
    pub dry_run: bool,
}

struct Running {
    config: ServiceConfig,
    compiler: Compiler,
}

/// The running service configuration of a daemon.
pub struct ServiceManager {
    running: tokio::sync::Mutex<Running>,
    env: Environment,
    port_map: PortMap,
    kernel: Kernel,
    plane: Arc<dyn ServicePlane>,
    /// The last next hop resolved per GRE tunnel (local, remote): kept when a later
    /// resolution fails, so that one unanswered ARP does not fail unrelated transactions.
    tunnel_hops: std::sync::Mutex<BTreeMap<(IpAddr, IpAddr), GreNextHop>>,
    journal: Option<PathBuf>,
}

/// The next hops of a transaction's GRE tunnels, resolved before it compiles.
struct ResolvedTunnels(BTreeMap<(IpAddr, IpAddr), Result<GreNextHop, String>>);

impl GreResolver for ResolvedTunnels {
    fn resolve(&self, local: IpAddr, remote: IpAddr) -> Result<GreNextHop, String> {
        self.0
            .get(&(local, remote))
            .cloned()
            .unwrap_or_else(|| Err(format!("the tunnel {local} → {remote} was not resolved")))
    }
}

impl ServiceManager {
    /// A manager with an empty configuration. `journal`, when given, receives every applied
    /// text transaction (JSON lines) so that [`replay`](Self::replay) can restore them.
    pub fn new(
        env: Environment,
        port_map: PortMap,
        kernel: Kernel,
        plane: Arc<dyn ServicePlane>,
        journal: Option<PathBuf>,
    ) -> Self {
        Self {
            running: tokio::sync::Mutex::new(Running {
                config: ServiceConfig::new(),
                compiler: Compiler::new(),
            }),
            env,
            port_map,
            kernel,
            plane,
            tunnel_hops: std::sync::Mutex::default(),
            journal,
        }
    }

    /// The data-plane port of an interface name.
    pub fn plane_port(&self, name: &str) -> Option<PortId> {
        self.plane.port_id(name)
    }

    /// The SR OS → Linux port map the text form uses.
    pub fn port_map(&self) -> &PortMap {
        &self.port_map
    }

    /// The ports and their encapsulations.
    pub fn environment(&self) -> &Environment {
        &self.env
    }

    /// Parses a text-form snippet and applies it (or, `dry_run`, only checks it).
    pub async fn apply_text(&self, text: &str, dry_run: bool) -> Result<ApplySummary, ApplyError> {
        let changes = cli::parse(text, &self.port_map)?;
        let summary = self.apply(&changes, dry_run).await?;
        if !dry_run {
            self.journal_append(text);
        }
        Ok(summary)
    }

    /// Applies a batch of changes, all or nothing (or, `dry_run`, only checks them).
    pub async fn apply(
        &self,
        changes: &[Change],
        dry_run: bool,
    ) -> Result<ApplySummary, ApplyError> {
        let mut running = self.running.lock().await;
        let txn = running.config.prepare(changes, &self.env)?;
        let mut summary = summarise(&txn);
        if dry_run {
            summary.dry_run = true;
            return Ok(summary);
        }
        let plan = txn.kernel_plan().clone();
        self.kernel.apply(&plan).await?;
        let tunnels = self.resolve_tunnels(txn.config()).await;
        let ports = PlanePorts(&*self.plane);
        let compiled = match running
            .compiler
            .prepare(txn.config(), &self.env, &ports, &tunnels)
        {
            Ok(compiled) => compiled,
            Err(error) => {
                self.undo(&plan).await;
                return Err(error.into());
            }
        };
        if let Err(error) = self.plane.install(compiled.tables.clone()) {
            self.undo(&plan).await;
            return Err(ApplyError::Install(error));
        }
        running.compiler.commit(compiled);
        // The lock is held since prepare: nothing else committed in between.
        if running.config.commit(txn).is_err() {
            tracing::error!("a service transaction went stale under the lock");
        }
        Ok(summary)
    }

    /// Resolves the next hop of every GRE tunnel of `config` from the kernel; the outgoing
    /// interface must be one of the data plane's ports.
    async fn resolve_tunnels(&self, config: &ServiceConfig) -> ResolvedTunnels {
        let tunnels: Vec<(IpAddr, IpAddr)> = config
            .services()
            .filter_map(|(_, service)| match &service.body {
                ServiceBody::Epipe(epipe) => epipe.gre_tunnel.map(|t| (t.local, t.remote)),
                _ => None,
            })
            .collect();
        let mut resolved = BTreeMap::new();
        for (local, remote) in tunnels {
            if resolved.contains_key(&(local, remote)) {
                continue;
            }
            let hop = match self.kernel.tunnel_hop(local, remote).await {
                Ok(hop) => match self.plane.port_id(&hop.interface) {
                    Some(port) => Ok(GreNextHop {
                        port,
                        vlan: None,
                        mac: brasa_dataplane::wire::MacAddr(hop.mac),
                        mtu: hop.mtu,
                    }),
                    None => Err(format!(
                        "the route to {remote} leaves through {}, which is not a data-plane port",
                        hop.interface
                    )),
                },
                Err(reason) => Err(reason),
            };
            let mut known = self
                .tunnel_hops
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let hop = match hop {
                Ok(hop) => {
                    known.insert((local, remote), hop);
                    Ok(hop)
                }
                Err(reason) => match known.get(&(local, remote)) {
                    Some(previous) => {
                        tracing::warn!(%local, %remote, %reason, "keeping the tunnel's last next hop");
                        Ok(*previous)
                    }
                    None => Err(reason),
                },
            };
            resolved.insert((local, remote), hop);
        }
        ResolvedTunnels(resolved)
    }

    async fn undo(&self, plan: &brasa_services::KernelPlan) {
        if let Err((step, error)) = self.kernel.run(&plan.inverse()).await {
            tracing::error!(step, %error, "could not undo a kernel plan; a restart reconciles it");
        }
    }

    /// Reads the running configuration and the compiler (which maps configuration objects to
    /// data-plane ones) under the transaction lock.
    pub async fn read<T>(&self, f: impl FnOnce(&ServiceConfig, &Compiler) -> T) -> T {
        let running = self.running.lock().await;
        f(&running.config, &running.compiler)
    }

    /// The running configuration in the text form.
    pub async fn export(&self) -> String {
        self.read(|config, _| cli::export(config)).await
    }

    /// Removes what a crash left in the kernel (see
    /// [`reconcile`](brasa_services::kernel::reconcile)); call once at start, before any
    /// transaction.
    pub async fn reconcile(&self) -> Result<usize, ApplyError> {
        let routes = self
            .kernel
            .brasa_routes()
            .await
            .map_err(|error| ApplyError::Install(error.to_string()))?;
        let stale = routes.len();
        let plan = brasa_services::kernel::reconcile(&routes, &ServiceConfig::new());
        self.kernel.apply(&plan).await?;
        Ok(stale)
    }

    /// Removes from the kernel everything the running configuration put there (routes, VPRN
    /// namespaces, TAPs), keeping the configuration and its journal: what a clean exit does,
    /// so that a stopped brasa leaves the kernel as it found it and the next start rebuilds it.
    pub async fn teardown(&self) -> Result<(), ApplyError> {
        let running = self.running.lock().await;
        let plan = brasa_services::kernel::plan(
            &brasa_services::kernel::desired(&running.config),
            &brasa_services::kernel::desired(&ServiceConfig::new()),
        );
        self.kernel.apply(&plan).await?;
        Ok(())
    }

    /// Replays the journal of applied transactions; a transaction that no longer applies
    /// (the static configuration changed under it) is skipped and reported.
    pub async fn replay(&self) -> Vec<(usize, String)> {
        let Some(path) = &self.journal else {
            return Vec::new();
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return Vec::new();
        };
        let mut skipped = Vec::new();
        for (line, record) in text.lines().enumerate() {
            // A torn last line (a crash while writing) is not a transaction.
            let Ok(entry) = serde_json::from_str::<JournalEntry>(record) else {
                continue;
            };
            let applied = match cli::parse(&entry.text, &self.port_map) {
                Ok(changes) => self.apply(&changes, false).await.map(drop),
                Err(error) => Err(error.into()),
            };
            if let Err(error) = applied {
                tracing::warn!(line = line + 1, %error, "a journalled service change no longer applies");
                skipped.push((line + 1, error.to_string()));
            }
        }
        skipped
    }

    fn journal_append(&self, text: &str) {
        let Some(path) = &self.journal else {
            return;
        };
        let entry = JournalEntry {
            text: text.to_string(),
        };
        let Ok(mut line) = serde_json::to_string(&entry) else {
            return;
        };
        line.push('\n');
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| {
                file.write_all(line.as_bytes())?;
                file.sync_data()
            });
        if let Err(error) = written {
            tracing::error!(path = %path.display(), %error, "could not journal a service change");
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct JournalEntry {
    text: String,
}

fn summarise(txn: &brasa_services::Transaction) -> ApplySummary {
    let delta = |d: &brasa_services::Delta| format!("{d:?}").to_lowercase();
    let diff = txn.diff();
    ApplySummary {
        services: diff
            .services
            .iter()
            .map(|(id, d)| format!("{} service {id}", delta(d)))
            .collect(),
        saps: diff
            .saps
            .iter()
            .map(|(id, d)| format!("{} sap {id}", delta(d)))
            .collect(),
        filters: diff
            .filters
            .iter()
            .map(|(id, d)| format!("{} {id}", delta(d)))
            .collect(),
        qos_policies: diff
            .qos_policies
            .iter()
            .map(|(id, d)| format!("{} {id}", delta(d)))
            .collect(),
        kernel_steps: txn
            .kernel_plan()
            .steps
            .iter()
            .map(ToString::to_string)
            .collect(),
        dry_run: false,
    }
}
