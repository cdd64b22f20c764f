//! RADIUS login events: accounting Start / Interim-Update log a subscriber in, Stop logs it out.
//!
//! The observer sees each observed server's messages after the server's own policy (see
//! [`super::observe_server`]). It runs on the RADIUS path, so it only reads the attributes it
//! needs and `try_send`s an event to a bounded queue; a full queue drops the event and counts
//! it. A task drains the queue into the SM in batches (one durable commit per batch).

use super::sm_config::RadiusLogins;
use super::RadiusObserver;
use brasa_aaa::{Direction, EngineConfig, HookContext};
use brasa_radius::attr::{
    DELEGATED_IPV6_PREFIX, FRAMED_IPV6_ADDRESS, FRAMED_IPV6_PREFIX, FRAMED_IP_ADDRESS, USER_NAME,
};
use brasa_radius::{AcctStatusType, AttrId, Code, Dictionary, Message};
use brasa_sm::{Op, SmError};
use brasa_sm_net::SmService;
use brasa_subscriber::Login;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Most events applied in one commit.
const BATCH: usize = 1024;

/// What an accounting request means for the SM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcctEvent {
    /// Start or Interim-Update.
    Login {
        /// User-Name.
        name: String,
        /// Mapping texts from the address attributes.
        mappings: Vec<String>,
        /// Configured attributes as properties.
        properties: Vec<(String, String)>,
    },
    /// Stop.
    Logout {
        /// User-Name.
        name: String,
    },
}

/// Counters of the RADIUS login events (`/metrics`, `brasa sm show counts`).
#[derive(Debug, Default)]
pub struct LoginEventStats {
    /// Accounting requests that carried a login or logout.
    pub received: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Applied (durable).
    pub applied: AtomicU64,
    /// Refused by the SM (unknown subscriber on Stop, invalid name, …).
    pub refused: AtomicU64,
}

impl LoginEventStats {
    /// As JSON numbers.
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "received": self.received.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "applied": self.applied.load(Ordering::Relaxed),
            "refused": self.refused.load(Ordering::Relaxed),
        })
    }
}

/// Reads a login event out of an Accounting-Request; `None` when it carries none (no
/// User-Name, Accounting-On/Off, …).
pub fn extract(
    packet: &Message,
    dictionary: &Dictionary,
    properties: &[(AttrId, String, String)],
) -> Option<AcctEvent> {
    let status = packet.acct_status_type()?;
    let name = std::str::from_utf8(packet.get(USER_NAME)?).ok()?.to_owned();
    match status {
        AcctStatusType::Start | AcctStatusType::InterimUpdate => {
            let mut mappings = Vec::new();
            for v in packet.get_all(FRAMED_IP_ADDRESS) {
                if let Ok(a) = <[u8; 4]>::try_from(v) {
                    mappings.push(Ipv4Addr::from(a).to_string());
                }
            }
            for v in packet.get_all(FRAMED_IPV6_ADDRESS) {
                if let Ok(a) = <[u8; 16]>::try_from(v) {
                    mappings.push(Ipv6Addr::from(a).to_string());
                }
            }
            for typ in [FRAMED_IPV6_PREFIX, DELEGATED_IPV6_PREFIX] {
                for v in packet.get_all(typ) {
                    if let Some(p) = ipv6_prefix(v) {
                        mappings.push(p);
                    }
                }
            }
            let properties = if properties.is_empty() {
                Vec::new()
            } else {
                let pairs = dictionary.decode_pairs(packet, None);
                properties
                    .iter()
                    .filter_map(|(id, _, key)| {
                        let pair = pairs.iter().find(|p| &p.attr == id)?;
                        Some((key.clone(), pair.plain_value(dictionary).to_string()))
                    })
                    .collect()
            };
            Some(AcctEvent::Login {
                name,
                mappings,
                properties,
            })
        }
        AcctStatusType::Stop => Some(AcctEvent::Logout { name }),
        _ => None,
    }
}

