//! Loading TOML config files with errors that name `file:line:col` and what was expected, and
//! the value types the configs share (durations).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_spanned::Spanned;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A config file that could not be used, located as precisely as possible.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file was read but a value is wrong; `location` is `file:line:col`.
    #[error("{location}: {message}")]
    Invalid { location: String, message: String },
}

/// A config file's text kept for locating errors found after parsing.
pub struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    /// Reads the file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }

    /// Wraps text that did not come from a file (embedded defaults, tests).
    pub fn from_text(name: &str, text: &str) -> Self {
        Self {
            path: PathBuf::from(name),
            text: text.to_string(),
        }
    }

    /// Deserializes the whole file; unknown keys are errors when `T` says `deny_unknown_fields`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|err| {
            let message = err.message().trim().to_string();
            match err.span() {
                Some(span) => self.error_at(span, message),
                None => ConfigError::Invalid {
                    location: self.path.display().to_string(),
                    message,
                },
            }
        })
    }

    /// An error about the value at `span` (byte offsets, e.g. from `serde_spanned::Spanned`).
    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, col) = line_col(&self.text, span.start);
        ConfigError::Invalid {
            location: format!("{}:{line}:{col}", self.path.display()),
            message: message.into(),
        }
    }
}

impl Source {
    /// An error about the value at `path`, a field path as validators outside the binary name
    /// them (`peer_table[1].remote_ip_address`: keys joined by dots, array elements by index)
    /// after the file was parsed. A path the file does not spell out (a default was used) is
    /// located at its nearest ancestor that it does.
    pub fn error_at_path(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let span = toml::de::DeTable::parse(&self.text)
            .map(|document| span_of_path(&document, path))
            .unwrap_or(0..0);
        self.error_at(span, message)
    }
}

/// The span of the value at `path` in `document`, or of the deepest ancestor present.
fn span_of_path(document: &Spanned<toml::de::DeTable<'_>>, path: &str) -> Range<usize> {
    use toml::de::DeValue;
    let mut span = document.span();
    let mut table = Some(document.get_ref());
    for segment in path.split('.') {
        let (key, indices) = segment.split_once('[').unwrap_or((segment, ""));
        let found = table.and_then(|table| {
            table
                .iter()
                .find(|(name, _)| name.get_ref().as_ref() == key)
                .map(|(_, value)| value)
        });
        let Some(mut value) = found else {
            break;
        };
        span = value.span();
        for index in indices.split('[').filter(|index| !index.is_empty()) {
            let element = match (
                value.get_ref(),
                index.trim_end_matches(']').parse::<usize>(),
            ) {
                (DeValue::Array(items), Ok(index)) => items.get(index),
                _ => None,
            };
            let Some(element) = element else {
                return span;
            };
            value = element;
            span = value.span();
        }
        table = match value.get_ref() {
            DeValue::Table(inner) => Some(inner),
            _ => None,
        };
    }
    span
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|tail| tail.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// A duration in config: `"900s"`, `"15m"`, `"1h30m"`, `"250ms"`, or SR OS style `"0d 01:00:00"`;
/// a bare integer means seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ConfigDuration(pub std::time::Duration);

impl ConfigDuration {
    /// Parses the textual forms described on the type.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(duration) = parse_dhms(text) {
            return Ok(Self(duration));
        }
        humantime::parse_duration(text).map(Self).map_err(|err| {
            format!("invalid duration {text:?} ({err}); expected e.g. \"900s\", \"15m\", \"1h30m\" or \"0d 01:00:00\"")
        })
    }
}

fn parse_dhms(text: &str) -> Option<std::time::Duration> {
    let (days, clock) = match text.split_once(' ') {
        Some((days, clock)) => (days.strip_suffix('d')?.parse::<u64>().ok()?, clock.trim()),
        None => (0, text),
    };
    let mut parts = clock.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(std::time::Duration::from_secs(
        ((days * 24 + hours) * 60 + minutes) * 60 + seconds,
    ))
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(secs) => Ok(Self(std::time::Duration::from_secs(secs))),
            Raw::Text(text) => Self::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// A size in config: `"256MB"`, `"64KiB"`, `"1GB"` (K/M/G are powers of 1024 with or without
/// `i`, as operators write memory limits), or a bare integer of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub usize);

impl ByteSize {
    /// Parses the textual forms described on the type.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        let digits = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(digits);
        let expected = || {
            format!("invalid size {text:?}; expected e.g. \"256MB\", \"64KiB\", \"1GB\" or a number of bytes")
        };
        let number: usize = number.parse().map_err(|_| expected())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            _ => return Err(expected()),
        };
        number
            .checked_mul(1usize << shift)
            .map(Self)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(bytes) => usize::try_from(bytes)
                .map(Self)
                .map_err(|_| serde::de::Error::custom("size is too large")),
            Raw::Text(text) => Self::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_in_every_form() {
        let size = |text| ByteSize::parse(text).map(|s| s.0);
        assert_eq!(size("256MB"), Ok(256 << 20));
        assert_eq!(size("64KiB"), Ok(64 << 10));
        assert_eq!(size("1 GB"), Ok(1 << 30));
        assert_eq!(size("1000"), Ok(1000));
        assert!(size("12 parsecs").is_err());
        assert!(size("MB").is_err());
    }

    use super::*;

    #[test]
    fn durations_in_every_form() {
        let secs = |text| ConfigDuration::parse(text).map(|d| d.0.as_secs());
        assert_eq!(secs("900s"), Ok(900));
        assert_eq!(secs("15m"), Ok(900));
        assert_eq!(secs("1h 30m"), Ok(5400));
        assert_eq!(secs("0d 01:00:00"), Ok(3600));
        assert_eq!(secs("2d 00:00:05"), Ok(2 * 86400 + 5));
        assert_eq!(secs("00:12:08"), Ok(728));
        assert!(secs("0d 01:60:00").is_err());
        assert!(secs("soon").is_err());
    }

    #[test]
    fn errors_found_after_parsing_point_at_the_field_path() {
        let text = "local_as = 1\n\n[[peer_table]]\nremote_ip_address = \"10.0.0.1\"\n\n[[peer_table]]\nremote_ip_address = \"10.0.0\"\nclass_table = [{ cos_id = 1 }, { cos_id = 1 }]\n";
        let source = Source::from_text("rae.toml", text);
        let at = |path: &str| source.error_at_path(path, "wrong").to_string();
        assert_eq!(
            at("peer_table[1].remote_ip_address"),
            "rae.toml:7:21: wrong"
        );
        assert_eq!(
            at("peer_table[1].class_table[1].cos_id"),
            "rae.toml:8:43: wrong"
        );
        // Not written (a default): the nearest ancestor the file has.
        assert_eq!(at("peer_table[0].ttl_value"), "rae.toml:3:1: wrong");
        assert_eq!(at("hold_time"), "rae.toml:1:1: wrong");
    }

    #[test]
    fn errors_point_at_line_and_column() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Sample {
            timeout: ConfigDuration,
        }
        let source = Source::from_text("sample.toml", "\n\ntimeout = \"later\"\n");
        let err = source.parse::<Sample>().unwrap_err().to_string();
        assert!(err.starts_with("sample.toml:3:11: "), "{err}");
        assert!(err.contains("expected e.g."), "{err}");
        let source = Source::from_text("sample.toml", "timeout = 5\nbogus = 1\n");
        let err = source.parse::<Sample>().unwrap_err().to_string();
        assert!(err.starts_with("sample.toml:2:1: "), "{err}");
        assert!(err.contains("unknown field `bogus`"), "{err}");
    }
}
