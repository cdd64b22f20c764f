//! `brasa dataplane` and `brasa cafe` without a network: configuration errors with their
//! location, argument checks before any request, and a clear error when no daemon runs.

use std::process::Command;

fn brasa(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_brasa"))
        .args(args)
        .output()
        .expect("run brasa")
}

/// `brasa dataplane -c dp.toml` with `config` as dp.toml: whether it started, and its stderr.
fn dataplane_with(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dp.toml");
    std::fs::write(&path, config).unwrap();
    let out = brasa(&["dataplane", "-c", path.to_str().unwrap()]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_config_key_is_reported_with_its_location() {
    let (started, stderr) = dataplane_with(
        "[dataplane]\ntun = \"brasa0\"\nbogus = 1\n[[dataplane.interface]]\nname = \"eth0\"\n",
    );
    assert!(!started);
    assert!(stderr.contains("dp.toml:3:1"), "{stderr}");
    assert!(stderr.contains("bogus"), "{stderr}");
}

#[test]
fn bad_handoff_value_and_missing_interfaces_are_refused() {
    let (started, stderr) = dataplane_with(
        "[dataplane]\n[[dataplane.interface]]\nname = \"eth0\"\nip = \"sideways\"\n",
    );
    assert!(!started && stderr.contains("dp.toml:4"), "{stderr}");
    let (started, stderr) = dataplane_with("[dataplane]\ninterface = []\n");
    assert!(!started && stderr.contains("at least one"), "{stderr}");
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

/// Values the TOML parser accepts but the data plane cannot use are located too, before any
/// interface is touched.
#[test]
fn invalid_values_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dp.toml");
    let interface = "[[dataplane.interface]]\nname = \"eth0\"\n";
    let cases = [
        (
            format!("[dataplane]\nbatch_size = 0\n{interface}"),
            "dp.toml:2:14: batch_size = 0: expected 1 to 4096 packets",
        ),
        (
            format!("[dataplane]\nexpiry_interval = \"1ms\"\n{interface}"),
            "dp.toml:2:19: expiry_interval = \"1ms\": expected at least \"10ms\"",
        ),
        (
            format!("[dataplane]\nworkers = 0\n{interface}"),
            "dp.toml:2:11: workers = 0: expected at least 1 worker thread",
        ),
        (
            format!("[dataplane]\nring_blocks = 1\n{interface}"),
            "dp.toml:2:15: ring_blocks = 1: expected at least 2",
        ),
        (
            "[dataplane]\n[[dataplane.interface]]\nname = \"a-very-long-name0\"\n".to_string(),
            "dp.toml:3:8: invalid interface name \"a-very-long-name0\": expected 1 to 15 characters",
        ),
        (
            format!("[dataplane]\n{interface}{interface}"),
            "dp.toml:5:8: interface \"eth0\" is listed twice",
        ),
        (
            format!("[dataplane]\ntun = \"tun/0\"\n{interface}"),
            "dp.toml:2:7: invalid TUN device name \"tun/0\"",
        ),
        (
            "[api]\nlisten = \"127.0.0.1:7781\"\n[dataplane]\n".to_string(),
            "dp.toml:3:1: [dataplane] needs at least one [[dataplane.interface]]",
        ),
        (
            format!("[dataplane]\n{interface}queues = [0, 1]\n"),
            "dp.toml:4:10: queues applies to AF_XDP interfaces only: expected io = \"af_xdp\"",
        ),
        (
            format!("[dataplane]\n{interface}io = \"af_xdp\"\numem_frames = 100\n"),
            "dp.toml:5:15: umem_frames: 100 UMEM frames: expected a power of two, at least 64",
        ),
        (
            format!("[dataplane]\n{interface}io = \"af_xdp\"\nqueues = [1, 1]\n"),
            "dp.toml:5:10: queues: expected a list of distinct receive queue numbers",
        ),
        (
            format!("[dataplane]\n{interface}io = \"xdp\"\n"),
            "dp.toml:4:6: unknown variant `xdp`, expected `af_packet` or `af_xdp`",
        ),
        (
            format!("[dataplane]\n{interface}io = \"af_xdp\"\nxdp_mode = \"offload\"\n"),
            "dp.toml:5:12: unknown variant `offload`, expected one of `auto`, `native`, `generic`",
        ),
    ];
    for (config, expected) in cases {
        std::fs::write(&path, &config).unwrap();
        let out = brasa(&["dataplane", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{config}");
        assert!(stderr.contains(expected), "{config}\n{stderr}");
    }
}
