//! The BGP LEG's shell: the speaker (`brasa-bgp-net`) and the task that moves its events into
//! the SM.
//!
//! The speaker hands its events to a bounded channel; the task takes what is waiting (up to
//! [`MAX_BATCH`] events), applies it as one change set through [`SmService::submit_bgp`] — the
//! same group-committed path as a gRPC LEG's calls, so enforcement points hear of it only once
//! it is durable — and keeps at most [`IN_FLIGHT`] batches waiting for their commit. When the
//! store falls behind, the task stops taking events, the channel fills, and the speaker stops
//! reading its sockets: TCP slows the peers down. No event is dropped.
//!
//! On the standby of an active/standby pair the task holds its first batch until the node
//! becomes active (the sessions stay up as long as the peers tolerate the unread socket), and
//! then applies what was held and queued, in order.
//!
//! At shutdown the task stops first: the withdrawals of the sessions the speaker then closes
//! are not applied, so the stored routes survive a restart exactly as they survive a crash,
//! and the peers' End-of-RIB after the restart reconciles them.

use std::collections::VecDeque;

use brasa_bgp::RouteEvent;
use brasa_bgp_net::{Speaker, SpeakerConfig, StartError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::service::{Pending, SmService};

/// Events the speaker may queue before its peers' sockets are no longer read.
pub const CHANNEL: usize = 8192;
/// Most events applied as one change set.
pub const MAX_BATCH: usize = 8192;
/// Batches applied but not yet durable; beyond this the task waits for the oldest commit.
pub const IN_FLIGHT: usize = 4;
/// How often a standby's LEG task looks whether its node has become active.
const STANDBY_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The running BGP LEG.
pub struct BgpLeg {
    speaker: Speaker,
    stop: watch::Sender<bool>,
    pump: JoinHandle<()>,
}

impl BgpLeg {
    /// Starts the speaker with `config` and the task that applies its events to `service`
    /// (whose configuration must name the same peers in its `bgp_leg`).
    pub async fn start(service: SmService, config: SpeakerConfig) -> Result<BgpLeg, StartError> {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let speaker = Speaker::start(config, tx).await?;
        let (stop, stopped) = watch::channel(false);
        let pump = tokio::spawn(pump(service, rx, stopped));
        Ok(BgpLeg {
            speaker,
            stop,
            pump,
        })
    }

    /// The speaker (peer status, routes, route refresh).
    pub fn speaker(&self) -> &Speaker {
        &self.speaker
    }

    /// Stops applying events (what was applied is made durable first), then closes every
    /// session with a CEASE.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.pump.await;
        self.speaker.shutdown().await;
    }
}

async fn pump(
    service: SmService,
    mut events: mpsc::Receiver<RouteEvent>,
    mut stop: watch::Receiver<bool>,
) {
    let mut in_flight: VecDeque<Pending> = VecDeque::new();
    'events: loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            e = events.recv() => e,
        };
        let Some(first) = first else {
            break;
        };
        let mut batch = Vec::with_capacity(events.len().min(MAX_BATCH) + 1);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match events.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut batch = Some(batch);
        while let Some(events) = batch.take() {
            match service.submit_bgp(events) {
                Ok(pending) => in_flight.push_back(pending),
                Err((e, events)) if service.standby().is_some() => {
                    // A standby of an active/standby pair applies nothing. Hold the batch (the
                    // speaker's channel fills and its peers are no longer read) until this node
                    // becomes active, then apply it first, in order.
                    tracing::info!(reason = %e, "bgp leg: waiting until this subscriber manager is active");
                    if !until_active(&service, &mut stop).await {
                        break 'events;
                    }
                    batch = Some(events);
                }
                Err((e, _)) => {
                    // The store failed: the SM refuses every change until restarted. The
                    // speaker's channel now fills and its peers are no longer read.
                    tracing::error!(error = %e, "bgp leg: events can no longer be applied");
                    break 'events;
                }
            }
        }
        if *stop.borrow() {
            break;
        }
        while in_flight.len() > IN_FLIGHT {
            if let Some(oldest) = in_flight.pop_front() {
                report(oldest).await;
            }
        }
    }
    // Whatever ended the loop, what was applied is reported once durable (or failed).
    for pending in in_flight {
        report(pending).await;
    }
}

/// Waits until `service` is active (true) or the LEG is stopped (false).
async fn until_active(service: &SmService, stop: &mut watch::Receiver<bool>) -> bool {
    while service.standby().is_some() {
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return false,
            _ = tokio::time::sleep(STANDBY_POLL) => {}
        }
    }
    true
}

async fn report(pending: Pending) {
    for result in pending.wait().await {
        if let Err(e) = result {
            tracing::error!(error = %e, "bgp leg: a batch of route events was not made durable");
        }
    }
}
