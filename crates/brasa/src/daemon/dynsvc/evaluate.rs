//! `tools perform service dynamic-services evaluate-script sap SAP control-session ID action
//! ACTION` (Nokia SR OS dynamic data services, "Data-triggered dynamic service removal"): runs
//! a script action of a dynamic service of the data trigger whose Acct-Session-Id is the
//! control session, and applies it, on the runner task like every other script run. The dry
//! run only shows what the action would do.

use super::{DynServices, RunFailure, Work};
use brasa_dynsvc::{AcctOverride, DynService};
use brasa_radius::AcctTerminateCause;
use brasa_script::{DynAction, DynReport, DynRun};
use brasa_services::SapId;
use std::time::Instant;
use tokio::sync::oneshot;

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The dynamic service SAP.
    pub sap: SapId,
    /// The Acct-Session-Id of the data trigger.
    pub control_session: String,
    /// The script function to run.
    pub action: DynAction,
    /// Script parameters of a setup (a new service of the trigger).
    pub params: Option<String>,
    /// The dynamic-services-policy of a setup; the trigger's by default.
    pub policy: Option<String>,
    /// Run the script only: show its CLI, apply nothing.
    pub dry_run: bool,
}

/// What an evaluation did.
#[derive(Debug)]
pub enum Evaluated {
    /// The dry run's report (nothing applied).
    DryRun(Box<DynReport>),
    /// A setup created the service on `sap`.
    Created(SapId),
    /// A teardown removed these dynamic service SAPs (the trigger's own SAP last, when it was
    /// the trigger's: then the trigger is gone too).
    Removed(Vec<SapId>),
    /// A modify changed the service on `sap`.
    Modified(SapId),
}

/// Why an evaluation was refused or failed; a refused one changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// No data trigger has that Acct-Session-Id.
    #[error("no data trigger has control session {0}")]
    UnknownSession(String),
    /// No dynamic service has that SAP.
    #[error("no dynamic service SAP {0}")]
    UnknownService(SapId),
    /// The SAP is a dynamic service of another data trigger.
    #[error("dynamic service SAP {sap} belongs to data trigger {trigger}, not to the one of control session {session}")]
    OtherTrigger {
        /// The dynamic service SAP.
        sap: SapId,
        /// Its data trigger.
        trigger: SapId,
        /// The control session asked for.
        session: String,
    },
    /// The action cannot be run on that SAP in that way.
    #[error("action {action} is not allowed here: {why}")]
    NotAllowed {
        /// The action.
        action: DynAction,
        /// Why not.
        why: String,
    },
    /// The script or its CLI failed; nothing of the run is applied.
    #[error("{0}")]
    Failed(String),
    /// The script could not run (the scripts' thread is gone).
    #[error("{0}")]
    Run(String),
}

impl DynServices {
    /// Queues `evaluation` on the runner task (serialised with setups and CoA) and awaits it.
    pub async fn evaluate(&self, evaluation: Evaluation) -> Result<Evaluated, EvaluateError> {
        let (reply, answer) = oneshot::channel();
        self.work
            .send(Work::Evaluate { evaluation, reply })
            .map_err(|_| EvaluateError::Run("the dynamic services runner stopped".into()))?;
        answer
            .await
            .map_err(|_| EvaluateError::Run("the dynamic services runner stopped".into()))?
    }

