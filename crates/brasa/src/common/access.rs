//! Who may use a management API, and how they prove it: users with roles and Argon2 password
//! hashes, bearer tokens for the CLI, server-side sessions behind an HttpOnly cookie, a CSRF
//! token per session, and a limit on failed logins.
//!
//! Everything here is decided without I/O: `now` is an argument, randomness comes from the OS
//! CSPRNG, and [`crate::common::mgmt`] applies the decisions to HTTP requests.

use crate::common::config::{ConfigDuration, ConfigError, Source};
use crate::common::prom::{Kind, PromWriter};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde::Deserialize;
use serde_spanned::Spanned;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The cookie that carries a session id.
pub const SESSION_COOKIE: &str = "brasa_session";
/// The header a script sends the CSRF token in; forms send the field [`CSRF_FIELD`].
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// What a user or token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Look at everything, change nothing.
    ReadOnly,
    /// Look and change (clear caches, log subscribers in and out, release quarantines …).
    Operator,
}

impl Role {
    /// `read-only` or `operator`, as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Operator => "operator",
        }
    }
}

/// Who sent a request, once authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user or token name; `None` when access control is off (loopback only).
    pub name: Option<String>,
    /// What it may do.
    pub role: Role,
    /// The CSRF token its forms must carry; `None` for bearer tokens, which a browser never
    /// sends by itself and so need none.
    pub csrf: Option<String>,
    /// The session id, for logging out.
    pub session: Option<String>,
}

impl Principal {
    /// Whether this principal may change state.
    pub fn can_change(&self) -> bool {
        self.role == Role::Operator
    }
}

/// A configured console user.
#[derive(Clone, Debug)]
pub struct User {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The Argon2 hash in PHC string form (`$argon2id$v=19$…`), as `brasa passwd` prints it.
    pub hash: String,
}

/// A configured API token (for the CLI and for Prometheus): only its SHA-256 is kept.
#[derive(Clone, Debug)]
pub struct Token {
    /// Name in logs.
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 of the token.
    pub digest: [u8; 32],
}

/// When failed logins start being refused, and for how long.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimit {
    /// Failures from one address, or for one user name, allowed within [`Self::window`].
    pub failures: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// The first refusal period; each further failure while refused doubles it.
    pub lockout: Duration,
    /// The longest refusal period.
    pub max_lockout: Duration,
}

impl Default for LoginLimit {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(300),
            lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(900),
        }
    }
}

/// The access rules of one API listener.
#[derive(Clone, Debug)]
pub struct AccessConfig {
    /// Console users; none (and no tokens) means access control is off.
    pub users: Vec<User>,
    /// Bearer tokens.
    pub tokens: Vec<Token>,
    /// How long a session lives after login.
    pub session_lifetime: Duration,
    /// Failed-login limit.
    pub login_limit: LoginLimit,
}

impl AccessConfig {
    /// No users and no tokens: everyone who reaches the (loopback) listener is an operator.
    pub fn open() -> Self {
        Self {
            users: Vec::new(),
            tokens: Vec::new(),
            session_lifetime: DEFAULT_SESSION_LIFETIME,
            login_limit: LoginLimit::default(),
        }
    }

    /// Whether any credential is configured.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }
}

/// The default session lifetime (8 hours: a working shift).
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// How many sessions may exist at once (a bound on memory, whatever logs in).
const MAX_SESSIONS: usize = 10_000;
/// How many addresses and names the login limiter tracks at once.
const MAX_TRACKED: usize = 10_000;

/// Why a login did not open a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user or wrong password (the two are not told apart).
    #[error("wrong user name or password")]
    WrongCredentials,
    /// Too many failures from this address or for this user name.
    #[error("too many failed logins; try again in {} s", retry_after.as_secs().max(1))]
    RateLimited {
        /// How long until a login is considered again.
        retry_after: Duration,
    },
    /// Access control is off: there is nothing to log in to.
    #[error("access control is off on this listener")]
    Disabled,
}

/// Login counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct LoginStats {
    ok: AtomicU64,
    failed: AtomicU64,
    rate_limited: AtomicU64,
    forbidden_read_only: AtomicU64,
    forbidden_csrf: AtomicU64,
    unauthenticated: AtomicU64,
}

