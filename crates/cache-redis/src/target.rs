//! Where the Redis of the shared caches is: one URL for the three deployments.

use std::fmt;

use thiserror::Error;

/// The Redis deployment the caches live in, parsed from its URL.
///
/// | URL | deployment |
/// |---|---|
/// | `redis://[user:password@]host:port[/db]`, `unix:///path` | one server (standalone) |
/// | `redis+sentinel://[user:password@]host:port[,host:port…]/MASTER[/db]` | the master named `MASTER`, found through these Sentinels (again after every reconnection, so a fail-over is followed) |
/// | `redis+cluster://[user:password@]host:port[,host:port…]` | a Redis Cluster reached through these seed nodes |
///
/// The credentials are those of the data nodes (Sentinels are reached without them).
#[derive(Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server; the URL as the `redis` crate reads it.
    Standalone {
        /// `redis://…` or `unix://…`.
        url: String,
    },
    /// A master found through Sentinels.
    Sentinel {
        /// `redis://host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The master's name in the Sentinels' configuration.
        master: String,
        /// The database number on the master.
        db: i64,
        /// Credentials of the data nodes.
        credentials: Credentials,
    },
    /// A Redis Cluster.
    Cluster {
        /// `redis://[user:password@]host:port` of each seed node.
        seeds: Vec<String>,
    },
}

/// A user name and password (both optional), never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// Why a Redis URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TargetError {
    /// The scheme is none of the accepted ones.
    #[error("unknown scheme in {0:?}; expected redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")]
    Scheme(String),
    /// No `host:port` after the scheme.
    #[error("{0:?} names no host:port")]
    NoHost(String),
    /// A `host:port` that is not one.
    #[error("{host:?} in {url:?} is not host:port")]
    Host {
        /// The URL.
        url: String,
        /// The offending part.
        host: String,
    },
    /// A Sentinel URL without the master's name.
    #[error("{0:?} names no master: expected redis+sentinel://host:port[,host:port]/MASTER[/db]")]
    NoMaster(String),
    /// A database number that is not one.
    #[error("{0:?}: the database must be a number")]
    Db(String),
    /// Something after the seed list of a cluster URL (a cluster has only database 0).
    #[error("{0:?}: a cluster URL is redis+cluster://host:port[,host:port] with nothing after the hosts")]
    ClusterPath(String),
    /// The `redis` crate refused the standalone URL.
    #[error("invalid Redis URL {url:?}: {reason}")]
    Url {
        /// The URL (credentials removed).
        url: String,
        /// Why.
        reason: String,
    },
}

impl RedisTarget {
    /// Parses `url` (see the type's documentation).
    pub fn parse(url: &str) -> Result<RedisTarget, TargetError> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return parse_sentinel(url, rest);
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (credentials, rest) = split_credentials(rest);
            if !rest
                .trim_end_matches('/')
                .split('/')
                .nth(1)
                .unwrap_or("")
                .is_empty()
            {
                return Err(TargetError::ClusterPath(redacted(url)));
            }
            let hosts = parse_hosts(url, rest.trim_end_matches('/'))?;
            let auth = credentials.map_or(String::new(), |c| format!("{c}@"));
            return Ok(RedisTarget::Cluster {
                seeds: hosts.iter().map(|h| format!("redis://{auth}{h}")).collect(),
            });
        }
        if ["redis://", "rediss://", "unix://", "redis+unix://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            redis::Client::open(url).map_err(|err| TargetError::Url {
                url: redacted(url),
                reason: err.to_string(),
            })?;
            return Ok(RedisTarget::Standalone {
                url: url.to_owned(),
            });
        }
        Err(TargetError::Scheme(redacted(url)))
    }
}

fn parse_sentinel(url: &str, rest: &str) -> Result<RedisTarget, TargetError> {
    let (credentials, rest) = split_credentials(rest);
    let mut parts = rest.split('/');
    let hosts = parse_hosts(url, parts.next().unwrap_or(""))?;
    let master = parts
        .next()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| TargetError::NoMaster(redacted(url)))?;
    let db = match parts.next() {
        None | Some("") => 0,
        Some(db) => db.parse().map_err(|_| TargetError::Db(redacted(url)))?,
    };
    if parts.next().is_some_and(|p| !p.is_empty()) {
        return Err(TargetError::NoMaster(redacted(url)));
    }
    let credentials = credentials.map_or_else(Credentials::default, |c| {
        let (user, password) = c.split_once(':').unwrap_or(("", c));
        Credentials {
            username: (!user.is_empty()).then(|| user.to_owned()),
            password: (!password.is_empty()).then(|| password.to_owned()),
        }
    });
    Ok(RedisTarget::Sentinel {
        sentinels: hosts.iter().map(|h| format!("redis://{h}")).collect(),
        master: master.to_owned(),
        db,
        credentials,
    })
}

