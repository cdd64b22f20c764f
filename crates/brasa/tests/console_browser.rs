//! The console in a real headless Chromium (Debian's `chromium`, driven by playwright-core from
//! `tests/browser/console.mjs`) against a running `brasa run` with RADIUS, Python and the
//! subscriber manager, real radclient traffic and a real EP (`brasa sm ep-watch`, which does
//! not acknowledge and so gets quarantined). Screenshots of every page are kept in a folder
//! whose path the test prints.

mod console_support;
mod support;

use console_support::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const MAC: &str = "00:20:fc:1e:cd:53";
const IP: &str = "10.0.0.7";
const XSS_NAME: &str = "<img src=x onerror=alert(1)>";
const XSS_PROPERTY: &str = "<script>alert(2)</script>";

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "the console browser test needs Debian's chromium at {path} (apt-get install chromium; \
         scripts/setup-test-env installs it)"
    );
    path
}

fn browser_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "the console browser test needs playwright-core: run `npm ci` in {} \
         (scripts/setup-test-env does)",
        dir.display()
    );
    dir
}

/// The browser run's screenshots: deleted when the test passes, kept for the reader when it
/// fails (the failure prints where).
struct Screenshots(tempfile::TempDir);

impl Drop for Screenshots {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.disable_cleanup(true);
            eprintln!("screenshots kept in {}", self.0.path().display());
        }
    }
}

#[test]
fn console_in_chromium_with_real_traffic() {
    let chromium = chromium();
    let browser = browser_dir();
    let dir = tempfile::tempdir().unwrap();
    let screenshots = Screenshots(
        tempfile::Builder::new()
            .prefix("brasa-console-screenshots-")
            .tempdir()
            .unwrap(),
    );
    let console = start_console(&dir.path().join("daemon"), "");
    let token = ["--token", console.operator_token.as_str()];

    // An EP that never acknowledges: the SM quarantines it once it has something to send.
    let mut ep = Command::new(BRASA)
        .args([
            "sm",
            "ep-watch",
            "--grpc",
            &format!("http://{}", console.grpc),
        ])
        .args(["--id", "sce1", "--no-ack"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ep_state = || {
        let output = brasa_cli(&console, &token, &["--json", "sm", "eps"]);
        let eps: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        eps[0].clone()
    };
    eventually("the EP connects", Duration::from_secs(20), || {
        ep_state()["state"] != "disconnected"
    });

    // The host authenticates (the seed script caches its Class attributes), then its
    // Accounting Start logs it in to the SM with its address.
    let output = radclient(
        console.auth,
        "auth",
        NAS_SECRET,
        &format!("User-Name = \"{MAC}\", User-Password = \"{MAC}\""),
        &[],
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("Access-Accept"),
        "{}",
        console.daemon.log_text()
    );
    let output = radclient(
        console.acct,
        "acct",
        NAS_SECRET,
        &format!("User-Name = \"{MAC}\", Acct-Status-Type = Start, Acct-Session-Id = \"s1\", Framed-IP-Address = {IP}"),
        &[],
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("Accounting-Response"));
    // A subscriber whose name and properties are HTML.
    let output = brasa_cli(
        &console,
        &token,
        &[
            "sm",
            "login",
            XSS_NAME,
            "-m",
            "10.7.7.7",
            "-p",
            &format!("note={XSS_PROPERTY}"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eventually("the EP is quarantined", Duration::from_secs(30), || {
        ep_state()["quarantine"] == "quarantined"
    });

    let run = Command::new("node")
        .arg("console.mjs")
        .current_dir(&browser)
        .env("CHROMIUM", &chromium)
        .env("BRASA_URL", console.base())
        .env("SCREENSHOT_DIR", screenshots.0.path())
        .env("OPERATOR_USER", OPERATOR.0)
        .env("OPERATOR_PASSWORD", OPERATOR.1)
        .env("READONLY_USER", READ_ONLY.0)
        .env("READONLY_PASSWORD", READ_ONLY.1)
        .env("RADIUS_AUTH", console.auth.to_string())
        .env("RADIUS_ACCT", console.acct.to_string())
        .env("NAS_SECRET", NAS_SECRET)
        .env("SUBSCRIBER_NAME", MAC)
        .env("SUBSCRIBER_IP", IP)
        .env("XSS_NAME", XSS_NAME)
        .env("XSS_PROPERTY", XSS_PROPERTY)
        .env("CACHE_POLICY", "python-policy-1")
        .env("QUARANTINED_EP", "sce1")
        .output()
        .expect("node runs (Node.js is part of the test environment)");
    let _ = ep.kill();
    let _ = ep.wait();
    let stdout = String::from_utf8_lossy(&run.stdout);
    println!("{stdout}");
    assert!(
        run.status.success(),
        "browser checks failed:\n{stdout}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&run.stderr),
        console.daemon.log_text()
    );
    assert!(stdout.contains("console browser checks passed"));
    for page in [
        "login",
        "overview",
        "radius",
        "subscribers-by-ip",
        "python-cache",
        "read-only-subscribers",
    ] {
        assert!(
            screenshots.0.path().join(format!("{page}.png")).exists(),
            "{page}.png"
        );
    }
    // The logins were counted: the operator and the read-only user twice (with and without
    // JavaScript), the wrong password once.
    let bearer = format!("Bearer {}", console.read_only_token);
    let metrics = request(
        "GET",
        &format!("{}/metrics", console.base()),
        &[("authorization", &bearer)],
        None,
    )
    .body;
    assert!(
        metrics.contains("brasa_api_logins_total{outcome=\"ok\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_api_logins_total{outcome=\"failed\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_api_refused_total{reason=\"csrf\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("brasa_api_refused_total{reason=\"read_only\"} 1\n"),
        "{metrics}"
    );
}
