//! What a run is asked to do ([`RunOptions`]) and what it did ([`RunReport`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Per-run settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    /// Wall-clock limit of one run; `None` runs without a limit. A run that goes over it is
    /// stopped with [`FailureKind::Timeout`].
    pub time_limit: Option<Duration>,
    /// Record a [`TraceLine`] for every change the script makes (SR OS `script-all-info`).
    pub trace: bool,
    /// Most bytes of `print`/stdout/stderr text kept in [`RunReport::output`]; the rest is
    /// replaced by a truncation note, so a printing loop cannot exhaust memory.
    pub output_limit: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            time_limit: Some(Duration::from_secs(1)),
            trace: false,
            output_limit: 64 * 1024,
        }
    }
}

/// What the caller does with the packet after a successful run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (possibly edited) packet on.
    Continue,
    /// The script called `radius.drop()`: discard the packet.
    Drop,
}

/// Why a run failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// An exception escaped the script (including errors raised by `alc` and not caught).
    Exception,
    /// The script raised `SystemExit` (`sys.exit()`, `exit()`).
    SystemExit,
    /// The script ran over [`RunOptions::time_limit`] and was stopped.
    Timeout,
    /// The python-policy's cache backend failed or did not answer in time (a shared store
    /// such as Redis): the run fails even if the script caught `alc.cache.BackendFailure`.
    CacheBackend,
    /// The host of a dynamic-services run (identifier allocator, reference table) failed:
    /// the run fails even if the script caught `alc.dyn.ResourceFailure`.
    DynResources,
    /// A dynamic-services script completed without calling `dyn.action`.
    NoDynAction,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Exception => "exception",
            FailureKind::SystemExit => "system exit",
            FailureKind::Timeout => "timeout",
            FailureKind::CacheBackend => "cache backend failure",
            FailureKind::DynResources => "dynamic-services host failure",
            FailureKind::NoDynAction => "no dyn.action",
        })
    }
}

/// A failed run: what happened and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptFailure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// One line: the exception as Python prints its last line (`ValueError: ...`), or the
    /// time limit that was exceeded.
    pub message: String,
    /// The Python traceback (`Traceback (most recent call last): ...`), empty when there is
    /// none.
    pub traceback: String,
}

impl fmt::Display for ScriptFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if !self.traceback.is_empty() {
            write!(f, "\n{}", self.traceback.trim_end())?;
        }
        Ok(())
    }
}

/// Whether the run completed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The script ran to its end; its edits are in the packet.
    Ok,
    /// The script failed; the packet is exactly as it was before the run and the caller
    /// applies its `action-on-fail`.
    Failed(ScriptFailure),
}

/// One change a script made, as SR OS debug prints it under "Python Result".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceLine {
    /// `radius.attributes.set(typ, values)`.
    Set {
        /// Attribute type.
        typ: u8,
        /// The new values, in order.
        values: Vec<Vec<u8>>,
    },
    /// `radius.attributes.clear(typ)`.
    Clear {
        /// Attribute type.
        typ: u8,
    },
    /// `radius.attributes.setVSA(vendor, typ, values)`.
    SetVsa {
        /// Vendor number.
        vendor: u32,
        /// The vendor's name in the dictionary, if known.
        vendor_name: Option<String>,
        /// Vendor attribute type.
        typ: u32,
        /// The new values, in order.
        values: Vec<Vec<u8>>,
    },
    /// `radius.attributes.clearVSA(vendor, typ)`.
    ClearVsa {
        /// Vendor number.
        vendor: u32,
        /// The vendor's name in the dictionary, if known.
        vendor_name: Option<String>,
        /// Vendor attribute type.
        typ: u32,
    },
    /// `radius.drop()`.
    Drop,
}

/// Renders a value as SR OS does: printable ASCII quoted, anything else as hex.
struct DebugValue<'a>(&'a [u8]);

impl fmt::Display for DebugValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.iter().all(|b| (0x20..=0x7e).contains(b)) {
            f.write_str("'")?;
            for &b in self.0 {
                if b == b'\'' || b == b'\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{}", char::from(b))?;
            }
            f.write_str("'")
        } else {
            f.write_str("0x")?;
            self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
        }
    }
}

fn write_values(f: &mut fmt::Formatter<'_>, values: &[Vec<u8>]) -> fmt::Result {
    values
        .iter()
        .try_for_each(|v| write!(f, "\n  {}", DebugValue(v)))
}

fn write_vendor(f: &mut fmt::Formatter<'_>, vendor: u32, name: Option<&str>) -> fmt::Result {
    match name {
        Some(name) => write!(f, "Vendor {vendor} ({name})"),
        None => write!(f, "Vendor {vendor}"),
    }
}

