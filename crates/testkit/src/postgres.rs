//! Throw-away PostgreSQL instances for tests.
//!
//! [`PgInstance::start`] runs `initdb` in a fresh temporary directory and starts the server with
//! `pg_ctl` on a free port of 127.0.0.1 (TCP only, no Unix socket, `trust` authentication for
//! the superuser `brasa`). Dropping the instance stops exactly that server (`pg_ctl stop -m
//! immediate`) and removes its directory.
//!
//! `initdb` refuses to run as root; when the tests run as root (CI does), every PostgreSQL
//! command runs as the unprivileged `postgres` user that Debian's package creates, through
//! `runuser`. The binaries are taken from `BRASA_PG_BIN` when set, else from the newest
//! `/usr/lib/postgresql/<version>/bin`, else from `PATH`.

use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The superuser every instance is created with.
pub const SUPERUSER: &str = "brasa";

/// How the server is configured.
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    /// `fsync` and `synchronous_commit` on: what a benchmark of durable commits needs. Off by
    /// default for tests, which kill brasa (never PostgreSQL) and so lose nothing the server
    /// has accepted, and which must not wait for the disk of a shared machine.
    pub durable: bool,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

/// A running throw-away PostgreSQL server.
pub struct PgInstance {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<&'static str>,
    port: u16,
}

fn failed(what: &str, out: &Output) -> io::Error {
    io::Error::other(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

fn bin_dir() -> io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BRASA_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("pg_ctl").exists() && dir.join("initdb").exists())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql \
                 (scripts/setup-test-env) or set BRASA_PG_BIN",
            )
        })
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl PgInstance {
    /// Creates and starts an instance for tests (fsync off).
    pub fn start() -> io::Result<PgInstance> {
        Self::start_with(&PgOptions::default())
    }

    /// Creates and starts an instance.
    pub fn start_with(options: &PgOptions) -> io::Result<PgInstance> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("brasa-pg-").tempdir()?;
        let root = std::fs::metadata("/proc/self")?.uid() == 0;
        let run_as = root.then_some("postgres");
        if let Some(user) = run_as {
            let out = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .output()?;
            if !out.status.success() {
                return Err(failed("chown of the instance directory", &out));
            }
        }
        let mut pg = PgInstance {
            dir,
            bin,
            run_as,
            port: 0,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                SUPERUSER.as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "--no-sync".as_ref(),
                "--no-instructions".as_ref(),
            ],
        )?;
        // The port is free when chosen and may be taken before the server binds it: try again.
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let mut server = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' \
                 -c max_connections=50"
            );
            if !options.durable {
                server.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
            }
            for (name, value) in &options.settings {
                server.push_str(&format!(" -c {name}={value}"));
            }
            let log = pg.dir.path().join("server.log");
            match pg.run(
                "pg_ctl",
                &[
                    "start".as_ref(),
                    "-w".as_ref(),
                    "-D".as_ref(),
                    data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-o".as_ref(),
                    server.as_ref(),
                ],
            ) {
                Ok(()) => {
                    pg.port = port;
                    return Ok(pg);
                }
                Err(e) => {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    last = Some(io::Error::other(format!("{e}\nserver log:\n{log}")));
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("pg_ctl start failed")))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) -> io::Result<()> {
        let program = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        // Inherited descriptors would keep a test harness's output pipe open for as long as the
        // server runs; the server logs to its own file.
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(failed(tool, &out))
        }
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of database `db` (`postgres` exists from the start).
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The connection URL of the `postgres` database.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The instance's directory (data directory and `server.log`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `psql -c sql` against database `db` and returns what it printed (unaligned, tuples
    /// only).
    pub fn psql(&self, db: &str, sql: &str) -> io::Result<String> {
        // Debian keeps psql outside the server's bin directory (postgresql-common's wrapper).
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.url_for(db))
            .arg("-c")
            .arg(sql)
            .stdin(std::process::Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(failed("psql", &out))
        }
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> io::Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(self.url_for(name))
    }
}

impl Drop for PgInstance {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_answers_queries_and_is_gone_after_drop() {
        let pg = PgInstance::start().unwrap();
        assert_eq!(pg.psql("postgres", "SELECT 6 * 7").unwrap(), "42");
        let url = pg.create_database("t1").unwrap();
        assert!(url.ends_with("/t1"));
        assert_eq!(pg.psql("t1", "SELECT current_database()").unwrap(), "t1");
        let port = pg.port();
        let data = pg.path().join("data");
        drop(pg);
        assert!(!data.exists(), "the instance directory is removed");
        assert!(
            std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
            "the server no longer listens"
        );
    }
}
