//! Words of one line of the text form: bare words, quoted strings with escapes, `#` comments.

use super::{ParseError, ParseErrorKind};

/// One word of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// The word, with quotes removed and escapes resolved.
    pub text: String,
    /// Column of its first character, from 1.
    pub col: u32,
    /// True when it was written in quotes (so `"exit"` is a name, never the command).
    pub quoted: bool,
}

/// Splits `line` (number `line_no`) into tokens.
pub(crate) fn tokens(line: &str, line_no: u32) -> Result<Vec<Token>, ParseError> {
    let mut out = Vec::new();
    let mut chars = line.chars().enumerate().peekable();
    let col_of = |index: usize| u32::try_from(index + 1).unwrap_or(u32::MAX);
    let error = |col, kind| ParseError {
        line: line_no,
        col,
        kind,
    };
    while let Some(&(index, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '#' {
            break;
        }
        let col = col_of(index);
        if c == '"' {
            chars.next();
            let mut text = String::new();
            loop {
                match chars.next() {
                    None => return Err(error(col, ParseErrorKind::UnterminatedString)),
                    Some((_, '"')) => break,
                    Some((at, '\\')) => match chars.next() {
                        Some((_, '"')) => text.push('"'),
                        Some((_, '\\')) => text.push('\\'),
                        Some((_, 'n')) => text.push('\n'),
                        Some((_, 't')) => text.push('\t'),
                        Some((_, other)) => {
                            return Err(error(col_of(at), ParseErrorKind::BadEscape(other)))
                        }
                        None => return Err(error(col, ParseErrorKind::UnterminatedString)),
                    },
                    Some((_, other)) => text.push(other),
                }
            }
            if let Some(&(at, next)) = chars.peek() {
                if !next.is_whitespace() {
                    return Err(error(col_of(at), ParseErrorKind::TextAfterQuote));
                }
            }
            out.push(Token {
                text,
                col,
                quoted: true,
            });
        } else {
            let mut text = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                text.push(c);
                chars.next();
            }
            out.push(Token {
                text,
                col,
                quoted: false,
            });
        }
    }
    Ok(out)
}

/// Writes `text` as a quoted string the lexer reads back unchanged.
pub(crate) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_escapes_and_comments() {
        let toks = tokens(r#"  description "a \"b\" \\ c"  # note"#, 1).unwrap();
        assert_eq!(toks.len(), 2);
        assert_eq!(toks[0].text, "description");
        assert_eq!(toks[0].col, 3);
        assert_eq!(toks[1].text, r#"a "b" \ c"#);
        assert!(toks[1].quoted);
        assert_eq!(
            tokens(&quote("x\"\\\n\ty"), 1).unwrap()[0].text,
            "x\"\\\n\ty"
        );
    }

    #[test]
    fn lexical_errors_have_columns() {
        let err = tokens("description \"abc", 4).unwrap_err();
        assert_eq!((err.line, err.col), (4, 13));
        assert_eq!(err.kind, ParseErrorKind::UnterminatedString);
        let err = tokens(r#"x "a\q""#, 1).unwrap_err();
        assert_eq!(err.kind, ParseErrorKind::BadEscape('q'));
        let err = tokens(r#"x "a"b"#, 1).unwrap_err();
        assert_eq!((err.col, err.kind), (6, ParseErrorKind::TextAfterQuote));
    }
}
