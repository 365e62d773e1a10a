//! SQL92 filters against two references:
//! - the golden table `testdata/sql92.txt` (RocketMQ's own test expressions and more, each with
//!   the outcome worked out from RocketMQ's Java source);
//! - a reference evaluator written here in the shape of RocketMQ's expression classes (one
//!   function per Java class, binary AND/OR, BETWEEN as two comparisons, `__compare` as its
//!   chain of class tests). Random expression trees are rendered to text; the broker's parser
//!   must refuse exactly those the reference's factories refuse, and its verdict over a
//!   record's encoded properties must equal the reference's over the same properties.

use std::cmp::Ordering;
use std::collections::HashMap;

use petrel_core::broker::sql92::{EncodedProperties, Sql92, Verdict};
use petrel_core::record::encode_properties;
use proptest::prelude::*;

#[test]
fn golden_expressions() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sql92.txt");
    let text = std::fs::read_to_string(&path).expect("testdata/sql92.txt is in the repository");
    let mut properties: Vec<(String, String)> = Vec::new();
    let (mut cases, mut failures) = (0, Vec::new());
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line == "with" || line.starts_with("with ") {
            properties = parse_with(&line[4..]);
            continue;
        }
        let (expression, outcome) =
            line.rsplit_once(" => ").expect("a case is `expression => outcome`");
        let pairs: Vec<(&str, &str)> =
            properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let encoded = encode_properties(&pairs);
        let got = match Sql92::parse(expression) {
            Err(_) => "refused",
            Ok(sql) => match sql.evaluate(&EncodedProperties(&encoded)) {
                Verdict::True => "true",
                Verdict::False => "false",
                Verdict::Null => "null",
                Verdict::Error => "error",
            },
        };
        cases += 1;
        if got != outcome.trim() {
            failures
                .push(format!("line {}: {expression} => {got}, table says {outcome}", number + 1));
        }
    }
    assert!(cases > 100, "only {cases} cases read from {}", path.display());
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `name='value' name2='it''s'` into pairs.
fn parse_with(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.split_once("='").expect("a property is name='value'");
        let mut value = String::new();
        let mut chars = after.char_indices().peekable();
        let end = loop {
            match chars.next().expect("the value's quote is closed") {
                (i, '\'') if after[i + 1..].starts_with('\'') => {
                    value.push('\'');
                    chars.next();
                }
                (i, '\'') => break i + 1,
                (_, c) => value.push(c),
            }
        };
        out.push((name.to_owned(), value));
        rest = after[end..].trim_start();
    }
    out
}

#[test]
fn the_with_line_reads_quotes() {
    assert_eq!(
        parse_with(" a='3' b='it''s x' c=''"),
        [("a".into(), "3".into()), ("b".into(), "it's x".into()), ("c".into(), String::new())]
    );
}

// ---- The reference: RocketMQ's expression classes, one function each. ----

/// A Java object as RocketMQ's evaluation sees it.
#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Boolean(bool),
    Integer(i32),
    Long(i64),
    Double(f64),
    String(String),
}

/// A thrown exception.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Throw;

