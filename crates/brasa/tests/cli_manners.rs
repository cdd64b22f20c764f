//! Unix manners of the `brasa` binary: operator commands end quietly when their reader goes
//! away, and logs carry no colour escapes when they do not go to a terminal.

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{free_tcp_port, free_udp_port, start_brasa, BRASA};

/// A pipe whose read end is already closed: every write to it fails with EPIPE.
fn closed_pipe() -> std::fs::File {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: fds[0] is the read end pipe(2) just opened and nothing else owns it.
    unsafe { libc::close(fds[0]) };
    use std::os::fd::FromRawFd;
    // SAFETY: fds[1] is the write end pipe(2) just opened; the File becomes its only owner.
    unsafe { std::fs::File::from_raw_fd(fds[1]) }
}

/// Runs `brasa ARGS` with stdout on a closed pipe and checks it ended without a word: no panic,
/// no "Broken pipe" report, no backtrace, and either success or the SIGPIPE default action.
fn assert_quiet_on_closed_pipe(args: &[&str]) {
    let output = Command::new(BRASA)
        .args(args)
        .stdout(Stdio::from(closed_pipe()))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.is_empty(),
        "brasa {args:?} wrote to stderr on a closed pipe: {stderr}"
    );
    let quiet = output.status.success() || output.status.signal() == Some(libc::SIGPIPE);
    assert!(
        quiet,
        "brasa {args:?} ended with {} on a closed pipe",
        output.status
    );
}

#[test]
fn commands_end_quietly_when_stdout_is_closed() {
    let quickstart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/quickstart.toml"
    );
    assert_quiet_on_closed_pipe(&["check", "-c", quickstart]);
    assert_quiet_on_closed_pipe(&["--help"]);

    // A show command against a running daemon, table and JSON.
    let dir = tempfile::tempdir().unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let _daemon = start_brasa(dir.path(), &minimal_config(dir.path(), api), api);
    let api_flag = format!("http://{api}");
    assert_quiet_on_closed_pipe(&["--api", &api_flag, "show", "radius", "statistics"]);
    assert_quiet_on_closed_pipe(&["--api", &api_flag, "--json", "show", "radius", "statistics"]);
}

#[test]
fn logs_have_no_colour_escapes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let api: std::net::SocketAddr = format!("127.0.0.1:{}", free_tcp_port("127.0.0.1"))
        .parse()
        .unwrap();
    let daemon = start_brasa(dir.path(), &minimal_config(dir.path(), api), api);
    support::eventually("a log line", Duration::from_secs(10), || {
        daemon.log_text().contains("INFO")
    });
    let log = daemon.log_text();
    assert!(
        !log.contains('\u{1b}'),
        "the log written to a file holds ANSI escapes:\n{log}"
    );
}

fn minimal_config(dir: &std::path::Path, api: std::net::SocketAddr) -> String {
    format!(
        r#"data_dir = "{data}"
[api]
listen = "{api}"
[radius]
[[radius.client]]
name = "localhost"
address = "127.0.0.1"
secret = "testing123"
[[radius.server]]
name = "s"
auth_listen = "127.0.0.1:{auth}"
acct_listen = "127.0.0.1:{acct}"
local = "users"
[[radius.local]]
name = "users"
[[radius.local.user]]
name = "alice"
password = "wonderland"
"#,
        data = dir.join("data").display(),
        auth = free_udp_port("127.0.0.1"),
        acct = free_udp_port("127.0.0.1"),
    )
}
