//! Throw-away Redis servers for tests: `redis-server` (Debian's package) started in a temp
//! dir with a config of its own on a free 127.0.0.1 port, killed by its PID when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` (or `redis-sentinel`) this test started.
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    config: String,
    binary: &'static str,
}

/// A free TCP port on 127.0.0.1, from the OS.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl RedisServer {
    /// A standalone server without persistence; `extra` is appended to its config.
    pub fn start(dir: &Path, extra: &str) -> RedisServer {
        Self::start_with("redis-server", dir, free_port(), extra)
    }

    /// A server of `binary` (`redis-server` or `redis-sentinel`) on `port`, config `extra`.
    pub fn start_with(binary: &'static str, dir: &Path, port: u16, extra: &str) -> RedisServer {
        let dir = dir.join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let config = format!(
            "bind 127.0.0.1\nport {port}\ndir {}\nsave \"\"\nappendonly no\nlogfile {}\ndaemonize no\nprotected-mode no\n{extra}\n",
            dir.display(),
            dir.join("redis.log").display()
        );
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            config,
            binary,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again (after [`RedisServer::kill`]) on the same port, empty.
    pub fn restart(&mut self) {
        let config = self.dir.join("redis.conf");
        std::fs::write(&config, &self.config).expect("redis config");
        let child = Command::new(self.binary)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start {} (apt-get install redis-server redis-sentinel): {err}",
                    self.binary
                )
            });
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.cli(&["PING"]).is_some_and(|out| out.trim() == "PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "{} on port {} did not start: {}",
            self.binary,
            self.port,
            self.log()
        );
    }

    /// Runs `redis-cli -p PORT ARGS…`; its stdout, or `None` when it failed.
    pub fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        (out.status.success() && !out.stdout.starts_with(b"Could not connect"))
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills the server (SIGKILL to its own PID) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to the server's own PID.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill -{signal}");
        }
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.signal("CONT");
        self.kill();
    }
}
