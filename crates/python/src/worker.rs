//! The Python worker: runs python-policy scripts for the RADIUS engine's external hook points.
//!
//! CPython runs one thread at a time (the GIL), so every script runs on one dedicated thread fed
//! by a bounded queue. The RADIUS tasks only enqueue ([`HookProcessor::submit`] never blocks) and
//! the engine parks the exchange meanwhile, so packets of servers without Python — and every
//! other packet of the same server — go on while a script runs. When the queue is full the
//! packet gets the script's `action-on-fail` at once (counted as overload) instead of waiting.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self as std_mpsc, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use brasa_aaa::{Direction, HookRequest, HookResult};
use brasa_aaa_net::{HookCompletion, HookProcessor};
use brasa_cache::{CacheError, Millis};
use brasa_cache_redis::{PolicyHandle, RedisCaches};
use brasa_radius::{Code, Dictionary};
use brasa_script::{
    FailureKind, Outcome, RunOptions, Script, ScriptCache, ScriptHost, SubSvcReport, Verdict,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cache_service::CacheService;
use crate::util::lock;
use crate::wall_clock_ms;

/// What happens to a packet whose script failed (SR OS `action-on-fail`; `drop` by default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionOnFail {
    /// Discard the packet.
    #[default]
    Drop,
    /// Send the packet on unchanged.
    Passthrough,
}

impl ActionOnFail {
    /// The configuration and display name (`drop`, `passthrough`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOnFail::Drop => "drop",
            ActionOnFail::Passthrough => "passthrough",
        }
    }
}

/// A python-script object.
#[derive(Clone, Debug)]
pub struct ScriptSpec {
    /// Name (`python-script NAME`).
    pub name: String,
    /// The file (`primary-url`).
    pub path: PathBuf,
    /// What a failed run does to the packet.
    pub action_on_fail: ActionOnFail,
    /// Longest a run may take.
    pub time_limit: Duration,
    /// Log each run's output and result trace (SR OS `debug python python-script NAME
    /// script-all-info`).
    pub debug: bool,
    /// Administratively down: packets pass without running it.
    pub shutdown: bool,
}

/// One hook binding of a python-policy: `radius MESSAGE direction DIR script NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The RADIUS message type.
    pub code: Code,
    /// `egress` (towards the AAA server) or `ingress` (from it).
    pub direction: Direction,
    /// Index into [`PythonConfig::scripts`].
    pub script: usize,
}

/// A python-policy: its bindings and whether it has a cache.
#[derive(Clone, Debug)]
pub struct PolicySpec {
    /// Name (`python-policy NAME`).
    pub name: String,
    /// Hook bindings.
    pub bindings: Vec<Binding>,
}

/// Every script and policy. A server's `ExternalHooks::handler` is an index into `policies`.
#[derive(Clone, Debug)]
pub struct PythonConfig {
    /// Scripts.
    pub scripts: Vec<ScriptSpec>,
    /// Policies.
    pub policies: Vec<PolicySpec>,
    /// Packets that may wait for the worker.
    pub queue: usize,
    /// The subscriber-services script (`alc.sub_svc`), when subscriber services are on.
    pub sub_svc: Option<SubSvcScript>,
}

/// The subscriber-services script: the worker runs it on Access-Accepts and CoA-Requests
/// handed to [`PythonPolicies::run_sub_svc`].
#[derive(Clone, Debug)]
pub struct SubSvcScript {
    /// The file.
    pub path: PathBuf,
    /// Longest a run may take.
    pub time_limit: Duration,
}

/// What receives a subscriber-services report, on the worker thread: it must only hand the
/// report on (to a channel), never wait.
pub type SubSvcDone = Box<dyn FnOnce(Result<SubSvcReport, WorkerError>) + Send>;

