//! Every `alc.radius` and `alc.cache` function, their errors, and the ways to import them.

mod common;

use brasa_cache::{CacheConfig, CacheError, MemoryBudget, PolicyCache};
use brasa_radius::{Code, Dictionary, Message, RawAttr};
use brasa_script::{FailureKind, RunReport, Script, ScriptCache, ScriptHost, TraceLine, Verdict};
use common::*;
use std::sync::Arc;

fn attr(typ: u8, value: &'static [u8]) -> RawAttr<'static> {
    RawAttr { typ, value }
}

/// A script whose own asserts check the API; returns the report.
fn check(host: &ScriptHost, source: &str, packet: &mut Message) -> RunReport {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(dir.path(), "check", source);
    let report = run(host, &script, packet);
    assert_ok(&report);
    report
}

fn sample() -> Message {
    let mut p = Message::new(Code::AccessAccept, 42);
    p.authenticator = *b"0123456789abcdef";
    p.add(1, b"alice").unwrap();
    p.add(25, b"gold").unwrap();
    p.add(4, vec![10, 0, 0, 1]).unwrap();
    p.add(25, vec![0xff, 0x00]).unwrap();
    wire(p)
}

#[test]
fn header_and_getters() {
    let host = host();
    let mut p = sample();
    let before = p.clone();
    check(
        &host,
        r#"
from alc import radius
h = radius.header()
assert h == {'code': 2, 'identifier': 42, 'length': 20 + 7 + 6 + 6 + 4,
             'authenticator': b'0123456789abcdef'}, h
assert radius.attributes.get(1) == b'alice'
assert radius.attributes.get(25) == b'gold'          # the first instance
assert radius.attributes.get(18) == b''              # absent
assert radius.attributes.getTuple(25) == (b'gold', b'\xff\x00')
assert radius.attributes.getTuple(18) == ()
assert type(radius.attributes.get(1)) is bytes
"#,
        &mut p,
    );
    assert_eq!(p, before, "reading changes nothing");
}

#[test]
fn set_replaces_every_instance_in_place_of_the_first() {
    let host = host();
    let mut p = sample();
    let report = check(
        &host,
        r#"
from alc import radius
radius.attributes.set(25, (b'a', 'b', bytearray(b'c')))
assert radius.attributes.getTuple(25) == (b'a', b'b', b'c')
assert radius.header()['length'] == 20 + 7 + 3 * 3 + 6
radius.attributes.set(18, 'Welcome')                 # absent: appended
radius.attributes.set(4, [b'\x0a\x00\x00\x02'])      # a list works too
radius.attributes.set(1, 'bob')
"#,
        &mut p,
    );
    assert_eq!(
        p.attributes.iter().collect::<Vec<_>>(),
        [
            attr(1, b"bob"),
            attr(25, b"a"),
            attr(25, b"b"),
            attr(25, b"c"),
            attr(4, &[10, 0, 0, 2]),
            attr(18, b"Welcome"),
        ]
    );
    assert_eq!(
        report.trace,
        [
            TraceLine::Set {
                typ: 25,
                values: vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
            },
            TraceLine::Set {
                typ: 18,
                values: vec![b"Welcome".to_vec()]
            },
            TraceLine::Set {
                typ: 4,
                values: vec![vec![10, 0, 0, 2]]
            },
            TraceLine::Set {
                typ: 1,
                values: vec![b"bob".to_vec()]
            },
        ]
    );
}

#[test]
fn clear_and_empty_set_remove_every_instance() {
    let host = host();
    let mut p = sample();
    let report = check(
        &host,
        r#"
from alc import radius
radius.attributes.clear(25)
assert radius.attributes.getTuple(25) == ()
radius.attributes.clear(18)                          # absent: nothing to do
radius.attributes.set(4, ())
"#,
        &mut p,
    );
    assert_eq!(p.attributes.iter().collect::<Vec<_>>(), [attr(1, b"alice")]);
    assert_eq!(
        report.to_string(),
        "Python Result: check\nRADIUS Attribute: Type 25, CLEAR\n\
         RADIUS Attribute: Type 18, CLEAR\nRADIUS Attribute: Type 4, SET\n"
    );
}

#[test]
fn bad_arguments_raise_precise_errors_and_change_nothing() {
    let host = host();
    let mut p = sample();
    let before = p.clone();
    check(
        &host,
        r#"
from alc import radius
def error(f, *args):
    try:
        f(*args)
    except (ValueError, TypeError) as e:
        return type(e).__name__ + ': ' + str(e)
    raise AssertionError('no error from %r' % (args,))

a = radius.attributes
assert error(a.get, 0) == 'ValueError: radius.attributes.get: attribute type 0 is out of range 1..255'
assert error(a.getTuple, 256) == 'ValueError: radius.attributes.getTuple: attribute type 256 is out of range 1..255'
assert error(a.clear, -1) == 'ValueError: radius.attributes.clear: attribute type -1 is out of range 1..255'
assert error(a.set, 2**80, b'') == 'ValueError: radius.attributes.set: attribute type 1208925819614629174706176 is out of range 1..255'
assert error(a.get, '1') == 'TypeError: radius.attributes.get: attribute type must be an int, not str'
assert error(a.set, 25, 5) == 'TypeError: radius.attributes.set: value must be bytes, bytearray or str, not int'
assert error(a.set, 25, (b'x', None)) == 'TypeError: radius.attributes.set: each value must be bytes, bytearray or str, not NoneType'
assert error(a.set, 25, b'x' * 254) == 'ValueError: radius.attributes.set: the value of attribute 25 is 254 bytes, at most 253 fit'
assert error(a.set, 25, (b'ok', b'x' * 300)) == 'ValueError: radius.attributes.set: value 1 of attribute 25 is 300 bytes, at most 253 fit'
# 20 + 7 (User-Name) + 6 (NAS-IP) = 33 kept; 16 Class of 253 bytes = 4080 more.
assert error(a.set, 25, (b'x' * 253,) * 16) == 'ValueError: radius.attributes.set: the packet would be 4113 bytes, more than the RADIUS maximum of 4096'
a.set(25, (b'x' * 253,) * 15)                        # 3858 bytes: fits
a.set(25, (b'gold', b'\xff\x00'))                    # and back
assert radius.header()['length'] == 43
"#,
        &mut p,
    );
    // Only the last, valid `set` took effect: the two Class attributes now sit together.
    let mut expected = before.clone();
    let moved = expected.attributes.get(3).unwrap().value.to_vec();
    expected.attributes.remove_at(3);
    expected.attributes.insert(2, 25, &moved).unwrap();
    assert_eq!(p, expected);
}

#[test]
fn drop_is_a_verdict_and_the_script_goes_on() {
    let host = host();
    let mut p = sample();
    let report = check(
        &host,
        "from alc import radius\nradius.drop()\nradius.attributes.set(18, b'after')\nprint('still running')\n",
        &mut p,
    );
    assert_eq!(report.verdict, Verdict::Drop);
    assert_eq!(report.output, "still running\n");
    assert_eq!(p.get(18), Some(&b"after"[..]));
    assert_eq!(report.trace[0], TraceLine::Drop);
}

#[test]
fn every_import_form_works() {
    let host = host();
    let mut p = sample();
    check(
        &host,
        r#"
import alc
import alc.radius
import alc.cache
from alc import radius, cache
from alc.radius import attributes
assert alc.radius is radius and alc.cache is cache and attributes is radius.attributes
assert alc.radius.attributes.get(1) == b'alice'
assert issubclass(alc.TimeLimitExceeded, BaseException)
assert not issubclass(alc.TimeLimitExceeded, Exception)
assert issubclass(cache.NotFound, KeyError) and issubclass(cache.NotFound, cache.error)
assert cache.EntryTooLarge.reason == 'entry_too_large'
# Specs as built-in modules have them: importlib finds them, and `import` finds them ready.
import importlib.util
for name in ('alc', 'alc.radius', 'alc.radius.attributes', 'alc.cache'):
    spec = importlib.util.find_spec(name)
    assert spec.name == name and spec.loader is None, spec
assert alc.__spec__.submodule_search_locations == [] and alc.cache.__spec__.submodule_search_locations is None
"#,
        &mut p,
    );
}

#[test]
fn alc_outside_a_run_raises() {
    let host = host();
    let mut p = sample();
    // A Python thread started by the script runs outside the run: it must not reach the
    // packet.
    check(
        &host,
        r#"
import threading
from alc import radius
seen = []
def peek():
    try:
        radius.attributes.get(1)
    except RuntimeError as e:
        seen.append(str(e))
t = threading.Thread(target=peek)
t.start()
t.join()
assert seen == ['alc: no script run is in progress on this thread'], seen
"#,
        &mut p,
    );
}

/// The builtin dictionary plus a vendor with two-octet type and length fields.
fn dictionary() -> Dictionary {
    let mut dict = Dictionary::builtin();
    dict.merge_str(
        "starent",
        "VENDOR Starent 8164 format=2,2\nBEGIN-VENDOR Starent\nATTRIBUTE SN-Test 300 string\nEND-VENDOR Starent\n",
    )
    .expect("dictionary text parses");
    dict
}

#[test]
fn vendor_specific_attributes() {
    let host = host();
    let dict = dictionary();
    let mut p = Message::new(Code::AccessAccept, 1);
    p.add(1, b"alice").unwrap();
    p.add_vsa(&dict, 6527, 13, b"old-sla").expect("fits");
    // One Vendor-Specific carrying two Alcatel sub-attributes (18 and 13).
    p.add(
        26,
        vec![0, 0, 0x19, 0x7f, 18, 4, b'i', b'p', 13, 5, b'x', b'y', b'z'],
    )
    .unwrap();
    p.add_vsa(&dict, 8164, 300, b"ab").expect("fits");
    let p = wire(p);

    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "vsa",
        r#"
from alc import radius
a = radius.attributes
assert a.getVSA(6527, 13) == b'old-sla'
assert a.getVSATuple(6527, 13) == (b'old-sla', b'xyz')
assert a.getVSA(6527, 18) == b'ip'
assert a.getVSA(6527, 99) == b'' and a.getVSATuple(6527, 99) == ()
assert a.getVSA(8164, 300) == b'ab'                  # format=2,2
assert a.getVSA(9, 1) == b''                         # unknown vendor: format 1,1
a.setVSA(6527, 13, ('gold', b'silver'))
assert a.getVSATuple(6527, 13) == (b'gold', b'silver')
assert a.getVSA(6527, 18) == b'ip'                   # the shared VSA keeps its other one
a.setVSA(8164, 300, b'cd')
a.setVSA(8164, 301, b'new')                          # absent: appended
a.clearVSA(6527, 18)
a.setVSA(6527, 28, b'x' * 247)                       # 253 - 4 - 2: the most that fits

def error(f, *args):
    try:
        f(*args)
    except ValueError as e:
        return str(e)
    raise AssertionError('no error')
assert error(a.getVSA, 6527, 256) == 'radius.attributes.getVSA: vendor attribute type 256 is out of range 0..255'
assert error(a.setVSA, -1, 1, b'') == 'radius.attributes.setVSA: vendor -1 is out of range 0..4294967295'
assert error(a.setVSA, 6527, 28, b'x' * 248) == 'radius.attributes.setVSA: the value of vendor 6527 attribute 28 is 248 bytes, at most 247 fit'
assert error(a.setVSA, 8164, 300, b'x' * 246) == 'radius.attributes.setVSA: the value of vendor 8164 attribute 300 is 246 bytes, at most 245 fit'
assert error(a.clearVSA, 8164, 65536) == 'radius.attributes.clearVSA: vendor attribute type 65536 is out of range 0..65535'
assert error(a.setVSA, 6527, 28, (b'x' * 247,) * 16) == 'radius.attributes.setVSA: the packet would be 4158 bytes, more than the RADIUS maximum of 4096'
assert a.getVSA(6527, 28) == b'x' * 247              # unchanged by the refused edit
a.clearVSA(6527, 28)
"#,
    );
    let mut edited = p.clone();
    let report = host.run(&script, &mut edited, &dict, None, &options());
    assert_ok(&report);
    assert_eq!(
        edited.attributes.iter().collect::<Vec<_>>(),
        [
            attr(1, b"alice"),
            // The first instance (a VSA of its own) was replaced in place by the new values.
            attr(26, &[0, 0, 0x19, 0x7f, 13, 6, b'g', b'o', b'l', b'd']),
            attr(
                26,
                &[0, 0, 0x19, 0x7f, 13, 8, b's', b'i', b'l', b'v', b'e', b'r']
            ),
            // The shared VSA lost 13 (setVSA) and then 18 (clearVSA): gone.
            attr(26, &[0, 0, 0x1f, 0xe4, 1, 44, 0, 6, b'c', b'd']),
            attr(26, &[0, 0, 0x1f, 0xe4, 1, 45, 0, 7, b'n', b'e', b'w']),
        ]
    );
    assert_eq!(
        report.trace[..4],
        [
            TraceLine::SetVsa {
                vendor: 6527,
                vendor_name: Some("Alcatel-Lucent-Service-Router".into()),
                typ: 13,
                values: vec![b"gold".to_vec(), b"silver".to_vec()],
            },
            TraceLine::SetVsa {
                vendor: 8164,
                vendor_name: Some("Starent".into()),
                typ: 300,
                values: vec![b"cd".to_vec()],
            },
            TraceLine::SetVsa {
                vendor: 8164,
                vendor_name: Some("Starent".into()),
                typ: 301,
                values: vec![b"new".to_vec()],
            },
            TraceLine::ClearVsa {
                vendor: 6527,
                vendor_name: Some("Alcatel-Lucent-Service-Router".into()),
                typ: 18,
            },
        ]
    );
    assert_eq!(
        report.trace[0].to_string(),
        "RADIUS VSA: Vendor 6527 (Alcatel-Lucent-Service-Router), Type 13, SET\n  'gold'\n  'silver'"
    );
    assert_eq!(wire(edited.clone()), edited);
}

