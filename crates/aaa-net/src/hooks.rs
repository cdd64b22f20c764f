//! The hand-over between the RADIUS service and whatever runs the engine's external hook
//! points (the Python worker of python-policies).

use brasa_aaa::{HookRequest, HookResult, HookTicket};
use tokio::sync::mpsc;

/// Runs the hook points the engine defers ([`brasa_aaa::ExternalHooks`]), e.g. the Python
/// worker.
///
/// `submit` is called from the RADIUS tasks and must not block: queue the request and answer
/// later, from any thread, through the [`HookCompletion`]. Every submitted request must be
/// answered (a processor that is overloaded answers at once with its failure action); one that
/// is not is dropped by the engine after [`brasa_aaa::EngineConfig::external_hook_timeout`].
pub trait HookProcessor: Send + Sync + 'static {
    /// Takes one packet to process.
    fn submit(&self, request: HookRequest, completion: &HookCompletion);
}

/// Hands processed packets back to the RADIUS service; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct HookCompletion {
    sender: mpsc::UnboundedSender<(HookTicket, HookResult)>,
}

impl HookCompletion {
    /// A completion feeding `sender` (the service's resume task holds the receiver).
    pub(crate) fn new(sender: mpsc::UnboundedSender<(HookTicket, HookResult)>) -> Self {
        HookCompletion { sender }
    }

    /// Gives the engine the processor's decision for `ticket`.
    pub fn complete(&self, ticket: HookTicket, result: HookResult) {
        // The service is gone when this fails: nothing is waiting for the answer any more.
        let _ = self.sender.send((ticket, result));
    }
}
