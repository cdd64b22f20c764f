//! Typed errors of loading scripts and starting the host.

use std::fmt;
use std::path::PathBuf;

/// Why a script could not be loaded or the host could not start. Script *runs* never return
/// an error: their failures are reported in [`crate::RunReport::outcome`].
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The script's path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The script does not compile.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// The embedded interpreter or the `alc` package could not be set up.
    #[error("cannot set up the embedded Python interpreter: {0}")]
    Init(String),
    /// The time-limit watchdog thread could not be started.
    #[error("cannot start the script watchdog thread: {0}")]
    Watchdog(#[source] std::io::Error),
}

/// A script that Python refuses to compile, located as `file:line:column`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct CompileError {
    /// The script's path as given to the loader.
    pub file: String,
    /// 1-based line of the error, when Python names one.
    pub line: Option<usize>,
    /// 1-based column of the error, when Python names one.
    pub column: Option<usize>,
    /// The Python exception, e.g. `SyntaxError: invalid syntax`.
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compile_error_is_located() {
        let mut e = CompileError {
            file: "a.py".into(),
            line: Some(3),
            column: Some(7),
            message: "SyntaxError: invalid syntax".into(),
        };
        assert_eq!(e.to_string(), "a.py:3:7: SyntaxError: invalid syntax");
        e.column = None;
        assert_eq!(e.to_string(), "a.py:3: SyntaxError: invalid syntax");
        e.line = None;
        assert_eq!(e.to_string(), "a.py: SyntaxError: invalid syntax");
    }
}