/// Why a request was refused after it was authenticated (for the counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A read-only principal asked for a change.
    ReadOnly,
    /// A change came without the right CSRF token, or from another site.
    Csrf,
    /// No valid credentials.
    Unauthenticated,
}

struct Session {
    user: String,
    role: Role,
    csrf: String,
    expires: Instant,
}

/// The access state of one API listener: its rules, live sessions and the login limiter.
pub struct Access {
    config: AccessConfig,
    sessions: Mutex<HashMap<String, Session>>,
    limiter: Mutex<LoginLimiter>,
    /// The CSRF token of the console's forms when access control is off: the console still
    /// refuses changes that another web site makes the operator's browser send.
    open_csrf: String,
    stats: LoginStats,
    /// A hash checked when the user does not exist, so that the answer takes as long.
    dummy_hash: String,
}

impl Access {
    /// Access with `config`'s rules and no sessions yet.
    pub fn new(config: AccessConfig) -> Self {
        Self {
            config,
            sessions: Mutex::new(HashMap::new()),
            limiter: Mutex::new(LoginLimiter::default()),
            open_csrf: random_hex(32),
            stats: LoginStats::default(),
            dummy_hash: hash_password(&random_hex(16)),
        }
    }

    /// Whether credentials are required.
    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }

    /// The principal of a request from a loopback client when access control is off.
    pub fn open_principal(&self) -> Option<Principal> {
        (!self.enabled()).then(|| Principal {
            name: None,
            role: Role::Operator,
            csrf: Some(self.open_csrf.clone()),
            session: None,
        })
    }

    /// The principal a bearer token stands for.
    pub fn by_token(&self, token: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.config
            .tokens
            .iter()
            .find(|t| constant_time_eq(&t.digest, &digest))
            .map(|t| Principal {
                name: Some(t.name.clone()),
                role: t.role,
                csrf: None,
                session: None,
            })
    }

    /// The principal of a live session; an unknown (forged) or expired id gives `None`.
    pub fn by_session(&self, now: Instant, id: &str) -> Option<Principal> {
        let mut sessions = lock(&self.sessions);
        let session = sessions.get(id)?;
        if session.expires <= now {
            sessions.remove(id);
            return None;
        }
        Some(Principal {
            name: Some(session.user.clone()),
            role: session.role,
            csrf: Some(session.csrf.clone()),
            session: Some(id.to_owned()),
        })
    }

    /// Checks a login and opens a session: `(session id, principal)`. Slow on purpose (Argon2):
    /// call it off the async workers. Failures are counted, refusals while limited too.
    pub fn login(
        &self,
        now: Instant,
        from: IpAddr,
        user: &str,
        password: &str,
    ) -> Result<(String, Principal), LoginError> {
        if !self.enabled() {
            return Err(LoginError::Disabled);
        }
        if let Some(retry_after) = lock(&self.limiter).refused(now, from, user) {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(LoginError::RateLimited { retry_after });
        }
        let found = self.config.users.iter().find(|u| u.name == user);
        let hash = found.map_or(self.dummy_hash.as_str(), |u| u.hash.as_str());
        let verified = verify_password(hash, password);
        let user = match (found, verified) {
            (Some(user), true) => user,
            _ => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                lock(&self.limiter).failed(now, from, user, &self.config.login_limit);
                return Err(LoginError::WrongCredentials);
            }
        };
        lock(&self.limiter).succeeded(user.name.as_str());
        self.stats.ok.fetch_add(1, Ordering::Relaxed);
        let id = random_hex(32);
        let session = Session {
            user: user.name.clone(),
            role: user.role,
            csrf: random_hex(32),
            expires: now + self.config.session_lifetime,
        };
        let principal = Principal {
            name: Some(session.user.clone()),
            role: session.role,
            csrf: Some(session.csrf.clone()),
            session: Some(id.clone()),
        };
        let mut sessions = lock(&self.sessions);
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.expires > now);
            if sessions.len() >= MAX_SESSIONS {
                // Still full of live sessions: the one closest to its end goes.
                if let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
                {
                    sessions.remove(&oldest);
                }
            }
        }
        sessions.insert(id.clone(), session);
        Ok((id, principal))
    }

    /// Ends a session.
    pub fn logout(&self, id: &str) {
        lock(&self.sessions).remove(id);
    }

    /// The session lifetime (the cookie's Max-Age).
    pub fn session_lifetime(&self) -> Duration {
        self.config.session_lifetime
    }

    /// Counts a refused request.
    pub fn refused(&self, why: Refusal) {
        let counter = match why {
            Refusal::ReadOnly => &self.stats.forbidden_read_only,
            Refusal::Csrf => &self.stats.forbidden_csrf,
            Refusal::Unauthenticated => &self.stats.unauthenticated,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes the login and refusal counters.
    pub fn write_metrics(&self, writer: &mut PromWriter) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        writer.family(
            "brasa_api_logins_total",
            "Console logins by outcome (ok, failed, rate_limited).",
            Kind::Counter,
        );
        for (outcome, counter) in [
            ("ok", &self.stats.ok),
            ("failed", &self.stats.failed),
            ("rate_limited", &self.stats.rate_limited),
        ] {
            writer.sample(
                "brasa_api_logins_total",
                &[("outcome", outcome)],
                get(counter),
            );
        }
        writer.family(
            "brasa_api_refused_total",
            "API and console requests refused (read_only, csrf, unauthenticated).",
            Kind::Counter,
        );
        for (reason, counter) in [
            ("read_only", &self.stats.forbidden_read_only),
            ("csrf", &self.stats.forbidden_csrf),
            ("unauthenticated", &self.stats.unauthenticated),
        ] {
            writer.sample(
                "brasa_api_refused_total",
                &[("reason", reason)],
                get(counter),
            );
        }
        let live = lock(&self.sessions).len();
        writer
            .family(
                "brasa_api_sessions",
                "Console sessions open (expired ones are removed when next seen).",
                Kind::Gauge,
            )
            .sample("brasa_api_sessions", &[], live as f64);
    }
}

