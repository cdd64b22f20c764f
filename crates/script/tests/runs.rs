//! How runs fail and recover: exceptions, `SystemExit`, the time limit, output capture,
//! tracing, reload, and runs from other threads.

mod common;

use std::time::Duration;

use brasa_cache::{CacheConfig, CacheError};
use brasa_radius::{Code, Dictionary, Message};
use brasa_script::{
    FailureKind, Outcome, RunOptions, RunReport, Script, ScriptCache, ScriptError, ScriptHost,
    Verdict,
};
use common::*;

fn sample() -> Message {
    let mut p = Message::new(Code::AccessAccept, 3);
    p.add(1, b"alice").unwrap();
    p.add(25, b"gold").unwrap();
    wire(p)
}

/// Edits the packet and asks for a drop, then fails with `tail`.
fn failing(tail: &str) -> String {
    format!(
        "from alc import radius\nradius.attributes.set(25, (b'a', b'b'))\nradius.attributes.clear(1)\nradius.drop()\n{tail}\n"
    )
}

fn short_limit() -> RunOptions {
    RunOptions {
        time_limit: Some(Duration::from_millis(50)),
        ..options()
    }
}

#[track_caller]
fn assert_failed(report: &RunReport, kind: FailureKind) -> &brasa_script::ScriptFailure {
    let failure = report.failure().expect("the run fails");
    assert_eq!(failure.kind, kind, "{failure}");
    assert_eq!(
        report.verdict,
        Verdict::Continue,
        "a failed run's drop is discarded"
    );
    failure
}

#[test]
fn an_uncaught_exception_fails_and_leaves_the_packet_as_it_was() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(dir.path(), "boom", &failing("x = 1 / 0"));
    let mut p = sample();
    let before = p.clone();
    let report = run(&host, &script, &mut p);
    let failure = assert_failed(&report, FailureKind::Exception);
    assert_eq!(failure.message, "ZeroDivisionError: division by zero");
    let file = dir.path().join("boom.py");
    assert!(
        failure
            .traceback
            .contains(&format!("File \"{}\", line 5, in <module>", file.display())),
        "{}",
        failure.traceback
    );
    assert_eq!(p, before);
    // The attempted changes are still reported, for debugging.
    assert_eq!(report.trace.len(), 3);
}

#[test]
fn system_exit_fails_the_run_and_not_the_process() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, tail) in [
        "import sys\nsys.exit(3)",
        "import sys\nsys.exit(0)",
        "raise SystemExit",
    ]
    .into_iter()
    .enumerate()
    {
        let script = script(dir.path(), &format!("exit{i}"), &failing(tail));
        let mut p = sample();
        let before = p.clone();
        let report = run(&host, &script, &mut p);
        assert_failed(&report, FailureKind::SystemExit);
        assert_eq!(p, before);
    }
}

#[test]
fn a_script_that_never_ends_is_stopped_and_the_host_keeps_working() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let forever = script(dir.path(), "forever", &failing("while True:\n    pass"));
    let good = script(
        dir.path(),
        "good",
        "from alc import radius\nradius.attributes.set(18, b'ok')\n",
    );
    for _ in 0..2 {
        let mut p = sample();
        let before = p.clone();
        let report = run_with(&host, &forever, &mut p, &short_limit());
        let failure = assert_failed(&report, FailureKind::Timeout);
        assert_eq!(
            failure.message,
            "the script ran over its time limit of 50ms"
        );
        assert!(
            failure.traceback.contains("alc.TimeLimitExceeded"),
            "{}",
            failure.traceback
        );
        assert_eq!(p, before);

        let mut p = sample();
        let report = run_with(&host, &good, &mut p, &short_limit());
        assert_ok(&report);
        assert_eq!(p.get(18), Some(&b"ok"[..]));
    }
}

/// A clock an hour further on at every reading: to the watchdog, every deadline has passed.
fn hasty_clock() -> std::time::Instant {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    static READINGS: AtomicU32 = AtomicU32::new(0);
    let hours = READINGS.fetch_add(1, Ordering::Relaxed);
    *START.get_or_init(std::time::Instant::now) + Duration::from_secs(3600) * hours
}