impl fmt::Display for TraceLine {
    /// The line (and the indented value lines) without a trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceLine::Set { typ, values } => {
                write!(f, "RADIUS Attribute: Type {typ}, SET")?;
                write_values(f, values)
            }
            TraceLine::Clear { typ } => write!(f, "RADIUS Attribute: Type {typ}, CLEAR"),
            TraceLine::SetVsa {
                vendor,
                vendor_name,
                typ,
                values,
            } => {
                f.write_str("RADIUS VSA: ")?;
                write_vendor(f, *vendor, vendor_name.as_deref())?;
                write!(f, ", Type {typ}, SET")?;
                write_values(f, values)
            }
            TraceLine::ClearVsa {
                vendor,
                vendor_name,
                typ,
            } => {
                f.write_str("RADIUS VSA: ")?;
                write_vendor(f, *vendor, vendor_name.as_deref())?;
                write!(f, ", Type {typ}, CLEAR")
            }
            TraceLine::Drop => f.write_str("RADIUS Packet: DROP"),
        }
    }
}

/// Everything one run did.
///
/// `Display` renders the SR OS "Python Result" debug block:
///
/// ```text
/// Python Result: python-script-1
/// RADIUS Attribute: Type 25, SET
///   'Class-1'
///   'Class-22'
///   'Class-333'
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// The script's configured name.
    pub script: Arc<str>,
    /// What to do with the packet. On [`Outcome::Failed`] it is always [`Verdict::Continue`]:
    /// a failed run's effects on the packet, a drop included, are discarded, and the caller
    /// applies its `action-on-fail`.
    pub verdict: Verdict,
    /// Whether the script completed.
    pub outcome: Outcome,
    /// Text the script printed (stdout and stderr, interleaved as written).
    pub output: String,
    /// The changes the script made, in order (empty unless [`RunOptions::trace`]). On a failed
    /// run these are the changes attempted before the failure, all of them rolled back.
    pub trace: Vec<TraceLine>,
}

impl RunReport {
    /// Whether the run completed ([`Outcome::Ok`]).
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok)
    }

    /// The failure, if the run failed.
    pub fn failure(&self) -> Option<&ScriptFailure> {
        match &self.outcome {
            Outcome::Ok => None,
            Outcome::Failed(failure) => Some(failure),
        }
    }

    /// The SR OS "Python Output" debug block: the header line, then what the script printed.
    pub fn output_block(&self) -> String {
        let mut block = format!("Python Output: {}\n", self.script);
        block.push_str(&self.output);
        if !self.output.is_empty() && !self.output.ends_with('\n') {
            block.push('\n');
        }
        block
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Python Result: {}", self.script)?;
        self.trace.iter().try_for_each(|line| writeln!(f, "{line}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_quoted_or_hex() {
        assert_eq!(DebugValue(b"Class-1").to_string(), "'Class-1'");
        assert_eq!(DebugValue(b"it's").to_string(), "'it\\'s'");
        assert_eq!(DebugValue(b"").to_string(), "''");
        assert_eq!(DebugValue(&[0, 0x19, 0x7f]).to_string(), "0x00197f");
        assert_eq!(DebugValue(b"tab\there").to_string(), "0x7461620968657265");
    }

    #[test]
    fn trace_lines_render_like_sr_os() {
        let set = TraceLine::Set {
            typ: 25,
            values: vec![b"Class-1".to_vec(), vec![1, 2]],
        };
        assert_eq!(
            set.to_string(),
            "RADIUS Attribute: Type 25, SET\n  'Class-1'\n  0x0102"
        );
        assert_eq!(
            TraceLine::Clear { typ: 1 }.to_string(),
            "RADIUS Attribute: Type 1, CLEAR"
        );
        let vsa = TraceLine::SetVsa {
            vendor: 6527,
            vendor_name: Some("Alcatel-Lucent-Service-Router".into()),
            typ: 13,
            values: vec![b"100M".to_vec()],
        };
        assert_eq!(
            vsa.to_string(),
            "RADIUS VSA: Vendor 6527 (Alcatel-Lucent-Service-Router), Type 13, SET\n  '100M'"
        );
        let clear = TraceLine::ClearVsa {
            vendor: 9,
            vendor_name: None,
            typ: 1,
        };
        assert_eq!(clear.to_string(), "RADIUS VSA: Vendor 9, Type 1, CLEAR");
        assert_eq!(TraceLine::Drop.to_string(), "RADIUS Packet: DROP");
    }

    #[test]
    fn report_blocks() {
        let report = RunReport {
            script: "python-script-1".into(),
            verdict: Verdict::Continue,
            outcome: Outcome::Ok,
            output: "hello".into(),
            trace: vec![TraceLine::Clear { typ: 25 }, TraceLine::Drop],
        };
        assert_eq!(
            report.to_string(),
            "Python Result: python-script-1\nRADIUS Attribute: Type 25, CLEAR\nRADIUS Packet: DROP\n"
        );
        assert_eq!(
            report.output_block(),
            "Python Output: python-script-1\nhello\n"
        );
        assert!(report.is_ok() && report.failure().is_none());
        let failure = ScriptFailure {
            kind: FailureKind::Timeout,
            message: "ran over 10ms".into(),
            traceback: String::new(),
        };
        assert_eq!(failure.to_string(), "timeout: ran over 10ms");
    }
}