#[test]
fn vendor_specific_clear_keeps_the_other_sub_attributes() {
    let host = host();
    let dict = Dictionary::builtin();
    let mut p = Message::new(Code::AccessAccept, 1);
    p.add(
        26,
        vec![0, 0, 0x19, 0x7f, 18, 4, b'i', b'p', 13, 5, b'x', b'y', b'z'],
    )
    .unwrap();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = script(
        dir.path(),
        "clear",
        "from alc import radius\nradius.attributes.clearVSA(6527, 13)\n",
    );
    let report = host.run(&script, &mut p, &dict, None, &options());
    assert_ok(&report);
    assert_eq!(
        p.attributes.iter().collect::<Vec<_>>(),
        [attr(26, &[0, 0, 0x19, 0x7f, 18, 4, b'i', b'p'])]
    );
}

/// Runs `source` against `cache` (or none); the script's asserts do the checking.
fn check_cache(host: &ScriptHost, source: &str, cache: Option<&mut dyn ScriptCache>) -> RunReport {
    let dir = tempfile::tempdir().expect("tempdir");
    let script: Script = script(dir.path(), "cache", source);
    let mut p = sample();
    host.run(&script, &mut p, &Dictionary::builtin(), cache, &options())
}

#[test]
fn cache_round_trip_and_key_types() {
    let host = host();
    let mut cache = policy_cache(CacheConfig::default());
    let mut at = brasa_script::PolicyCacheAt::new(&mut cache, T0);
    let report = check_cache(
        &host,
        r#"
from alc import cache
cache.save(b'value', b'key')                         # value first
assert cache.retrieve(b'key') == b'value'
assert cache.retrieve('key') == b'value'             # str keys are UTF-8
assert cache.retrieve(bytearray(b'key')) == b'value'
assert type(cache.retrieve(b'key')) is bytes
cache.save('é', 'clé')
assert cache.retrieve('clé'.encode()) == 'é'.encode()
assert cache.get_lifetime(b'key') == 3600
assert cache.set_lifetime(b'key', 900) == 900
assert cache.get_lifetime(b'key') == 900
assert cache.set_lifetime(b'key', 7200) == 3600      # capped by max-entry-lifetime
cache.clear(b'key')
cache.save(bytearray(b'kept'), b'k2')
"#,
        Some(&mut at),
    );
    assert_ok(&report);
    assert_eq!(cache.peek(b"k2", T0), Some(&b"kept"[..]));
    assert_eq!(cache.peek(b"key", T0), None);
    assert_eq!(cache.peek("clé".as_bytes(), T0), Some("é".as_bytes()));
}