/// Why the worker could not start or an operator request failed.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The interpreter or a script could not be loaded.
    #[error(transparent)]
    Script(#[from] brasa_script::ScriptError),
    /// No script of that name.
    #[error("no python-script named {0:?}")]
    UnknownScript(String),
    /// The worker thread is gone.
    #[error("the Python worker has stopped")]
    Stopped,
    /// The worker thread could not be started.
    #[error("cannot start the Python worker thread: {0}")]
    Thread(std::io::Error),
    /// Its queue is full: the job was not taken.
    #[error("the Python worker's queue is full")]
    Overloaded,
    /// No subscriber-services script is configured.
    #[error("no subscriber-services script is configured")]
    NoSubSvcScript,
}

/// Counters of one script.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScriptStats {
    /// Script name.
    pub name: String,
    /// File.
    pub path: String,
    /// What a failed run does to the packet.
    pub action_on_fail: ActionOnFail,
    /// Debug logging on.
    pub debug: bool,
    /// Runs started.
    pub runs: u64,
    /// Runs that completed.
    pub completed: u64,
    /// Completed runs that called `radius.drop()`.
    pub dropped_by_script: u64,
    /// Runs ended by an uncaught exception.
    pub exceptions: u64,
    /// Runs stopped at the time limit.
    pub timeouts: u64,
    /// Runs ended by `SystemExit`.
    pub system_exits: u64,
    /// Runs failed because the policy's cache backend failed or did not answer in time.
    pub cache_failures: u64,
    /// Failed runs whose packet was dropped (`action-on-fail drop`).
    pub failed_dropped: u64,
    /// Failed runs whose packet passed unchanged (`action-on-fail passthrough`).
    pub failed_passed: u64,
    /// Packets that found the worker queue full and got the action-on-fail without a run.
    pub overload: u64,
    /// Packets that passed unrun because the script is shut down.
    pub skipped_shutdown: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Sum of run times, microseconds.
    pub run_time_us: u64,
    /// Longest run, microseconds.
    pub max_run_time_us: u64,
    /// The last failure (run or reload).
    pub last_error: Option<String>,
}

/// The worker's counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PythonStats {
    /// Packets waiting for the worker now.
    pub queued: u64,
    /// The queue's capacity.
    pub queue_capacity: u64,
    /// Per script.
    pub scripts: Vec<ScriptStats>,
}

enum Job {
    Run {
        request: Box<HookRequest>,
        completion: HookCompletion,
    },
    Reload {
        script: usize,
        reply: std_mpsc::Sender<Result<(), WorkerError>>,
    },
    SubSvc {
        message: Box<brasa_radius::Message>,
        done: SubSvcDone,
    },
}

struct WorkerShared {
    stats: Mutex<Vec<ScriptStats>>,
    debug: Vec<AtomicBool>,
    queued: std::sync::atomic::AtomicU64,
}

/// The [`HookProcessor`] that runs python-policies. See the module documentation.
pub struct PythonPolicies {
    config: PythonConfig,
    queue: SyncSender<Job>,
    shared: Arc<WorkerShared>,
    names: HashMap<String, usize>,
    /// The worker thread ends when the queue's last sender (this struct) is dropped.
    _thread: JoinHandle<()>,
}