/// Remembers recent failed logins per client address and per user name; refuses logins for
/// a key that failed too often, for a period that doubles with each further failure.
#[derive(Default)]
struct LoginLimiter {
    keys: HashMap<LimitKey, Failures>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum LimitKey {
    Address(IpAddr),
    User(String),
}

struct Failures {
    count: u32,
    first: Instant,
    refused_until: Option<Instant>,
    lockout: Duration,
}

impl LoginLimiter {
    /// How long logins from `from` or for `user` are still refused, if they are.
    fn refused(&self, now: Instant, from: IpAddr, user: &str) -> Option<Duration> {
        [LimitKey::Address(from), LimitKey::User(user.to_owned())]
            .iter()
            .filter_map(|key| self.keys.get(key)?.refused_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    fn failed(&mut self, now: Instant, from: IpAddr, user: &str, limit: &LoginLimit) {
        if self.keys.len() >= MAX_TRACKED {
            self.keys.retain(|_, f| {
                f.refused_until.is_some_and(|until| until > now) || now - f.first < limit.window
            });
        }
        for key in [LimitKey::Address(from), LimitKey::User(user.to_owned())] {
            if self.keys.len() >= MAX_TRACKED && !self.keys.contains_key(&key) {
                // Full of live entries: a flood of distinct keys is not remembered, but the
                // address key (checked first) already covers one source.
                continue;
            }
            let entry = self.keys.entry(key).or_insert(Failures {
                count: 0,
                first: now,
                refused_until: None,
                lockout: limit.lockout,
            });
            if entry.refused_until.is_none() && now - entry.first >= limit.window {
                entry.count = 0;
                entry.first = now;
            }
            entry.count += 1;
            if let Some(until) = entry.refused_until {
                // A failure right after a refusal ended: the next refusal is twice as long.
                if until <= now {
                    entry.lockout = (entry.lockout * 2).min(limit.max_lockout);
                    entry.refused_until = Some(now + entry.lockout);
                }
            } else if entry.count >= limit.failures {
                entry.refused_until = Some(now + entry.lockout);
            }
        }
    }

    fn succeeded(&mut self, user: &str) {
        self.keys.remove(&LimitKey::User(user.to_owned()));
    }
}

/// An Argon2id hash of `password` with a random salt, as a PHC string (`brasa passwd`).
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    // Both only fail on lengths far outside what these give them.
    let salt = SaltString::encode_b64(&salt).expect("a 16-byte salt encodes");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with default parameters hashes any password")
        .to_string()
}

/// Whether `password` matches the PHC string `hash`; a malformed hash matches nothing.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Whether `hash` is a PHC string of an Argon2 hash.
pub fn is_argon2_hash(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| parsed.algorithm.as_str().starts_with("argon2"))
}

/// A new random API token (256 bits, hex).
pub fn generate_token() -> String {
    random_hex(32)
}

/// The SHA-256 of a token in hex, as `[[api.token]] sha256` holds it.
pub fn token_digest_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether two CSRF tokens (or digests) are equal, in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex(&buffer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these maps leaves them consistent (single inserts and removes).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `[api]` of a daemon's config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Address of the HTTP(S) management API, the console and `/metrics`.
    pub listen: Option<Spanned<SocketAddr>>,
    /// PEM certificate chain for HTTPS (relative to the config file).
    pub tls_cert: Option<Spanned<PathBuf>>,
    /// PEM private key for HTTPS.
    pub tls_key: Option<Spanned<PathBuf>>,
    /// How long a console session lives.
    pub session_lifetime: Option<Spanned<ConfigDuration>>,
    /// Console users.
    #[serde(default, rename = "user")]
    pub users: Vec<UserSection>,
    /// Bearer tokens for the CLI and Prometheus.
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenSection>,
}

/// `[[api.user]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// Login name.
    pub name: Spanned<String>,
    /// `read-only` or `operator`.
    pub role: Role,
    /// Argon2 PHC string from `brasa passwd`.
    pub password_hash: Spanned<String>,
}

