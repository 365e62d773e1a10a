//! What a push consumer subscribes to on a topic: a TAG expression (`TagA || TagB`, or `*`
//! for everything) or an SQL92 expression over message properties, which the client passes
//! to the broker as it is (the broker evaluates it, or refuses it).

use std::collections::BTreeSet;

use petrel_core::broker::filter::{SubscriptionData, SUB_ALL};
use petrel_core::broker::sql92::Sql92;
use petrel_core::record::tags_code;

use crate::ClientError;

/// How an expression is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpressionType {
    Tag,
    Sql92,
}

impl ExpressionType {
    /// RocketMQ's name for it (`expressionType`).
    pub fn name(self) -> &'static str {
        match self {
            ExpressionType::Tag => "TAG",
            ExpressionType::Sql92 => "SQL92",
        }
    }
}

/// One topic's subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub expression_type: ExpressionType,
    pub expression: String,
}

impl Subscription {
    /// Messages whose tag is one of `TagA || TagB`; `*` or empty takes every message.
    pub fn tag(expression: &str) -> Subscription {
        Subscription { expression_type: ExpressionType::Tag, expression: expression.to_owned() }
    }

    /// Messages whose properties satisfy an SQL92 expression (`a > 5 AND b = 'x'`).
    pub fn sql92(expression: &str) -> Subscription {
        Subscription { expression_type: ExpressionType::Sql92, expression: expression.to_owned() }
    }

    /// The tags a TAG subscription accepts; `None` when it accepts every tag (or is SQL92,
    /// which only the broker evaluates).
    fn tags(&self) -> Option<BTreeSet<&str>> {
        if self.expression_type != ExpressionType::Tag {
            return None;
        }
        let tags: BTreeSet<&str> =
            self.expression.split("||").map(str::trim).filter(|t| !t.is_empty()).collect();
        if tags.is_empty() || tags.contains(SUB_ALL) {
            None
        } else {
            Some(tags)
        }
    }

    /// Refuses what a broker would refuse: an empty SQL92 expression, or one that does not
    /// parse (said with where it goes wrong, before any broker is asked).
    pub fn validate(&self, topic: &str) -> Result<(), ClientError> {
        if self.expression_type != ExpressionType::Sql92 {
            return Ok(());
        }
        if self.expression.trim().is_empty() {
            return Err(ClientError::Config(format!(
                "{topic}: an SQL92 subscription needs an expression"
            )));
        }
        Sql92::parse(&self.expression).map(drop).map_err(|e| {
            ClientError::Config(format!("{topic}: the SQL92 expression cannot be used, {e}"))
        })
    }

    /// Whether a message with these tags is for this subscription. The broker filters by the
    /// tags' hash codes, which can collide; the tag strings decide here, as RocketMQ's client
    /// decides.
    pub fn accepts(&self, tags: Option<&str>) -> bool {
        match self.tags() {
            None => true,
            Some(wanted) => tags.is_some_and(|t| wanted.contains(t)),
        }
    }

    /// The subscription as a heartbeat registers it, with its tag set and their hash codes
    /// (Java's `FilterAPI.buildSubscriptionData`).
    pub fn data(&self, topic: &str) -> SubscriptionData {
        let tags: BTreeSet<String> =
            self.tags().map(|t| t.into_iter().map(str::to_owned).collect()).unwrap_or_default();
        SubscriptionData {
            code_set: tags.iter().map(|t| tags_code(t.as_bytes())).collect(),
            tags_set: tags,
            expression_type: Some(self.expression_type.name().to_owned()),
            sub_string: if self.expression.trim().is_empty() {
                SUB_ALL.to_owned()
            } else {
                self.expression.clone()
            },
            topic: topic.to_owned(),
            ..SubscriptionData::default()
        }
    }
}

impl From<&str> for Subscription {
    /// A TAG expression.
    fn from(expression: &str) -> Subscription {
        Subscription::tag(expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_decide_by_their_strings() {
        let sub = Subscription::tag("TagA || TagB");
        assert!(sub.accepts(Some("TagA")) && sub.accepts(Some("TagB")));
        assert!(!sub.accepts(Some("TagC")) && !sub.accepts(None));
        // "Aa" and "BB" share Java's hash code: the broker cannot tell them apart, the client can.
        assert_eq!(tags_code(b"Aa"), tags_code(b"BB"));
        assert!(!Subscription::tag("Aa").accepts(Some("BB")));
        assert!(Subscription::tag("*").accepts(None));
        assert!(Subscription::sql92("a > 1").accepts(Some("anything")));
    }

    #[test]
    fn heartbeat_data_carries_tags_and_codes() {
        let data = Subscription::tag("TagA || TagB").data("T");
        assert_eq!(data.tags_set.len(), 2);
        assert!(data.code_set.contains(&2_598_919), "\"TagA\".hashCode()");
        assert_eq!(data.expression_type.as_deref(), Some("TAG"));
        let all = Subscription::tag("").data("T");
        assert_eq!((all.sub_string.as_str(), all.tags_set.len()), ("*", 0));
        let sql = Subscription::sql92("a > 1").data("T");
        assert_eq!(
            (sql.expression_type.as_deref(), sql.sub_string.as_str()),
            (Some("SQL92"), "a > 1")
        );
        assert!(Subscription::sql92(" ").validate("T").is_err());
    }

    #[test]
    fn sql92_expressions_are_checked_before_any_broker_is_asked() {
        assert!(Subscription::sql92("a > 5 AND b = 'x'").validate("T").is_ok());
        let refused = Subscription::sql92("a > > 5").validate("T").unwrap_err().to_string();
        assert!(refused.contains("at column 5"), "{refused}");
        assert!(Subscription::sql92(" ").validate("T").is_err());
        assert!(Subscription::tag("a > > 5").validate("T").is_ok(), "a tag is any text");
    }
}