/// RFC 3162 §2.3 value: reserved, prefix length, prefix (host bits may be set; they are cleared).
fn ipv6_prefix(v: &[u8]) -> Option<String> {
    let (&len, prefix) = v.get(1..)?.split_first()?;
    if len > 128 || prefix.len() > 16 {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes[..prefix.len()].copy_from_slice(prefix);
    let bits = u128::from_be_bytes(bytes);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    Some(format!("{}/{len}", Ipv6Addr::from(bits & mask)))
}

/// The SM operation of an event.
pub fn to_op(event: AcctEvent, domain: Option<&str>) -> Result<Op, SmError> {
    match event {
        AcctEvent::Login {
            name,
            mappings,
            properties,
        } => Ok(Op::Login {
            login: Login {
                // An Interim-Update without address attributes keeps the current mappings.
                additive: mappings.is_empty(),
                mappings: brasa_sm::convert::mappings(&mappings)?,
                communities: Vec::new(),
                name,
                domain: domain.map(str::to_owned),
                properties,
                auto_logout: None,
            },
            auto_logout_after: None,
        }),
        AcctEvent::Logout { name } => Ok(Op::Logout { name, domain: None }),
    }
}

/// Sends the login event of each accounting request towards the AAA server to the SM's queue.
struct Observer {
    properties: Arc<Vec<(AttrId, String, String)>>,
    events: mpsc::Sender<AcctEvent>,
    stats: Arc<LoginEventStats>,
}

impl RadiusObserver for Observer {
    fn observe(&self, context: &mut HookContext<'_>) {
        if context.code == Code::AccountingRequest && context.direction == Direction::Egress {
            if let Some(event) = extract(context.packet, context.dictionary, &self.properties) {
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                if self.events.try_send(event).is_err() {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Wraps the policy of every observed server with the login-event observer and starts the
/// task that feeds the SM.
pub fn install(
    engine: &mut EngineConfig,
    logins: &RadiusLogins,
    service: SmService,
) -> Arc<LoginEventStats> {
    let stats = Arc::new(LoginEventStats::default());
    let (tx, rx) = mpsc::channel(logins.queue);
    let observer: Arc<dyn RadiusObserver> = Arc::new(Observer {
        properties: Arc::new(logins.properties.clone()),
        events: tx,
        stats: stats.clone(),
    });
    for &i in &logins.servers {
        super::observe_server(engine, i, "sm-login-events", observer.clone());
    }
    tokio::spawn(feed(rx, service, logins.domain.clone(), stats.clone()));
    stats
}

async fn feed(
    mut rx: mpsc::Receiver<AcctEvent>,
    service: SmService,
    domain: Option<String>,
    stats: Arc<LoginEventStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        while events.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => events.push(e),
                Err(_) => break,
            }
        }
        let ops = events
            .into_iter()
            .map(|e| to_op(e, domain.as_deref()))
            .collect();
        for result in service.submit(ops).wait().await {
            match result {
                Ok(_) => stats.applied.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!(error = %e, "RADIUS login event refused");
                    stats.refused.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brasa_radius::attr::ACCT_STATUS_TYPE;

    fn accounting(status: u32, extra: &[(u8, Vec<u8>)]) -> Message {
        let mut p = Message::new(Code::AccountingRequest, 1);
        p.add(USER_NAME, b"alice").unwrap();
        p.add(ACCT_STATUS_TYPE, status.to_be_bytes()).unwrap();
        for (t, v) in extra {
            p.add(*t, v.clone()).unwrap();
        }
        p
    }

    #[test]
    fn start_and_stop_become_login_and_logout() {
        let dict = Dictionary::builtin();
        let filter = dict.attribute("Filter-Id").unwrap().id.clone();
        let props = vec![(filter, "Filter-Id".to_owned(), "package".to_owned())];
        let start = accounting(
            1,
            &[
                (FRAMED_IP_ADDRESS, vec![10, 0, 0, 7]),
                (
                    FRAMED_IPV6_PREFIX,
                    vec![0, 64, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0xff],
                ),
                (
                    DELEGATED_IPV6_PREFIX,
                    vec![0, 56, 0x20, 0x01, 0x0d, 0xb8, 0xaa, 0],
                ),
                (11, b"gold".to_vec()),
            ],
        );
        assert_eq!(
            extract(&start, &dict, &props),
            Some(AcctEvent::Login {
                name: "alice".into(),
                mappings: vec![
                    "10.0.0.7".into(),
                    "2001:db8:1::/64".into(),
                    "2001:db8:aa00::/56".into()
                ],
                properties: vec![("package".into(), "gold".into())],
            })
        );
        let stop = accounting(2, &[]);
        assert_eq!(
            extract(&stop, &dict, &props),
            Some(AcctEvent::Logout {
                name: "alice".into()
            })
        );
        assert_eq!(
            extract(&accounting(7, &[]), &dict, &props),
            None,
            "Accounting-On"
        );
        let mut nameless = accounting(1, &[]);
        nameless.remove(USER_NAME);
        assert_eq!(extract(&nameless, &dict, &props), None);
        // Garbage prefix attributes are skipped, not fatal.
        let bad = accounting(3, &[(FRAMED_IPV6_PREFIX, vec![0, 200, 1])]);
        match extract(&bad, &dict, &[]) {
            Some(AcctEvent::Login { mappings, .. }) => assert!(mappings.is_empty()),
            other => panic!("{other:?}"),
        }
        let op = to_op(
            AcctEvent::Login {
                name: "alice".into(),
                mappings: vec![],
                properties: vec![],
            },
            None,
        )
        .unwrap();
        assert!(matches!(op, Op::Login { login, .. } if login.additive));
    }
}
