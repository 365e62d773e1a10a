//! Filtering: what a subscription expression selects (`FilterAPI.buildSubscriptionData`,
//! `ExpressionMessageFilter`).
//!
//! A TAG expression is `*` (everything) or tags joined by `||`. The consume queue keeps each
//! message's tag as a code (Java's `String.hashCode` of TAGS), so the broker filters by code
//! and the client re-checks the tag string, as RocketMQ splits the work. An SQL92 expression
//! ([`super::sql92`]) is decided on the broker alone, over the properties in the commit log.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::sql92::{EncodedProperties, ParseError, Sql92};
use super::{loose, Refusal};
use crate::codes::response;
use crate::record::java_hash;

/// The expression that selects every message.
pub const SUB_ALL: &str = "*";

/// One subscription as clients send it in heartbeats (`SubscriptionData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    #[serde(deserialize_with = "loose::flag")]
    pub class_filter_mode: bool,
    /// Kept as sent but never trusted: the C++ client fills it with `atoi(tag)`. Filters are
    /// built from `sub_string`, as Java's `FilterAPI` builds this set.
    pub code_set: BTreeSet<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression_type: Option<String>,
    #[serde(deserialize_with = "loose::string")]
    pub sub_string: String,
    #[serde(deserialize_with = "loose::integer")]
    pub sub_version: i64,
    pub tags_set: BTreeSet<String>,
    #[serde(deserialize_with = "loose::string")]
    pub topic: String,
}

/// Expression types (`ExpressionType`).
pub const TAG: &str = "TAG";
pub const SQL92: &str = "SQL92";

/// RocketMQ's `ExpressionType.isTagType`: no type, an empty one, or TAG.
pub fn is_tag_type(kind: Option<&str>) -> bool {
    matches!(kind, None | Some("") | Some(TAG))
}

/// Why an expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("expression type {0} is not known; subscribe with TAG or SQL92")]
    UnknownType(String),
    #[error("the SQL92 expression cannot be used, {0}")]
    Parse(#[from] ParseError),
}

impl FilterError {
    /// RocketMQ's answer: SUBSCRIPTION_PARSE_FAILED, with where the expression goes wrong.
    pub fn refusal(&self, expression: &str) -> Refusal {
        let remark = format!("parse the consumer's subscription failed: {self}: {expression}");
        Refusal::new(response::SUBSCRIPTION_PARSE_FAILED, remark)
    }
}

/// What a subscription selects: by tag code in the consume queue, or by an SQL92 expression
/// over each message's properties in the commit log.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageFilter {
    Tag(TagFilter),
    Sql92(Arc<Sql92>),
}

impl MessageFilter {
    /// Parses `expression` of type `kind` (TAG when absent).
    pub fn parse(kind: Option<&str>, expression: &str) -> Result<MessageFilter, FilterError> {
        match kind {
            kind if is_tag_type(kind) => Ok(MessageFilter::Tag(TagFilter::parse(expression))),
            Some(SQL92) => Ok(MessageFilter::Sql92(Arc::new(Sql92::parse(expression)?))),
            other => Err(FilterError::UnknownType(other.unwrap_or_default().to_owned())),
        }
    }

    /// True unless the consume-queue tag code already rules the message out.
    pub fn by_code(&self, code: i64) -> bool {
        match self {
            MessageFilter::Tag(tags) => tags.matches(code),
            MessageFilter::Sql92(_) => true,
        }
    }

    /// True when the message with these encoded properties is selected; a TAG filter decided
    /// by code already.
    pub fn by_properties(&self, properties: &[u8]) -> bool {
        match self {
            MessageFilter::Tag(_) => true,
            MessageFilter::Sql92(sql) => sql.matches(&EncodedProperties(properties)),
        }
    }

    /// Whether the commit-log record must be read to decide.
    pub fn needs_properties(&self) -> bool {
        matches!(self, MessageFilter::Sql92(_))
    }
}

/// A parsed TAG expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    All,
    /// The codes of the accepted tags.
    Codes(BTreeSet<i64>),
}

impl TagFilter {
    /// Parses a TAG expression: `*`, empty, or tags joined by `||`.
    pub fn parse(expression: &str) -> TagFilter {
        let expression = expression.trim();
        if expression.is_empty() || expression == SUB_ALL {
            return TagFilter::All;
        }
        let codes: BTreeSet<i64> = expression
            .split("||")
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(|tag| i64::from(java_hash(tag)))
            .collect();
        if codes.is_empty() {
            return TagFilter::All;
        }
        TagFilter::Codes(codes)
    }

    /// True when a message whose consume-queue tag code is `code` passes.
    pub fn matches(&self, code: i64) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Codes(codes) => codes.contains(&code),
        }
    }
}

/// The body of CHECK_CLIENT_CONFIG (`CheckClientRequestBody`): a consumer asks, before it
/// starts, whether the broker can filter by its subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CheckClientBody {
    #[serde(deserialize_with = "loose::string")]
    pub client_id: String,
    #[serde(deserialize_with = "loose::string")]
    pub group: String,
    pub subscription_data: Option<SubscriptionData>,
}

