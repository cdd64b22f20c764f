//! The last Access-Rejects the RADIUS component relayed to its NASes, for the console: an
//! observer behind each server's own policy (`super::observe_server`, as the SM's login-event
//! observer is), seeing every reply at `ingress`.
//!
//! Local user databases answer without an ingress hook, so their rejects are counted
//! (`rejects` per client) but not listed here.

use super::RadiusObserver;
use brasa_aaa::{Direction, EngineConfig, HookContext};
use brasa_radius::attr::{REPLY_MESSAGE, USER_NAME};
use brasa_radius::Code;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many rejects are kept.
pub const KEPT: usize = 50;

/// One Access-Reject as the console lists it.
#[derive(Clone, Debug, Serialize)]
pub struct RejectView {
    /// When it passed, Unix seconds.
    pub at_unix: u64,
    /// The NAS client it went to.
    pub client: String,
    /// The server (listener) that received the request.
    pub server: String,
    /// The request's User-Name, lossily as text.
    pub user_name: Option<String>,
    /// The reply's Reply-Message, lossily as text.
    pub reply_message: Option<String>,
}

/// The newest [`KEPT`] rejects.
#[derive(Default)]
pub struct RecentRejects {
    ring: Mutex<VecDeque<RejectView>>,
}

impl RecentRejects {
    fn push(&self, reject: RejectView) {
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEPT {
            ring.pop_back();
        }
        ring.push_front(reject);
    }

    /// Newest first.
    pub fn list(&self) -> Vec<RejectView> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.iter().cloned().collect()
    }
}

/// Lists the Access-Rejects on their way to a NAS.
struct Observer {
    rejects: Arc<RecentRejects>,
}

impl RadiusObserver for Observer {
    fn observe(&self, context: &mut HookContext<'_>) {
        if context.code != Code::AccessReject || context.direction != Direction::Ingress {
            return;
        }
        let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
        self.rejects.push(RejectView {
            at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            client: context.client.to_owned(),
            server: context.server.to_owned(),
            user_name: text(context.request.and_then(|r| r.get(USER_NAME))),
            reply_message: text(context.packet.get(REPLY_MESSAGE)),
        });
    }
}

/// Puts the observer behind every server's policy; call before the engine is built (and after
/// other observers, which it then wraps too).
pub fn install(engine: &mut EngineConfig) -> Arc<RecentRejects> {
    let rejects = Arc::new(RecentRejects::default());
    let observer: Arc<dyn RadiusObserver> = Arc::new(Observer {
        rejects: rejects.clone(),
    });
    for index in 0..engine.servers.len() {
        super::observe_server(engine, index, "recent-rejects", observer.clone());
    }
    rejects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_rejects_first() {
        let rejects = RecentRejects::default();
        for i in 0..KEPT + 3 {
            rejects.push(RejectView {
                at_unix: i as u64,
                client: "nas".into(),
                server: "s".into(),
                user_name: Some(format!("u{i}")),
                reply_message: None,
            });
        }
        let list = rejects.list();
        assert_eq!(list.len(), KEPT);
        assert_eq!(list[0].at_unix, (KEPT + 2) as u64);
        assert_eq!(list[KEPT - 1].at_unix, 3);
    }
}