impl PythonPolicies {
    /// Starts the interpreter, compiles every script (a syntax error stops start-up with the
    /// file and line) and starts the worker thread. `caches` reaches the policies' embedded
    /// caches, `redis` those kept in Redis (the worker calls them on a Redis connection of
    /// its own, driven on its thread).
    pub fn start(
        config: PythonConfig,
        dictionary: Arc<Dictionary>,
        caches: Option<Arc<CacheService>>,
        redis: Option<Arc<RedisCaches>>,
    ) -> Result<Arc<PythonPolicies>, WorkerError> {
        let host = ScriptHost::new(Instant::now)?;
        let mut scripts = Vec::with_capacity(config.scripts.len());
        for spec in &config.scripts {
            scripts.push(Script::load(&spec.name, &spec.path)?);
        }
        let sub_svc = match &config.sub_svc {
            Some(spec) => Some(Script::load("subscriber-services", &spec.path)?),
            None => None,
        };
        let stats = config
            .scripts
            .iter()
            .map(|spec| ScriptStats {
                name: spec.name.clone(),
                path: spec.path.display().to_string(),
                action_on_fail: spec.action_on_fail,
                debug: spec.debug,
                ..ScriptStats::default()
            })
            .collect();
        let shared = Arc::new(WorkerShared {
            stats: Mutex::new(stats),
            debug: config
                .scripts
                .iter()
                .map(|s| AtomicBool::new(s.debug))
                .collect(),
            queued: Default::default(),
        });
        let (queue, jobs) = std_mpsc::sync_channel(config.queue.max(1));
        let worker = Worker {
            host,
            scripts,
            sub_svc,
            config: config.clone(),
            dictionary,
            caches,
            redis,
            shared: shared.clone(),
            failure_logged: vec![None; config.scripts.len()],
        };
        let thread = std::thread::Builder::new()
            .name("brasa-python".into())
            .spawn(move || worker.run(jobs))
            .map_err(WorkerError::Thread)?;
        let names = config
            .scripts
            .iter()
            .enumerate()
            .map(|(index, s)| (s.name.clone(), index))
            .collect();
        Ok(Arc::new(PythonPolicies {
            config,
            queue,
            shared,
            names,
            _thread: thread,
        }))
    }

    /// Recompiles a script from its file, on the worker thread between two runs. On an error
    /// the old code stays in force. Blocks until done: call it from a blocking context.
    pub fn reload(&self, script: &str) -> Result<(), WorkerError> {
        let index = self.script_index(script)?;
        let (reply, answer) = std_mpsc::channel();
        self.queue
            .send(Job::Reload {
                script: index,
                reply,
            })
            .map_err(|_| WorkerError::Stopped)?;
        answer.recv().map_err(|_| WorkerError::Stopped)?
    }

    /// Queues a run of the subscriber-services script on `message` (an Access-Accept or
    /// CoA-Request); `done` gets the report on the worker thread. Never blocks: a full queue
    /// is [`WorkerError::Overloaded`] and the job is not taken.
    pub fn run_sub_svc(
        &self,
        message: brasa_radius::Message,
        done: SubSvcDone,
    ) -> Result<(), WorkerError> {
        if self.config.sub_svc.is_none() {
            return Err(WorkerError::NoSubSvcScript);
        }
        let job = Job::SubSvc {
            message: Box::new(message),
            done,
        };
        self.queue.try_send(job).map_err(|err| match err {
            TrySendError::Full(_) => WorkerError::Overloaded,
            TrySendError::Disconnected(_) => WorkerError::Stopped,
        })
    }

    /// Turns debug logging of a script on or off.
    pub fn set_debug(&self, script: &str, on: bool) -> Result<(), WorkerError> {
        let index = self.script_index(script)?;
        self.shared.debug[index].store(on, Ordering::Relaxed);
        lock(&self.shared.stats)[index].debug = on;
        Ok(())
    }

    /// The counters now.
    pub fn stats(&self) -> PythonStats {
        PythonStats {
            queued: self.shared.queued.load(Ordering::Relaxed),
            queue_capacity: self.config.queue as u64,
            scripts: lock(&self.shared.stats).clone(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &PythonConfig {
        &self.config
    }

    fn script_index(&self, script: &str) -> Result<usize, WorkerError> {
        self.names
            .get(script)
            .copied()
            .ok_or_else(|| WorkerError::UnknownScript(script.to_owned()))
    }
}

fn binding<'c>(config: &'c PythonConfig, request: &HookRequest) -> Option<&'c Binding> {
    config
        .policies
        .get(request.handler)?
        .bindings
        .iter()
        .find(|b| b.code == request.packet.code && b.direction == request.direction)
}

impl HookProcessor for PythonPolicies {
    fn submit(&self, request: HookRequest, completion: &HookCompletion) {
        let ticket = request.ticket;
        let job = Job::Run {
            request: Box::new(request),
            completion: completion.clone(),
        };
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                let Job::Run { request, .. } = job else {
                    return;
                };
                // Only an overloaded packet needs its script here; the worker looks it up anyway.
                let script = binding(&self.config, &request).map(|b| b.script);
                let action = script
                    .and_then(|s| self.config.scripts.get(s))
                    .map_or(ActionOnFail::Passthrough, |s| s.action_on_fail);
                if let Some(index) = script {
                    lock(&self.shared.stats)[index].overload += 1;
                }
                completion.complete(ticket, fail_result(action, request.packet));
            }
        }
    }
}

