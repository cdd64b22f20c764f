//! The engine's resolved configuration. The binary turns the operator's TOML into these types
//! (with `file:line:col` errors); the engine never sees text it would have to reject.

use crate::policy::{Direction, Policy};
use brasa_radius::{Code, Pair};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything the engine needs to run.
pub struct EngineConfig {
    /// NAS clients, matched by source address (longest prefix wins).
    pub clients: Vec<ClientConfig>,
    /// RADIUS servers (listening sockets with a handler each).
    pub servers: Vec<ServerConfig>,
    /// Upstream AAA server pools used by proxy handlers.
    pub pools: Vec<PoolConfig>,
    /// Local user databases used by local handlers.
    pub local_databases: Vec<LocalDatabase>,
    /// Policies that servers refer to by index.
    pub policies: Vec<Arc<dyn Policy>>,
    /// Where CoA/Disconnect requests from the AAA servers arrive, to be relayed to the NAS.
    pub coa_listen: Option<SocketAddr>,
    /// How long an answered request's reply is kept to answer retransmissions (RFC 5080 §2.2.2).
    pub duplicate_window: Duration,
    /// How long a packet handed to an external hook processor may wait for its answer before
    /// the engine gives up on it (dropped and counted). The processor enforces its own, shorter
    /// limits; this only bounds what a stuck processor can hold.
    pub external_hook_timeout: Duration,
}

/// Default of [`EngineConfig::external_hook_timeout`].
pub const DEFAULT_EXTERNAL_HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// A NAS allowed to talk to brasa.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Operator-facing name (statistics, logs).
    pub name: String,
    /// Source addresses of the NAS.
    pub network: IpNet,
    /// Shared secret.
    pub secret: Vec<u8>,
    /// Drop Access-Requests without a valid Message-Authenticator (Blast-RADIUS mitigation).
    pub require_message_authenticator: bool,
    /// UDP port on the NAS that accepts CoA and Disconnect requests.
    pub coa_port: u16,
}

/// One RADIUS server: its sockets and what answers them.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Operator-facing name.
    pub name: String,
    /// Access-Request socket.
    pub auth_listen: Option<SocketAddr>,
    /// Accounting-Request socket.
    pub acct_listen: Option<SocketAddr>,
    /// Local answering or proxying.
    pub handler: Handler,
    /// Index into [`EngineConfig::policies`] of the policy applied at every hook, if any.
    pub policy: Option<usize>,
    /// Hook points handed to an external processor (a python-policy), after `policy`.
    pub external_hooks: Option<ExternalHooks>,
}

/// The hook points of a server that run outside the engine, asynchronously: the engine parks
/// the exchange, emits [`crate::Output::Hook`] and goes on with other packets until the shell
/// calls [`crate::Engine::resume_hook`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalHooks {
    /// Which external handler (for brasa's daemon: the python-policy index) gets the packets.
    pub handler: usize,
    /// The (message type, direction) points deferred; every other point runs inline.
    pub points: Vec<(Code, Direction)>,
}

impl ExternalHooks {
    /// Whether packets of `code` travelling `direction` are deferred.
    pub fn covers(&self, code: Code, direction: Direction) -> bool {
        self.points.contains(&(code, direction))
    }
}

/// What answers a server's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Authenticate from a local user database and log accounting (index into `local_databases`).
    Local(usize),
    /// Proxy to an upstream pool (index into `pools`).
    Proxy(usize),
}

/// How a pool spreads requests over its live servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadBalance {
    /// Always the first live server in configured order.
    Failover,
    /// Live servers in turn.
    RoundRobin,
    /// The same NAS (and User-Name) always lands on the same live server.
    ClientBalance,
}

/// A pool of upstream AAA servers.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Operator-facing name.
    pub name: String,
    /// Servers for Access-Requests.
    pub auth_servers: Vec<UpstreamConfig>,
    /// Servers for Accounting-Requests.
    pub acct_servers: Vec<UpstreamConfig>,
    /// Server selection.
    pub load_balance: LoadBalance,
    /// Time to wait for an answer before trying again.
    pub timeout: Duration,
    /// Further attempts after the first one (each on the next live server).
    pub retries: u32,
    /// Consecutive timeouts after which a server is declared dead.
    pub dead_after_timeouts: u32,
    /// Interval of Status-Server probes (RFC 5997) to a dead server; zero disables probing.
    pub status_check_interval: Duration,
    /// Without probing, how long a dead server rests before it is tried again.
    pub revive_after: Duration,
}

/// One upstream AAA server.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Operator-facing name.
    pub name: String,
    /// Address and port.
    pub address: SocketAddr,
    /// Shared secret between brasa and this server.
    pub secret: Vec<u8>,
}

/// A local user database and its accounting log.
#[derive(Clone, Debug, Default)]
pub struct LocalDatabase {
    /// Operator-facing name.
    pub name: String,
    /// Users by User-Name; an entry named `DEFAULT` applies to every User-Name not listed.
    pub users: HashMap<String, LocalUser>,
    /// Where the shell appends the JSON-lines accounting records.
    pub accounting_log: PathBuf,
}

/// A locally defined user.
#[derive(Clone, Debug, Default)]
pub struct LocalUser {
    /// Cleartext password checked against PAP User-Password or CHAP-Password.
    pub password: Option<Vec<u8>>,
    /// Attributes the request must carry with these values (all must match).
    pub check: Vec<Pair>,
    /// Attributes added to the Access-Accept.
    pub reply: Vec<Pair>,
}
