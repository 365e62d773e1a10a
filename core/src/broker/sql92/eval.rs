//! Evaluation with RocketMQ's Java semantics: values carry the Java type RocketMQ would give
//! them (`Integer`, `Long`, `Double`, `String`, `Boolean`, null), comparisons convert as
//! `ComparisonExpression.__compare` converts (a string is read as the type of the number it
//! meets, and failing that the evaluation fails), and AND, OR and NOT are three-valued.
//! Nothing here allocates unless a property is not UTF-8.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::{Const, Expr, Order, Properties, TextTest};

/// A value met while evaluating.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value<'a> {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(Cow<'a, str>),
}

impl<'a> Value<'a> {
    pub(super) fn of(constant: &'a Const) -> Value<'a> {
        match constant {
            Const::Null => Value::Null,
            Const::Bool(b) => Value::Bool(*b),
            Const::Int(i) => Value::Int(*i),
            Const::Long(l) => Value::Long(*l),
            Const::Double(d) => Value::Double(*d),
            Const::Str(s) => Value::Str(Cow::Borrowed(s)),
        }
    }
}

/// Java threw: a string that is not the number it is compared with, or a Boolean cast to a
/// String. The broker then does not select the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Thrown;

type Evaluated<'a> = Result<Value<'a>, Thrown>;

pub(super) fn evaluate<'a, P: Properties + ?Sized>(expr: &'a Expr, props: &'a P) -> Evaluated<'a> {
    Ok(match expr {
        Expr::Const(constant) => Value::of(constant),
        Expr::Property(name) => props.get(name).map_or(Value::Null, Value::Str),
        Expr::Negate(operand) => match evaluate(operand, props)? {
            Value::Int(i) => Value::Int(i.wrapping_neg()),
            Value::Long(l) => Value::Long(l.wrapping_neg()),
            Value::Double(d) => Value::Double(-d),
            _ => Value::Null,
        },
        Expr::Not(operand) => match truth(evaluate(operand, props)?)? {
            Some(b) => Value::Bool(!b),
            None => Value::Null,
        },
        Expr::BooleanCast(operand) => match evaluate(operand, props)? {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            _ => Value::Bool(false),
        },
        Expr::And(terms) => logic(terms, props, false)?,
        Expr::Or(terms) => logic(terms, props, true)?,
        Expr::Equal(left, right) => {
            let (left, right) = (evaluate(left, props)?, evaluate(right, props)?);
            match (&left, &right) {
                (Value::Null, Value::Null) => Value::Bool(true),
                (Value::Null, _) => Value::Null,
                (_, Value::Null) => Value::Bool(false),
                _ => Value::Bool(java_compare(&left, &right)? == Ordering::Equal),
            }
        }
        Expr::Compare(order, left, right) => compare(*order, left, right, props)?,
        Expr::In { property, strings, not } => match props.get(property) {
            None => Value::Null,
            Some(value) => {
                let found = strings.binary_search_by(|s| (**s).cmp(&*value)).is_ok();
                Value::Bool(found != *not)
            }
        },
        Expr::Text { test, not, operand, search } => {
            if search.is_empty() {
                return Ok(Value::Bool(false));
            }
            match evaluate(operand, props)? {
                Value::Str(text) => {
                    let found = match test {
                        TextTest::Contains => text.contains(&**search),
                        TextTest::StartsWith => text.starts_with(&**search),
                        TextTest::EndsWith => text.ends_with(&**search),
                    };
                    Value::Bool(found != *not)
                }
                _ => Value::Bool(false),
            }
        }
    })
}

/// A condition's value: `Some(bool)`, or `None` for NULL. Anything else is Java's
/// ClassCastException of `(Boolean) value`.
fn truth(value: Value<'_>) -> Result<Option<bool>, Thrown> {
    match value {
        Value::Bool(b) => Ok(Some(b)),
        Value::Null => Ok(None),
        _ => Err(Thrown),
    }
}

/// AND (`decisive` false) or OR (`decisive` true): the first term equal to `decisive` decides,
/// and the rest are not evaluated; else NULL if any term was NULL.
fn logic<'a, P: Properties + ?Sized>(
    terms: &'a [Expr],
    props: &'a P,
    decisive: bool,
) -> Evaluated<'a> {
    let mut unknown = false;
    for term in terms {
        match truth(evaluate(term, props)?)? {
            Some(b) if b == decisive => return Ok(Value::Bool(decisive)),
            Some(_) => {}
            None => unknown = true,
        }
    }
    Ok(if unknown { Value::Null } else { Value::Bool(!decisive) })
}

