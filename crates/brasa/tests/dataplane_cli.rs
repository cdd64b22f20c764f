//! `brasa dataplane` and `brasa cafe` without a network: configuration errors with their
//! location, argument checks before any request, and a clear error when no daemon runs.

use std::process::Command;

fn brasa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_brasa"))
        .args(args)
        .output()
        .expect("run brasa")
}

#[test]
fn unknown_config_key_is_reported_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dp.toml");
    std::fs::write(
        &path,
        "[dataplane]\ntun = \"brasa0\"\nbogus = 1\n[[dataplane.interface]]\nname = \"eth0\"\n",
    )
    .unwrap();
    let out = brasa(&["dataplane", "-c", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dp.toml:3:1"), "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");
}

#[test]
fn bad_handoff_value_and_missing_interfaces_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dp.toml");
    std::fs::write(
        &path,
        "[dataplane]\n[[dataplane.interface]]\nname = \"eth0\"\nip = \"sideways\"\n",
    )
    .unwrap();
    let out = brasa(&["dataplane", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("dp.toml:4"),
        "{stderr}"
    );
    std::fs::write(&path, "[dataplane]\ninterface = []\n").unwrap();
    let out = brasa(&["dataplane", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("at least one"),
        "{stderr}"
    );
}

#[test]
fn example_config_parses_until_the_interfaces_are_opened() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/dataplane/dp.toml");
    let out = brasa(&["dataplane", "-c", path.to_str().unwrap()]);
    assert!(
        !out.status.success(),
        "eth1 does not exist in the test environment"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interface \"eth1\""), "{stderr}");
}

#[test]
fn cafe_arguments_are_checked_before_any_request() {
    let out = brasa(&[
        "--api",
        "127.0.0.1:9",
        "cafe",
        "intercept",
        "add",
        "1",
        "60",
        "1.1.1.2",
        "2.2.2.1",
        "17",
        "0",
        "80",
        "123",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("even number of hex digits"),
        "{stderr}"
    );
    let out = brasa(&["--api", "127.0.0.1:9", "cafe", "forward", "remove", "zz"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("invalid key"),
        "{stderr}"
    );
    let out = brasa(&[
        "--api",
        "127.0.0.1:9",
        "cafe",
        "intercept",
        "add",
        "1",
        "60",
        "1.1.1",
        "0",
        "17",
        "0",
        "80",
        "12",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("invalid IP address"),
        "{stderr}"
    );
}

#[test]
fn cafe_without_a_daemon_says_so() {
    let out = brasa(&["--api", "127.0.0.1:9", "cafe", "forward", "get"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("cannot reach the daemon"),
        "{stderr}"
    );
}
