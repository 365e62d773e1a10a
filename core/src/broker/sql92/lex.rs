//! The tokens of RocketMQ's selector grammar (`SelectorParser.jj`), cut as JavaCC cuts them:
//! the longest match wins, keywords win over identifiers of the same length, and keywords and
//! identifiers are case-insensitive. Whitespace, `-- … newline` and `/* … */` are skipped.

use super::ParseError;

/// A reserved word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keyword {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
}

impl Keyword {
    fn of(word: &str) -> Option<Keyword> {
        const WORDS: [(&str, Keyword); 12] = [
            ("NOT", Keyword::Not),
            ("AND", Keyword::And),
            ("OR", Keyword::Or),
            ("BETWEEN", Keyword::Between),
            ("IN", Keyword::In),
            ("TRUE", Keyword::True),
            ("FALSE", Keyword::False),
            ("NULL", Keyword::Null),
            ("IS", Keyword::Is),
            ("CONTAINS", Keyword::Contains),
            ("STARTSWITH", Keyword::StartsWith),
            ("ENDSWITH", Keyword::EndsWith),
        ];
        WORDS.iter().find(|(text, _)| text.eq_ignore_ascii_case(word)).map(|(_, k)| *k)
    }
}

/// One token, borrowing its text from the expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Token<'a> {
    Keyword(Keyword),
    /// A property name.
    Id(&'a str),
    /// An integer literal as written, an `l`/`L` suffix included.
    Decimal(&'a str),
    /// A floating-point literal as written.
    Float(&'a str),
    /// A string literal between its quotes, `''` not yet undone.
    Str(&'a str),
    /// One of `= <> > >= < <= ( ) , + -`.
    Symbol(&'static str),
    End,
}

impl Token<'_> {
    /// How a remark names the token.
    pub(super) fn describe(&self) -> String {
        match self {
            Token::Keyword(k) => format!("{k:?}").to_uppercase(),
            Token::Id(name) => format!("'{name}'"),
            Token::Decimal(text) | Token::Float(text) => text.to_string(),
            Token::Str(text) => format!("'{text}'"),
            Token::Symbol(s) => format!("'{s}'"),
            Token::End => "the end".to_owned(),
        }
    }
}

/// Cuts `text` into tokens, each with the byte offset it starts at; the last is `End`.
pub(super) fn tokens(text: &str) -> Result<Vec<(usize, Token<'_>)>, ParseError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        at = skip_blank(text, at)?;
        let Some(&first) = bytes.get(at) else {
            out.push((at, Token::End));
            return Ok(out);
        };
        let (token, len) = match first {
            b'\'' => string(text, at)?,
            b'0'..=b'9' | b'.' => number(text, at)?,
            b'a'..=b'z' | b'A'..=b'Z' | b'_' | b'$' => {
                let len = bytes[at..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b'$')
                    .count();
                let word = &text[at..at + len];
                (Keyword::of(word).map_or(Token::Id(word), Token::Keyword), len)
            }
            _ => symbol(text, at)?,
        };
        out.push((at, token));
        at += len;
    }
}

fn skip_blank(text: &str, mut at: usize) -> Result<usize, ParseError> {
    let bytes = text.as_bytes();
    loop {
        match bytes.get(at..at + 2) {
            Some(b"--") => {
                // JavaCC's LINE_COMMENT needs its line end; without one the dashes are minus signs.
                match bytes[at..].iter().position(|b| *b == b'\n' || *b == b'\r') {
                    Some(end) => at += end + 1,
                    None => return Ok(at),
                }
                continue;
            }
            Some(b"/*") => {
                let Some(end) = text[at + 2..].find("*/") else {
                    return Err(ParseError::new(at, "a comment opened here is never closed"));
                };
                at += 2 + end + 2;
                continue;
            }
            _ => {}
        }
        match bytes.get(at) {
            Some(b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => at += 1,
            _ => return Ok(at),
        }
    }
}

fn string(text: &str, start: usize) -> Result<(Token<'_>, usize), ParseError> {
    let bytes = text.as_bytes();
    let mut at = start + 1;
    loop {
        match bytes.get(at) {
            None => return Err(ParseError::new(start, "a string opened here is never closed")),
            Some(b'\'') if bytes.get(at + 1) == Some(&b'\'') => at += 2,
            Some(b'\'') => return Ok((Token::Str(&text[start + 1..at]), at + 1 - start)),
            Some(_) => at += 1,
        }
    }
}

/// `DECIMAL_LITERAL` or `FLOATING_POINT_LITERAL`, whichever is longer.
fn number(text: &str, start: usize) -> Result<(Token<'_>, usize), ParseError> {
    let bytes = &text.as_bytes()[start..];
    let digits = |from: usize| {
        bytes[from.min(bytes.len())..].iter().take_while(|b| b.is_ascii_digit()).count()
    };
    let decimal = match bytes[0] {
        b'0' => 1,
        b'1'..=b'9' => {
            let n = digits(0);
            n + usize::from(matches!(bytes.get(n), Some(b'l' | b'L')))
        }
        _ => 0,
    };
    let exponent = |from: usize| -> usize {
        if !matches!(bytes.get(from), Some(b'e' | b'E')) {
            return 0;
        }
        let sign = usize::from(matches!(bytes.get(from + 1), Some(b'+' | b'-')));
        match digits(from + 1 + sign) {
            0 => 0,
            n => 1 + sign + n,
        }
    };
    let whole = digits(0);
    let float = if whole > 0 && bytes.get(whole) == Some(&b'.') {
        let fraction = digits(whole + 1);
        whole + 1 + fraction + exponent(whole + 1 + fraction)
    } else if whole == 0 && digits(1) > 0 {
        let fraction = digits(1);
        1 + fraction + exponent(1 + fraction)
    } else if whole > 0 && exponent(whole) > 0 {
        whole + exponent(whole)
    } else {
        0
    };
    match (decimal, float) {
        (0, 0) => Err(ParseError::new(start, "'.' must be followed by digits")),
        (d, f) if f > d => Ok((Token::Float(&text[start..start + f]), f)),
        (d, _) => Ok((Token::Decimal(&text[start..start + d]), d)),
    }
}

fn symbol(text: &str, at: usize) -> Result<(Token<'_>, usize), ParseError> {
    const SYMBOLS: [&str; 11] = ["<>", ">=", "<=", "=", ">", "<", "(", ")", ",", "+", "-"];
    let rest = &text[at..];
    if let Some(symbol) = SYMBOLS.iter().find(|s| rest.starts_with(**s)) {
        return Ok((Token::Symbol(symbol), symbol.len()));
    }
    let c = rest.chars().next().unwrap_or(' ');
    Err(ParseError::new(at, format!("'{c}' is not part of the SQL92 filter grammar")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str) -> Vec<Token<'_>> {
        tokens(text).unwrap().into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn numbers_take_the_longest_literal_as_javacc_does() {
        assert_eq!(cut("5"), [Token::Decimal("5"), Token::End]);
        assert_eq!(cut("5L"), [Token::Decimal("5L"), Token::End]);
        assert_eq!(cut("5."), [Token::Float("5."), Token::End]);
        assert_eq!(cut(".5e-3"), [Token::Float(".5e-3"), Token::End]);
        assert_eq!(cut("5E10"), [Token::Float("5E10"), Token::End]);
        assert_eq!(cut("05"), [Token::Decimal("0"), Token::Decimal("5"), Token::End]);
        assert_eq!(cut("05.5"), [Token::Float("05.5"), Token::End]);
        assert_eq!(cut("1e"), [Token::Decimal("1"), Token::Id("e"), Token::End]);
        assert_eq!(cut("0L"), [Token::Decimal("0"), Token::Id("L"), Token::End]);
    }

    #[test]
    fn words_strings_symbols_and_comments() {
        assert_eq!(
            cut("a<>'it''s' /* x */ nOt\tStartsWith -- c\n$b_1>=-"),
            [
                Token::Id("a"),
                Token::Symbol("<>"),
                Token::Str("it''s"),
                Token::Keyword(Keyword::Not),
                Token::Keyword(Keyword::StartsWith),
                Token::Id("$b_1"),
                Token::Symbol(">="),
                Token::Symbol("-"),
                Token::End
            ]
        );
        assert_eq!(
            cut("a --"),
            [Token::Id("a"), Token::Symbol("-"), Token::Symbol("-"), Token::End]
        );
        assert_eq!(cut("nots"), [Token::Id("nots"), Token::End]);
    }

    #[test]
    fn bad_characters_and_open_strings_are_refused_where_they_are() {
        assert_eq!(tokens("a = 'x").unwrap_err().at, 4);
        assert_eq!(tokens("a # 1").unwrap_err().at, 2);
        assert_eq!(tokens("a.b").unwrap_err().at, 1);
        assert_eq!(tokens("a /* b").unwrap_err().at, 2);
        assert!(tokens("a != 1").is_err());
        assert!(tokens("é = 1").is_err());
    }
}