/// RocketMQ's answer to CHECK_CLIENT_CONFIG: a TAG subscription (or none) is fine; any other
/// is refused SYSTEM_ERROR unless `enablePropertyFilter` (`property_filter`), and then must
/// compile, else SUBSCRIPTION_PARSE_FAILED with where it goes wrong.
pub fn check_client_config(body: &CheckClientBody, property_filter: bool) -> Result<(), Refusal> {
    let Some(subscription) = &body.subscription_data else { return Ok(()) };
    let kind = subscription.expression_type.as_deref();
    if is_tag_type(kind) {
        return Ok(());
    }
    if !property_filter {
        return Err(property_filter_disabled(kind.unwrap_or_default()));
    }
    MessageFilter::parse(kind, &subscription.sub_string)
        .map(drop)
        .map_err(|e| e.refusal(&subscription.sub_string))
}

/// A class-filter subscription (`classFilterMode`: user Java code run by a FilterServer),
/// which RocketMQ 5 removed. RocketMQ 5 then hands such a consumer every message; Petrel
/// refuses it, so that no consumer silently gets what it meant to filter out
/// (docs/decisions/0006-no-user-code-filters.md).
pub fn class_filter_refused() -> Refusal {
    Refusal::new(
        response::SUBSCRIPTION_PARSE_FAILED,
        "class filters (classFilterMode, FilterServer) were removed in RocketMQ 5 and are not \
         served; subscribe with a TAG or SQL92 expression",
    )
}

/// RocketMQ's refusal of a filter type the broker is not configured for.
pub fn property_filter_disabled(kind: &str) -> Refusal {
    Refusal::new(
        response::SYSTEM_ERROR,
        format!(
            "The broker does not support consumer to filter message by {kind} \
             (set enablePropertyFilter=true in the broker's configuration)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{encode_properties, tags_code};

    fn body(kind: Option<&str>, expression: &str) -> CheckClientBody {
        CheckClientBody {
            subscription_data: Some(SubscriptionData {
                expression_type: kind.map(str::to_owned),
                sub_string: expression.into(),
                ..SubscriptionData::default()
            }),
            ..CheckClientBody::default()
        }
    }

    #[test]
    fn client_configs_with_tags_pass_and_sql92_only_where_enabled() {
        assert_eq!(check_client_config(&CheckClientBody::default(), false), Ok(()));
        assert_eq!(check_client_config(&body(Some("TAG"), "a || b"), false), Ok(()));
        assert_eq!(check_client_config(&body(None, "*"), false), Ok(()));
        let refused = check_client_config(&body(Some("SQL92"), "a > 1"), false).unwrap_err();
        assert_eq!(refused.code, response::SYSTEM_ERROR);
        assert!(refused
            .remark
            .starts_with("The broker does not support consumer to filter message by SQL92"));
        assert_eq!(check_client_config(&body(Some("SQL92"), "a > 1"), true), Ok(()));
    }

    #[test]
    fn a_bad_expression_is_refused_with_where_it_goes_wrong() {
        let refused = check_client_config(&body(Some("SQL92"), "a > > 1"), true).unwrap_err();
        assert_eq!(refused.code, response::SUBSCRIPTION_PARSE_FAILED);
        assert!(refused.remark.contains("at column 5"), "{}", refused.remark);
        assert!(refused.remark.ends_with(": a > > 1"), "{}", refused.remark);
        let unknown = check_client_config(&body(Some("CLASS"), "x"), true).unwrap_err();
        assert_eq!(unknown.code, response::SUBSCRIPTION_PARSE_FAILED);
        assert!(unknown.remark.contains("TAG or SQL92"));
    }

    #[test]
    fn star_and_empty_take_everything() {
        assert_eq!(TagFilter::parse("*"), TagFilter::All);
        assert_eq!(TagFilter::parse(" "), TagFilter::All);
        assert!(TagFilter::All.matches(12345));
    }

    #[test]
    fn tags_match_by_their_java_hash() {
        let filter = TagFilter::parse("TagA || TagB");
        assert!(filter.matches(tags_code(b"TagA")));
        assert!(filter.matches(tags_code(b"TagB")));
        assert!(!filter.matches(tags_code(b"TagC")));
        // "TagA".hashCode() in Java.
        assert!(filter.matches(2_598_919));
    }

    #[test]
    fn sql92_filters_by_properties_and_tags_by_code() {
        let sql = MessageFilter::parse(Some(SQL92), "TAGS = 'TagA' AND a > 1").unwrap();
        assert!(sql.needs_properties() && sql.by_code(0));
        assert!(sql.by_properties(&encode_properties(&[("TAGS", "TagA"), ("a", "2")])));
        assert!(!sql.by_properties(&encode_properties(&[("TAGS", "TagA"), ("a", "1")])));
        let tags = MessageFilter::parse(Some(TAG), "TagA").unwrap();
        assert!(!tags.needs_properties() && tags.by_properties(b""));
        assert!(tags.by_code(tags_code(b"TagA")) && !tags.by_code(0));
    }

    #[test]
    fn a_registered_subscription_filters_by_its_expression_not_its_code_set() {
        // The C++ client's heartbeat: codeSet holds atoi(tag), subVersion is a string.
        let json = r#"{"subString":"TagA || TagC","tagsSet":["TagA","TagC"],"codeSet":[0,0],
            "subVersion":"1795000000000","topic":"T"}"#;
        let sub: SubscriptionData = serde_json::from_str(json).unwrap();
        assert_eq!(sub.sub_version, 1_795_000_000_000);
        let filter = MessageFilter::parse(sub.expression_type.as_deref(), &sub.sub_string).unwrap();
        assert!(filter.by_code(tags_code(b"TagA")));
        assert!(filter.by_code(tags_code(b"TagC")));
        assert!(!filter.by_code(0));
    }
}
