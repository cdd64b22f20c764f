//! FreeRADIUS's `radclient` (package freeradius-utils) as a real RADIUS peer for tests.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

/// Runs `radclient -x -r 2 -t 3 [extra…] server kind secret` with `input` (radclient's pair
/// text, one request per line) on stdin and returns its output, exit status included.
pub fn radclient(
    server: SocketAddr,
    kind: &str,
    secret: &str,
    input: &str,
    extra: &[&str],
) -> Output {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "2", "-t", "3"])
        .args(extra)
        .arg(server.to_string())
        .arg(kind)
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient must be installed (scripts/setup-test-env)");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .expect("radclient's stdin");
    }
    child.wait_with_output().expect("radclient ran")
}

/// Its stdout and stderr as one text, for assertions and failure messages.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
