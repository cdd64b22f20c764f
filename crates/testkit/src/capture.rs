//! tcpdump as an independent decoder of what crossed a link.
//!
//! A capture is returned only once tcpdump says it listens: a test that sends right after
//! starting one must not race tcpdump's own start-up (that race lost the first packets on a
//! busy CI machine).

use crate::netns::Netns;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `tcpdump -l`, bounded by a timeout.
pub struct Capture {
    child: Child,
}

impl Capture {
    /// Starts `tcpdump -l ARGS…` inside `netns` (or in the test's own namespace for `None`),
    /// killed after `limit` at the latest, and returns once it listens. `args` carry the
    /// interface, the count (`-c`), the print options and the filter.
    pub fn start(netns: Option<&Netns>, args: &[&str], limit: Duration) -> Self {
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", &netns.name, "timeout"]);
                command
            }
            None => Command::new("timeout"),
        };
        let mut child = command
            .arg(limit.as_secs().max(1).to_string())
            .args(["tcpdump", "-l"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump must be installed (.ci/run installs it) and runnable as this user");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr);
        let mut said = String::new();
        loop {
            let mut line = String::new();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => panic!("tcpdump {args:?} did not start: {said}"),
                Ok(_) if line.contains("listening on") => break,
                Ok(_) => said.push_str(&line),
            }
        }
        // tcpdump writes its summary to stderr at exit; drain it so that it never blocks.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut lines, &mut std::io::sink());
        });
        Self { child }
    }

    /// Waits for tcpdump to end (its count reached, or its time limit) and returns what it
    /// printed on stdout.
    pub fn output(mut self) -> String {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            let _ = out.read_to_string(&mut stdout);
        }
        let _ = self.child.wait();
        stdout
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: `timeout` passes it on to tcpdump, which a SIGKILL of `timeout`
        // would leave running.
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on the pid of a child this value owns and has not reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}