/// An expression tree as the grammar's actions build it, before the factories' checks.
#[derive(Debug, Clone)]
enum Tree {
    Literal(&'static str),
    Property(&'static str),
    Plus(Box<Tree>),
    Minus(Box<Tree>),
    Not(Box<Tree>),
    And(Box<Tree>, Box<Tree>),
    Or(Box<Tree>, Box<Tree>),
    Equal(Box<Tree>, Box<Tree>),
    NotEqual(Box<Tree>, Box<Tree>),
    Less(Box<Tree>, Box<Tree>),
    GreaterEqual(Box<Tree>, Box<Tree>),
    IsNull(Box<Tree>, bool),
    Between(Box<Tree>, Box<Tree>, Box<Tree>, bool),
    In(Box<Tree>, Vec<&'static str>, bool),
    Text(&'static str, Box<Tree>, &'static str, bool),
}

/// The text of a tree, every operand in parentheses (the grammar makes them transparent).
fn render(tree: &Tree) -> String {
    let p = |t: &Tree| format!("({})", render(t));
    let not = |n: bool| if n { "NOT " } else { "" };
    match tree {
        Tree::Literal(text) | Tree::Property(text) => (*text).to_owned(),
        Tree::Plus(t) => format!("+{}", p(t)),
        Tree::Minus(t) => format!("-{}", p(t)),
        Tree::Not(t) => format!("NOT {}", p(t)),
        Tree::And(l, r) => format!("{} AND {}", p(l), p(r)),
        Tree::Or(l, r) => format!("{} or {}", p(l), p(r)),
        Tree::Equal(l, r) => format!("{} = {}", p(l), p(r)),
        Tree::NotEqual(l, r) => format!("{} <> {}", p(l), p(r)),
        Tree::Less(l, r) => format!("{} < {}", p(l), p(r)),
        Tree::GreaterEqual(l, r) => format!("{} >= {}", p(l), p(r)),
        Tree::IsNull(t, n) => format!("{} IS {}NULL", p(t), not(*n)),
        Tree::Between(v, l, h, n) => format!("{} {}BETWEEN {} AND {}", p(v), not(*n), p(l), p(h)),
        Tree::In(t, list, n) => {
            let list: Vec<String> =
                list.iter().map(|s| format!("'{}'", s.replace('\'', "''"))).collect();
            format!("{} {}IN ({})", p(t), not(*n), list.join(", "))
        }
        Tree::Text(op, t, search, n) => {
            format!("{} {}{op} '{}'", p(t), not(*n), search.replace('\'', "''"))
        }
    }
}

/// The compiled reference expression (RocketMQ's classes after the factories ran).
#[derive(Debug, Clone)]
enum X {
    Constant(J, bool),
    Property(&'static str),
    Negate(Box<X>),
    Not(Box<X>),
    BooleanCast(Box<X>),
    And(Box<X>, Box<X>),
    Or(Box<X>, Box<X>),
    Equal(Box<X>, Box<X>),
    Compare(fn(i32) -> bool, Box<X>, Box<X>),
    In(&'static str, Vec<&'static str>, bool),
    Text(&'static str, Box<X>, &'static str, bool),
}

impl X {
    fn is_boolean_expression(&self) -> bool {
        match self {
            X::Constant(_, boolean) => *boolean,
            X::Property(_) | X::Negate(_) => false,
            _ => true,
        }
    }
}

/// The grammar's actions and the factories' checks; `Err` where RocketMQ refuses.
fn compile(tree: &Tree) -> Result<X, Throw> {
    let c = |t: &Tree| compile(t).map(Box::new);
    Ok(match tree {
        Tree::Literal(text) => literal(text)?,
        Tree::Property(name) => X::Property(name),
        Tree::Plus(t) => compile(t)?,
        Tree::Minus(t) => X::Negate(c(t)?),
        Tree::Not(t) => X::Not(Box::new(as_boolean(compile(t)?)?)),
        Tree::And(l, r) => {
            X::And(Box::new(as_boolean(compile(l)?)?), Box::new(as_boolean(compile(r)?)?))
        }
        Tree::Or(l, r) => {
            X::Or(Box::new(as_boolean(compile(l)?)?), Box::new(as_boolean(compile(r)?)?))
        }
        Tree::Equal(l, r) => create_equal(compile(l)?, compile(r)?)?,
        Tree::NotEqual(l, r) => X::Not(Box::new(create_equal(compile(l)?, compile(r)?)?)),
        Tree::Less(l, r) => create_compare(|a| a < 0, compile(l)?, compile(r)?)?,
        Tree::GreaterEqual(l, r) => create_compare(|a| a >= 0, compile(l)?, compile(r)?)?,
        Tree::IsNull(t, not) => {
            let equal = X::Equal(c(t)?, Box::new(X::Constant(J::Null, true)));
            if *not {
                X::Not(Box::new(equal))
            } else {
                equal
            }
        }
        Tree::Between(v, l, h, not) => create_between(compile(v)?, compile(l)?, compile(h)?, *not)?,
        Tree::In(t, list, not) => match compile(t)? {
            X::Property(name) => X::In(name, list.clone(), *not),
            _ => return Err(Throw),
        },
        Tree::Text(op, t, search, not) => X::Text(op, c(t)?, search, *not),
    })
}

/// `ConstantExpression.createFromDecimal` / `createFloat`, strings and the boolean constants.
fn literal(text: &str) -> Result<X, Throw> {
    Ok(match text {
        "TRUE" => X::Constant(J::Boolean(true), true),
        "FALSE" => X::Constant(J::Boolean(false), true),
        "NULL" => X::Constant(J::Null, true),
        _ if text.starts_with('\'') => {
            X::Constant(J::String(text[1..text.len() - 1].replace("''", "'")), false)
        }
        _ if text.contains(['.', 'e', 'E']) => {
            let value: f64 = text.parse().map_err(|_| Throw)?;
            if value.is_infinite() || value < f64::from_bits(1) {
                return Err(Throw);
            }
            X::Constant(J::Double(value), false)
        }
        _ => {
            let value: i64 = text.trim_end_matches(['l', 'L']).parse().map_err(|_| Throw)?;
            let j = if i64::from(i32::MIN) <= value && value <= i64::from(i32::MAX) {
                J::Integer(value as i32)
            } else {
                J::Long(value)
            };
            X::Constant(j, false)
        }
    })
}

fn as_boolean(x: X) -> Result<X, Throw> {
    if x.is_boolean_expression() {
        return Ok(x);
    }
    if let X::Property(_) = x {
        return Ok(X::BooleanCast(Box::new(x)));
    }
    Err(Throw)
}

fn create_equal(l: X, r: X) -> Result<X, Throw> {
    for side in [&l, &r] {
        if let X::Constant(J::Null, _) = side {
            return Err(Throw);
        }
    }
    if let (X::Constant(_, true), X::Constant(_, right_boolean)) = (&l, &r) {
        if !right_boolean {
            return Err(Throw);
        }
    }
    Ok(X::Equal(Box::new(l), Box::new(r)))
}

fn check_less_than_operand(x: &X) -> Result<(), Throw> {
    if let X::Constant(value, _) = x {
        return match value {
            J::Integer(_) | J::Long(_) | J::Double(_) => Ok(()),
            _ => Err(Throw),
        };
    }
    if x.is_boolean_expression() {
        return Err(Throw);
    }
    Ok(())
}

fn create_compare(test: fn(i32) -> bool, l: X, r: X) -> Result<X, Throw> {
    check_less_than_operand(&l)?;
    check_less_than_operand(&r)?;
    Ok(X::Compare(test, Box::new(l), Box::new(r)))
}

fn create_between(v: X, l: X, h: X, not: bool) -> Result<X, Throw> {
    if not {
        let low = create_compare(|a| a < 0, v.clone(), l)?;
        let high = create_compare(|a| a > 0, v, h)?;
        return Ok(X::Or(Box::new(low), Box::new(high)));
    }
    if let (X::Constant(lv, _), X::Constant(hv, _)) = (&l, &h) {
        if *lv == J::Null || *hv == J::Null || compare_objects(hv, lv)? < 0 {
            return Err(Throw);
        }
    }
    let low = create_compare(|a| a >= 0, v.clone(), l)?;
    let high = create_compare(|a| a <= 0, v, h)?;
    Ok(X::And(Box::new(low), Box::new(high)))
}

/// Java's `Double.valueOf` of the strings the generated cases use (their property values and
/// string literals), written out by hand so that the reference does not lean on the parser
/// under test.
fn double(s: &str) -> Result<f64, Throw> {
    Ok(match s {
        "3" | "+3" | "03" | "3.0" | " 3" => 3.0,
        "-3" => -3.0,
        "3.5" => 3.5,
        "1e3" => 1000.0,
        "NaN" => f64::NAN,
        "-0" => -0.0,
        "2147483648" => 2_147_483_648.0,
        "5000000000" => 5e9,
        "Infinity" => f64::INFINITY,
        "2d" => 2.0,
        "true" | "TRUE" | "false" | "abc" | "" | "x'y" | "TagA" | "ab" => return Err(Throw),
        other => panic!("no Double.valueOf written out for {other:?}"),
    })
}

/// `ComparisonExpression.__compare(lv, rv, true)`, as its chain of class tests.
fn compare_objects(lv: &J, rv: &J) -> Result<i32, Throw> {
    let integer = |s: &str| s.parse::<i32>().map_err(|_| Throw);
    let long = |s: &str| s.parse::<i64>().map_err(|_| Throw);
    let (mut lv, mut rv) = (lv.clone(), rv.clone());
    if std::mem::discriminant(&lv) != std::mem::discriminant(&rv) {
        match (&lv, &rv) {
            (J::Boolean(_), J::String(_)) => return Err(Throw), // (String) lv on a Boolean
            (J::Boolean(_), _) => return Ok(-1),
            (J::Integer(i), J::Long(_)) => lv = J::Long(i64::from(*i)),
            (J::Integer(i), J::Double(_)) => lv = J::Double(f64::from(*i)),
            (J::Integer(_), J::String(s)) => rv = J::Integer(integer(s)?),
            (J::Long(_), J::Integer(i)) => rv = J::Long(i64::from(*i)),
            (J::Long(l), J::Double(_)) => lv = J::Double(*l as f64),
            (J::Long(_), J::String(s)) => rv = J::Long(long(s)?),
            (J::Double(_), J::Integer(i)) => rv = J::Double(f64::from(*i)),
            (J::Double(_), J::Long(l)) => rv = J::Double(*l as f64),
            (J::Double(_), J::String(s)) => rv = J::Double(double(s)?),
            (J::String(s), J::Boolean(_)) => lv = J::Boolean(s.eq_ignore_ascii_case("true")),
            (J::String(s), J::Integer(_)) => lv = J::Integer(integer(s)?),
            (J::String(s), J::Long(_)) => lv = J::Long(long(s)?),
            (J::String(s), J::Double(_)) => lv = J::Double(double(s)?),
            _ => return Ok(-1),
        }
    }
    Ok(match (&lv, &rv) {
        (J::Boolean(a), J::Boolean(b)) => a.cmp(b) as i32,
        (J::Integer(a), J::Integer(b)) => a.cmp(b) as i32,
        (J::Long(a), J::Long(b)) => a.cmp(b) as i32,
        (J::String(a), J::String(b)) => a.cmp(b) as i32,
        (J::Double(a), J::Double(b)) => {
            if a < b {
                -1
            } else if a > b {
                1
            } else {
                let bits = |d: f64| {
                    if d.is_nan() {
                        0x7ff8_0000_0000_0000_i64
                    } else {
                        d.to_bits() as i64
                    }
                };
                bits(*a).cmp(&bits(*b)) as i32
            }
        }
        _ => unreachable!("converted to one class"),
    })
}

fn truth(value: J) -> Result<Option<bool>, Throw> {
    match value {
        J::Boolean(b) => Ok(Some(b)),
        J::Null => Ok(None),
        _ => Err(Throw), // (Boolean) value
    }
}

fn eval(x: &X, props: &HashMap<String, String>) -> Result<J, Throw> {
    let e = |x: &X| eval(x, props);
    Ok(match x {
        X::Constant(j, _) => j.clone(),
        X::Property(name) => props.get(*name).map_or(J::Null, |v| J::String(v.clone())),
        X::Negate(t) => match e(t)? {
            J::Integer(i) => J::Integer(i.wrapping_neg()),
            J::Long(l) => J::Long(l.wrapping_neg()),
            J::Double(d) => J::Double(-d),
            _ => J::Null,
        },
        X::Not(t) => match truth(e(t)?)? {
            None => J::Null,
            Some(b) => J::Boolean(!b),
        },
        X::BooleanCast(t) => match e(t)? {
            J::Null => J::Null,
            J::Boolean(b) => J::Boolean(b),
            _ => J::Boolean(false),
        },
        X::And(l, r) => {
            let lv = truth(e(l)?)?;
            if lv == Some(false) {
                return Ok(J::Boolean(false));
            }
            let rv = truth(e(r)?)?;
            if rv == Some(false) {
                return Ok(J::Boolean(false));
            }
            if lv.is_none() || rv.is_none() {
                J::Null
            } else {
                J::Boolean(true)
            }
        }
        X::Or(l, r) => {
            let lv = truth(e(l)?)?;
            if lv == Some(true) {
                return Ok(J::Boolean(true));
            }
            let rv = truth(e(r)?)?;
            if rv == Some(true) {
                return Ok(J::Boolean(true));
            }
            if lv.is_none() || rv.is_none() {
                J::Null
            } else {
                J::Boolean(false)
            }
        }
        X::Equal(l, r) => {
            let (lv, rv) = (e(l)?, e(r)?);
            match (lv == J::Null, rv == J::Null) {
                (true, true) => J::Boolean(true),
                (true, false) => J::Null,
                (false, true) => J::Boolean(false),
                (false, false) => J::Boolean(compare_objects(&lv, &rv)? == 0),
            }
        }
        X::Compare(test, l, r) => {
            let lv = e(l)?;
            if lv == J::Null {
                return Ok(J::Null);
            }
            let rv = e(r)?;
            if rv == J::Null {
                return Ok(J::Null);
            }
            let answer = match (&lv, &rv) {
                (J::String(a), J::String(b)) => {
                    compare_objects(&J::Double(double(a)?), &J::Double(double(b)?))?
                }
                _ => compare_objects(&lv, &rv)?,
            };
            J::Boolean(test(answer))
        }
        X::In(name, list, not) => match props.get(*name) {
            None => J::Null,
            Some(v) => J::Boolean(list.contains(&v.as_str()) ^ not),
        },
        X::Text(op, t, search, not) => {
            if search.is_empty() {
                return Ok(J::Boolean(false));
            }
            match e(t)? {
                J::String(s) => {
                    let found = match *op {
                        "CONTAINS" => s.contains(search),
                        "STARTSWITH" => s.starts_with(search),
                        _ => s.ends_with(search),
                    };
                    J::Boolean(found ^ not)
                }
                _ => J::Boolean(false),
            }
        }
    })
}

/// The reference's verdict: refused at compile, or what the top-level condition gives.
fn reference(tree: &Tree, props: &HashMap<String, String>) -> Option<Verdict> {
    let x = as_boolean(compile(tree).ok()?).ok()?;
    Some(match eval(&x, props) {
        Ok(J::Boolean(true)) => Verdict::True,
        Ok(J::Boolean(false)) => Verdict::False,
        Ok(J::Null) => Verdict::Null,
        Ok(_) | Err(Throw) => Verdict::Error,
    })
}

const NAMES: [&str; 4] = ["a", "b", "c", "TAGS"];
const VALUES: [&str; 22] = [
    "3",
    "-3",
    "+3",
    "03",
    "3.0",
    "3.5",
    "1e3",
    "NaN",
    "-0",
    "2147483648",
    "5000000000",
    "true",
    "TRUE",
    "false",
    "abc",
    "",
    " 3",
    "x'y",
    "TagA",
    "ab",
    "Infinity",
    "2d",
];
const LITERALS: [&str; 20] = [
    "0",
    "3",
    "7",
    "2147483647",
    "2147483648",
    "5000000000",
    "3L",
    "3.0",
    "0.5",
    "1e3",
    "3.",
    "'abc'",
    "'3'",
    "'true'",
    "''",
    "'x''y'",
    "TRUE",
    "FALSE",
    "NULL",
    "0.0",
];
const STRINGS: [&str; 6] = ["abc", "3", "TagA", "", "b", "x'y"];

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        prop::sample::select(&LITERALS[..]).prop_map(Tree::Literal),
        prop::sample::select(&NAMES[..]).prop_map(Tree::Property),
    ];
    leaf.prop_recursive(5, 40, 3, |inner| {
        let b = |t: Tree| Box::new(t);
        prop_oneof![
            inner.clone().prop_map(move |t| Tree::Plus(b(t))),
            inner.clone().prop_map(move |t| Tree::Minus(b(t))),
            inner.clone().prop_map(move |t| Tree::Not(b(t))),
            (inner.clone(), inner.clone()).prop_map(move |(l, r)| Tree::And(b(l), b(r))),
            (inner.clone(), inner.clone()).prop_map(move |(l, r)| Tree::Or(b(l), b(r))),
            (inner.clone(), inner.clone()).prop_map(move |(l, r)| Tree::Equal(b(l), b(r))),
            (inner.clone(), inner.clone()).prop_map(move |(l, r)| Tree::NotEqual(b(l), b(r))),
            (inner.clone(), inner.clone()).prop_map(move |(l, r)| Tree::Less(b(l), b(r))),
            (inner.clone(), inner.clone()).prop_map(move |(l, r)| Tree::GreaterEqual(b(l), b(r))),
            (inner.clone(), any::<bool>()).prop_map(move |(t, n)| Tree::IsNull(b(t), n)),
            (inner.clone(), inner.clone(), inner.clone(), any::<bool>())
                .prop_map(move |(v, l, h, n)| Tree::Between(b(v), b(l), b(h), n)),
            (
                inner.clone(),
                prop::collection::vec(prop::sample::select(&STRINGS[..]), 1..4),
                any::<bool>()
            )
                .prop_map(move |(t, list, n)| Tree::In(b(t), list, n)),
            (
                prop::sample::select(&["CONTAINS", "STARTSWITH", "ENDSWITH"][..]),
                inner,
                prop::sample::select(&STRINGS[..]),
                any::<bool>()
            )
                .prop_map(move |(op, t, s, n)| Tree::Text(op, b(t), s, n)),
        ]
    })
}

fn properties() -> impl Strategy<Value = HashMap<String, String>> {
    prop::collection::hash_map(
        prop::sample::select(&NAMES[..]).prop_map(str::to_owned),
        prop::sample::select(&VALUES[..]).prop_map(str::to_owned),
        0..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8000))]

