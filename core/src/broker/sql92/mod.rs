//! SQL92 message filters: RocketMQ's selector grammar (`filter/.../SelectorParser.jj`) and its
//! evaluation over a message's properties, as the broker runs it for subscriptions of type
//! `SQL92` (`enablePropertyFilter=true`).
//!
//! A consumer subscribes with an expression such as `region = 'eu' AND amount BETWEEN 10 AND 99`;
//! the broker hands it only the messages for which the expression is TRUE. Every property is a
//! string (the tag is the property `TAGS`); a comparison with a number constant reads the
//! property as that number. The evaluation is RocketMQ's, quirks included, so that a
//! subscription selects on Petrel exactly what it selects on RocketMQ:
//! - three-valued: an absent property is NULL, and a condition over NULL is NULL, which does not
//!   select; AND and OR short-circuit left to right;
//! - a property that cannot be read as the number it is compared with is an evaluation error,
//!   and a message whose evaluation fails is not selected (`a > 2` with `a='3.5'`: the constant is
//!   an Integer, and Java's `Integer.valueOf("3.5")` fails);
//! - `NOT` binds tighter than comparisons (`NOT a = 'x'` is `(NOT a) = 'x'`).
//!
//! docs/filter.md lists the grammar, the type rules and where Petrel is stricter than RocketMQ
//! (input left over after a whole expression is refused, where RocketMQ ignores it; the bounds).
//! Parsing is bounded: [`EXPRESSION_BYTES_MAX`] of text, [`NESTING_MAX`] levels of nesting and
//! [`EXPRESSION_NODES_MAX`] nodes, so that neither parsing nor evaluation can exhaust a
//! thread's stack, and evaluating one message costs at most that many steps. No I/O.

mod eval;
mod lex;
mod parse;

use std::borrow::Cow;

pub use eval::java_double_of;

/// The longest expression accepted. RocketMQ sets none; a subscription travels in every
/// heartbeat and pull, and 16 KiB holds an IN list of several hundred tags.
pub const EXPRESSION_BYTES_MAX: usize = 16 * 1024;
/// The deepest nesting accepted: parentheses, NOT and signs, and chained `=`, each one level.
pub const NESTING_MAX: usize = 64;
/// The most nodes an expression may compile to: what evaluating it once may visit. BETWEEN
/// counts its operand twice (it is two comparisons), so nesting BETWEENs cannot multiply a
/// short text into a huge tree. A long chain of ORs of equalities should be an IN.
pub const EXPRESSION_NODES_MAX: usize = 4096;

/// Where a message's properties come from.
pub trait Properties {
    /// The value of property `name` (case-sensitive), if the message has it.
    fn get(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl<S: std::hash::BuildHasher> Properties for std::collections::HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        std::collections::HashMap::get(self, name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

impl Properties for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        std::collections::BTreeMap::get(self, name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

/// Properties as a record stores them (`name 0x01 value 0x02 …`), read in place as RocketMQ's
/// `MessageDecoder.string2messageProperties` reads them for its filters: an entry with an empty
/// value is absent, and a name given twice reads as its last value.
#[derive(Debug, Clone, Copy)]
pub struct EncodedProperties<'a>(pub &'a [u8]);

impl Properties for EncodedProperties<'_> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        crate::record::properties(self.0)
            .filter(|(key, value)| *key == name.as_bytes() && !value.is_empty())
            .last()
            .map(|(_, value)| String::from_utf8_lossy(value))
    }
}

/// What an expression gives for one message. Only `True` selects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    True,
    False,
    /// Unknown: a property it needs is absent.
    Null,
    /// The evaluation failed (a property that is not the number it is compared with).
    Error,
}

/// Why an expression is refused: where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {}: {message}", at + 1)]
pub struct ParseError {
    /// Byte offset into the expression.
    pub at: usize,
    pub message: String,
}

impl ParseError {
    fn new(at: usize, message: impl Into<String>) -> ParseError {
        ParseError { at, message: message.into() }
    }
}

/// A compiled SQL92 expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql92 {
    root: Expr,
}

