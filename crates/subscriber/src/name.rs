//! Subscriber and domain names.
//!
//! The rules are the SCMS SM ones: up to 64 printable ASCII characters (32–126) except the three
//! quote characters, no trailing space. Names are case-sensitive unless the deployment asks for
//! case-insensitive names, in which case they are lower-cased on the way in so that every index
//! lookup is a plain byte comparison.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest accepted subscriber name, in bytes (all accepted characters are one byte).
pub const MAX_NAME_LEN: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("name is {len} characters long, the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// Length of the refused name in characters.
        len: usize,
    },
    /// The name holds a character outside printable ASCII or one of `"`, `'`, backquote.
    #[error(
        "character {ch:?} at position {position} is not allowed (printable ASCII except quotes)"
    )]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its position, counted in characters from 1.
        position: usize,
    },
    /// The name ends with a space.
    #[error("name ends with a space")]
    TrailingSpace,
}

/// How names are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NameCase {
    /// Names are compared byte for byte (the default).
    #[default]
    Sensitive,
    /// Names are lower-cased before they are stored or looked up.
    Insensitive,
}

/// A validated (and, under [`NameCase::Insensitive`], lower-cased) subscriber name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SubscriberName(Box<str>);

impl SubscriberName {
    /// Validates `raw` and applies the case rule.
    pub fn new(raw: &str, case: NameCase) -> Result<Self, NameError> {
        validate_name(raw)?;
        Ok(match case {
            NameCase::Sensitive => SubscriberName(raw.into()),
            NameCase::Insensitive => SubscriberName(raw.to_ascii_lowercase().into()),
        })
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_boxed(self) -> Box<str> {
        self.0
    }

    /// The name as an owned string (no copy).
    pub fn into_string(self) -> String {
        self.0.into_string()
    }

    /// Wraps a name that was validated when it entered the index.
    pub(crate) fn from_trusted(name: &str) -> Self {
        SubscriberName(name.into())
    }
}

impl<'de> Deserialize<'de> for SubscriberName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        validate_name(&raw).map_err(serde::de::Error::custom)?;
        Ok(SubscriberName(raw.into()))
    }
}

impl fmt::Display for SubscriberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the SM name rules without allocating; domains and VPN names follow the same rules.
pub fn validate_name(raw: &str) -> Result<(), NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    let len = raw.chars().count();
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong { len });
    }
    for (i, ch) in raw.chars().enumerate() {
        let printable = (' '..='~').contains(&ch);
        if !printable || matches!(ch, '"' | '\'' | '`') {
            return Err(NameError::InvalidChar {
                ch,
                position: i + 1,
            });
        }
    }
    if raw.ends_with(' ') {
        return Err(NameError::TrailingSpace);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_names_and_folds_case_on_request() {
        let n = SubscriberName::new("Alice Smith-01@isp", NameCase::Sensitive).unwrap();
        assert_eq!(n.as_str(), "Alice Smith-01@isp");
        let n = SubscriberName::new("Alice", NameCase::Insensitive).unwrap();
        assert_eq!(n.as_str(), "alice");
        let max = "x".repeat(MAX_NAME_LEN);
        assert!(SubscriberName::new(&max, NameCase::Sensitive).is_ok());
    }

    #[test]
    fn refuses_each_broken_rule_with_a_precise_error() {
        let s = NameCase::Sensitive;
        assert_eq!(SubscriberName::new("", s), Err(NameError::Empty));
        assert_eq!(
            SubscriberName::new(&"x".repeat(65), s),
            Err(NameError::TooLong { len: 65 })
        );
        assert_eq!(
            SubscriberName::new("ab\"c", s),
            Err(NameError::InvalidChar {
                ch: '"',
                position: 3
            })
        );
        assert_eq!(
            SubscriberName::new("a'", s),
            Err(NameError::InvalidChar {
                ch: '\'',
                position: 2
            })
        );
        assert_eq!(
            SubscriberName::new("`", s),
            Err(NameError::InvalidChar {
                ch: '`',
                position: 1
            })
        );
        assert_eq!(
            SubscriberName::new("tab\there", s),
            Err(NameError::InvalidChar {
                ch: '\t',
                position: 4
            })
        );
        assert_eq!(
            SubscriberName::new("é", s),
            Err(NameError::InvalidChar {
                ch: 'é',
                position: 1
            })
        );
        assert_eq!(
            SubscriberName::new("trailing ", s),
            Err(NameError::TrailingSpace)
        );
        assert!(SubscriberName::new(" leading", s).is_ok());
    }
}