fn fail_result(action: ActionOnFail, packet: brasa_radius::Message) -> HookResult {
    match action {
        ActionOnFail::Drop => HookResult::Drop,
        ActionOnFail::Passthrough => HookResult::Continue(packet),
    }
}

/// State owned by the worker thread.
struct Worker {
    host: ScriptHost,
    scripts: Vec<Script>,
    /// The subscriber-services script, when [`PythonConfig::sub_svc`] is set.
    sub_svc: Option<Script>,
    config: PythonConfig,
    dictionary: Arc<Dictionary>,
    caches: Option<Arc<CacheService>>,
    redis: Option<Arc<RedisCaches>>,
    shared: Arc<WorkerShared>,
    /// When each script's last failure was logged (failures are logged at most once a second).
    failure_logged: Vec<Option<Instant>>,
}

impl Worker {
    /// Takes the jobs waiting, up to [`BATCH`] per wake-up, and hands the answers of a batch
    /// back together: one wake-up of the RADIUS service (and of the cache drain) per batch
    /// instead of one per packet. An answer never waits more than [`HOLD_ANSWERS`] for the
    /// rest of its batch, so a slow script does not hold back the packets run before it.
    fn run(mut self, jobs: Receiver<Job>) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut answers = Answers::default();
        while let Ok(job) = jobs.recv() {
            batch.push(job);
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            for job in batch.drain(..) {
                match job {
                    Job::Run {
                        request,
                        completion,
                    } => {
                        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                        let ticket = request.ticket;
                        let (result, mutated) = self.process(*request);
                        answers.push(completion, ticket, result, mutated);
                        if answers.held_for() >= HOLD_ANSWERS {
                            answers.deliver(self.caches.as_deref());
                        }
                    }
                    Job::Reload { script, reply } => {
                        let _ = reply.send(self.reload(script));
                    }
                    Job::SubSvc { mut message, done } => done(self.sub_svc(&mut message)),
                }
            }
            answers.deliver(self.caches.as_deref());
        }
    }

    fn reload(&mut self, index: usize) -> Result<(), WorkerError> {
        let Some(script) = self.scripts.get_mut(index) else {
            return Err(WorkerError::Stopped);
        };
        let result = script.reload();
        let mut stats = lock(&self.shared.stats);
        match &result {
            Ok(()) => {
                stats[index].reloads += 1;
                tracing::info!(script = %script.name(), "python-script reloaded");
            }
            Err(err) => {
                stats[index].last_error = Some(err.to_string());
                tracing::warn!(script = %script.name(), %err, "python-script reload failed; the old code stays in force");
            }
        }
        result.map_err(WorkerError::from)
    }

    /// Runs the subscriber-services script on `message` (without a cache: `alc.cache` raises).
    fn sub_svc(
        &mut self,
        message: &mut brasa_radius::Message,
    ) -> Result<SubSvcReport, WorkerError> {
        let (Some(script), Some(spec)) = (&self.sub_svc, &self.config.sub_svc) else {
            return Err(WorkerError::NoSubSvcScript);
        };
        let options = RunOptions {
            time_limit: Some(spec.time_limit),
            ..RunOptions::default()
        };
        Ok(self
            .host
            .run_sub_svc(script, message, &self.dictionary, None, &options))
    }

    /// Runs the script bound to the request's hook point; also says whether it changed a
    /// cache.
    fn process(&mut self, request: HookRequest) -> (HookResult, bool) {
        let Some(binding) = binding(&self.config, &request).cloned() else {
            return (HookResult::Continue(request.packet), false);
        };
        let index = binding.script;
        let spec = &self.config.scripts[index];
        if spec.shutdown {
            lock(&self.shared.stats)[index].skipped_shutdown += 1;
            return (HookResult::Continue(request.packet), false);
        }
        let debug = self.shared.debug[index].load(Ordering::Relaxed);
        let options = RunOptions {
            time_limit: Some(spec.time_limit),
            trace: debug,
            ..RunOptions::default()
        };
        let policy = &self.config.policies[request.handler].name;
        let mut packet = request.packet;
        let started = Instant::now();
        // A Redis call never outlasts the run: it gets what is left of the time limit.
        let deadline = started + spec.time_limit;
        let mut cache = match self
            .redis
            .as_deref()
            .and_then(|r| r.policy(policy, deadline))
        {
            Some(redis) => Some(RunCache::Redis(redis)),
            None => self
                .caches
                .as_deref()
                .filter(|service| service.has_cache(policy))
                .map(|service| {
                    RunCache::Embedded(SharedCache {
                        service,
                        policy,
                        now: wall_clock_ms(),
                        mutated: false,
                    })
                }),
        };
        let report = self.host.run(
            &self.scripts[index],
            &mut packet,
            &self.dictionary,
            cache.as_mut().map(|c| c as &mut dyn ScriptCache),
            &options,
        );
        let mutated = cache.is_some_and(|c| c.mutated());
        let elapsed = started.elapsed().as_micros() as u64;
        if debug {
            tracing::info!(target: "brasa::python", script = %spec.name, policy = %policy,
                client = %request.client, "{}", report.output_block().trim_end());
            tracing::info!(target: "brasa::python", script = %spec.name, policy = %policy,
                client = %request.client, "{}", report.to_string().trim_end());
        }
        let mut stats = lock(&self.shared.stats);
        let stats = &mut stats[index];
        stats.runs += 1;
        stats.run_time_us += elapsed;
        stats.max_run_time_us = stats.max_run_time_us.max(elapsed);
        let result = match &report.outcome {
            Outcome::Ok => {
                stats.completed += 1;
                match report.verdict {
                    Verdict::Continue => HookResult::Continue(packet),
                    Verdict::Drop => {
                        stats.dropped_by_script += 1;
                        HookResult::Drop
                    }
                }
            }
            Outcome::Failed(failure) => {
                match failure.kind {
                    // The `alc.dyn` failures only happen in dynamic-services runs, never in
                    // a RADIUS hook's run.
                    FailureKind::Exception
                    | FailureKind::DynResources
                    | FailureKind::NoDynAction => stats.exceptions += 1,
                    FailureKind::Timeout => stats.timeouts += 1,
                    FailureKind::SystemExit => stats.system_exits += 1,
                    FailureKind::CacheBackend => stats.cache_failures += 1,
                }
                match spec.action_on_fail {
                    ActionOnFail::Drop => stats.failed_dropped += 1,
                    ActionOnFail::Passthrough => stats.failed_passed += 1,
                }
                stats.last_error = Some(failure.to_string());
                let now = Instant::now();
                let logged = &mut self.failure_logged[index];
                if logged.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
                    *logged = Some(now);
                    tracing::warn!(script = %spec.name, policy = %policy, action_on_fail = ?spec.action_on_fail,
                        "python-script failed: {failure}");
                }
                fail_result(spec.action_on_fail, packet)
            }
        };
        (result, mutated)
    }
}

