//! The service text form: SR OS classic CLI as the dynamic data services scripts of Nokia SR OS
//! generate it (`configure service epipe 1000 customer 1 create / sap 1/1/4:1214.101 create /
//! …`).
//!
//! [`parse`] turns a snippet into typed [`Change`]s without side effects; [`export`] writes a
//! whole [`ServiceConfig`] back so that parsing the export and applying it to an empty
//! configuration gives the same configuration. The grammar is in `docs/services.md`.

mod lex;
mod parse;
mod print;
mod transition;

use std::fmt;

use thiserror::Error;

use crate::change::Change;
use crate::id::{PortMap, SapIdError};

pub use print::export;
pub use transition::{compact, transition, TransitionError};

/// Parses `text` into one [`Change`] per configuring command, in order; SR OS port names in SAP
/// ids are translated through `ports`. Nothing is applied: hand the changes to
/// [`ServiceConfig::prepare`](crate::ServiceConfig::prepare).
///
/// [`ServiceConfig`]: crate::ServiceConfig
pub fn parse(text: &str, ports: &PortMap) -> Result<Vec<Change>, ParseError> {
    parse::Parser::new(ports).run(text)
}

/// A text-form error at a line and column (both from 1).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{line}:{col}: {kind}")]
pub struct ParseError {
    /// Line, from 1.
    pub line: u32,
    /// Column (characters), from 1.
    pub col: u32,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong at a [`ParseError`]'s position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// A word that is no command of the current context.
    UnknownCommand {
        /// The context, SR OS style (`config>service>epipe>sap`).
        context: String,
        /// The word found.
        found: String,
        /// The commands the context has.
        expected: Vec<&'static str>,
    },
    /// A command's argument is missing or malformed.
    BadArgument {
        /// The command.
        command: String,
        /// What was expected.
        expected: String,
        /// What was found (`None` at the end of the line).
        found: Option<String>,
    },
    /// A SAP id that does not parse or whose SR OS port is not mapped.
    Sap(SapIdError),
    /// A quoted string without its closing quote.
    UnterminatedString,
    /// An unknown escape in a quoted string (`\n`, `\t`, `\"` and `\\` are known).
    BadEscape(char),
    /// A closing quote followed by something other than whitespace.
    TextAfterQuote,
    /// `exit` at the top level.
    NothingToExit,
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::UnknownCommand {
                context,
                found,
                expected,
            } => write!(
                f,
                "{found:?} is not a command of {context}; expected one of: {}",
                expected.join(", ")
            ),
            ParseErrorKind::BadArgument {
                command,
                expected,
                found: Some(found),
            } => write!(f, "{command}: expected {expected}, found {found:?}"),
            ParseErrorKind::BadArgument {
                command,
                expected,
                found: None,
            } => write!(f, "{command}: expected {expected} at the end of the line"),
            ParseErrorKind::Sap(error) => write!(f, "{error}"),
            ParseErrorKind::UnterminatedString => f.write_str("a quoted string is not closed"),
            ParseErrorKind::BadEscape(c) => write!(
                f,
                "unknown escape \\{c} in a quoted string (\\\" \\\\ \\n \\t are known)"
            ),
            ParseErrorKind::TextAfterQuote => {
                f.write_str("a closing quote must be followed by a space")
            }
            ParseErrorKind::NothingToExit => f.write_str("'exit' at the top level"),
        }
    }
}