fn compare<'a, P: Properties + ?Sized>(
    order: Order,
    left: &'a Expr,
    right: &'a Expr,
    props: &'a P,
) -> Evaluated<'a> {
    let left = evaluate(left, props)?;
    if left == Value::Null {
        return Ok(Value::Null);
    }
    let right = evaluate(right, props)?;
    let ordering = match (&left, &right) {
        (_, Value::Null) => return Ok(Value::Null),
        // Two strings are ordered as numbers, or not at all.
        (Value::Str(l), Value::Str(r)) => {
            java_double_cmp(java_double_of(l).ok_or(Thrown)?, java_double_of(r).ok_or(Thrown)?)
        }
        _ => java_compare(&left, &right)?,
    };
    Ok(Value::Bool(match order {
        Order::Less => ordering.is_lt(),
        Order::LessEqual => ordering.is_le(),
        Order::Greater => ordering.is_gt(),
        Order::GreaterEqual => ordering.is_ge(),
    }))
}

/// `ComparisonExpression.__compare` with string conversion on: the two values brought to one
/// type and compared. Types with no conversion between them compare as "less".
pub(super) fn java_compare(left: &Value<'_>, right: &Value<'_>) -> Result<Ordering, Thrown> {
    use Value::{Bool, Double, Int, Long, Str};
    Ok(match (left, right) {
        (Bool(l), Bool(r)) => l.cmp(r),
        (Bool(_), Str(_)) => return Err(Thrown),
        (Int(l), Int(r)) => l.cmp(r),
        (Int(l), Long(r)) => i64::from(*l).cmp(r),
        (Int(l), Double(r)) => java_double_cmp(f64::from(*l), *r),
        (Int(l), Str(r)) => l.cmp(&r.parse::<i32>().map_err(|_| Thrown)?),
        (Long(l), Int(r)) => l.cmp(&i64::from(*r)),
        (Long(l), Long(r)) => l.cmp(r),
        (Long(l), Double(r)) => java_double_cmp(*l as f64, *r),
        (Long(l), Str(r)) => l.cmp(&r.parse::<i64>().map_err(|_| Thrown)?),
        (Double(l), Int(r)) => java_double_cmp(*l, f64::from(*r)),
        (Double(l), Long(r)) => java_double_cmp(*l, *r as f64),
        (Double(l), Double(r)) => java_double_cmp(*l, *r),
        (Double(l), Str(r)) => java_double_cmp(*l, java_double_of(r).ok_or(Thrown)?),
        (Str(l), Str(r)) => l.cmp(r),
        (Str(l), Bool(r)) => l.eq_ignore_ascii_case("true").cmp(r),
        (Str(l), Int(r)) => l.parse::<i32>().map_err(|_| Thrown)?.cmp(r),
        (Str(l), Long(r)) => l.parse::<i64>().map_err(|_| Thrown)?.cmp(r),
        (Str(l), Double(r)) => java_double_cmp(java_double_of(l).ok_or(Thrown)?, *r),
        (Value::Null, _) | (_, Value::Null) => return Err(Thrown),
        (Bool(_) | Int(_) | Long(_) | Double(_), _) => Ordering::Less,
    })
}

/// `Double.compareTo`: numeric order, then -0.0 below 0.0, and NaN above everything and equal
/// to itself.
fn java_double_cmp(left: f64, right: f64) -> Ordering {
    let bits = |d: f64| if d.is_nan() { 0x7ff8_0000_0000_0000_i64 } else { d.to_bits() as i64 };
    left.partial_cmp(&right).filter(|o| o.is_ne()).unwrap_or_else(|| bits(left).cmp(&bits(right)))
}

/// Java's `Double.valueOf(String)`: surrounding control characters and spaces trimmed, a sign,
/// `NaN`, `Infinity`, decimal digits with an optional point and exponent, or a hexadecimal
/// float (`0x1.8p3`), with an optional `f`/`F`/`d`/`D` suffix.
pub fn java_double_of(text: &str) -> Option<f64> {
    let text = text.trim_matches(|c: char| c <= ' ');
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = match body {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ if body.starts_with("0x") || body.starts_with("0X") => hexadecimal_of(&body[2..])?,
        _ => decimal_of(body)?,
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// Unsigned `digits [. digits] [e [sign] digits] [fFdD]`, at least one digit before the exponent.
fn decimal_of(body: &str) -> Option<f64> {
    let body = body.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(body);
    let bytes = body.as_bytes();
    let digits = |from: usize| {
        bytes[from.min(bytes.len())..].iter().take_while(|b| b.is_ascii_digit()).count()
    };
    let whole = digits(0);
    let mut at = whole;
    let mut fraction = 0;
    if bytes.get(at) == Some(&b'.') {
        fraction = digits(at + 1);
        at += 1 + fraction;
    }
    if whole + fraction == 0 {
        return None;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(at + 1), Some(b'+' | b'-')));
        let exponent = digits(at + 1 + sign);
        if exponent == 0 {
            return None;
        }
        at += 1 + sign + exponent;
    }
    if at != bytes.len() {
        return None;
    }
    // Rust reads every form left (`5.`, `.5`, `5e3`) as Java does.
    body.parse().ok()
}