#[test]
fn every_miss_raises_not_found_which_the_script_can_catch() {
    let host = host();
    let mut cache = policy_cache(CacheConfig::default());
    let mut at = brasa_script::PolicyCacheAt::new(&mut cache, T0);
    let report = check_cache(
        &host,
        r#"
from alc import cache
for call in (lambda: cache.retrieve(b'nobody'), lambda: cache.clear(b'nobody'),
             lambda: cache.get_lifetime(b'nobody'), lambda: cache.set_lifetime(b'nobody', 5)):
    try:
        call()
    except cache.NotFound as e:
        assert isinstance(e, KeyError) and isinstance(e, cache.error)
    else:
        raise AssertionError('no miss')
    try:
        call()
    except KeyError:
        pass
    try:
        call()
    except:
        pass
try:
    cache.retrieve('nobody')
except cache.error as e:
    assert str(e) == "cache.retrieve: no entry for key b'nobody'", str(e)
"#,
        Some(&mut at),
    );
    assert_ok(&report);
}

fn refusal(host: &ScriptHost, cache: &mut PolicyCache, class: &str, reason: &str) {
    let mut at = brasa_script::PolicyCacheAt::new(cache, T0);
    let source = format!(
        r#"
from alc import cache
try:
    cache.save(b'v' * 40, b'second')
except cache.{class} as e:
    assert isinstance(e, cache.Refused) and isinstance(e, cache.error)
    assert not isinstance(e, KeyError)
    assert e.reason == '{reason}', e.reason
    print(e)
else:
    raise AssertionError('saved')
"#
    );
    let report = check_cache(host, &source, Some(&mut at));
    assert_ok(&report);
    assert!(
        report.output.starts_with("cache.save refused: "),
        "{}",
        report.output
    );
    assert_eq!(cache.peek(b"second", T0), None);
}