#[test]
fn the_time_limit_is_measured_with_the_clock_the_host_is_given() {
    // An hour's limit, on a clock that runs an hour ahead at every reading: the loop is
    // stopped at the watchdog's first look. On the real clock this would run for an hour.
    let host = ScriptHost::new(hasty_clock).expect("script host starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let forever = script(dir.path(), "forever", "while True:\n    pass\n");
    let options = RunOptions {
        time_limit: Some(Duration::from_secs(3600)),
        ..options()
    };
    let mut p = sample();
    let report = run_with(&host, &forever, &mut p, &options);
    assert_failed(&report, FailureKind::Timeout);
}

#[test]
fn catching_the_time_limit_does_not_escape_it() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let sources = [
        // A bare except around the loop, inside another loop.
        "while True:\n    try:\n        while True:\n            pass\n    except:\n        pass",
        // Swallowed once, and then the script finishes normally.
        "import alc\ntry:\n    while True:\n        pass\nexcept alc.TimeLimitExceeded:\n    pass",
        // `except Exception` does not catch it at all.
        "try:\n    while True:\n        pass\nexcept Exception:\n    pass",
        // A finally that loops again.
        "try:\n    while True:\n        pass\nfinally:\n    while True:\n        pass",
    ];
    for (i, source) in sources.iter().enumerate() {
        let script = script(dir.path(), &format!("stubborn{i}"), &failing(source));
        let mut p = sample();
        let before = p.clone();
        let report = run_with(&host, &script, &mut p, &short_limit());
        assert_failed(&report, FailureKind::Timeout);
        assert_eq!(p, before, "source {i}");
    }
    // And the thread is clean afterwards: a trace hook or a pending exception left behind
    // would fail this loop at once.
    let script = script(
        dir.path(),
        "after",
        "import sys\nassert sys.gettrace() is None\ntotal = 0\nfor i in range(100000):\n    total += i\n",
    );
    // (With the generous limit: a loaded machine may take more than the short one for the
    // loop, which is not what this checks.)
    assert_ok(&run_with(&host, &script, &mut sample(), &options()));
}

#[test]
fn no_limit_means_no_timeout() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "count",
        "n = 0\nfor i in range(200000):\n    n += i\nprint(n)\n",
    );
    let options = RunOptions {
        time_limit: None,
        ..options()
    };
    let report = run_with(&host, &script, &mut sample(), &options);
    assert_ok(&report);
    assert_eq!(report.output, "19999900000\n");
}

#[test]
fn print_goes_to_the_report() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "talk",
        "import sys\nprint('hello', 42)\nsys.stdout.write('raw\\n')\nprint('oops', file=sys.stderr)\nprint('é', end='')\n",
    );
    let report = run(&host, &script, &mut sample());
    assert_ok(&report);
    assert_eq!(report.output, "hello 42\nraw\noops\né");
    assert_eq!(
        report.output_block(),
        "Python Output: talk\nhello 42\nraw\noops\né\n"
    );

    // A failing run keeps what it printed.
    let script = common::script(
        dir.path(),
        "talk_fail",
        "print('before')\nraise ValueError('bad')\n",
    );
    let report = run(&host, &script, &mut sample());
    assert_eq!(report.output, "before\n");
    assert_eq!(report.failure().expect("fails").message, "ValueError: bad");
}

#[test]
fn output_is_bounded() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "chatty",
        "for i in range(1000):\n    print('x' * 99)\n",
    );
    let options = RunOptions {
        output_limit: 250,
        ..options()
    };
    let report = run_with(&host, &script, &mut sample(), &options);
    assert_ok(&report);
    let expected = format!(
        "{0}\n{0}\n{1}\n[output truncated at 250 bytes]\n",
        "x".repeat(99),
        "x".repeat(50)
    );
    assert_eq!(report.output, expected);
}