/// `[[api.token]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// Name in logs.
    pub name: Spanned<String>,
    /// `read-only` or `operator`.
    pub role: Role,
    /// SHA-256 of the token, hex (`brasa passwd --new-token` prints both).
    pub sha256: Spanned<String>,
}

/// A validated `[api]`: where to listen, with which certificate, and who may enter.
#[derive(Clone)]
pub struct ApiConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// The TLS server config when HTTPS is configured.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// The access rules.
    pub access: AccessConfig,
}

impl ApiConfig {
    /// Plain HTTP on a loopback address, no credentials: the daemons configured by their
    /// arguments (`brasa rae`, `brasa curling`). Refuses any other address: without
    /// credentials nothing may listen beyond loopback.
    pub fn loopback(listen: SocketAddr) -> Result<Self, String> {
        if !listen.ip().is_loopback() {
            return Err(format!(
                "--mgmt-listen {listen}: without users or tokens and TLS the management API \
                 listens on loopback only (127.0.0.0/8 or ::1)"
            ));
        }
        Ok(Self {
            listen,
            tls: None,
            access: AccessConfig::open(),
        })
    }
}

impl ApiSection {
    /// Validates the section; paths are relative to `base` (the config file's folder).
    pub fn resolve(
        self,
        source: &Source,
        base: &Path,
        default_listen: SocketAddr,
    ) -> Result<ApiConfig, ConfigError> {
        let mut users: Vec<User> = Vec::new();
        for user in self.users {
            let name = user.name.get_ref();
            if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(source.error_at(
                    user.name.span(),
                    "invalid user name; expected a name without spaces or control characters",
                ));
            }
            if users.iter().any(|u| &u.name == name) {
                return Err(
                    source.error_at(user.name.span(), format!("user {name:?} is defined twice"))
                );
            }
            if !is_argon2_hash(user.password_hash.get_ref()) {
                return Err(source.error_at(
                    user.password_hash.span(),
                    "invalid password_hash; expected an Argon2 PHC string such as \
                     \"$argon2id$v=19$m=19456,t=2,p=1$…\" (run `brasa passwd`)",
                ));
            }
            users.push(User {
                name: name.clone(),
                role: user.role,
                hash: user.password_hash.into_inner(),
            });
        }
        let mut tokens: Vec<Token> = Vec::new();
        for token in self.tokens {
            let digest = parse_digest(token.sha256.get_ref()).ok_or_else(|| {
                source.error_at(
                    token.sha256.span(),
                    "invalid sha256; expected 64 hex digits (run `brasa passwd --new-token`)",
                )
            })?;
            if tokens.iter().any(|t| t.name == *token.name.get_ref()) {
                return Err(source.error_at(
                    token.name.span(),
                    format!("token {:?} is defined twice", token.name.get_ref()),
                ));
            }
            tokens.push(Token {
                name: token.name.into_inner(),
                role: token.role,
                digest,
            });
        }
        let tls = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(Arc::new(load_tls(source, base, cert, key)?)),
            (Some(cert), None) => {
                return Err(source.error_at(cert.span(), "tls_cert needs tls_key beside it"))
            }
            (None, Some(key)) => {
                return Err(source.error_at(key.span(), "tls_key needs tls_cert beside it"))
            }
        };
        let session_lifetime = match &self.session_lifetime {
            Some(lifetime) if lifetime.get_ref().0.is_zero() => {
                return Err(
                    source.error_at(lifetime.span(), "session_lifetime must be longer than 0s")
                )
            }
            Some(lifetime) => lifetime.get_ref().0,
            None => DEFAULT_SESSION_LIFETIME,
        };
        let access = AccessConfig {
            users,
            tokens,
            session_lifetime,
            login_limit: LoginLimit::default(),
        };
        let listen = self
            .listen
            .as_ref()
            .map_or(default_listen, |l| *l.get_ref());
        if !listen.ip().is_loopback() && (!access.enabled() || tls.is_none()) {
            let span = self.listen.as_ref().map_or(0..0, Spanned::span);
            let missing = match (access.enabled(), tls.is_some()) {
                (false, false) => "[[api.user]] or [[api.token]] entries and tls_cert/tls_key",
                (false, true) => "[[api.user]] or [[api.token]] entries",
                _ => "tls_cert and tls_key (passwords and tokens never cross a network in clear)",
            };
            return Err(source.error_at(
                span,
                format!("listening on {listen}, beyond loopback, needs {missing}"),
            ));
        }
        Ok(ApiConfig {
            listen,
            tls,
            access,
        })
    }
}