/// After `0x`: `hexdigits [. hexdigits] p [sign] digits [fFdD]`, a digit on either side of
/// the point, the binary exponent required. Digits past the 30th significant one are dropped
/// (Java rounds them in: at most the last bit can differ).
fn hexadecimal_of(body: &str) -> Option<f64> {
    let body = body.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(body);
    let (mantissa, exponent) = body.split_once(['p', 'P'])?;
    let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if exponent_digits.is_empty() || !exponent_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let exponent: i64 = exponent.parse().unwrap_or(if exponent.starts_with('-') {
        i64::MIN / 2
    } else {
        i64::MAX / 2
    });
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if whole.len() + fraction.len() == 0 || !hex(whole) || !hex(fraction) {
        return None;
    }
    let (mut value, mut scale) = (0u128, -4 * fraction.len() as i64);
    for digit in whole.bytes().chain(fraction.bytes()) {
        let digit = u128::from((digit as char).to_digit(16)?);
        if value >> 120 == 0 {
            value = value * 16 + digit;
        } else {
            // Dropped: a whole digit would have multiplied the value by 16, and a fraction
            // digit's 16 is already in `scale`.
            scale += 4;
        }
    }
    let power = exponent.saturating_add(scale).clamp(-2200, 2200) as i32;
    let mut out = value as f64;
    for step in [power / 2, power - power / 2] {
        out *= 2f64.powi(step);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_read_as_java_reads_them() {
        assert_eq!(java_double_of(" 1.5 "), Some(1.5));
        assert_eq!(java_double_of("+3"), Some(3.0));
        assert_eq!(java_double_of("5."), Some(5.0));
        assert_eq!(java_double_of(".5e1"), Some(5.0));
        assert_eq!(java_double_of("2d"), Some(2.0));
        assert_eq!(java_double_of("1e400"), Some(f64::INFINITY));
        assert_eq!(java_double_of("-Infinity"), Some(f64::NEG_INFINITY));
        assert!(java_double_of("NaN").is_some_and(f64::is_nan));
        assert_eq!(java_double_of("0x10p0"), Some(16.0));
        assert_eq!(java_double_of("-0x1.8P1d"), Some(-3.0));
        assert_eq!(java_double_of("0X.8p-1"), Some(0.25));
        let long_fraction = format!("0x1.{}p0", "0".repeat(40));
        assert_eq!(java_double_of(&long_fraction), Some(1.0));
        let long_whole = format!("0x1{}p-160", "0".repeat(40));
        assert_eq!(java_double_of(&long_whole), Some(1.0));
        for bad in ["", "-", ".", "e3", "1e", "inf", "nan", "1,5", "0x10", "1 2", "d"] {
            assert_eq!(java_double_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn double_order_is_javas_total_order() {
        assert_eq!(java_double_cmp(-0.0, 0.0), Ordering::Less);
        assert_eq!(java_double_cmp(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(java_double_cmp(f64::NAN, -f64::NAN), Ordering::Equal);
        assert_eq!(java_double_cmp(1.0, 2.0), Ordering::Less);
    }

    #[test]
    fn comparisons_convert_as_rocketmq_converts() {
        let s = |t: &'static str| Value::Str(Cow::Borrowed(t));
        assert_eq!(java_compare(&s("3"), &Value::Int(3)), Ok(Ordering::Equal));
        assert_eq!(java_compare(&s("3.5"), &Value::Int(3)), Err(Thrown));
        assert_eq!(java_compare(&s("3.5"), &Value::Double(3.0)), Ok(Ordering::Greater));
        assert_eq!(java_compare(&s("5000000000"), &Value::Int(1)), Err(Thrown));
        assert_eq!(java_compare(&s("5000000000"), &Value::Long(1 << 40)), Ok(Ordering::Less));
        assert_eq!(java_compare(&Value::Int(1), &Value::Long(1)), Ok(Ordering::Equal));
        assert_eq!(java_compare(&s("TRUE"), &Value::Bool(true)), Ok(Ordering::Equal));
        assert_eq!(java_compare(&Value::Bool(true), &s("true")), Err(Thrown));
        assert_eq!(java_compare(&Value::Int(5), &Value::Bool(true)), Ok(Ordering::Less));
    }
}