impl Sql92 {
    /// Compiles `text`, or says where and why it cannot be used.
    pub fn parse(text: &str) -> Result<Sql92, ParseError> {
        if text.len() > EXPRESSION_BYTES_MAX {
            let why = format!(
                "the expression is {} bytes long, more than the {EXPRESSION_BYTES_MAX} accepted",
                text.len()
            );
            return Err(ParseError::new(EXPRESSION_BYTES_MAX, why));
        }
        Ok(Sql92 { root: parse::selector(text)? })
    }

    /// What the expression gives for a message with `properties`.
    pub fn evaluate(&self, properties: &(impl Properties + ?Sized)) -> Verdict {
        match eval::evaluate(&self.root, properties) {
            Ok(eval::Value::Bool(true)) => Verdict::True,
            Ok(eval::Value::Bool(false)) => Verdict::False,
            Ok(eval::Value::Null) => Verdict::Null,
            Ok(_) | Err(_) => Verdict::Error,
        }
    }

    /// True when the message is selected.
    pub fn matches(&self, properties: &(impl Properties + ?Sized)) -> bool {
        self.evaluate(properties) == Verdict::True
    }
}

/// A constant of the expression, with the Java type RocketMQ gives it.
#[derive(Debug, Clone, PartialEq)]
enum Const {
    Null,
    Bool(bool),
    /// A decimal literal that fits 32 bits (Java `Integer`).
    Int(i32),
    /// A larger decimal literal (Java `Long`).
    Long(i64),
    /// A floating-point literal (Java `Double`).
    Double(f64),
    Str(Box<str>),
}

/// `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
}

/// `CONTAINS`, `STARTSWITH`, `ENDSWITH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextTest {
    Contains,
    StartsWith,
    EndsWith,
}

/// The expression tree, in the shape RocketMQ builds it (`IS NULL` is an equality with NULL,
/// `<>` the NOT of an equality, BETWEEN two comparisons).
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Const(Const),
    Property(Box<str>),
    Negate(Box<Expr>),
    Not(Box<Expr>),
    /// A property read as a condition: NULL when absent, else FALSE (a string is no Boolean).
    BooleanCast(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Equal(Box<Expr>, Box<Expr>),
    Compare(Order, Box<Expr>, Box<Expr>),
    /// `property [NOT] IN (…)`, the strings sorted.
    In {
        property: Box<str>,
        strings: Vec<Box<str>>,
        not: bool,
    },
    Text {
        test: TextTest,
        not: bool,
        operand: Box<Expr>,
        search: Box<str>,
    },
}

impl Expr {
    /// RocketMQ's `BooleanExpression`: what may stand where a condition is due.
    fn is_condition(&self) -> bool {
        !matches!(
            self,
            Expr::Const(Const::Int(_) | Const::Long(_) | Const::Double(_) | Const::Str(_))
                | Expr::Property(_)
                | Expr::Negate(_)
        )
    }
}

/// The body of the `sql92` fuzz target, kept here so that a normal test replays its corpus:
/// an expression, then after a zero byte a record's encoded properties. Nothing may panic; a
/// refusal points inside the expression; what parses parses the same again and gives the same
/// verdict over the encoded properties as over them decoded into a map the way RocketMQ's
/// `string2messageProperties` decodes them (entries cut at 0x02, each at its first 0x01, kept
/// only with a name and a value, the last of a name winning).
pub fn fuzz_sql92(data: &[u8]) {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let expression = String::from_utf8_lossy(&data[..split]);
    let encoded = data.get(split + 1..).unwrap_or_default();
    let sql = match Sql92::parse(&expression) {
        Ok(sql) => sql,
        Err(e) => {
            assert!(e.at <= expression.len().max(EXPRESSION_BYTES_MAX), "refused at {}", e.at);
            return;
        }
    };
    assert_eq!(Sql92::parse(&expression).as_ref(), Ok(&sql), "parsing is deterministic");
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let decoded: std::collections::HashMap<String, String> = encoded
        .split(|b| *b == 0x02)
        .filter_map(|entry| {
            let at = entry.iter().position(|b| *b == 0x01)?;
            (at > 0 && at + 1 < entry.len()).then(|| (lossy(&entry[..at]), lossy(&entry[at + 1..])))
        })
        .collect();
    let in_place = sql.evaluate(&EncodedProperties(encoded));
    if decoded.keys().all(|k| k.bytes().all(|b| b.is_ascii_graphic())) {
        assert_eq!(in_place, sql.evaluate(&decoded), "encoded and decoded properties agree");
    }
}
