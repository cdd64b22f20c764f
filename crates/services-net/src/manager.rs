//! The running service configuration and its transactions.
//!
//! [`ServiceManager::apply`] takes a batch of changes (from the text form, the TOML form or an
//! API call) through every stage, all or nothing:
//!
//! 1. brasa-services validates the complete candidate configuration ([`ServiceConfig::prepare`]);
//! 2. the kernel plan runs (TAPs, VPRN namespaces, addresses, routes), rolled back on failure;
//! 3. what the transaction changed is compiled into the data plane's tables
//!    ([`Compiler::prepare_transaction`]: its cost follows the change, not the configuration);
//! 4. the data plane installs the snapshot between two batches;
//! 5. only then the candidate becomes the running configuration and is journalled.
//!
//! A failure at 3 or 4 runs the kernel plan's inverse, so the kernel, the data plane and the
//! running configuration all stay as they were. Transactions are serialised.
//!
//! [`ServiceManager::stage_text`] does 1–3 and makes the candidate running without step 4:
//! a caller with many transactions in a row (the dynamic data services' setups) installs them
//! with one data-plane job ([`ServiceManager::install_staged`]), whose snapshot the data plane
//! reconciles over the slots they changed. Each stays all or nothing: a refused one changes
//! nothing, and a failed install takes back every staged one, so the kernel, the data plane,
//! the running configuration and the journal are as before the first of them. The next
//! installing transaction installs the staged ones with it. Each staged transaction has a
//! [`StageTicket`]; a failed install says which it took back ([`StagedInstallError`]), so
//! a stager whose transactions another apply installed in between knows they are live.
//!
//! The journal is written in the order the transactions committed. A [`Durability::Synced`]
//! transaction is on disk when its apply returns; [`Durability::Deferred`] ones are queued
//! and [`ServiceManager::sync_journal`] writes the queue with one `fdatasync` (group commit:
//! a caller that applies many transactions in a row pays one disk sync, not one each).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use brasa_dataplane::pipeline::PortId;
use brasa_dataplane::service::ServiceTables;
use brasa_services::{cli, Change, Environment, PortMap, ServiceConfig, TxnError};

use crate::compile::{CompileError, Compiler, GreNextHop, GreResolver, PortIds, StageError};
use crate::journal::Journal;
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

/// A staged transaction's place in the order [`ServiceManager::stage_text`] staged them.
///
/// Every staged transaction is either installed (by [`ServiceManager::install_staged`] or by
/// an installing transaction after it) or taken back by a failed `install_staged`, which
/// says from which ticket on ([`StagedInstallError::first_taken_back`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StageTicket(u64);

/// Why [`ServiceManager::install_staged`] failed, and which staged transactions it took back.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct StagedInstallError {
    /// Why the data plane did not take them.
    #[source]
    pub error: ApplyError,
    /// The first transaction taken back: it and every one staged after it are undone. The
    /// ones staged before it and after the caller's previous `install_staged` were
    /// installed and journalled by an installing transaction in between.
    pub first_taken_back: StageTicket,
}

impl StagedInstallError {
    /// Whether the staged transaction `ticket`, staged after the caller's previous
    /// `install_staged`, is installed (another apply took it) rather than taken back.
    pub fn was_installed(&self, ticket: StageTicket) -> bool {
        ticket < self.first_taken_back
    }
}

/// When a transaction's journal entry reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written and synced, with every deferred entry before it, before the apply returns.
    Synced,
    /// Queued in commit order; on disk after the next [`ServiceManager::sync_journal`] (or
    /// the next synced transaction). The transaction is live at once: the caller must not
    /// report it done to anyone before that sync.
    Deferred,
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
    /// The configuration the journal applies to: the static one, as [`ServiceManager::replay`]
    /// found it.
    journal_base: ServiceConfig,
    compiler: Compiler,
    /// The transactions committed since the data plane's last install.
    staged: Option<Staged>,
    /// The ticket of the next staged transaction.
    next_ticket: StageTicket,
}