#[test]
fn globals_are_fresh_for_every_run() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "count",
        "try:\n    runs += 1\nexcept NameError:\n    runs = 1\nprint(runs, __name__)\n",
    );
    for _ in 0..3 {
        let report = run(&host, &script, &mut sample());
        assert_eq!(report.output, "1 __main__\n");
    }
}

#[test]
fn tracing_off_records_nothing() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(dir.path(), "edit", &failing("pass"));
    let options = RunOptions {
        trace: false,
        ..RunOptions::default()
    };
    let mut p = sample();
    let report = run_with(&host, &script, &mut p, &options);
    assert_ok(&report);
    assert!(report.trace.is_empty());
    assert_eq!(report.verdict, Verdict::Drop);
    assert_eq!(report.to_string(), "Python Result: edit\n");
}

#[test]
fn the_trace_renders_the_sr_os_result_block() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "python-script-1",
        "from alc import radius\n\
         radius.attributes.set(25, (b'Class-1', b'Class-22', b'Class-333'))\n\
         radius.attributes.set(26, b'\\x00\\x00\\x19\\x7f\\x0d\\x06gold')\n\
         radius.attributes.clear(1)\n\
         radius.attributes.setVSA(6527, 13, 'silver')\n\
         radius.attributes.clearVSA(6527, 13)\n\
         radius.drop()\n",
    );
    let report = run(&host, &script, &mut sample());
    assert_ok(&report);
    assert_eq!(
        report.to_string(),
        "Python Result: python-script-1\n\
         RADIUS Attribute: Type 25, SET\n  'Class-1'\n  'Class-22'\n  'Class-333'\n\
         RADIUS Attribute: Type 26, SET\n  0x0000197f0d06676f6c64\n\
         RADIUS Attribute: Type 1, CLEAR\n\
         RADIUS VSA: Vendor 6527 (Alcatel-Lucent-Service-Router), Type 13, SET\n  'silver'\n\
         RADIUS VSA: Vendor 6527 (Alcatel-Lucent-Service-Router), Type 13, CLEAR\n\
         RADIUS Packet: DROP\n"
    );
}

#[test]
fn reload_picks_up_new_code_and_keeps_the_old_on_error() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(dir.path(), "live", "print('v1')\n");
    let mut script = Script::load("live", &path).expect("loads");
    assert_eq!(script.name(), "live");
    assert_eq!(script.path(), path);
    assert_eq!(run(&host, &script, &mut sample()).output, "v1\n");

    std::fs::write(&path, "print('v2')\n").expect("write");
    script.reload().expect("reloads");
    assert_eq!(run(&host, &script, &mut sample()).output, "v2\n");

    std::fs::write(&path, "print('v3'\nx = 1\n").expect("write");
    match script.reload() {
        Err(ScriptError::Compile(e)) => {
            assert_eq!(e.file, path.display().to_string());
            assert_eq!(e.line, Some(1));
            assert!(e.message.starts_with("SyntaxError: "), "{e}");
            assert!(
                e.to_string().starts_with(&format!("{}:1:", path.display())),
                "{e}"
            );
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    assert_eq!(
        run(&host, &script, &mut sample()).output,
        "v2\n",
        "old code still runs"
    );

    std::fs::remove_file(&path).expect("remove");
    assert!(matches!(script.reload(), Err(ScriptError::Io { .. })));
    assert_eq!(run(&host, &script, &mut sample()).output, "v2\n");
}

#[test]
fn load_errors_are_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write(
        dir.path(),
        "bad",
        "from alc import radius\n\nif True\n    pass\n",
    );
    match Script::load("bad", &path) {
        Err(ScriptError::Compile(e)) => {
            assert_eq!((e.line, e.column), (Some(3), Some(8)));
            assert_eq!(
                e.to_string(),
                format!("{}:3:8: SyntaxError: expected ':'", path.display())
            );
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    let path = write(dir.path(), "indent", "x = 1\n  y = 2\n");
    match Script::load("indent", &path) {
        Err(ScriptError::Compile(e)) => {
            assert_eq!(e.line, Some(2));
            assert!(e.message.starts_with("IndentationError: "), "{e}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
    let path = write(dir.path(), "nul", "x = 1\0\n");
    assert!(matches!(
        Script::load("nul", &path),
        Err(ScriptError::Compile(_))
    ));
    let err = Script::load("missing", dir.path().join("missing.py")).expect_err("no file");
    assert!(matches!(err, ScriptError::Io { .. }));
    assert!(err.to_string().contains("missing.py"), "{err}");
}

#[test]
fn runs_from_other_threads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "thread",
        "from alc import radius\nradius.attributes.set(18, radius.attributes.get(1))\n",
    );
    // A host made on this thread, used from two others at once, then one made on a worker.
    let host = host();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..20 {
                    let mut p = sample();
                    assert_ok(&run(&host, &script, &mut p));
                    assert_eq!(p.get(18), Some(&b"alice"[..]));
                }
            });
        }
    });
    std::thread::spawn(move || {
        let host = common::host();
        let mut p = sample();
        assert_ok(&run(&host, &script, &mut p));
        assert_eq!(p.get(18), Some(&b"alice"[..]));
        // A timeout on a worker thread is handled the same way.
        let dir = tempfile::tempdir().expect("tempdir");
        let forever = common::script(dir.path(), "forever", "while True:\n    pass\n");
        let report = run_with(&host, &forever, &mut p, &short_limit());
        assert_eq!(report.failure().map(|f| f.kind), Some(FailureKind::Timeout));
    })
    .join()
    .expect("worker thread");
}