/// Jobs the worker takes per wake-up at most.
const BATCH: usize = 64;
/// Longest an answer waits for the rest of its batch.
const HOLD_ANSWERS: Duration = Duration::from_micros(500);

/// Answers of a batch not yet handed back.
#[derive(Default)]
struct Answers {
    ready: Vec<(HookCompletion, brasa_aaa::HookTicket, HookResult)>,
    /// When the oldest held answer was ready.
    since: Option<Instant>,
    /// Whether a held answer's run changed a cache.
    mutated: bool,
}

impl Answers {
    fn push(
        &mut self,
        completion: HookCompletion,
        ticket: brasa_aaa::HookTicket,
        result: HookResult,
        mutated: bool,
    ) {
        self.since.get_or_insert_with(Instant::now);
        self.ready.push((completion, ticket, result));
        self.mutated |= mutated;
    }

    fn held_for(&self) -> Duration {
        self.since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Hands every held answer back, and wakes the cache drain once if a run changed a cache.
    fn deliver(&mut self, caches: Option<&CacheService>) {
        if std::mem::take(&mut self.mutated) {
            if let Some(caches) = caches {
                caches.changed();
            }
        }
        self.since = None;
        for (completion, ticket, result) in self.ready.drain(..) {
            completion.complete(ticket, result);
        }
    }
}

/// The cache of the policy a script runs for: embedded, or in Redis.
enum RunCache<'a> {
    Embedded(SharedCache<'a>),
    Redis(PolicyHandle<'a>),
}

impl RunCache<'_> {
    /// Whether the run changed an embedded cache (the journal and the peer must hear of it).
    fn mutated(&self) -> bool {
        matches!(self, RunCache::Embedded(c) if c.mutated)
    }
}

impl ScriptCache for RunCache<'_> {
    fn save(&mut self, key: &[u8], value: &[u8]) -> Result<(), CacheError> {
        match self {
            RunCache::Embedded(c) => c.save(key, value),
            RunCache::Redis(c) => c.save(key, value),
        }
    }