#[test]
fn refused_saves_raise_and_name_the_reason() {
    let host = host();

    let mut small = policy_cache(CacheConfig {
        entry_size: 16,
        ..CacheConfig::default()
    });
    refusal(&host, &mut small, "EntryTooLarge", "entry_too_large");

    let mut full = policy_cache(CacheConfig {
        max_entries: 1,
        ..CacheConfig::default()
    });
    full.save(b"first", b"v", T0).expect("first fits");
    refusal(&host, &mut full, "TooManyEntries", "too_many_entries");

    let mut shut = policy_cache(CacheConfig {
        shutdown: true,
        ..CacheConfig::default()
    });
    refusal(&host, &mut shut, "Shutdown", "cache_shutdown");

    let mut starved = PolicyCache::new(CacheConfig::default(), 1, Arc::new(MemoryBudget::new(8)));
    refusal(
        &host,
        &mut starved,
        "GlobalMemoryExceeded",
        "global_memory_exceeded",
    );
}

#[test]
fn an_uncaught_refusal_fails_the_run() {
    let host = host();
    let mut small = policy_cache(CacheConfig {
        entry_size: 4,
        ..CacheConfig::default()
    });
    let mut at = brasa_script::PolicyCacheAt::new(&mut small, T0);
    let report = check_cache(
        &host,
        "from alc import cache\ncache.save(b'too long', b'k')\n",
        Some(&mut at),
    );
    let failure = report.failure().expect("fails");
    assert_eq!(failure.kind, FailureKind::Exception);
    assert_eq!(
        failure.message,
        "alc.cache.EntryTooLarge: cache.save refused: entry of 9 bytes exceeds entry-size 4"
    );
}

