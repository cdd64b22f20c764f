//! The dynamic-services scripts' own thread: every `alc.dyn` run happens there, never on a
//! data-plane worker nor on a tokio worker (a run may take up to the script time limit).

use brasa_script::{
    apply_reference_changes, DynReport, DynResources, DynRun, IdKind, ReferenceKey, Referenced,
    ResourceError, RunOptions, Script, ScriptHost,
};
use brasa_services::alloc;
use brasa_services::model::FilterKind;
use brasa_services::ServiceConfig;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

/// The identifier ranges of a dynamic-services policy (`dyn.select_free_id`).
#[derive(Debug, Clone, Default)]
pub struct IdRanges {
    /// `service-range` of the policy.
    pub service: Option<RangeInclusive<u32>>,
    /// The filter id range of the policy.
    pub filter: Option<RangeInclusive<u32>>,
}

/// What runs may take: the free identifiers of their policies' ranges (what the running
/// service configuration does not use) and the reference table, as they were when the runs
/// were queued. The runs of a batch share one: each sees the identifiers and references of
/// the successful runs before it as if they were applied, as the caller must apply them, in
/// the same order, before any other change (see [`ScriptThread::run_batch`]).
#[derive(Debug, Clone, Default)]
pub struct RunResources {
    ranges: Arc<BTreeMap<String, IdRanges>>,
    /// The running service configuration (an O(1) copy): a free identifier is looked up in
    /// its indexes, never by listing what the whole of it uses.
    config: ServiceConfig,
    references: Arc<BTreeMap<ReferenceKey, Referenced>>,
    /// Per policy and kind, where the next search starts: every identifier of the range
    /// below it is used or was selected by an earlier run. Runs select the lowest free one,
    /// so the selections of a batch ascend and each search starts just above the last
    /// instead of walking the used identifiers from the start of the range again.
    floors: BTreeMap<(String, IdKind), u64>,
}

impl RunResources {
    /// The resources of the policies' `ranges` in the running configuration `config`, with
    /// the reference table `references`.
    pub fn new(
        ranges: Arc<BTreeMap<String, IdRanges>>,
        config: ServiceConfig,
        references: Arc<BTreeMap<ReferenceKey, Referenced>>,
    ) -> Self {
        Self {
            ranges,
            config,
            references,
            floors: BTreeMap::new(),
        }
    }
}

impl DynResources for RunResources {
    fn select_free_id(
        &mut self,
        policy: &str,
        kind: IdKind,
        taken: &[u32],
    ) -> Result<Option<u32>, ResourceError> {
        let ranges = self.ranges.get(policy);
        let range = match kind {
            IdKind::ServiceId => ranges.and_then(|r| r.service.clone()),
            IdKind::IpFilterId | IdKind::Ipv6FilterId | IdKind::MacFilterId => {
                ranges.and_then(|r| r.filter.clone())
            }
        };
        let Some(range) = range else {
            return Ok(None);
        };
        let key = (policy.to_owned(), kind);
        let floor = self.floors.get(&key).copied().unwrap_or(0);
        let Ok(start) = u32::try_from(floor.max(u64::from(*range.start()))) else {
            return Ok(None);
        };
        let range = start..=*range.end();
        let found = match kind {
            IdKind::ServiceId => alloc::free_service_id_except(&self.config, range, taken),
            IdKind::IpFilterId => {
                alloc::free_filter_id_except(&self.config, FilterKind::Ip, range, taken)
            }
            IdKind::Ipv6FilterId => {
                alloc::free_filter_id_except(&self.config, FilterKind::Ipv6, range, taken)
            }
            IdKind::MacFilterId => {
                alloc::free_filter_id_except(&self.config, FilterKind::Mac, range, taken)
            }
        };
        if let Some(id) = found {
            // The run's own earlier selections (`taken`) lie below it too.
            self.floors.insert(key, u64::from(id) + 1);
        }
        Ok(found)
    }

    fn reference(&mut self, key: &ReferenceKey) -> Result<Option<Referenced>, ResourceError> {
        Ok(self.references.get(key).cloned())
    }
}