    #[test]
    fn the_broker_agrees_with_the_reference(tree in tree(), props in properties()) {
        let text = render(&tree);
        // RocketMQ's decoder (`string2messageProperties`) drops a property with an empty value.
        let decoded = props.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), v.clone())).collect();
        let expected = reference(&tree, &decoded);
        let pairs: Vec<(&str, &str)> = props.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let encoded = encode_properties(&pairs);
        let got = Sql92::parse(&text).ok().map(|sql| sql.evaluate(&EncodedProperties(&encoded)));
        prop_assert_eq!(got, expected, "expression: {}\nproperties: {:?}", text, props);
    }
}

#[test]
fn the_reference_compares_as_java_does() {
    let s = |t: &str| J::String(t.into());
    assert_eq!(compare_objects(&s("3"), &J::Integer(3)), Ok(0));
    assert_eq!(compare_objects(&J::Boolean(true), &s("true")), Err(Throw));
    assert_eq!(compare_objects(&J::Integer(1), &J::Boolean(true)), Ok(-1));
    assert_eq!(
        compare_objects(&J::Double(f64::NAN), &J::Double(1.0)).map(|c| c.cmp(&0)),
        Ok(Ordering::Greater)
    );
}

/// Nested BETWEENs (each copies its operand into two comparisons) cannot multiply a short text
/// into millions of nodes; a long but honest expression still compiles.
#[test]
fn expressions_are_bounded_in_nodes_not_only_in_text() {
    let mut text = "-a BETWEEN 1 AND 2".to_owned();
    for _ in 0..20 {
        text = format!("-({text}) BETWEEN 1 AND 2");
    }
    assert!(text.len() < 500);
    let refused = Sql92::parse(&text).unwrap_err();
    assert!(refused.message.contains("4096 nodes"), "{refused}");
    let chain: Vec<String> = (0..1000).map(|i| format!("a = {i}")).collect();
    let sql = Sql92::parse(&chain.join(" OR ")).unwrap();
    let props = encode_properties(&[("a", "999")]);
    assert_eq!(sql.evaluate(&EncodedProperties(&props)), Verdict::True);
}

/// A property with an empty value is absent, as RocketMQ's decoder leaves it; a name given
/// twice reads as its last value.
#[test]
fn encoded_properties_read_as_rocketmq_decodes_them() {
    let props = encode_properties(&[("c", ""), ("a", "1"), ("a", "2")]);
    let verdict = |text: &str| Sql92::parse(text).unwrap().evaluate(&EncodedProperties(&props));
    assert_eq!(verdict("c IS NULL"), Verdict::True);
    assert_eq!(verdict("a = 2"), Verdict::True);
}
