//! The document's class-reflection script (`examples/python/python_cache.py`) end to end.

mod common;

use brasa_cache::{CacheConfig, PolicyCache};
use brasa_radius::{Message, RawAttr};
use brasa_script::{Script, ScriptHost, Verdict};
use common::*;

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/python/python_cache.py"
);

/// `03 07 08 09` then the three values: what `tools dump ... cache` shows.
const ENTRY: &[u8] = b"\x03\x07\x08\x09Class-1Class-22Class-333";

fn example() -> Script {
    Script::load("python-script-1", EXAMPLE).expect("example script loads")
}

fn classes(p: &Message) -> Vec<&[u8]> {
    p.get_all(25).collect()
}

const RESULT_BLOCK: &str = "Python Result: python-script-1\n\
RADIUS Attribute: Type 25, SET\n  'Class-1'\n  'Class-22'\n  'Class-333'\n";

fn accept_then(host: &ScriptHost, script: &Script, cache: &mut PolicyCache) {
    let mut accept = access_accept();
    let before = accept.clone();
    let report = run_cached(host, script, &mut accept, cache, T0);
    assert_ok(&report);
    assert_eq!(report.verdict, Verdict::Continue);
    assert_eq!(accept, before, "the Access-Accept is not edited");
    assert_eq!(report.to_string(), "Python Result: python-script-1\n");
    assert_eq!(report.output_block(), "Python Output: python-script-1\n");
}

#[test]
fn access_accept_stores_every_class_under_the_user_name() {
    let host = host();
    let script = example();
    let mut cache = policy_cache(CacheConfig::default());
    accept_then(&host, &script, &mut cache);
    assert_eq!(cache.peek(MAC, T0), Some(ENTRY));
    assert_eq!(cache.get_lifetime(MAC, T0), Some(3600));
    assert_eq!(cache.len(), 1);
}

#[test]
fn accounting_start_interim_stop_reflect_the_classes() {
    let host = host();
    let script = example();
    let mut cache = policy_cache(CacheConfig::default());
    accept_then(&host, &script, &mut cache);

    // Start: the three Class attributes are added after the existing ones.
    let mut start = accounting(1, 8);
    let original = start.attributes.clone();
    let report = run_cached(&host, &script, &mut start, &mut cache, T0 + 10_000);
    assert_ok(&report);
    assert_eq!(report.verdict, Verdict::Continue);
    assert_eq!(report.to_string(), RESULT_BLOCK);
    let now: Vec<RawAttr<'_>> = start.attributes.iter().collect();
    assert!(now
        .iter()
        .take(original.len())
        .eq(original.iter().collect::<Vec<_>>().iter()));
    assert_eq!(
        now[original.len()..],
        [
            RawAttr {
                typ: 25,
                value: b"Class-1"
            },
            RawAttr {
                typ: 25,
                value: b"Class-22"
            },
            RawAttr {
                typ: 25,
                value: b"Class-333"
            },
        ]
    );
    assert_eq!(wire(start.clone()), start, "the edited packet encodes");
    // Start leaves the lifetime alone.
    assert_eq!(cache.get_lifetime(MAC, T0 + 10_000), Some(3590));

    // Interim-Update five minutes later: classes added, lifetime reset to 15 minutes.
    let t1 = T0 + 300_000;
    let mut interim = accounting(3, 9);
    let report = run_cached(&host, &script, &mut interim, &mut cache, t1);
    assert_ok(&report);
    assert_eq!(report.to_string(), RESULT_BLOCK);
    assert_eq!(
        classes(&interim),
        [&b"Class-1"[..], b"Class-22", b"Class-333"]
    );
    assert_eq!(
        interim
            .get_vsa_all(&brasa_radius::Dictionary::builtin(), 6527, 19)
            .len(),
        1
    );
    assert_eq!(cache.get_lifetime(MAC, t1), Some(900));
    assert_eq!(cache.peek(MAC, t1), Some(ENTRY));

    // Stop: classes added, entry removed.
    let t2 = t1 + 600_000; // before the 15-minute lifetime runs out
    let mut stop = accounting(2, 13);
    let report = run_cached(&host, &script, &mut stop, &mut cache, t2);
    assert_ok(&report);
    assert_eq!(report.verdict, Verdict::Continue);
    assert_eq!(classes(&stop), [&b"Class-1"[..], b"Class-22", b"Class-333"]);
    assert!(cache.is_empty());
    assert_eq!(cache.peek(MAC, t2), None);

    // Another Stop finds no entry: the script's except path drops it, unedited.
    let mut again = accounting(2, 14);
    let before = again.clone();
    let report = run_cached(&host, &script, &mut again, &mut cache, t2);
    assert_ok(&report);
    assert_eq!(report.verdict, Verdict::Drop);
    assert_eq!(
        report.to_string(),
        "Python Result: python-script-1\nRADIUS Packet: DROP\n"
    );
    assert_eq!(again, before);
}

#[test]
fn an_expired_entry_makes_the_interim_update_drop() {
    let host = host();
    let script = example();
    let mut cache = policy_cache(CacheConfig::default());
    accept_then(&host, &script, &mut cache);
    let mut interim = accounting(3, 9);
    let report = run_cached(&host, &script, &mut interim, &mut cache, T0 + 3_600_000);
    assert_ok(&report);
    assert_eq!(report.verdict, Verdict::Drop);
    assert!(classes(&interim).is_empty());
}

#[test]
fn the_documents_drop_paths() {
    let host = host();
    let script = example();

    // No User-Name.
    let mut cache = policy_cache(CacheConfig::default());
    let mut accept = access_accept();
    accept.remove(1);
    let report = run_cached(&host, &script, &mut accept, &mut cache, T0);
    assert_ok(&report);
    assert_eq!(report.verdict, Verdict::Drop);
    assert!(cache.is_empty());

    // No Class.
    let mut accept = access_accept();
    accept.remove(25);
    let report = run_cached(&host, &script, &mut accept, &mut cache, T0);
    assert_eq!(report.verdict, Verdict::Drop);
    assert!(cache.is_empty());

    // The cache refuses the save (entry-size smaller than key + value).
    let mut small = policy_cache(CacheConfig {
        entry_size: 32,
        ..CacheConfig::default()
    });
    let mut accept = access_accept();
    let report = run_cached(&host, &script, &mut accept, &mut small, T0);
    assert_ok(&report);
    assert_eq!(report.verdict, Verdict::Drop);
    assert!(small.is_empty());
    assert_eq!(
        small
            .counters()
            .refused(brasa_cache::RefusalReason::EntryTooLarge),
        1
    );

    // Accounting without User-Name.
    let mut start = accounting(1, 8);
    start.remove(1);
    let report = run_cached(&host, &script, &mut start, &mut cache, T0);
    assert_eq!(report.verdict, Verdict::Drop);
}
