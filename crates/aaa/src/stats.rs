//! Counters kept by the engine, and their serialisable snapshot for the management API.

use serde::{Deserialize, Serialize};

/// Counters of one NAS client.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ClientStats {
    /// Client name.
    pub name: String,
    /// Well-formed, authentic requests received (duplicates excluded).
    pub requests: u64,
    /// Access-Accepts sent.
    pub accepts: u64,
    /// Access-Rejects sent.
    pub rejects: u64,
    /// Access-Challenges sent.
    pub challenges: u64,
    /// Accounting-Responses sent.
    pub accounting_responses: u64,
    /// Retransmissions absorbed or answered from the reply cache.
    pub retransmissions: u64,
    /// Packets that could not be parsed or have a code this port does not take.
    pub malformed: u64,
    /// Bad Request Authenticator (accounting) or bad/missing Message-Authenticator.
    pub bad_authenticator: u64,
    /// Requests or replies dropped by a policy hook.
    pub dropped_by_policy: u64,
    /// Requests that got no answer (every upstream attempt timed out, or no upstream alive).
    pub unanswered: u64,
    /// CoA/Disconnect requests relayed to this NAS.
    pub coa_relayed: u64,
}

/// Counters of one upstream AAA server.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UpstreamStats {
    /// Pool name.
    pub pool: String,
    /// Server name.
    pub name: String,
    /// Server address.
    pub address: String,
    /// `alive` or `dead`.
    pub state: String,
    /// Requests sent (first attempts and retries, Status-Server probes excluded).
    pub requests: u64,
    /// Retries sent to this server after another attempt timed out.
    pub retransmissions: u64,
    /// Access-Accepts received.
    pub accepts: u64,
    /// Access-Rejects received.
    pub rejects: u64,
    /// Access-Challenges received.
    pub challenges: u64,
    /// Accounting-Responses received.
    pub accounting_responses: u64,
    /// Requests that timed out on this server.
    pub timeouts: u64,
    /// Replies that could not be parsed, or matched no outstanding request.
    pub malformed: u64,
    /// Replies with a bad Response Authenticator or Message-Authenticator.
    pub bad_authenticator: u64,
    /// Status-Server probes sent.
    pub status_probes: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Smoothed round-trip time in microseconds.
    pub rtt_us: u64,
}

/// Counters of one server (listener pair).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ServerStats {
    /// Server name.
    pub name: String,
    /// Requests handled.
    pub requests: u64,
}

/// Everything the engine counts, at one instant.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Datagrams from addresses that are no configured client (or, on the CoA port, no upstream).
    pub unknown_client: u64,
    /// Per NAS client.
    pub clients: Vec<ClientStats>,
    /// Per server.
    pub servers: Vec<ServerStats>,
    /// Per upstream AAA server.
    pub upstreams: Vec<UpstreamStats>,
    /// CoA/Disconnect requests from the AAA side that named no known session or NAS.
    pub coa_unroutable: u64,
    /// Requests remembered for duplicate detection.
    pub duplicate_cache_entries: u64,
    /// Sessions known for CoA routing.
    pub sessions: u64,
    /// Packets handed to an external hook processor (python-policies) so far.
    #[serde(default)]
    pub hooks_deferred: u64,
    /// Packets waiting for an external hook now.
    #[serde(default)]
    pub hooks_pending: u64,
    /// Packets dropped because the external hook did not answer in time.
    #[serde(default)]
    pub hook_timeouts: u64,
}
