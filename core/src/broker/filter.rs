//! Tag filtering: what a subscription expression selects (`FilterAPI.buildSubscriptionData`).
//!
//! A TAG expression is `*` (everything) or tags joined by `||`. The consume queue keeps each
//! message's tag as a code (Java's `String.hashCode` of TAGS), so the broker filters by code
//! and the client re-checks the tag string, as RocketMQ splits the work.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

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

/// Why an expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("expression type {0} is not supported by this broker; use TAG")]
    Unsupported(String),
}

/// A parsed TAG expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    All,
    /// The codes of the accepted tags.
    Codes(BTreeSet<i64>),
}

impl TagFilter {
    /// Parses `expression` of type `expression_type` (TAG when absent).
    pub fn parse(
        expression_type: Option<&str>,
        expression: &str,
    ) -> Result<TagFilter, FilterError> {
        match expression_type {
            None | Some("") | Some("TAG") => {}
            Some(other) => return Err(FilterError::Unsupported(other.to_owned())),
        }
        let expression = expression.trim();
        if expression.is_empty() || expression == SUB_ALL {
            return Ok(TagFilter::All);
        }
        let codes: BTreeSet<i64> = expression
            .split("||")
            .map(str::trim)
            .filter(|tag| !tag.is_empty())
            .map(|tag| i64::from(java_hash(tag)))
            .collect();
        if codes.is_empty() {
            return Ok(TagFilter::All);
        }
        Ok(TagFilter::Codes(codes))
    }

    /// From a subscription a client registered, by its expression (its `codeSet` is not
    /// trusted: see [`SubscriptionData::code_set`]).
    pub fn from_subscription(sub: &SubscriptionData) -> Result<TagFilter, FilterError> {
        TagFilter::parse(sub.expression_type.as_deref(), &sub.sub_string)
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

/// RocketMQ's answer to CHECK_CLIENT_CONFIG with `enablePropertyFilter=false` (its default,
/// and all Petrel serves yet): a TAG subscription (or none) is fine, any other type is refused
/// SYSTEM_ERROR with RocketMQ's remark.
pub fn check_client_config(body: &CheckClientBody) -> Result<(), Refusal> {
    let Some(subscription) = &body.subscription_data else { return Ok(()) };
    match subscription.expression_type.as_deref() {
        None | Some("") | Some("TAG") => Ok(()),
        Some(other) => Err(Refusal::new(
            response::SYSTEM_ERROR,
            format!("The broker does not support consumer to filter message by {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_configs_with_tags_pass_and_sql92_is_refused_as_rocketmq_does() {
        let body = |kind: Option<&str>| CheckClientBody {
            subscription_data: Some(SubscriptionData {
                expression_type: kind.map(str::to_owned),
                sub_string: "a > 1".into(),
                ..SubscriptionData::default()
            }),
            ..CheckClientBody::default()
        };
        assert_eq!(check_client_config(&CheckClientBody::default()), Ok(()));
        assert_eq!(check_client_config(&body(Some("TAG"))), Ok(()));
        assert_eq!(check_client_config(&body(None)), Ok(()));
        let refused = check_client_config(&body(Some("SQL92"))).unwrap_err();
        assert_eq!(refused.code, response::SYSTEM_ERROR);
        assert_eq!(
            refused.remark,
            "The broker does not support consumer to filter message by SQL92"
        );
    }
    use crate::record::tags_code;

    #[test]
    fn star_and_empty_take_everything() {
        assert_eq!(TagFilter::parse(None, "*").unwrap(), TagFilter::All);
        assert_eq!(TagFilter::parse(Some("TAG"), " ").unwrap(), TagFilter::All);
        assert!(TagFilter::All.matches(12345));
    }

    #[test]
    fn tags_match_by_their_java_hash() {
        let filter = TagFilter::parse(None, "TagA || TagB").unwrap();
        assert!(filter.matches(tags_code(b"TagA")));
        assert!(filter.matches(tags_code(b"TagB")));
        assert!(!filter.matches(tags_code(b"TagC")));
        // "TagA".hashCode() in Java.
        assert!(filter.matches(2_598_919));
    }

    #[test]
    fn sql92_is_refused_with_a_reason() {
        let err = TagFilter::parse(Some("SQL92"), "a > 1").unwrap_err();
        assert!(err.to_string().contains("SQL92"));
    }

    #[test]
    fn a_registered_subscription_filters_by_its_expression_not_its_code_set() {
        // The C++ client's heartbeat: codeSet holds atoi(tag), subVersion is a string.
        let json = r#"{"subString":"TagA || TagC","tagsSet":["TagA","TagC"],"codeSet":[0,0],
            "subVersion":"1795000000000","topic":"T"}"#;
        let sub: SubscriptionData = serde_json::from_str(json).unwrap();
        assert_eq!(sub.sub_version, 1_795_000_000_000);
        let filter = TagFilter::from_subscription(&sub).unwrap();
        assert!(filter.matches(tags_code(b"TagA")));
        assert!(filter.matches(tags_code(b"TagC")));
        assert!(!filter.matches(0));
    }
}