fn parse_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

fn load_tls(
    source: &Source,
    base: &Path,
    cert: &Spanned<PathBuf>,
    key: &Spanned<PathBuf>,
) -> Result<tokio_rustls::rustls::ServerConfig, ConfigError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let cert_path = base.join(cert.get_ref());
    let chain = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| {
            source.error_at(
                cert.span(),
                format!(
                    "tls_cert {}: {err}; expected a PEM certificate chain",
                    cert_path.display()
                ),
            )
        })?;
    if chain.is_empty() {
        return Err(source.error_at(
            cert.span(),
            format!(
                "tls_cert {}: no certificate in it; expected a PEM certificate chain",
                cert_path.display()
            ),
        ));
    }
    let key_path = base.join(key.get_ref());
    let private = PrivateKeyDer::from_pem_file(&key_path).map_err(|err| {
        source.error_at(
            key.span(),
            format!(
                "tls_key {}: {err}; expected a PEM private key",
                key_path.display()
            ),
        )
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private)
        })
        .map(|mut config| {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            config
        })
        .map_err(|err| {
            source.error_at(
                key.span(),
                format!("tls_cert and tls_key do not make a TLS server: {err}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn access_with(users: &[(&str, Role, &str)]) -> Access {
        let mut config = AccessConfig::open();
        config.users = users
            .iter()
            .map(|(name, role, password)| User {
                name: (*name).to_owned(),
                role: *role,
                hash: hash_password(password),
            })
            .collect();
        Access::new(config)
    }

    const HOST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));

    #[test]
    fn hashes_verify_only_their_password() {
        let hash = hash_password("wonderland");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(is_argon2_hash(&hash));
        assert!(verify_password(&hash, "wonderland"));
        assert!(!verify_password(&hash, "Wonderland"));
        assert!(!verify_password("not a hash", "wonderland"));
        assert!(!is_argon2_hash("$2b$12$abcdefghijklmnopqrstuv"));
        // The same password hashes differently each time (random salt).
        assert_ne!(hash, hash_password("wonderland"));
    }

    #[test]
    fn a_login_opens_a_session_and_forged_or_expired_ids_find_none() {
        let access = access_with(&[("ana", Role::Operator, "s3cret")]);
        let now = Instant::now();
        let (id, principal) = access.login(now, HOST, "ana", "s3cret").unwrap();
        assert_eq!(principal.role, Role::Operator);
        assert_eq!(id.len(), 64);
        let found = access.by_session(now, &id).unwrap();
        assert_eq!(found, principal);
        let csrf = found.csrf.unwrap();
        assert_ne!(csrf, id, "the CSRF token is not the session id");
        // A forged cookie: same length, one digit changed.
        let mut forged = id.clone().into_bytes();
        forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            access.by_session(now, std::str::from_utf8(&forged).unwrap()),
            None
        );
        assert_eq!(access.by_session(now, ""), None);
        // Expired.
        let later = now + DEFAULT_SESSION_LIFETIME + Duration::from_secs(1);
        assert_eq!(access.by_session(later, &id), None);
        assert_eq!(access.by_session(now, &id), None, "removed once expired");
        // Logged out.
        let (id, _) = access.login(now, HOST, "ana", "s3cret").unwrap();
        access.logout(&id);
        assert_eq!(access.by_session(now, &id), None);
    }

    #[test]
    fn sessions_get_distinct_csrf_tokens() {
        let access = access_with(&[("ana", Role::ReadOnly, "pw")]);
        let now = Instant::now();
        let (_, a) = access.login(now, HOST, "ana", "pw").unwrap();
        let (_, b) = access.login(now, HOST, "ana", "pw").unwrap();
        assert_ne!(a.csrf, b.csrf);
        assert!(!a.can_change());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn failed_logins_are_limited_per_address_and_per_user() {
        let access = access_with(&[("ana", Role::Operator, "right")]);
        let limit = LoginLimit::default();
        let now = Instant::now();
        for _ in 0..limit.failures {
            assert_eq!(
                access.login(now, HOST, "ana", "wrong"),
                Err(LoginError::WrongCredentials)
            );
        }
        // Even the right password is refused now, from this address …
        match access.login(now, HOST, "ana", "right") {
            Err(LoginError::RateLimited { retry_after }) => {
                assert_eq!(retry_after, limit.lockout)
            }
            other => panic!("{other:?}"),
        }
        // … and for this user from anywhere else.
        let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10));
        assert!(matches!(
            access.login(now, other, "ana", "right"),
            Err(LoginError::RateLimited { .. })
        ));
        // After the lockout the right password works and clears the user's record.
        let after = now + limit.lockout;
        assert!(access.login(after, HOST, "ana", "right").is_ok());
        // A failure right after a lockout doubles the next one (the address still counts).
        assert!(access.login(after, HOST, "ana", "wrong").is_err());
        match access.login(after, HOST, "ana", "right") {
            Err(LoginError::RateLimited { retry_after }) => {
                assert_eq!(retry_after, limit.lockout * 2)
            }
            other => panic!("{other:?}"),
        }
        let mut metrics = PromWriter::default();
        access.write_metrics(&mut metrics);
        let text = metrics.finish();
        assert!(
            text.contains("brasa_api_logins_total{outcome=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("brasa_api_logins_total{outcome=\"failed\"} 6\n"),
            "{text}"
        );
        assert!(
            text.contains("brasa_api_logins_total{outcome=\"rate_limited\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn failures_spread_beyond_the_window_are_not_limited() {
        let access = access_with(&[("ana", Role::Operator, "right")]);
        let limit = LoginLimit::default();
        let mut now = Instant::now();
        for _ in 0..3 * limit.failures {
            assert_eq!(
                access.login(now, HOST, "bob", "x"),
                Err(LoginError::WrongCredentials),
                "unknown users fail like wrong passwords"
            );
            now += limit.window / (limit.failures - 1);
        }
    }

    #[test]
    fn tokens_match_by_digest_and_carry_no_csrf() {
        let token = generate_token();
        let mut config = AccessConfig::open();
        config.tokens.push(Token {
            name: "cli".into(),
            role: Role::Operator,
            digest: parse_digest(&token_digest_hex(&token)).unwrap(),
        });
        let access = Access::new(config);
        assert!(access.enabled());
        let principal = access.by_token(&token).unwrap();
        assert_eq!(principal.name.as_deref(), Some("cli"));
        assert_eq!(principal.csrf, None);
        assert_eq!(access.by_token(&generate_token()), None);
        assert_eq!(access.open_principal(), None);
        assert_eq!(
            access.login(Instant::now(), HOST, "cli", &token),
            Err(LoginError::WrongCredentials)
        );
    }

    #[test]
    fn without_credentials_everyone_on_loopback_is_an_operator_with_a_csrf_token() {
        let access = Access::new(AccessConfig::open());
        let principal = access.open_principal().unwrap();
        assert!(principal.can_change());
        assert_eq!(principal.csrf.as_ref().map(String::len), Some(64));
        assert_eq!(
            access.login(Instant::now(), HOST, "a", "b"),
            Err(LoginError::Disabled)
        );
    }

    fn resolve(text: &str) -> Result<ApiConfig, String> {
        #[derive(Deserialize)]
        struct File {
            api: ApiSection,
        }
        let source = Source::from_text("brasa.toml", text);
        let file: File = source.parse().map_err(|e| e.to_string())?;
        file.api
            .resolve(&source, Path::new("."), "127.0.0.1:7780".parse().unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn config_errors_name_the_place_and_what_was_expected() {
        let hash = hash_password("pw");
        let err = resolve("[api]\nlisten = \"0.0.0.0:7780\"\n").err().unwrap();
        assert!(
            err.starts_with(
                "brasa.toml:2:10: listening on 0.0.0.0:7780, beyond loopback, needs [[api.user]]"
            ),
            "{err}"
        );
        let err = resolve(&format!(
            "[api]\nlisten = \"0.0.0.0:7780\"\n[[api.user]]\nname = \"a\"\nrole = \"operator\"\npassword_hash = \"{hash}\"\n"
        ))
        .err()
        .unwrap();
        assert!(err.contains("needs tls_cert and tls_key"), "{err}");
        let err = resolve(
            "[[api.user]]\nname = \"a\"\nrole = \"operator\"\npassword_hash = \"secret\"\n",
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("brasa.toml:4:17: invalid password_hash"),
            "{err}"
        );
        let err = resolve("[[api.user]]\nname = \"a\"\nrole = \"admin\"\npassword_hash = \"x\"\n")
            .err()
            .unwrap();
        assert!(err.starts_with("brasa.toml:3:8: "), "{err}");
        assert!(
            err.contains("read-only") && err.contains("operator"),
            "{err}"
        );
        let err = resolve("[[api.token]]\nname = \"cli\"\nrole = \"operator\"\nsha256 = \"abc\"\n")
            .err()
            .unwrap();
        assert!(err.starts_with("brasa.toml:4:10: invalid sha256"), "{err}");
        let err = resolve("[api]\ntls_cert = \"cert.pem\"\n").err().unwrap();
        assert!(
            err.starts_with("brasa.toml:2:12: tls_cert needs tls_key"),
            "{err}"
        );
        let err = resolve(
            "[api]\ntls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n",
        )
        .err()
        .unwrap();
        assert!(
            err.starts_with("brasa.toml:2:12: tls_cert /nonexistent/cert.pem"),
            "{err}"
        );
        let err = resolve("[api]\nsession_lifetime = \"0s\"\n").err().unwrap();
        assert!(
            err.starts_with("brasa.toml:2:20: session_lifetime"),
            "{err}"
        );
        let ok = resolve(&format!(
            "[[api.user]]\nname = \"a\"\nrole = \"read-only\"\npassword_hash = \"{hash}\"\n"
        ))
        .unwrap();
        assert_eq!(ok.listen.to_string(), "127.0.0.1:7780");
        assert_eq!(ok.access.users[0].role, Role::ReadOnly);
        assert!(ApiConfig::loopback("0.0.0.0:1".parse().unwrap()).is_err());
    }
}
