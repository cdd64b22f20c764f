//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use brasa_cache::{CacheConfig, MemoryBudget, PolicyCache};
use brasa_radius::{Code, Dictionary, Message};
use brasa_script::{PolicyCacheAt, RunOptions, RunReport, Script, ScriptCache, ScriptHost};

/// 2014-06-26 03:02:18 UTC, the document's Access-Accept.
pub const T0: u64 = 1_403_751_738_000;

/// The MAC address the document uses as User-Name.
pub const MAC: &[u8] = b"00:20:fc:1e:cd:53";

/// A script written into `dir` and loaded.
pub fn script(dir: &Path, name: &str, source: &str) -> Script {
    let path = write(dir, name, source);
    match Script::load(name, &path) {
        Ok(script) => script,
        Err(e) => panic!("{name} does not load: {e}"),
    }
}

/// Writes `source` to `dir/name.py`.
pub fn write(dir: &Path, name: &str, source: &str) -> PathBuf {
    let path = dir.join(format!("{name}.py"));
    std::fs::write(&path, source).expect("write script");
    path
}

/// Tracing on, a generous limit (tests never depend on timing: a loaded machine can take more
/// than the default second for a run that captures a panic's backtrace).
pub fn options() -> RunOptions {
    RunOptions {
        trace: true,
        time_limit: Some(std::time::Duration::from_secs(60)),
        ..RunOptions::default()
    }
}

pub fn host() -> ScriptHost {
    ScriptHost::new(std::time::Instant::now).expect("script host starts")
}

pub fn policy_cache(config: CacheConfig) -> PolicyCache {
    PolicyCache::new(config, 1, Arc::new(MemoryBudget::new(256 << 20)))
}

/// Runs with a `PolicyCache` at `now`.
pub fn run_cached(
    host: &ScriptHost,
    script: &Script,
    packet: &mut Message,
    cache: &mut PolicyCache,
    now: u64,
) -> RunReport {
    let dict = Dictionary::builtin();
    let mut at = PolicyCacheAt::new(cache, now);
    host.run(
        script,
        packet,
        &dict,
        Some(&mut at as &mut dyn ScriptCache),
        &options(),
    )
}

/// Runs without a cache.
pub fn run(host: &ScriptHost, script: &Script, packet: &mut Message) -> RunReport {
    run_with(host, script, packet, &options())
}

/// Runs without a cache, with `options`.
pub fn run_with(
    host: &ScriptHost,
    script: &Script,
    packet: &mut Message,
    options: &RunOptions,
) -> RunReport {
    host.run(script, packet, &Dictionary::builtin(), None, options)
}

/// Panics with the script's traceback unless the run completed.
#[track_caller]
pub fn assert_ok(report: &RunReport) {
    if let Some(failure) = report.failure() {
        panic!(
            "script {} failed: {failure}\noutput: {}",
            report.script, report.output
        );
    }
}

/// Encodes and decodes, as a packet off the wire.
pub fn wire(packet: Message) -> Message {
    Message::decode(&packet.encode().expect("encodes")).expect("decodes")
}

/// The document's Access-Accept (id 7): three Class attributes and the User-Name.
pub fn access_accept() -> Message {
    let mut p = Message::new(Code::AccessAccept, 7);
    p.authenticator = [0x11; 16];
    p.add(25, b"Class-1").unwrap();
    p.add(25, b"Class-22").unwrap();
    p.add(25, b"Class-333").unwrap();
    p.add(1, MAC).unwrap();
    wire(p)
}

/// An Accounting-Request like the document's, with Acct-Status-Type `status` (1 Start,
/// 2 Stop, 3 Interim-Update); Interim and Stop carry the Alcatel volume VSAs.
pub fn accounting(status: u32, id: u8) -> Message {
    let dict = Dictionary::builtin();
    let mut p = Message::new(Code::AccountingRequest, id);
    p.add(40, status.to_be_bytes()).unwrap();
    p.add(4, vec![192, 168, 1, 254]).unwrap();
    p.add(1, MAC).unwrap();
    p.add(
        44,
        b"00:20:fc:1e:cd:53|1/1/9@1/1/9@sla-profile-1_2014/06/26 03:02:18",
    )
    .unwrap();
    p.add(55, 1_403_751_738u32.to_be_bytes()).unwrap();
    if status != 1 {
        p.add(46, 300u32.to_be_bytes()).unwrap();
        for typ in 19..=26 {
            p.add_vsa(&dict, 6527, typ, &[0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
                .expect("vsa fits");
        }
    }
    wire(p)
}
