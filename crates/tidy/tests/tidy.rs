//! The workspace keeps the architecture's invariants (see `brasa_tidy`): this test fails with a
//! list of `file:line: [Rule] what is wrong` when a change breaks one.

use std::path::PathBuf;

#[test]
fn the_workspace_keeps_its_invariants() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let violations =
        brasa_tidy::check_workspace(&root, &brasa_tidy::CargoTree { root: root.clone() });
    let report: Vec<String> = violations.iter().map(ToString::to_string).collect();
    assert!(
        violations.is_empty(),
        "{} violation(s) of the architecture's invariants:\n{}",
        violations.len(),
        report.join("\n")
    );
}