#[test]
fn a_policy_without_a_cache_raises_unavailable() {
    let host = host();
    let report = check_cache(
        &host,
        r#"
from alc import cache
for call in (lambda: cache.save(b'v', b'k'), lambda: cache.retrieve(b'k'),
             lambda: cache.clear(b'k'), lambda: cache.get_lifetime(b'k'),
             lambda: cache.set_lifetime(b'k', 1)):
    try:
        call()
    except cache.Unavailable as e:
        assert isinstance(e, cache.error) and not isinstance(e, KeyError)
    else:
        raise AssertionError('no error')
"#,
        None,
    );
    assert_ok(&report);
    let report = check_cache(&host, "from alc import cache\ncache.retrieve(b'k')\n", None);
    assert_eq!(
        report.failure().expect("fails").message,
        "alc.cache.Unavailable: cache.retrieve: this script's python-policy has no cache"
    );
}

#[test]
fn cache_argument_errors() {
    let host = host();
    let mut cache = policy_cache(CacheConfig::default());
    let mut at = brasa_script::PolicyCacheAt::new(&mut cache, T0);
    let report = check_cache(
        &host,
        r#"
from alc import cache
def error(f, *args):
    try:
        f(*args)
    except (TypeError, ValueError) as e:
        return type(e).__name__ + ': ' + str(e)
    raise AssertionError('no error')
assert error(cache.save, 1, b'k') == 'TypeError: cache.save: value must be bytes, bytearray or str, not int'
assert error(cache.retrieve, None) == 'TypeError: cache.retrieve: key must be bytes, bytearray or str, not NoneType'
cache.save(b'v', b'k')
assert error(cache.set_lifetime, b'k', -5) == 'ValueError: cache.set_lifetime: lifetime -5 is out of range 0..18446744073709551615'
assert error(cache.set_lifetime, b'k', 1.5) == 'TypeError: cache.set_lifetime: lifetime must be an int, not float'
"#,
        Some(&mut at),
    );
    assert_ok(&report);
}