    /// Runs `evaluation` (on the runner task).
    pub(super) async fn run_evaluation(
        &self,
        evaluation: Evaluation,
    ) -> Result<Evaluated, EvaluateError> {
        let Evaluation {
            sap,
            control_session,
            action,
            ..
        } = &evaluation;
        let trigger = self
            .state()
            .triggers
            .trigger_by_session(control_session)
            .map(|t| t.sap.clone())
            .ok_or_else(|| EvaluateError::UnknownSession(control_session.clone()))?;
        let owner = self.state().records.get(sap).map(|r| r.trigger.clone());
        let not_allowed = |why: String| EvaluateError::NotAllowed {
            action: *action,
            why,
        };
        match owner {
            Some(owner) if owner != trigger => {
                return Err(EvaluateError::OtherTrigger {
                    sap: sap.clone(),
                    trigger: owner,
                    session: control_session.clone(),
                })
            }
            Some(_) if *action == DynAction::Setup && !evaluation.dry_run => {
                return Err(not_allowed(format!(
                    "{sap} is a dynamic service already; a modify or a teardown can change it"
                )))
            }
            None if *action != DynAction::Setup || evaluation.dry_run => {
                return Err(EvaluateError::UnknownService(sap.clone()))
            }
            _ => {}
        }
        if evaluation.dry_run {
            return self
                .dry_run(sap, *action)
                .await
                .map(|report| Evaluated::DryRun(Box::new(report)));
        }
        match action {
            DynAction::Setup => self.evaluate_setup(&trigger, evaluation).await,
            DynAction::Teardown if *sap == trigger => {
                let teardown = self
                    .with_triggers(|t| t.clear_trigger(&trigger, Instant::now()))
                    .map_err(|err| EvaluateError::Failed(err.to_string()))?;
                let removed = teardown.services.iter().map(|(s, _)| s.clone()).collect();
                self.tear_down_services(teardown, AcctTerminateCause::AdminReset)
                    .await;
                Ok(Evaluated::Removed(removed))
            }
            DynAction::Teardown => {
                self.tear_down_one(sap).await.map_err(|failure| {
                    EvaluateError::Failed(format!("{failure}; {sap} is unchanged"))
                })?;
                Ok(Evaluated::Removed(vec![sap.clone()]))
            }
            DynAction::Modify => {
                let Some(params) = evaluation.params.clone() else {
                    return Err(not_allowed(
                        "a modify needs the service's new script parameters (--params)".into(),
                    ));
                };
                let service = DynService {
                    tag: 0,
                    sap: sap.clone(),
                    script_params: Some(params),
                    action: None,
                    policy: evaluation.policy.clone(),
                    accounting: [AcctOverride::default(); 2],
                };
                self.modify(&service).await.map_err(|failure| {
                    EvaluateError::Failed(format!(
                        "{failure}; nothing of the modify was applied (its revert ran when the \
                         script defines one)"
                    ))
                })?;
                Ok(Evaluated::Modified(sap.clone()))
            }
            DynAction::Revert => Err(not_allowed(
                "a revert runs only after a modify that failed, with the modify's parameters"
                    .into(),
            )),
        }
    }

    /// A new dynamic service of `trigger` from the evaluation's parameters; a failed setup
    /// leaves nothing behind.
    async fn evaluate_setup(
        &self,
        trigger: &SapId,
        evaluation: Evaluation,
    ) -> Result<Evaluated, EvaluateError> {
        let Some(params) = evaluation.params else {
            return Err(EvaluateError::NotAllowed {
                action: DynAction::Setup,
                why: "a setup needs the new service's script parameters (--params)".into(),
            });
        };
        let service = DynService {
            tag: 0,
            sap: evaluation.sap.clone(),
            script_params: Some(params),
            action: None,
            policy: evaluation.policy,
            accounting: [AcctOverride::default(); 2],
        };
        match self.set_up(trigger, &service).await {
            Ok(()) => Ok(Evaluated::Created(service.sap)),
            Err(failure) => Err(EvaluateError::Failed(match failure {
                RunFailure::Script(reason) | RunFailure::Apply(reason) => reason,
            })),
        }
    }

    /// The dry run: the action's script with the service's stored parameters and state.
    async fn dry_run(&self, sap: &SapId, action: DynAction) -> Result<DynReport, EvaluateError> {
        let record = self
            .state()
            .records
            .get(sap)
            .cloned()
            .ok_or_else(|| EvaluateError::UnknownService(sap.clone()))?;
        let policy = self.config.policies.get(&record.policy).ok_or_else(|| {
            EvaluateError::Run(format!("no dynamic-services policy {:?}", record.policy))
        })?;
        let run = DynRun {
            action,
            params: (action != DynAction::Teardown).then(|| record.params.clone()),
            state: (action != DynAction::Setup).then(|| record.state.clone()),
            sap_id: sap.to_string(),
            control_sap: Some(record.trigger.to_string()),
            circuit_id: None,
            remote_id: None,
            policy: policy.name.clone(),
        };
        let resources = self.resources().await;
        self.scripts
            .run(&policy.name, run, resources)
            .await
            .map_err(EvaluateError::Run)
    }
}