/// Transactions running but not installed yet, and what takes them back.
struct Staged {
    /// The ticket of the first of them; the others follow it in order.
    first: StageTicket,
    /// The configuration and the compiler as the data plane has them.
    installed_config: ServiceConfig,
    installed_compiler: Compiler,
    /// The kernel plans the staged transactions ran, in commit order.
    plans: Vec<brasa_services::KernelPlan>,
    /// Their journal entries (the text of each), in commit order: queued once installed.
    texts: Vec<String>,
    /// Set when the compiler could not derive them again after a refused one
    /// ([`StageError::Broken`]): the compiler is `installed_compiler` while the running
    /// configuration still has them, so no transaction may run until [`install_staged`]
    /// takes them all back.
    ///
    /// [`install_staged`]: ServiceManager::install_staged
    broken: Option<CompileError>,
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
    journal: Option<Arc<Mutex<Journal>>>,
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
                journal_base: ServiceConfig::new(),
                compiler: Compiler::new(),
                staged: None,
                next_ticket: StageTicket(0),
            }),
            env,
            port_map,
            kernel,
            plane,
            tunnel_hops: std::sync::Mutex::default(),
            journal: journal.map(|path| Arc::new(Mutex::new(Journal::new(path)))),
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

    /// Parses a text-form snippet and applies it (or, `dry_run`, only checks it); applied, it
    /// is journalled and synced before this returns.
    pub async fn apply_text(&self, text: &str, dry_run: bool) -> Result<ApplySummary, ApplyError> {
        self.apply_text_as(text, dry_run, Durability::Synced).await
    }

    /// [`apply_text`](Self::apply_text) with its journal entry written as `durability` says.
    pub async fn apply_text_as(
        &self,
        text: &str,
        dry_run: bool,
        durability: Durability,
    ) -> Result<ApplySummary, ApplyError> {
        let changes = cli::parse(text, &self.port_map)?;
        let mut running = self.running.lock().await;
        let summary = self
            .apply_locked(&mut running, &changes, dry_run, true)
            .await?;
        if dry_run {
            return Ok(summary);
        }
        // Queued under the transaction lock, so the journal keeps the commit order.
        self.journal_queue(text);
        drop(running);
        if durability == Durability::Synced {
            self.sync_journal().await;
        }
        Ok(summary)
    }

    /// Parses a text-form snippet and applies it to the running configuration, compiled but
    /// not installed: the data plane takes it with the next [`install_staged`] (or the next
    /// transaction that installs), and only then is it journalled, as
    /// [`Durability::Deferred`]. Until then it does not forward: the caller must not report
    /// it done. Returns its ticket, which tells whether a failed install took it back. `Err`
    /// changes nothing.
    ///
    /// [`install_staged`]: Self::install_staged
    pub async fn stage_text(&self, text: &str) -> Result<(StageTicket, ApplySummary), ApplyError> {
        let changes = cli::parse(text, &self.port_map)?;
        let mut running = self.running.lock().await;
        let summary = self
            .apply_locked(&mut running, &changes, false, false)
            .await?;
        let ticket = running.next_ticket;
        running.next_ticket = StageTicket(ticket.0 + 1);
        if let Some(staged) = &mut running.staged {
            staged.texts.push(text.to_owned());
        }
        Ok((ticket, summary))
    }

    /// Installs the transactions staged since the last install with one snapshot and queues
    /// their journal entries (on disk after the next [`sync_journal`](Self::sync_journal));
    /// returns how many there were (0 when an installing transaction took them already).
    /// `Err` takes every one of them back, the last first: the kernel, the data plane, the
    /// running configuration and the journal are as before the first of them, whose ticket
    /// it gives.
    pub async fn install_staged(&self) -> Result<usize, StagedInstallError> {
        let mut running = self.running.lock().await;
        let Some(staged) = running.staged.take() else {
            return Ok(0);
        };
        let installed = match &staged.broken {
            Some(broken) => Err(ApplyError::Compile(broken.clone())),
            None => self
                .plane
                .install(running.compiler.build())
                .map_err(ApplyError::Install),
        };
        if let Err(error) = installed {
            running.config = staged.installed_config;
            running.compiler = staged.installed_compiler;
            for plan in staged.plans.iter().rev() {
                self.undo(plan).await;
            }
            return Err(StagedInstallError {
                error,
                first_taken_back: staged.first,
            });
        }
        for text in &staged.texts {
            self.journal_queue(text);
        }
        Ok(staged.texts.len())
    }

    /// Writes the journal entries of the deferred transactions committed so far, with one
    /// `fdatasync`. A failure is logged: the transactions stay applied, but a restart will
    /// not restore them.
    pub async fn sync_journal(&self) {
        let Some(journal) = self.journal.clone() else {
            return;
        };
        let flushed = on_journal(journal, |journal| {
            let path = journal.path().to_owned();
            journal.flush().map_err(|error| (path, error))
        })
        .await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err((path, error))) => {
                tracing::error!(path = %path.display(), %error, "could not journal service changes")
            }
            Err(error) => tracing::error!(%error, "the journal writer stopped"),
        }
    }

    /// Applies a batch of changes, all or nothing (or, `dry_run`, only checks them). The
    /// batch is not journalled (it is the static configuration or a replay).
    pub async fn apply(
        &self,
        changes: &[Change],
        dry_run: bool,
    ) -> Result<ApplySummary, ApplyError> {
        let mut running = self.running.lock().await;
        self.apply_locked(&mut running, changes, dry_run, true)
            .await
    }

    /// Prepares, plans and compiles a transaction and, with `install`, installs it (with the
    /// staged ones before it) and makes it running; without, makes it running and staged.
    async fn apply_locked(
        &self,
        running: &mut Running,
        changes: &[Change],
        dry_run: bool,
        install: bool,
    ) -> Result<ApplySummary, ApplyError> {
        let txn = running.config.prepare(changes, &self.env)?;
        let mut summary = summarise(&txn);
        if dry_run {
            summary.dry_run = true;
            return Ok(summary);
        }
        if let Some(broken) = running.staged.as_ref().and_then(|s| s.broken.clone()) {
            return Err(broken.into());
        }
        let plan = txn.kernel_plan().clone();
        self.kernel.apply(&plan).await?;
        let tunnels = self
            .resolve_tunnels(running.compiler.tunnels_of(&txn))
            .await;
        let ports = PlanePorts(&*self.plane);
        if !install {
            return self
                .stage_locked(running, txn, plan, &tunnels, summary)
                .await;
        }
        let mut compiled = match running.compiler.prepare_transaction(
            &running.config,
            &txn,
            &self.env,
            &ports,
            &tunnels,
        ) {
            Ok(compiled) => compiled,
            Err(error) => {
                self.undo(&plan).await;
                return Err(error.into());
            }
        };
        if let Err(error) = self.plane.install(compiled.tables()) {
            self.undo(&plan).await;
            return Err(ApplyError::Install(error));
        }
        // The staged transactions were installed with it: journalled before it.
        if let Some(staged) = running.staged.take() {
            for text in &staged.texts {
                self.journal_queue(text);
            }
        }
        running.compiler.commit(compiled);
        Self::commit_config(running, txn);
        Ok(summary)
    }

    /// The staging half of [`apply_locked`](Self::apply_locked): compiles `txn` into the
    /// compiler in place ([`Compiler::stage_transaction`]) and makes it running and staged.
    async fn stage_locked(
        &self,
        running: &mut Running,
        txn: brasa_services::Transaction,
        plan: brasa_services::KernelPlan,
        tunnels: &ResolvedTunnels,
        summary: ApplySummary,
    ) -> Result<ApplySummary, ApplyError> {
        let Running {
            config,
            compiler,
            staged,
            next_ticket,
            ..
        } = running;
        let first = *next_ticket;
        let pending = staged.get_or_insert_with(|| Staged {
            first,
            installed_config: config.clone(),
            installed_compiler: compiler.clone(),
            plans: Vec::new(),
            texts: Vec::new(),
            broken: None,
        });
        let ports = PlanePorts(&*self.plane);
        let staging = compiler.stage_transaction(
            config,
            &txn,
            &self.env,
            &ports,
            tunnels,
            &pending.installed_compiler,
        );
        if let Err(error) = staging {
            self.undo(&plan).await;
            let error = match error {
                StageError::Refused(error) => error,
                StageError::Broken { refused, again } => {
                    tracing::error!(%refused, %again, "the staged service transactions no longer compile; they will be taken back");
                    pending.broken = Some(again);
                    refused
                }
            };
            if pending.plans.is_empty() && pending.broken.is_none() {
                *staged = None;
            }
            return Err(error.into());
        }
        pending.plans.push(plan);
        Self::commit_config(running, txn);
        Ok(summary)
    }

    /// Makes a compiled transaction's configuration the running one.
    fn commit_config(running: &mut Running, txn: brasa_services::Transaction) {
        // The lock is held since prepare: nothing else committed in between.
        if running.config.commit(txn).is_err() {
            tracing::error!("a service transaction went stale under the lock");
        }
    }

    /// Resolves the next hops of `tunnels` (local, remote) from the kernel; the outgoing
    /// interface must be one of the data plane's ports.
    async fn resolve_tunnels(&self, tunnels: BTreeSet<(IpAddr, IpAddr)>) -> ResolvedTunnels {
        let mut resolved = BTreeMap::new();
        for (local, remote) in tunnels {
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

    /// Replays the journal of applied transactions over the running configuration, which
    /// becomes the journal's base (call it once, after the static configuration); a
    /// transaction that no longer applies (the static configuration changed under it) is
    /// skipped and reported with its line.
    pub async fn replay(&self) -> Vec<(usize, String)> {
        {
            let mut running = self.running.lock().await;
            running.journal_base = running.config.clone();
        }
        let Some(journal) = self.journal.clone() else {
            return Vec::new();
        };
        let read = on_journal(journal, |journal| {
            let path = journal.path().to_owned();
            journal.read().map_err(|error| (path, error))
        })
        .await;
        let entries = match read {
            Ok(Ok(entries)) => entries,
            Ok(Err((path, error))) => {
                tracing::error!(path = %path.display(), %error, "could not read the service journal");
                return vec![(0, format!("could not read {}: {error}", path.display()))];
            }
            Err(error) => return vec![(0, format!("the journal reader stopped: {error}"))],
        };
        let mut skipped = Vec::new();
        for (line, text) in entries {
            let applied = match cli::parse(&text, &self.port_map) {
                Ok(changes) => self.apply(&changes, false).await.map(drop),
                Err(error) => Err(error.into()),
            };
            if let Err(error) = applied {
                tracing::warn!(line, %error, "a journalled service change no longer applies");
                skipped.push((line, error.to_string()));
            }
        }
        skipped
    }

    /// [`compact_journal`](Self::compact_journal) when the journal has grown to twice what
    /// the last compaction wrote, and to at least [`COMPACT_AFTER`](crate::journal::COMPACT_AFTER)
    /// entries; `Ok(None)` when it has not. After a failure the next try waits until the
    /// journal has doubled.
    pub async fn compact_journal_if_due(&self) -> Result<Option<Compaction>, CompactError> {
        let due = (self.journal.as_ref()).is_some_and(|journal| lock_journal(journal).due());
        if !due {
            return Ok(None);
        }
        let compacted = self.compact_journal().await;
        if compacted.is_err() {
            if let Some(journal) = &self.journal {
                lock_journal(journal).postpone();
            }
        }
        compacted.map(Some)
    }

    /// Replaces the journal's entries by the transactions that take its base (the static
    /// configuration) to the configuration the data plane has
    /// ([`brasa_services::cli::compact`], checked by applying them), keeping the entries
    /// committed meanwhile after them. Transactions go on while the new journal is computed;
    /// only the flush that fixes where the old entries end holds them up.
    pub async fn compact_journal(&self) -> Result<Compaction, CompactError> {
        let Some(journal) = self.journal.clone() else {
            return Ok(Compaction::default());
        };
        let (base, installed, cut, before) = {
            let running = self.running.lock().await;
            // Staged transactions are not journalled yet: the journal ends where the data
            // plane's configuration does.
            let installed = running
                .staged
                .as_ref()
                .map_or(&running.config, |staged| &staged.installed_config)
                .clone();
            let base = running.journal_base.clone();
            let journal = journal.clone();
            // Under the transaction lock, so that every entry of `installed` is before `cut`
            // and every later one after it.
            let (cut, before) = on_journal(journal, |journal| {
                journal.flush()?;
                Ok::<_, std::io::Error>((journal.len()?, journal.entries()))
            })
            .await
            .map_err(|error| CompactError::Stopped(error.to_string()))??;
            (base, installed, cut, before)
        };
        let env = self.env.clone();
        let ports = self.port_map.clone();
        let after = tokio::task::spawn_blocking(move || {
            let texts = cli::compact(&base, &installed, &env, &ports)?;
            let mut journal = lock_journal(&journal);
            journal.rewrite(cut, &texts)?;
            Ok::<_, CompactError>(journal.entries())
        })
        .await
        .map_err(|error| CompactError::Stopped(error.to_string()))??;
        tracing::info!(before, after, "compacted the service journal");
        Ok(Compaction { before, after })
    }

    fn journal_queue(&self, text: &str) {
        if let Some(journal) = &self.journal {
            lock_journal(journal).queue(text);
        }
    }
}

/// The journal under its lock. A panic while it was held leaves the file as valid as a crash
/// would (whole lines, or a torn last one that the next read cuts), so a poisoned lock is
/// taken all the same.
fn lock_journal(journal: &Mutex<Journal>) -> std::sync::MutexGuard<'_, Journal> {
    journal
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` on the journal on a blocking thread: its file I/O must not hold a runtime worker.
async fn on_journal<T: Send + 'static>(
    journal: Arc<Mutex<Journal>>,
    f: impl FnOnce(&mut Journal) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || f(&mut lock_journal(&journal))).await
}

/// What a journal compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Compaction {
    /// Entries before.
    pub before: usize,
    /// Entries after: the compacted ones and those committed while it ran.
    pub after: usize,
}

/// Why the journal was not compacted; it is then as before.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Reading or writing the journal failed.
    #[error("the service journal: {0}")]
    Io(#[from] std::io::Error),
    /// No text reproduces the running configuration from the base (a defect, reported).
    #[error("{0}")]
    Transition(#[from] brasa_services::cli::TransitionError),
    /// The blocking task stopped.
    #[error("the journal task stopped: {0}")]
    Stopped(String),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalEntry;
    use brasa_dataplane::service::{ServiceStage, ServiceStageConfig};
    use brasa_services::{Encapsulation, PortName, Ports};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// An in-process service stage as the data plane; `gone` makes installs fail as when
    /// the worker has stopped.
    struct StagePlane {
        stage: Mutex<ServiceStage>,
        installs: AtomicUsize,
        gone: AtomicBool,
    }

    impl crate::kernel::TapHost for StagePlane {
        fn create_tap(&self, name: &str) -> Result<(), String> {
            Err(format!("no TAP {name} here"))
        }

        fn delete_tap(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
    }

    impl ServicePlane for StagePlane {
        fn port_id(&self, name: &str) -> Option<PortId> {
            match name {
                "eth1" => Some(0),
                "eth2" => Some(1),
                _ => None,
            }
        }

        fn outer_tpid(&self, _: &str) -> u16 {
            brasa_dataplane::wire::EtherType::VLAN
        }

        fn install(&self, tables: Arc<ServiceTables>) -> Result<(), String> {
            if self.gone.load(Ordering::Relaxed) {
                return Err("the data plane worker did not answer".into());
            }
            self.installs.fetch_add(1, Ordering::Relaxed);
            self.stage.lock().unwrap().install(tables, 0);
            Ok(())
        }
    }

    impl StagePlane {
        fn services(&self) -> usize {
            let stage = self.stage.lock().unwrap();
            stage.tables().map_or(0, |t| t.service_count())
        }
    }

    fn epipe(n: u32) -> String {
        format!(
            "configure service epipe {} customer 1 create sap eth1:3000.{n} create exit \
             sap eth2:{n} create exit no shutdown exit all\n",
            5000 + n
        )
    }

    fn journal_lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let entry: JournalEntry = serde_json::from_str(line).unwrap();
                entry.text
            })
            .collect()
    }

    fn stage_plane() -> Arc<StagePlane> {
        Arc::new(StagePlane {
            stage: Mutex::new(ServiceStage::new(ServiceStageConfig::default())),
            installs: AtomicUsize::new(0),
            gone: AtomicBool::new(false),
        })
    }

    fn manager_on(plane: &Arc<StagePlane>, journal: &std::path::Path) -> ServiceManager {
        let ports: Ports = [
            (PortName::new("eth1").unwrap(), Encapsulation::Qinq),
            (PortName::new("eth2").unwrap(), Encapsulation::Dot1q),
        ]
        .into_iter()
        .collect();
        ServiceManager::new(
            Environment::new(ports),
            PortMap::new(),
            Kernel::connect(plane.clone()).unwrap(),
            plane.clone(),
            Some(journal.to_owned()),
        )
    }

    fn removal(n: u32) -> String {
        format!(
            "configure service epipe {} no sap eth1:3000.{n} no sap eth2:{n} shutdown exit \
             no epipe {} exit all\n",
            5000 + n,
            5000 + n
        )
    }

    #[tokio::test]
    async fn a_compacted_journal_restores_the_same_configuration_over_the_static_one() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let statics = cli::parse(&(epipe(1) + &epipe(2)), &PortMap::new()).unwrap();
        let plane = stage_plane();
        let manager = manager_on(&plane, &journal);
        manager.apply(&statics, false).await.unwrap();
        assert!(manager.replay().await.is_empty());
        // Churn: services come and go; one static service is removed, one changed.
        for round in 0..5 {
            for n in 10..30 {
                manager.apply_text(&epipe(n), false).await.unwrap();
            }
            for n in 10..30 {
                if round == 4 && n % 3 == 0 {
                    continue;
                }
                manager.apply_text(&removal(n), false).await.unwrap();
            }
        }
        manager.apply_text(&removal(1), false).await.unwrap();
        let described = "configure service epipe 5002 description \"kept\" exit all\n";
        manager.apply_text(described, false).await.unwrap();
        // Staged, not installed: not in the compacted journal, journalled after it.
        manager.stage_text(&epipe(40)).await.unwrap();
        let before = journal_lines(&journal).len();
        // 100 set-ups, 94 removals, the static service removed, the other described.
        assert_eq!(before, 196);
        let compaction = manager.compact_journal().await.unwrap();
        assert_eq!(compaction.before, before);
        // The removed static service, the changed one, and the six churned ones left.
        assert_eq!(compaction.after, 1 + 1 + 6);
        assert_eq!(journal_lines(&journal).len(), 8);
        assert_eq!(manager.install_staged().await.unwrap(), 1);
        manager.sync_journal().await;
        assert_eq!(journal_lines(&journal).len(), 9);
        let running = manager.export().await;

        // A restart: the static configuration, then the compacted journal.
        let plane = stage_plane();
        let restarted = manager_on(&plane, &journal);
        restarted.apply(&statics, false).await.unwrap();
        assert!(restarted.replay().await.is_empty());
        assert_eq!(restarted.export().await, running);
        assert_eq!(plane.services(), 1 + 6 + 1);
        assert!(restarted.compact_journal_if_due().await.unwrap().is_none());
    }

    /// A manager over a [`StagePlane`] whose install can be made to fail, journalling into a
    /// temporary directory; the directory (kept while the test runs), the journal's path, the
    /// manager and the plane.
    fn staging_manager() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        ServiceManager,
        Arc<StagePlane>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.jsonl");
        let plane = stage_plane();
        let manager = manager_on(&plane, &journal);
        (dir, journal, manager, plane)
    }

    /// How many services the manager runs.
    async fn running_services(manager: &ServiceManager) -> usize {
        manager.read(|config, _| config.services().count()).await
    }

    #[tokio::test]
    async fn staged_transactions_install_together_and_a_failed_install_takes_them_back() {
        let (_dir, journal, manager, plane) = staging_manager();
        let running = || running_services(&manager);

        // Three setups staged: running, neither installed nor journalled.
        for n in 1..=3 {
            manager.stage_text(&epipe(n)).await.unwrap();
        }
        // A refused one changes nothing (the SAP is taken).
        let taken = epipe(3).replace("epipe 5003", "epipe 5009");
        assert!(manager.stage_text(&taken).await.is_err());
        assert_eq!(running().await, 3);
        assert_eq!(plane.installs.load(Ordering::Relaxed), 0);
        manager.sync_journal().await;
        assert!(journal_lines(&journal).is_empty());

        // One install for the three, then one journal entry each, in order.
        assert_eq!(manager.install_staged().await.unwrap(), 3);
        assert_eq!(plane.installs.load(Ordering::Relaxed), 1);
        assert_eq!(plane.services(), 3);
        manager.sync_journal().await;
        assert_eq!(journal_lines(&journal), [epipe(1), epipe(2), epipe(3)]);
        assert_eq!(manager.install_staged().await.unwrap(), 0);

        // The data plane gone: the staged ones are taken back, nothing else.
        for n in 4..=5 {
            manager.stage_text(&epipe(n)).await.unwrap();
        }
        plane.gone.store(true, Ordering::Relaxed);
        assert!(matches!(
            manager.install_staged().await,
            Err(StagedInstallError {
                error: ApplyError::Install(_),
                ..
            })
        ));
        assert_eq!(running().await, 3);
        assert_eq!(plane.services(), 3);
        manager.sync_journal().await;
        assert_eq!(journal_lines(&journal).len(), 3);

        // Taken back, they apply again; an installing transaction installs the staged one
        // before it, and both are journalled in commit order.
        plane.gone.store(false, Ordering::Relaxed);
        manager.stage_text(&epipe(4)).await.unwrap();
        manager.apply_text(&epipe(5), false).await.unwrap();
        assert_eq!(plane.installs.load(Ordering::Relaxed), 2);
        assert_eq!(plane.services(), 5);
        assert_eq!(manager.install_staged().await.unwrap(), 0);
        assert_eq!(journal_lines(&journal)[3..], [epipe(4), epipe(5)]);
    }

    #[tokio::test]
    async fn a_failed_install_names_the_staged_ones_another_apply_installed() {
        let (_dir, journal, manager, plane) = staging_manager();
        let running = || running_services(&manager);

        // The stager stages two; an operator's apply installs and journals them with its own.
        let (first, _) = manager.stage_text(&epipe(1)).await.unwrap();
        let (second, _) = manager.stage_text(&epipe(2)).await.unwrap();
        assert!(first < second);
        manager.apply_text(&epipe(3), false).await.unwrap();
        // The stager stages one more, and its install fails.
        let (third, _) = manager.stage_text(&epipe(4)).await.unwrap();
        plane.gone.store(true, Ordering::Relaxed);
        let failed = manager.install_staged().await.unwrap_err();
        assert!(matches!(failed.error, ApplyError::Install(_)));
        assert_eq!(failed.first_taken_back, third);
        assert!(failed.was_installed(first));
        assert!(failed.was_installed(second));
        assert!(!failed.was_installed(third));

        // Exactly the one taken back is gone, from the running configuration, the data
        // plane and the journal.
        assert_eq!(running().await, 3);
        assert_eq!(plane.services(), 3);
        manager.sync_journal().await;
        assert_eq!(journal_lines(&journal), [epipe(1), epipe(2), epipe(3)]);

        // The next staged one has a later ticket than every taken back.
        plane.gone.store(false, Ordering::Relaxed);
        let (fourth, _) = manager.stage_text(&epipe(4)).await.unwrap();
        assert!(fourth > third);
        assert_eq!(manager.install_staged().await.unwrap(), 1);
        assert_eq!(plane.services(), 4);
    }
}