/// A backend that fails: with a panic (a bug) on save, with a `Backend` error (a store that
/// does not answer) on retrieve; `calls` counts what reached it.
#[derive(Default)]
struct Failing {
    calls: usize,
}

impl ScriptCache for Failing {
    fn save(&mut self, _: &[u8], _: &[u8]) -> Result<(), CacheError> {
        self.calls += 1;
        panic!("backend bug")
    }
    fn retrieve(&mut self, _: &[u8]) -> Result<Vec<u8>, CacheError> {
        self.calls += 1;
        Err(CacheError::Backend {
            reason: "Redis did not answer within 20ms".into(),
        })
    }
    fn clear(&mut self, _: &[u8]) -> Result<(), CacheError> {
        self.calls += 1;
        Ok(())
    }
    fn get_lifetime(&mut self, _: &[u8]) -> Result<u64, CacheError> {
        self.calls += 1;
        Ok(7)
    }
    fn set_lifetime(&mut self, _: &[u8], secs: u64) -> Result<u64, CacheError> {
        self.calls += 1;
        Ok(secs)
    }
}

/// The seed document's pattern: a bare `except:` that drops the packet.
const CATCH_ALL: &str = r#"
from alc import cache, radius
radius.attributes.set(18, b'edited')
try:
    cache.OP
except:
    radius.drop()
try:
    cache.get_lifetime(b'k')
except BaseException as e:
    assert type(e) is cache.BackendFailure, type(e)
    assert 'not attempted after an earlier failure' in str(e), str(e)
else:
    raise AssertionError('a later call reached the failed backend')
"#;

#[test]
fn a_failing_backend_fails_the_run_even_when_the_script_catches_it() {
    let host = host();
    for (op, message) in [
        ("save(b'v', b'k')", "cache.save: the cache backend panicked"),
        (
            "retrieve(b'k')",
            "cache.retrieve: Redis did not answer within 20ms",
        ),
    ] {
        let mut failing = Failing::default();
        let dir = tempfile::tempdir().expect("tempdir");
        let script = script(dir.path(), "failing", &CATCH_ALL.replace("OP", op));
        let mut p = sample();
        let before = p.clone();
        let report = host.run(
            &script,
            &mut p,
            &Dictionary::builtin(),
            Some(&mut failing),
            &options(),
        );
        let failure = report.failure().expect("the run fails");
        assert_eq!(failure.kind, FailureKind::CacheBackend, "{failure}");
        assert_eq!(failure.message, message);
        assert_eq!(
            report.verdict,
            Verdict::Continue,
            "the script's drop is void"
        );
        assert_eq!(p, before, "the packet is restored for action-on-fail");
        assert_eq!(
            failing.calls, 1,
            "nothing reaches the backend after a failure"
        );
    }
}

/// `except cache.error` (the refusals) does not catch a backend failure.
#[test]
fn a_backend_failure_is_no_cache_error() {
    let host = host();
    let report = check_cache(
        &host,
        r#"
from alc import cache
try:
    cache.retrieve(b'k')
except cache.error:
    pass
"#,
        Some(&mut Failing::default()),
    );
    let failure = report.failure().expect("the run fails");
    assert_eq!(failure.kind, FailureKind::CacheBackend);
    assert!(
        failure.traceback.contains("BackendFailure"),
        "{}",
        failure.traceback
    );
}
