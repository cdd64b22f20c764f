//! The dynamic-services scripts' own thread: every `alc.dyn` run happens there, never on a
//! data-plane worker nor on a tokio worker (a run may take up to the script time limit).

use brasa_script::{
    DynReport, DynResources, DynRun, IdKind, ReferenceKey, Referenced, ResourceError, RunOptions,
    Script, ScriptHost,
};
use brasa_services::alloc;
use brasa_services::model::FilterKind;
use brasa_services::ServiceConfig;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;

/// What a run may take: the free identifiers of its policy's ranges (what the running service
/// configuration does not use) and the reference table, as they were when the run was queued.
/// Runs and their applies are serialised, so nothing changes them while a run is going on.
#[derive(Debug, Clone, Default)]
pub struct RunResources {
    /// `service-range` of the policy.
    pub service_range: Option<RangeInclusive<u32>>,
    /// The filter id range of the policy.
    pub filter_range: Option<RangeInclusive<u32>>,
    /// The running service configuration (an O(1) copy): a free identifier is looked up in its
    /// indexes from the start of the range, never by listing what the whole of it uses.
    pub config: ServiceConfig,
    /// The reference table.
    pub references: Arc<BTreeMap<ReferenceKey, Referenced>>,
}

impl DynResources for RunResources {
    fn select_free_id(
        &mut self,
        _policy: &str,
        kind: IdKind,
        taken: &[u32],
    ) -> Result<Option<u32>, ResourceError> {
        let filter = match kind {
            IdKind::ServiceId => {
                return Ok(self
                    .service_range
                    .clone()
                    .and_then(|range| alloc::free_service_id_except(&self.config, range, taken)))
            }
            IdKind::IpFilterId => FilterKind::Ip,
            IdKind::Ipv6FilterId => FilterKind::Ipv6,
            IdKind::MacFilterId => FilterKind::Mac,
        };
        Ok(self
            .filter_range
            .clone()
            .and_then(|range| alloc::free_filter_id_except(&self.config, filter, range, taken)))
    }

    fn reference(&mut self, key: &ReferenceKey) -> Result<Option<Referenced>, ResourceError> {
        Ok(self.references.get(key).cloned())
    }
}

struct Job {
    policy: String,
    run: DynRun,
    resources: RunResources,
    reply: oneshot::Sender<Result<DynReport, String>>,
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
                while let Ok(mut job) = queue.recv() {
                    let result = match compiled.get(&job.policy) {
                        Some(script) => host
                            .run_dyn(script, &job.run, &mut job.resources, &options)
                            .map_err(|err| err.to_string()),
                        None => Err(format!("no dynamic-services policy {:?}", job.policy)),
                    };
                    let _ = job.reply.send(result);
                }
            })?;
        started
            .recv()
            .map_err(|_| anyhow::anyhow!("the dynamic-services script thread stopped"))?
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
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                policy: policy.to_owned(),
                run,
                resources,
                reply,
            })
            .map_err(|_| "the dynamic-services script thread stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the dynamic-services script thread stopped".to_string())?
    }
}