/// Runs to do in order with one set of resources, each report sent back as its run ends.
struct Job {
    runs: Vec<(String, DynRun)>,
    resources: RunResources,
    reports: tokio::sync::mpsc::UnboundedSender<Result<DynReport, String>>,
}

/// The thread that runs the policies' scripts, one run at a time.
pub struct ScriptThread {
    jobs: mpsc::Sender<Job>,
}

impl ScriptThread {
    /// Compiles every policy's script and starts the thread; a script that does not compile
    /// stops start-up with its file, line and column.
    pub fn start(
        scripts: Vec<(String, PathBuf)>,
        options: RunOptions,
    ) -> anyhow::Result<ScriptThread> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, started) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("dynsvc-scripts".into())
            .spawn(move || {
                let loaded = (|| {
                    let host = ScriptHost::new(std::time::Instant::now)
                        .map_err(|err| format!("python: {err}"))?;
                    let mut compiled = BTreeMap::new();
                    for (name, path) in scripts {
                        let script = Script::load(&name, &path)
                            .map_err(|err| format!("dynamic-services policy {name:?}: {err}"))?;
                        compiled.insert(name, script);
                    }
                    Ok::<_, String>((host, compiled))
                })();
                let (host, compiled) = match loaded {
                    Ok(loaded) => {
                        let _ = ready.send(Ok(()));
                        loaded
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    run_job(&host, &compiled, &options, job);
                }
            })?;
        started
            .recv()
            .map_err(|_| anyhow::anyhow!(STOPPED))?
            .map_err(|err| anyhow::anyhow!(err))?;
        Ok(ScriptThread { jobs })
    }

    /// Runs `run` with the script of `policy`.
    pub async fn run(
        &self,
        policy: &str,
        run: DynRun,
        resources: RunResources,
    ) -> Result<DynReport, String> {
        self.run_batch(vec![(policy.to_owned(), run)], resources)
            .next()
            .await
    }

    /// Runs `runs` (policy, run) in order, one after the other, with `resources`: each run
    /// sees the identifiers the runs before it selected as taken and the reference table as
    /// their successful runs changed it, so the caller must apply the successful reports in
    /// order and before any other change. The thread runs ahead while the caller applies;
    /// dropping the [`Reports`] stops the batch after the run in progress, for a caller whose
    /// apply failed (the later reports were made for a state that will not be).
    pub fn run_batch(&self, runs: Vec<(String, DynRun)>, resources: RunResources) -> Reports {
        let (reports, receiver) = tokio::sync::mpsc::unbounded_channel();
        // A stopped thread drops the job with its sender: every report is then an `Err`.
        let _ = self.jobs.send(Job {
            runs,
            resources,
            reports,
        });
        Reports(receiver)
    }
}

const STOPPED: &str = "the dynamic-services script thread stopped";

/// The reports of a batch, in the order of its runs.
pub struct Reports(tokio::sync::mpsc::UnboundedReceiver<Result<DynReport, String>>);

impl Reports {
    /// The report of the next run; `Err` when it could not run (the thread stopped).
    pub async fn next(&mut self) -> Result<DynReport, String> {
        self.0
            .recv()
            .await
            .unwrap_or_else(|| Err(STOPPED.to_string()))
    }
}

/// Runs a batch on the scripts' thread, applying each successful run's reference changes to
/// the batch's table for the runs after it.
fn run_job(host: &ScriptHost, compiled: &BTreeMap<String, Script>, options: &RunOptions, job: Job) {
    let Job {
        runs,
        mut resources,
        reports,
    } = job;
    for (policy, run) in runs {
        let result = match compiled.get(&policy) {
            Some(script) => host
                .run_dyn(script, &run, &mut resources, options)
                .map_err(|err| err.to_string()),
            None => Err(format!("no dynamic-services policy {policy:?}")),
        };
        if let Ok(report) = &result {
            if report.is_ok() && !report.references.is_empty() {
                apply_reference_changes(
                    Arc::make_mut(&mut resources.references),
                    &report.references,
                );
            }
        }
        if reports.send(result).is_err() {
            return;
        }
    }
}
