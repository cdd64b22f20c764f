//! `sys.stdout` is process-wide: a script that rebinds it must not capture other runs'
//! output. Alone in its binary, since the rebinding would reach concurrently running tests.

mod common;

use brasa_radius::{Code, Message};
use common::*;

fn sample() -> Message {
    Message::new(Code::AccessRequest, 1)
}

#[test]
fn a_script_rebinding_stdout_cannot_leak_later_output() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let rebind = script(
        dir.path(),
        "rebind",
        "import io, sys\nsys.stdout = io.StringIO()\nsys.stderr = io.StringIO()\nprint('lost')\n",
    );
    let talk = script(dir.path(), "talk", "print('captured')\n");
    let report = run(&host, &rebind, &mut sample());
    assert_ok(&report);
    assert_eq!(
        report.output, "",
        "the script's own print went where it asked"
    );
    let report = run(&host, &talk, &mut sample());
    assert_eq!(report.output, "captured\n");
}
