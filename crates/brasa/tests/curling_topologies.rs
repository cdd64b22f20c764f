//! The validation topologies of COMET D4.3 §6.4 run by the real binary (`brasa curling run`), each
//! on its own 127.N.0.0/16 so they can run in parallel.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const CONTENT_BYTES: usize = 4_000_000;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/curling")
}

/// Deterministic pseudo-random bytes (xorshift), so every byte position matters.
fn content() -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..CONTENT_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

struct Run {
    dir: tempfile::TempDir,
    report: Value,
    published: Vec<u8>,
}

impl Run {
    fn entities(&self, kind: &str) -> std::vec::IntoIter<&Value> {
        let all = self.report["entities"].as_array().unwrap();
        all.iter()
            .filter(|e| e["entity"] == kind)
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn entity(&self, kind: &str, name: &str) -> &Value {
        self.entities(kind)
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn cafes_with_state(&self) -> BTreeSet<String> {
        self.entities("cafe")
            .filter(|e| !e["table"].as_array().unwrap().is_empty())
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn cafes_with_traffic(&self) -> BTreeSet<String> {
        self.entities("cafe")
            .filter(|e| e["counters"]["chunks_received"].as_u64().unwrap() > 0)
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn cafes_ever_configured(&self) -> BTreeSet<String> {
        self.entities("cafe")
            .filter(|e| e["counters"]["configures"].as_u64().unwrap() > 0)
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn log_has(&self, line: &str) -> bool {
        self.report["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains(line))
    }

    fn saved(&self, client: &str) -> Vec<u8> {
        let path = self
            .dir
            .path()
            .join("Content")
            .join(format!("{client} 1000"))
            .join("MyContent1");
        std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    fn assert_no_active_sessions(&self) {
        for crme in self.entities("crme") {
            assert_eq!(
                crme["active_sessions"],
                Value::Array(vec![]),
                "{}",
                crme["name"]
            );
        }
    }

    fn assert_clean_forwarding(&self) {
        for cafe in self.entities("cafe") {
            let counters = &cafe["counters"];
            for field in [
                "unknown_content",
                "malformed",
                "configure_not_local",
                "unexpected",
            ] {
                assert_eq!(counters[field], 0, "CAFE {} {field}", cafe["name"]);
            }
        }
    }
}

fn run(scenario: &str, net: u8) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let published = content();
    std::fs::write(dir.path().join("MyContent1.bin"), &published).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_brasa"))
        .args(["--json", "curling", "run"])
        .arg(examples().join(scenario))
        .args(["--net", &net.to_string(), "--timeout", "60s"])
        .arg("--file-dir")
        .arg(dir.path())
        .arg("--content-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ended_by"], "idle", "{report:#}");
    Run {
        dir,
        report,
        published,
    }
}

fn names(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn topology1_states_only_on_the_resolved_path_and_the_file_arrives_intact() {
    let run = run("topology1.scn", 31);
    let path = names(&[
        "5.3", "5.2", "3.3", "3.2", "1.3", "1.2", "2.2", "2.3", "4.2", "4.3",
    ]);
    assert_eq!(run.cafes_with_state(), path);
    assert_eq!(
        run.cafes_with_traffic(),
        path,
        "content only through CAFEs with state"
    );
    run.assert_clean_forwarding();
    // §6.4.2 Test 1: the state tables of domain 2.
    let table = &run.entity("cafe", "2.2")["table"][0];
    assert_eq!(table["content_id"], "MyContent1");
    assert_eq!(table["next_hops"], serde_json::json!(["127.31.2.3:2000"]));
    assert_eq!(
        run.entity("cafe", "2.3")["table"][0]["next_hops"],
        serde_json::json!(["127.31.4.2:2000"])
    );
    // §6.4.2 Test 3: the delivery log.
    assert!(run.log_has("CAFE 5.3: Content MyContent1 received and will be sent to 5.2:2000"));
    assert!(run.log_has("CAFE 5.2: Content MyContent1 received and will be sent to 3.3:2000"));
    assert!(run.log_has("CAFE 4.2: Content MyContent1 received and will be sent to 4.3:2000"));
    assert!(run.log_has("CAFE 4.3: Content MyContent1 received and will be sent to 4.3:1000"));
    assert!(run.log_has("CC: Content MyContent1 received and saved to: "));
    assert!(
        run.saved("4.3") == run.published,
        "saved file differs from the published one"
    );
    // Teardown: every ingress CAFE reported the end of the flow and no session is left.
    run.assert_no_active_sessions();
    assert!(
        run.entity("crme", "4.1")["counters"]["teardowns"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

#[test]
fn topology2_no_state_under_cafe_1_3() {
    let run = run("topology2.scn", 32);
    let path = names(&[
        "7.3", "7.2", "4.3", "4.2", "1.4", "1.2", "2.2", "2.3", "5.2", "5.3",
    ]);
    assert_eq!(run.cafes_with_state(), path);
    assert_eq!(run.cafes_ever_configured(), path);
    assert_eq!(run.cafes_with_traffic(), path);
    for off_path in ["1.3", "3.2", "3.3", "6.2"] {
        assert_eq!(
            run.entity("cafe", off_path)["counters"]["configures"],
            0,
            "{off_path}"
        );
    }
    // §6.4.2 Test 2: CAFE 1.2 → 2.2, CAFE 1.4 → 1.2.
    assert_eq!(
        run.entity("cafe", "1.2")["table"][0]["next_hops"],
        serde_json::json!(["127.32.2.2:2000"])
    );
    assert_eq!(
        run.entity("cafe", "1.4")["table"][0]["next_hops"],
        serde_json::json!(["127.32.1.2:2000"])
    );
    assert!(run.log_has("CAFE 7.3: Content MyContent1 received and will be sent to 7.2:2000"));
    assert!(run.log_has("CAFE 5.3: Content MyContent1 received and will be sent to 5.3:1000"));
    run.assert_clean_forwarding();
    assert!(run.saved("5.3") == run.published);
    run.assert_no_active_sessions();
}

#[test]
fn route_optimisation_moves_the_flow_to_the_peering_link() {
    let run = run("topology1-ro.scn", 33);
    assert!(run.log_has("CRME 4.1: route optimisation of MyContent1: 2.1:3000 -> 5.1:3000"));
    assert_eq!(
        run.entity("crme", "4.1")["counters"]["route_optimisations_completed"],
        1
    );
    // The old route was pruned; state remains only on the short path.
    assert_eq!(run.cafes_with_state(), names(&["5.3", "5.4", "4.4", "4.3"]));
    assert_eq!(
        run.entity("cafe", "5.3")["table"][0]["next_hops"],
        serde_json::json!(["127.33.5.4:2000"])
    );
    assert!(
        run.entity("cafe", "4.4")["counters"]["chunks_received"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Content tables now point the way of the optimised route for later requests.
    assert_eq!(
        run.entity("crme", "4.1")["content_table"]["MyContent1"]["crme"],
        "127.33.5.1:3000"
    );
    assert!(run.saved("4.3") == run.published);
    run.assert_no_active_sessions();
}

#[test]
fn second_consumer_joins_the_existing_path() {
    let run = run("topology1-join.scn", 34);
    let crme2 = run.entity("crme", "2.1");
    assert_eq!(crme2["counters"]["consumes_joined"], 1);
    assert!(
        run.log_has("CRME 2.1: Consume for MyContent1 joined the existing path at CAFE 2.2:2000")
    );
    let next: BTreeSet<&str> = run.entity("cafe", "2.2")["table"][0]["next_hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        next,
        ["127.34.2.3:2000", "127.34.2.4:2000"].into_iter().collect()
    );
    // The join did not reach the server: every stream it started is the first request or a
    // repair of the joiner's missed beginning.
    let repairs = run.entity("client", "2.4")["counters"]["repairs"]
        .as_u64()
        .unwrap();
    assert_eq!(
        run.entity("server", "5.3")["counters"]["consumes"]
            .as_u64()
            .unwrap(),
        1 + repairs
    );
    assert!(run.saved("4.3") == run.published);
    assert!(run.saved("2.4") == run.published);
    run.assert_no_active_sessions();
}

#[test]
fn lost_chunks_are_detected_and_repaired_never_saved_corrupt() {
    let run = run("topology1-loss.scn", 35);
    let dropped = run.entity("cafe", "3.3")["emulated_loss_drops"]
        .as_u64()
        .unwrap();
    assert!(dropped >= 1, "the lossy CAFE dropped nothing");
    let client = &run.entity("client", "4.3")["counters"];
    assert!(client["gaps_detected"].as_u64().unwrap() >= 1, "{client}");
    assert!(client["repairs"].as_u64().unwrap() >= 1, "{client}");
    assert_eq!(client["completed"], 1, "{client}");
    assert!(run.log_has("CC 4.3:1000: Content MyContent1 has gaps"));
    assert!(run.saved("4.3") == run.published);
}
