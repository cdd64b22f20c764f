//! The Wireshark dissector in `contrib/wireshark/comet.lua` reads the COMET header as
//! `docs/comet-header.md` specifies: a pcap written here is decoded by `tshark`.

use brasa_dataplane::build;
use brasa_dataplane::pcap::{PcapWriter, LINKTYPE_ETHERNET};
use brasa_dataplane::wire::{EtherType, MacAddr};
use std::path::Path;
use std::process::Command;

#[test]
fn tshark_decodes_comet_frames_with_the_lua_dissector() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("contrib/wireshark/comet.lua");
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("comet.pcap");
    let src = MacAddr([2, 0, 0, 0, 0, 1]);
    let dst = MacAddr([0xaa, 0x11, 0xb0, 0, 0, 1]);
    let ip4 = build::ipv4_udp(
        [127, 1, 1, 2].into(),
        [127, 2, 2, 1].into(),
        4000,
        80,
        b"hello",
    );
    let ip6 = build::ipv6_udp(
        "fd00::1".parse().unwrap(),
        "fd00::2".parse().unwrap(),
        4000,
        443,
        b"six",
    );
    let keys = [0x12, 0x34, 0x56, 0x78, 0x90, 0xab, 0xcd, 0xef];
    let mut writer =
        PcapWriter::new(std::fs::File::create(&pcap).unwrap(), LINKTYPE_ETHERNET).unwrap();
    writer
        .write_packet(1_000_000, &build::comet_frame(src, dst, 1, &keys, &ip4))
        .unwrap();
    writer
        .write_packet(
            2_000_000,
            &build::comet_frame(src, dst, 2, &[0x05, 0xa7], &ip6),
        )
        .unwrap();
    let mut bad = build::comet_frame(src, dst, 0, &[1], &ip4);
    bad[15] = 9; // index beyond length
    writer.write_packet(3_000_000, &bad).unwrap();
    let _ = writer.into_inner().unwrap();
    assert_eq!(EtherType::COMET, 0xcccc);

    let output = Command::new("tshark")
        .arg("-X")
        .arg(format!("lua_script:{}", script.display()))
        .args(["-o", "gui.max_tree_depth:64", "-n", "-r"])
        .arg(&pcap)
        .args(["-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "comet.version",
            "-e",
            "comet.index",
            "-e",
            "comet.length",
            "-e",
            "comet.inner_protocol",
        ])
        .args([
            "-e",
            "comet.current_key",
            "-e",
            "comet.complete",
            "-e",
            "ip.dst",
            "-e",
            "ipv6.dst",
            "-e",
            "udp.dstport",
        ])
        .output()
        .expect("tshark must be installed (scripts/setup-test-env installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], "1|1|8|0x0800|0x34|0|127.2.2.1||80", "{stdout}");
    assert_eq!(lines[1], "1|2|2|0x86dd||1||fd00::2|443", "{stdout}");
    assert_eq!(lines[2], "1|9|1|0x0800|||||", "{stdout}");

    let verbose = Command::new("tshark")
        .arg("-X")
        .arg(format!("lua_script:{}", script.display()))
        .args(["-n", "-V", "-r"])
        .arg(&pcap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verbose.stdout);
    assert!(
        text.contains("COMET forwarding-key header, index 1/8"),
        "{text}"
    );
    assert!(
        text.contains("Error/Malformed): bad version, index, length or truncated keys"),
        "{text}"
    );
}
