//! The dynamic data services' CoA and Disconnect requests (RFC 5176; brasa is the NAS): the
//! daemon's CoA listener ([`crate::daemon::coa`]) hands over the verified requests the other
//! components leave; brasa-dynsvc's [`coa::decide`] (Table 5 of the dynamic data services
//! guide) decides them, the runner runs and applies them like any other script run.

use super::{DynServices, RunFailure, Work};
use crate::daemon::coa::{CoaAnswer, CoaHandler};
use brasa_dynsvc::coa::{self, CoaAction, CoaOutcome, RequestKind};
use brasa_radius::AcctTerminateCause;
use brasa_radius::Message;
use brasa_script::{DynAction, DynRun};
use brasa_services::SapId;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// The dynamic services take every CoA and Disconnect-Request the other components leave:
/// Table 5 of the dynamic data services guide decides what each asks, or refuses it.
impl CoaHandler for DynServices {
    fn claims(&self, request: &Message) -> bool {
        RequestKind::of(request.code).is_some()
    }

    fn is_fallback(&self) -> bool {
        true
    }

    fn answer(self: Arc<Self>, request: Message) -> CoaAnswer {
        Box::pin(async move {
            let kind = RequestKind::of(request.code)?;
            let (reply, answer) = oneshot::channel();
            self.work
                .send(Work::Coa {
                    kind,
                    request,
                    reply,
                })
                .ok()?;
            answer.await.ok()
        })
    }

    fn dropped(&self) {
        self.counters.coa_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl DynServices {
    /// Decides a verified request against the triggers, runs what it asks and builds the
    /// answer (unsigned).
    pub(super) async fn answer_coa(&self, kind: RequestKind, request: &Message) -> Message {
        let decision = {
            let state = self.state();
            coa::decide(
                kind,
                request,
                &state.triggers,
                self.services.manager.port_map(),
            )
        };
        match decision {
            Err(refusal) => {
                tracing::info!(%refusal, "CoA refused");
                refusal.answer(request)
            }
            Ok(decision) => {
                let outcome = self.run_coa(&decision.action).await;
                decision.answer(request, outcome)
            }
        }
    }

    async fn run_coa(&self, action: &CoaAction) -> CoaOutcome {
        let outcome = |result: Result<(), RunFailure>| match result {
            Ok(()) => CoaOutcome::Done,
            Err(RunFailure::Script(_)) => CoaOutcome::ScriptFailed,
            Err(RunFailure::Apply(_)) => CoaOutcome::ApplyFailed,
        };
        match action {
            CoaAction::Setup { trigger, service } => {
                // A failed setup leaves nothing of it behind.
                let result = self.set_up(trigger, service).await;
                if let Err(reason) = &result {
                    tracing::info!(%trigger, sap = %service.sap, %reason, "CoA setup failed");
                }
                outcome(result)
            }
            CoaAction::Modify { service, .. } => outcome(self.modify(service).await),
            CoaAction::TeardownService { service, .. } => {
                outcome(self.tear_down_one(service).await)
            }
            CoaAction::TeardownTrigger { trigger } => {
                let teardown = self.with_triggers(|t| t.clear_trigger(trigger, Instant::now()));
                if let Ok(teardown) = teardown {
                    self.tear_down_services(teardown, AcctTerminateCause::AdminReset)
                        .await;
                }
                CoaOutcome::Done
            }
        }
    }

    /// The teardown of one service (not its trigger's own SAP) asked by a CoA, a Disconnect
    /// or evaluate-script; a failed teardown leaves the service as it was.
    pub(super) async fn tear_down_one(&self, sap: &SapId) -> Result<(), RunFailure> {
        let record = self.state().records.remove(sap);
        let Some(record) = record else {
            return Err(RunFailure::Script(format!("no dynamic service {sap}")));
        };
        self.remove_service(sap, record, AcctTerminateCause::AdminReset, false)
            .await?;
        let _ = self.with_triggers(|t| t.service_removed(sap, Instant::now()));
        Ok(())
    }

    /// A modify (a CoA's, or evaluate-script's): the script's modify function with the new
    /// parameters; when it fails, or its CLI is refused, its revert function runs with the
    /// same inputs and the service keeps what it had.
    pub(super) async fn modify(
        &self,
        service: &brasa_dynsvc::DynService,
    ) -> Result<(), RunFailure> {
        let record = self.state().records.get(&service.sap).cloned();
        let Some(record) = record else {
            return Err(RunFailure::Script(format!(
                "no dynamic service {}",
                service.sap
            )));
        };
        let policy_name = service.policy.clone().unwrap_or(record.policy.clone());
        let policy = self.config.policies.get(&policy_name).ok_or_else(|| {
            RunFailure::Script(format!("no dynamic-services policy {policy_name:?}"))
        })?;
        let params = super::script_params(service)?;
        let run = |action| DynRun {
            action,
            params: Some(params.clone()),
            state: Some(record.state.clone()),
            sap_id: service.sap.to_string(),
            control_sap: Some(record.trigger.to_string()),
            circuit_id: None,
            remote_id: None,
            policy: policy.name.clone(),
        };
        match self.run_and_apply(policy, run(DynAction::Modify)).await {
            Ok(report) => {
                if let Some(record) = self.state().records.get_mut(&service.sap) {
                    if let Some(state) = report.state {
                        record.state = state;
                    }
                    record.params = params.clone();
                    record.cli.push_str(&report.cli);
                }
                self.modify_accounting(&service.sap, &record.policy, service.accounting)
                    .await;
                Ok(())
            }
            Err((failure, report)) => {
                let revert = match (&failure, &report) {
                    (RunFailure::Script(_), Some(report)) => report.needs_revert(),
                    (RunFailure::Apply(_), Some(report)) => report.revert_defined,
                    (_, None) => false,
                };
                tracing::info!(sap = %service.sap, reason = %failure, revert, "CoA modify failed");
                if revert {
                    if let Err((reason, _)) =
                        self.run_and_apply(policy, run(DynAction::Revert)).await
                    {
                        tracing::warn!(sap = %service.sap, %reason, "the revert failed too");
                    }
                }
                Err(failure)
            }
        }
    }
}
