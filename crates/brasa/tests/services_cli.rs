//! The service sections of the daemon config: every mistake stops start-up with
//! `file:line:col` and what was expected.

mod support;

use support::assert_config_errors;

#[test]
fn service_config_errors_name_file_line_and_column() {
    let dataplane = "[dataplane]\ntun = \"brtun0\"\n[[dataplane.interface]]\nname = \"t1\"\n";
    let dot1q = format!("{dataplane}encap = \"dot1q\"\n");
    let cases = [
        (
            format!("{dot1q}[[service.epipe]]\nid = 5\ncustomer = 1\n[[service.epipe.sap]]\nid = \"t1:5000\"\n"),
            "10:6",
            "VLAN tag \"5000\" is neither '*' nor a number in 0..=4094",
        ),
        (
            format!("{dot1q}[[service.vpls]]\nid = 5\ncustomer = 1\n[[service.vpls.sap]]\nid = \"t9:5\"\n"),
            "10:6",
            "port t9 is not a data-plane interface",
        ),
        (
            format!("{dot1q}[[service.vpls]]\nid = 5\ncustomer = 1\n[[service.vpls.sap]]\nid = \"t1:5.7\"\n"),
            "10:6",
            "SAP t1:5.7 does not fit port t1, whose encapsulation is dot1q",
        ),
        (
            format!("{dot1q}[[service.epipe]]\nid = 5\ncustomer = 1\n[[service.epipe.sap]]\nid = \"t1:5\"\ningress = {{ qos = 77 }}\n"),
            "11:19",
            "sap-ingress 77 does not exist",
        ),
        (
            format!("{dot1q}[[service.vpls]]\nid = 5\ncustomer = 1\n[[service.epipe]]\nid = 5\ncustomer = 1\n"),
            "7:6",
            "service 5 already exists",
        ),
        (
            format!("{dot1q}[[qos.sap_ingress]]\nid = 10\n[[qos.sap_ingress.policer]]\nid = 1\nrate = \"fast\"\n"),
            "9:6",
            "expected a rate in kbps or \"max\", found \"fast\"",
        ),
        (
            format!("{dataplane}encap = \"dot2q\"\n"),
            "5:9",
            "unknown variant `dot2q`, expected one of `null`, `dot1q`, `qinq`",
        ),
        (
            format!("{dot1q}outer_tpid = \"0x9999\"\n"),
            "6:14",
            "expected \"0x8100\" or \"0x88a8\"",
        ),
        (
            "[[service.epipe]]\nid = 5\ncustomer = 1\n".to_string(),
            "1:3",
            "need a [dataplane] section with the access ports",
        ),
    ];
    assert_config_errors(&cases);
}