/// `user:password@rest` → (`user:password`, `rest`).
fn split_credentials(rest: &str) -> (Option<&str>, &str) {
    match rest.rsplit_once('@') {
        Some((credentials, rest)) => (Some(credentials), rest),
        None => (None, rest),
    }
}

fn parse_hosts<'a>(url: &str, list: &'a str) -> Result<Vec<&'a str>, TargetError> {
    if list.is_empty() {
        return Err(TargetError::NoHost(redacted(url)));
    }
    list.split(',')
        .map(|host| {
            let valid = host
                .rsplit_once(':')
                .is_some_and(|(name, port)| !name.is_empty() && port.parse::<u16>().is_ok());
            if valid {
                Ok(host)
            } else {
                Err(TargetError::Host {
                    url: redacted(url),
                    host: host.to_owned(),
                })
            }
        })
        .collect()
}

/// `url` with any password replaced by `***`, for errors, logs and statistics.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or("", |(user, _)| user);
            if credentials.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://***@{host}")
            }
        }
        None => url.to_owned(),
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for RedisTarget {
    /// The URL form with passwords hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisTarget::Standalone { url } => f.write_str(&redacted(url)),
            RedisTarget::Sentinel {
                sentinels,
                master,
                db,
                ..
            } => {
                let hosts: Vec<&str> = sentinels
                    .iter()
                    .map(|s| s.trim_start_matches("redis://"))
                    .collect();
                write!(f, "redis+sentinel://{}/{master}/{db}", hosts.join(","))
            }
            RedisTarget::Cluster { seeds } => {
                let hosts: Vec<String> = seeds
                    .iter()
                    .map(|s| redacted(s).trim_start_matches("redis://").to_owned())
                    .collect();
                write!(f, "redis+cluster://{}", hosts.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_deployments_parse() {
        assert_eq!(
            RedisTarget::parse("redis://127.0.0.1:6379/2").unwrap(),
            RedisTarget::Standalone {
                url: "redis://127.0.0.1:6379/2".into()
            }
        );
        assert_eq!(
            RedisTarget::parse("redis+sentinel://:pw@10.0.0.1:26379,s2:26379/mymaster/3").unwrap(),
            RedisTarget::Sentinel {
                sentinels: vec!["redis://10.0.0.1:26379".into(), "redis://s2:26379".into()],
                master: "mymaster".into(),
                db: 3,
                credentials: Credentials {
                    username: None,
                    password: Some("pw".into())
                },
            }
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://u:pw@n1:7000,n2:7001/").unwrap(),
            RedisTarget::Cluster {
                seeds: vec!["redis://u:pw@n1:7000".into(), "redis://u:pw@n2:7001".into()]
            }
        );
    }

    #[test]
    fn bad_urls_say_what_is_expected_and_hide_passwords() {
        let err = RedisTarget::parse("http://h:1").unwrap_err();
        assert!(matches!(err, TargetError::Scheme(_)), "{err}");
        let err = RedisTarget::parse("redis+sentinel://h:1").unwrap_err();
        assert!(err.to_string().contains("names no master"), "{err}");
        let err = RedisTarget::parse("redis+sentinel://:secret@h:x/m").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"h:x\" in \"redis+sentinel://:***@h:x/m\" is not host:port"
        );
        let err = RedisTarget::parse("redis+cluster://h:1/0").unwrap_err();
        assert!(matches!(err, TargetError::ClusterPath(_)), "{err}");
        assert!(RedisTarget::parse("redis+cluster://").is_err());
        assert!(RedisTarget::parse("redis+sentinel://h:1/m/x").is_err());
    }

    #[test]
    fn display_never_shows_a_password() {
        for url in [
            "redis://:secret@h:1/0",
            "redis://user:secret@h:1",
            "redis+cluster://u:secret@a:1,b:2",
            "redis+sentinel://u:secret@a:1/m",
        ] {
            let shown = RedisTarget::parse(url).unwrap().to_string();
            assert!(!shown.contains("secret"), "{shown}");
        }
        assert_eq!(
            RedisTarget::parse("redis://:secret@h:1/0")
                .unwrap()
                .to_string(),
            "redis://:***@h:1/0"
        );
    }
}
