//! Network namespaces for tests: created with a unique name, deleted on drop (also when the
//! test fails), with helpers to run commands and open sockets inside.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A network namespace deleted on drop (also when the test fails).
pub struct Netns {
    /// Its name under /var/run/netns.
    pub name: String,
}

impl Netns {
    /// A new namespace with its loopback up; `tag` ends its name (for a reader of `ip netns`).
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "bt{}-{}{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            tag
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Self { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace and asserts it succeeded.
    pub fn sh(&self, command: &str) -> String {
        let output =
            run_ok(Command::new("ip").args(["netns", "exec", &self.name, "sh", "-c", command]));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs a command inside the namespace and returns its output, whatever the status.
    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it opens stay in it).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            use std::os::fd::AsRawFd;
            // SAFETY: setns(2) gets a descriptor this thread owns and open for the call; it
            // changes only the calling thread's namespace, and the thread exists only for `f`.
            let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `command` and panics with its output unless it succeeded.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