    fn retrieve(&mut self, key: &[u8]) -> Result<Vec<u8>, CacheError> {
        match self {
            RunCache::Embedded(c) => c.retrieve(key),
            RunCache::Redis(c) => c.retrieve(key),
        }
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), CacheError> {
        match self {
            RunCache::Embedded(c) => c.clear(key),
            RunCache::Redis(c) => c.clear(key),
        }
    }

    fn get_lifetime(&mut self, key: &[u8]) -> Result<u64, CacheError> {
        match self {
            RunCache::Embedded(c) => c.get_lifetime(key),
            RunCache::Redis(c) => c.get_lifetime(key),
        }
    }

    fn set_lifetime(&mut self, key: &[u8], secs: u64) -> Result<u64, CacheError> {
        match self {
            RunCache::Embedded(c) => c.set_lifetime(key, secs),
            RunCache::Redis(c) => c.set_lifetime(key, secs),
        }
    }
}

/// A policy's cache in the shared [`CacheService`], locked for one operation at a time.
struct SharedCache<'a> {
    service: &'a CacheService,
    policy: &'a str,
    now: Millis,
    mutated: bool,
}

impl SharedCache<'_> {
    fn with<T>(
        &mut self,
        mutates: bool,
        op: impl FnOnce(&mut brasa_cache::PolicyCache, Millis) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        let mut set = lock(self.service.caches());
        let cache = set.get_mut(self.policy).ok_or(CacheError::NotFound)?;
        let result = op(cache, self.now);
        self.mutated |= mutates && result.is_ok();
        result
    }
}

impl ScriptCache for SharedCache<'_> {
    fn save(&mut self, key: &[u8], value: &[u8]) -> Result<(), CacheError> {
        self.with(true, |cache, now| cache.save(key, value, now))
    }

    fn retrieve(&mut self, key: &[u8]) -> Result<Vec<u8>, CacheError> {
        self.with(false, |cache, now| {
            cache
                .retrieve(key, now)
                .map(<[u8]>::to_vec)
                .ok_or(CacheError::NotFound)
        })
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), CacheError> {
        self.with(true, |cache, now| {
            if cache.clear(key, now) {
                Ok(())
            } else {
                Err(CacheError::NotFound)
            }
        })
    }

    fn get_lifetime(&mut self, key: &[u8]) -> Result<u64, CacheError> {
        self.with(false, |cache, now| {
            cache.get_lifetime(key, now).ok_or(CacheError::NotFound)
        })
    }

    fn set_lifetime(&mut self, key: &[u8], secs: u64) -> Result<u64, CacheError> {
        self.with(true, |cache, now| cache.set_lifetime(key, secs, now))
    }
}