/// A cache backend that tries to run a script from inside an `alc.cache` call.
struct Nesting<'a> {
    host: &'a ScriptHost,
    script: &'a Script,
    inner: Option<RunReport>,
}

impl ScriptCache for Nesting<'_> {
    fn save(&mut self, _: &[u8], _: &[u8]) -> Result<(), CacheError> {
        let mut p = sample();
        self.inner = Some(run(self.host, self.script, &mut p));
        Ok(())
    }
    fn retrieve(&mut self, _: &[u8]) -> Result<Vec<u8>, CacheError> {
        Err(CacheError::NotFound)
    }
    fn clear(&mut self, _: &[u8]) -> Result<(), CacheError> {
        Err(CacheError::NotFound)
    }
    fn get_lifetime(&mut self, _: &[u8]) -> Result<u64, CacheError> {
        Err(CacheError::NotFound)
    }
    fn set_lifetime(&mut self, _: &[u8], _: u64) -> Result<u64, CacheError> {
        Err(CacheError::NotFound)
    }
}

#[test]
fn a_run_inside_a_run_is_refused() {
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = script(dir.path(), "inner", "print('inner')\n");
    let outer = script(
        dir.path(),
        "outer",
        "from alc import cache\ncache.save(b'v', b'k')\nprint('outer')\n",
    );
    let mut nesting = Nesting {
        host: &host,
        script: &inner,
        inner: None,
    };
    let mut p = sample();
    let report = host.run(
        &outer,
        &mut p,
        &Dictionary::builtin(),
        Some(&mut nesting),
        &options(),
    );
    assert_ok(&report);
    assert_eq!(report.output, "outer\n");
    let inner_report = nesting.inner.expect("inner run attempted");
    assert_eq!(
        inner_report.outcome,
        Outcome::Failed(brasa_script::ScriptFailure {
            kind: FailureKind::Exception,
            message: "RuntimeError: a script run is already in progress on this thread".into(),
            traceback: String::new(),
        })
    );
}

#[test]
fn cache_effects_are_not_rolled_back() {
    // As in SR OS: a save that happened before the failure stays.
    let host = host();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "half",
        "from alc import cache\ncache.save(b'v', b'k')\nraise RuntimeError('later')\n",
    );
    let mut cache = policy_cache(CacheConfig::default());
    let report = run_cached(&host, &script, &mut sample(), &mut cache, T0);
    assert_failed(&report, FailureKind::Exception);
    assert_eq!(cache.peek(b"k", T0), Some(&b"v"[..]));
}

#[test]
fn host_and_scripts_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ScriptHost>();
    send_sync::<Script>();
    send_sync::<RunReport>();
}
