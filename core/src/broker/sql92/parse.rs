//! The selector grammar as a recursive descent, one function per rule of `SelectorParser.jj`,
//! building the tree with the checks RocketMQ's `create*` factories make (a string constant is
//! not ordered, NULL is not compared with `=`, IN needs a property, BETWEEN's constant bounds
//! must be in order). Unlike RocketMQ, the whole input must be one expression.

use super::eval::{java_compare, java_double_of};
use super::lex::{tokens, Keyword, Token};
use super::{Const, Expr, Order, ParseError, TextTest, EXPRESSION_NODES_MAX, NESTING_MAX};

/// A subtree, how deep it is and how many nodes it has, so that both are bounded as the tree
/// is built.
struct Built {
    expr: Expr,
    depth: usize,
    nodes: usize,
}

impl Built {
    fn leaf(expr: Expr) -> Built {
        Built { expr, depth: 1, nodes: 1 }
    }
}

struct Parser<'a> {
    tokens: Vec<(usize, Token<'a>)>,
    next: usize,
    nesting: usize,
}

/// Parses a whole selector.
pub(super) fn selector(text: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser { tokens: tokens(text)?, next: 0, nesting: 0 };
    let start = parser.at();
    let root = parser.or()?;
    if parser.peek() != Token::End {
        let why = format!(
            "{} follows a complete expression; join conditions with AND or OR",
            parser.peek().describe()
        );
        return Err(ParseError::new(parser.at(), why));
    }
    Ok(condition(root).map_err(|why| ParseError::new(start, why))?.expr)
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Token<'a> {
        self.tokens[self.next].1
    }

    fn peek_second(&self) -> Token<'a> {
        self.tokens.get(self.next + 1).map_or(Token::End, |t| t.1)
    }

    fn at(&self) -> usize {
        self.tokens[self.next].0
    }

    fn bump(&mut self) -> Token<'a> {
        let token = self.peek();
        if token != Token::End {
            self.next += 1;
        }
        token
    }

    fn expect(&mut self, wanted: Token<'static>, context: &str) -> Result<(), ParseError> {
        if self.peek() == wanted {
            self.bump();
            return Ok(());
        }
        let why =
            format!("expected {} {context}, found {}", wanted.describe(), self.peek().describe());
        Err(ParseError::new(self.at(), why))
    }

    /// Runs `rule` one nesting level deeper, refusing past [`NESTING_MAX`].
    fn nested<T>(
        &mut self,
        rule: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.nesting >= NESTING_MAX {
            let why = format!("nested more than {NESTING_MAX} levels deep");
            return Err(ParseError::new(self.at(), why));
        }
        self.nesting += 1;
        let out = rule(self);
        self.nesting -= 1;
        out
    }

    fn or(&mut self) -> Result<Built, ParseError> {
        self.chain(Keyword::Or, Self::and)
    }

    fn and(&mut self) -> Result<Built, ParseError> {
        self.chain(Keyword::And, Self::equality)
    }

    /// `term (word term)*` for `word` AND or OR.
    fn chain(
        &mut self,
        word: Keyword,
        term: fn(&mut Self) -> Result<Built, ParseError>,
    ) -> Result<Built, ParseError> {
        let mut left = term(self)?;
        while self.peek() == Token::Keyword(word) {
            let at = self.at();
            self.bump();
            let right = term(self)?;
            left =
                logic(word == Keyword::And, left, right).map_err(|why| ParseError::new(at, why))?;
            check_size(&left, at)?;
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Built, ParseError> {
        let mut left = self.comparison()?;
        loop {
            let at = self.at();
            left = match self.peek() {
                Token::Symbol(symbol @ ("=" | "<>")) => {
                    self.bump();
                    let right = self.comparison()?;
                    let equal = equal(left, right).map_err(|why| ParseError::new(at, why))?;
                    if symbol == "=" {
                        equal
                    } else {
                        unary(Expr::Not, equal)
                    }
                }
                Token::Keyword(Keyword::Is) => {
                    self.bump();
                    let not = self.peek() == Token::Keyword(Keyword::Not);
                    if not {
                        self.bump();
                    }
                    self.expect(Token::Keyword(Keyword::Null), "after IS or IS NOT")?;
                    let is_null = binary(Expr::Equal, left, Built::leaf(Expr::Const(Const::Null)));
                    if not {
                        unary(Expr::Not, is_null)
                    } else {
                        is_null
                    }
                }
                _ => return Ok(left),
            };
            check_size(&left, at)?;
        }
    }

    fn comparison(&mut self) -> Result<Built, ParseError> {
        let mut left = self.unary()?;
        loop {
            let at = self.at();
            let not = self.peek() == Token::Keyword(Keyword::Not)
                && matches!(
                    self.peek_second(),
                    Token::Keyword(
                        Keyword::Contains
                            | Keyword::StartsWith
                            | Keyword::EndsWith
                            | Keyword::Between
                            | Keyword::In
                    )
                );
            if not {
                self.bump();
            }
            let order = match self.peek() {
                Token::Symbol("<") => Some(Order::Less),
                Token::Symbol("<=") => Some(Order::LessEqual),
                Token::Symbol(">") => Some(Order::Greater),
                Token::Symbol(">=") => Some(Order::GreaterEqual),
                _ => None,
            };
            left = match (self.peek(), order) {
                (_, Some(order)) if !not => {
                    self.bump();
                    let right = self.unary()?;
                    compare(order, left, right).map_err(|why| ParseError::new(at, why))?
                }
                (Token::Keyword(Keyword::Contains), _) => {
                    self.text(TextTest::Contains, not, left)?
                }
                (Token::Keyword(Keyword::StartsWith), _) => {
                    self.text(TextTest::StartsWith, not, left)?
                }
                (Token::Keyword(Keyword::EndsWith), _) => {
                    self.text(TextTest::EndsWith, not, left)?
                }
                (Token::Keyword(Keyword::Between), _) => self.between(not, left, at)?,
                (Token::Keyword(Keyword::In), _) => self.in_list(not, left, at)?,
                _ => return Ok(left),
            };
            check_size(&left, at)?;
        }
    }

    fn text(&mut self, test: TextTest, not: bool, left: Built) -> Result<Built, ParseError> {
        self.bump();
        let search = self.string("as what to look for")?;
        let (depth, nodes) = (left.depth + 1, left.nodes + 1);
        let operand = Box::new(left.expr);
        Ok(Built { expr: Expr::Text { test, not, operand, search: search.into() }, depth, nodes })
    }

    fn between(&mut self, not: bool, value: Built, at: usize) -> Result<Built, ParseError> {
        self.bump();
        let low = self.unary()?;
        self.expect(Token::Keyword(Keyword::And), "between the bounds of BETWEEN")?;
        let high = self.unary()?;
        between(not, value, low, high).map_err(|why| ParseError::new(at, why))
    }

    fn in_list(&mut self, not: bool, left: Built, at: usize) -> Result<Built, ParseError> {
        self.bump();
        let Expr::Property(property) = left.expr else {
            return Err(ParseError::new(at, "IN needs a property name on its left"));
        };
        self.expect(Token::Symbol("("), "after IN")?;
        let mut strings = vec![self.string("in an IN list")?.into_boxed_str()];
        while self.peek() == Token::Symbol(",") {
            self.bump();
            strings.push(self.string("in an IN list")?.into_boxed_str());
        }
        self.expect(Token::Symbol(")"), "to close the IN list")?;
        strings.sort_unstable();
        strings.dedup();
        Ok(Built { expr: Expr::In { property, strings, not }, depth: 2, nodes: 2 })
    }

    fn string(&mut self, context: &str) -> Result<String, ParseError> {
        match self.peek() {
            Token::Str(text) => {
                self.bump();
                Ok(text.replace("''", "'"))
            }
            other => {
                let why = format!("expected a quoted string {context}, found {}", other.describe());
                Err(ParseError::new(self.at(), why))
            }
        }
    }

    fn unary(&mut self) -> Result<Built, ParseError> {
        let at = self.at();
        match self.peek() {
            Token::Symbol("+") => {
                self.bump();
                self.nested(Self::unary)
            }
            Token::Symbol("-") => {
                self.bump();
                Ok(unary(Expr::Negate, self.nested(Self::unary)?))
            }
            Token::Keyword(Keyword::Not) => {
                self.bump();
                let operand = self.nested(Self::unary)?;
                let operand = condition(operand).map_err(|why| ParseError::new(at, why))?;
                Ok(unary(Expr::Not, operand))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Built, ParseError> {
        let at = self.at();
        let constant = match self.bump() {
            Token::Id(name) => return Ok(Built::leaf(Expr::Property(name.into()))),
            Token::Symbol("(") => {
                let inner = self.nested(Self::or)?;
                self.expect(Token::Symbol(")"), "to close the parenthesis")?;
                return Ok(inner);
            }
            Token::Str(text) => Const::Str(text.replace("''", "'").into()),
            Token::Decimal(text) => decimal(text).map_err(|why| ParseError::new(at, why))?,
            Token::Float(text) => float(text).map_err(|why| ParseError::new(at, why))?,
            Token::Keyword(Keyword::True) => Const::Bool(true),
            Token::Keyword(Keyword::False) => Const::Bool(false),
            Token::Keyword(Keyword::Null) => Const::Null,
            other => {
                let why =
                    format!("expected a value, a property or '(', found {}", other.describe());
                return Err(ParseError::new(at, why));
            }
        };
        Ok(Built::leaf(Expr::Const(constant)))
    }
}

fn check_size(built: &Built, at: usize) -> Result<(), ParseError> {
    if built.depth > NESTING_MAX {
        let why = format!("nested more than {NESTING_MAX} levels deep");
        return Err(ParseError::new(at, why));
    }
    if built.nodes > EXPRESSION_NODES_MAX {
        let why = format!(
            "the expression grows past {EXPRESSION_NODES_MAX} nodes here (BETWEEN counts its \
             operand twice; a long chain of OR is better an IN)"
        );
        return Err(ParseError::new(at, why));
    }
    Ok(())
}

fn unary(make: fn(Box<Expr>) -> Expr, operand: Built) -> Built {
    let (depth, nodes) = (operand.depth + 1, operand.nodes + 1);
    Built { expr: make(Box::new(operand.expr)), depth, nodes }
}

fn binary(make: impl FnOnce(Box<Expr>, Box<Expr>) -> Expr, left: Built, right: Built) -> Built {
    let depth = left.depth.max(right.depth) + 1;
    let nodes = left.nodes + right.nodes + 1;
    Built { expr: make(Box::new(left.expr), Box::new(right.expr)), depth, nodes }
}

/// RocketMQ's `asBooleanExpression`: a condition as it is, a property cast, anything else refused.
fn condition(built: Built) -> Result<Built, String> {
    match built.expr {
        Expr::Property(_) => Ok(unary(Expr::BooleanCast, built)),
        ref expr if expr.is_condition() => Ok(built),
        _ => Err("a number or string stands where a condition (TRUE or FALSE) is needed".into()),
    }
}

/// `left AND right` or `left OR right`, chains kept flat (the two group the same way).
fn logic(and: bool, left: Built, right: Built) -> Result<Built, String> {
    let (left, right) = (condition(left)?, condition(right)?);
    let nodes = left.nodes + right.nodes;
    let (mut terms, depth, nodes) = match left.expr {
        Expr::And(terms) if and => (terms, left.depth.max(right.depth + 1), nodes),
        Expr::Or(terms) if !and => (terms, left.depth.max(right.depth + 1), nodes),
        other => (vec![other], left.depth.max(right.depth) + 1, nodes + 1),
    };
    terms.push(right.expr);
    let expr = if and { Expr::And(terms) } else { Expr::Or(terms) };
    Ok(Built { expr, depth, nodes })
}

fn equal(left: Built, right: Built) -> Result<Built, String> {
    for side in [&left.expr, &right.expr] {
        if *side == Expr::Const(Const::Null) {
            return Err(
                "NULL cannot be compared with '=' or '<>'; use IS NULL or IS NOT NULL".into()
            );
        }
    }
    if let (Expr::Const(Const::Bool(_)), Expr::Const(other)) = (&left.expr, &right.expr) {
        if !matches!(other, Const::Bool(_)) {
            return Err("TRUE or FALSE cannot be compared with a number or a string".into());
        }
    }
    Ok(binary(Expr::Equal, left, right))
}

fn compare(order: Order, left: Built, right: Built) -> Result<Built, String> {
    for side in [&left.expr, &right.expr] {
        match side {
            Expr::Const(Const::Int(_) | Const::Long(_) | Const::Double(_)) => {}
            Expr::Const(_) => {
                return Err("<, <=, > and >= (and BETWEEN) compare numbers: a string, TRUE, FALSE or NULL constant cannot be compared".into());
            }
            expr if expr.is_condition() => {
                return Err("<, <=, > and >= (and BETWEEN) compare numbers, not conditions".into());
            }
            _ => {}
        }
    }
    Ok(binary(|l, r| Expr::Compare(order, l, r), left, right))
}

fn between(not: bool, value: Built, low: Built, high: Built) -> Result<Built, String> {
    if let (Expr::Const(l), Expr::Const(h)) = (&low.expr, &high.expr) {
        if *l == Const::Null || *h == Const::Null {
            return Err("the bounds of BETWEEN cannot be NULL".into());
        }
        let (l, h) = (super::eval::Value::of(l), super::eval::Value::of(h));
        match java_compare(&h, &l) {
            Ok(std::cmp::Ordering::Less) | Err(_) if !not => {
                return Err("the low bound of BETWEEN is greater than its high bound".into());
            }
            _ => {}
        }
    }
    let second = Built { expr: value.expr.clone(), depth: value.depth, nodes: value.nodes };
    let (first_order, second_order) =
        if not { (Order::Less, Order::Greater) } else { (Order::GreaterEqual, Order::LessEqual) };
    let first = compare(first_order, value, low)?;
    let second = compare(second_order, second, high)?;
    logic(!not, first, second)
}

/// `DECIMAL_LITERAL`: a Java `Integer` when it fits 32 bits, else a `Long`; past 64 bits refused.
fn decimal(text: &str) -> Result<Const, String> {
    let digits = text.trim_end_matches(['l', 'L']);
    let value: i64 = digits.parse().map_err(|_| format!("{text} does not fit 64 bits"))?;
    Ok(i32::try_from(value).map_or(Const::Long(value), Const::Int))
}

/// `FLOATING_POINT_LITERAL`: a Java `Double`; RocketMQ refuses one that is infinite or below
/// `Double.MIN_VALUE` (4.9E-324), and so 0.0 too.
fn float(text: &str) -> Result<Const, String> {
    let value = java_double_of(text).ok_or_else(|| format!("{text} is not a number"))?;
    if value.is_infinite() {
        return Err(format!("{text} is greater than the largest double"));
    }
    if value < f64::from_bits(1) {
        return Err(format!(
            "{text} is less than the smallest positive double (RocketMQ refuses 0.0 as a literal; write 0)"
        ));
    }
    Ok(Const::Double(value))
}
