//! The bodies of the admin requests mqadmin and rocketmq-dashboard send (RocketMQ
//! `remoting/protocol/body` and `admin`): who is connected, how far each queue and each
//! consumer group got.
//!
//! Fields are declared in alphabetical order, the order fastjson writes them in. Two of these
//! bodies (`TopicStatsTable`, `ConsumeStats`) are maps keyed by a `MessageQueue` object, which
//! fastjson writes as `{{"brokerName":..}:{..}}`: not JSON, so their encoding is
//! `petrel_net::codec::json`'s; here they are lists of pairs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::broker::filter::SubscriptionData;
use crate::broker::loose;
pub use crate::client::MessageQueue;

/// One window of a stats item (`BrokerStatsItem`): messages in it, a second, and per call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerStatsItem {
    pub avgpt: f64,
    pub sum: u64,
    pub tps: f64,
}

/// VIEW_BROKER_STATS_DATA's answer (`BrokerStatsData`): a stats item over the last minute,
/// hour and day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BrokerStatsData {
    pub stats_day: BrokerStatsItem,
    pub stats_hour: BrokerStatsItem,
    pub stats_minute: BrokerStatsItem,
}

/// A queue's offsets (`TopicOffset`): GET_TOPIC_STATS_INFO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TopicOffset {
    /// When the newest message of the queue was stored (ms), 0 for an empty queue.
    pub last_update_timestamp: i64,
    pub max_offset: i64,
    pub min_offset: i64,
}

/// Every queue of a topic on one broker with its offsets (`TopicStatsTable`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStatsTable {
    pub offset_table: Vec<(MessageQueue, TopicOffset)>,
}

/// One queue as a consumer group sees it (`OffsetWrapper`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OffsetWrapper {
    /// The queue's end.
    pub broker_offset: i64,
    /// What the group committed (-1: nothing yet).
    pub consumer_offset: i64,
    /// When the message just before the committed offset was stored (ms), 0 if none.
    pub last_timestamp: i64,
    /// Where the group's last pull got to (RocketMQ's pull offset; Petrel does not track
    /// pulls apart from commits, so the committed offset).
    pub pull_offset: i64,
}

impl OffsetWrapper {
    /// Messages the group has yet to consume in this queue: mqadmin's "Diff".
    pub fn diff(&self) -> i64 {
        self.broker_offset - self.consumer_offset
    }
}

/// One queue a consumer holds, as GET_CONSUMER_RUNNING_INFO answers it (`ProcessQueueInfo`).
/// Petrel's SDK has no transaction messages in a process queue and never retries an unlock:
/// those fields stay 0. Read leniently: the C++ client writes numbers as strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProcessQueueInfo {
    #[serde(deserialize_with = "loose::int")]
    pub cached_msg_count: i32,
    #[serde(deserialize_with = "loose::integer")]
    pub cached_msg_max_offset: i64,
    #[serde(deserialize_with = "loose::integer")]
    pub cached_msg_min_offset: i64,
    #[serde(rename = "cachedMsgSizeInMiB", deserialize_with = "loose::int")]
    pub cached_msg_size_in_mib: i32,
    #[serde(deserialize_with = "loose::integer")]
    pub commit_offset: i64,
    /// RocketMQ's spelling.
    #[serde(deserialize_with = "loose::flag")]
    pub droped: bool,
    #[serde(deserialize_with = "loose::integer")]
    pub last_consume_timestamp: i64,
    #[serde(deserialize_with = "loose::integer")]
    pub last_lock_timestamp: i64,
    #[serde(deserialize_with = "loose::integer")]
    pub last_pull_timestamp: i64,
    #[serde(deserialize_with = "loose::flag")]
    pub locked: bool,
    #[serde(deserialize_with = "loose::int")]
    pub transaction_msg_count: i32,
    #[serde(deserialize_with = "loose::integer")]
    pub transaction_msg_max_offset: i64,
    #[serde(deserialize_with = "loose::integer")]
    pub transaction_msg_min_offset: i64,
    #[serde(deserialize_with = "loose::integer")]
    pub try_unlock_times: i64,
}

/// GET_CONSUMER_LIST_BY_GROUP's answer (`GetConsumerListByGroupResponseBody`): the group's
/// members' client ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerIdList {
    pub consumer_id_list: Vec<String>,
}

/// How a member's listener took a message handed to it directly (`CMResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsumeDirectlyStatus {
    CrSuccess,
    CrLater,
    CrRollback,
    CrCommit,
    CrThrowException,
    CrReturnNull,
}

impl ConsumeDirectlyStatus {
    /// RocketMQ's name for it.
    pub fn name(self) -> &'static str {
        match self {
            ConsumeDirectlyStatus::CrSuccess => "CR_SUCCESS",
            ConsumeDirectlyStatus::CrLater => "CR_LATER",
            ConsumeDirectlyStatus::CrRollback => "CR_ROLLBACK",
            ConsumeDirectlyStatus::CrCommit => "CR_COMMIT",
            ConsumeDirectlyStatus::CrThrowException => "CR_THROW_EXCEPTION",
            ConsumeDirectlyStatus::CrReturnNull => "CR_RETURN_NULL",
        }
    }
}

/// A member's answer to CONSUME_MESSAGE_DIRECTLY (`ConsumeMessageDirectlyResult`), its fields
/// in fastjson's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeMessageDirectlyResult {
    #[serde(default = "yes")]
    pub auto_commit: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consume_result: Option<ConsumeDirectlyStatus>,
    #[serde(default)]
    pub order: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
    #[serde(default, deserialize_with = "loose::integer")]
    pub spent_time_mills: i64,
}

fn yes() -> bool {
    true
}

/// As mqadmin prints it (the class's `toString`).
impl std::fmt::Display for ConsumeMessageDirectlyResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConsumeMessageDirectlyResult [order={}, autoCommit={}, consumeResult={}, remark={}, spentTimeMills={}]",
            self.order,
            self.auto_commit,
            self.consume_result.map_or("null", ConsumeDirectlyStatus::name),
            self.remark.as_deref().unwrap_or("null"),
            self.spent_time_mills
        )
    }
}

/// One unit of a consume queue (`ConsumeQueueData`): QUERY_CONSUME_QUEUE. The extension
/// fields (RocketMQ's `ConsumeQueueExt`, off by default there) stay empty: Petrel has none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeQueueData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit_map: Option<String>,
    pub eval: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extend_data_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// Where the message lies in the commit log, and its size there.
    pub physic_offset: i64,
    pub physic_size: i32,
    /// The tag's hash (a delayed message's: its delivery time).
    pub tags_code: i64,
}

/// QUERY_CONSUME_QUEUE's answer (`QueryConsumeQueueResponseBody`): the queue's bounds, the
/// units asked for, and with a group, its subscription and SQL92 filter (or why none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct QueryConsumeQueueBody {
    /// The group's filter in fastjson's pretty form, `null` for a tag subscription, or
    /// `{group}@{topic} is not online!`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_data: Option<String>,
    pub max_queue_index: i64,
    pub min_queue_index: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_data: Option<Vec<ConsumeQueueData>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data: Option<SubscriptionData>,
}

/// A consumer group's progress over the queues of its topics (`ConsumeStats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConsumeStats {
    pub consume_tps: f64,
    pub offset_table: Vec<(MessageQueue, OffsetWrapper)>,
}

impl ConsumeStats {
    /// The group's lag over all the queues: mqadmin's "Diff Total".
    pub fn diff_total(&self) -> i64 {
        self.offset_table.iter().map(|(_, o)| o.diff()).sum()
    }
}

/// One client connection of a group (`Connection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Connection {
    pub client_addr: String,
    pub client_id: String,
    pub language: String,
    pub version: i32,
}

/// A consumer group's live members and what they subscribe to (`ConsumerConnection`):
/// GET_CONSUMER_CONNECTION_LIST.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerConnection {
    pub connection_set: BTreeSet<Connection>,
    pub consume_from_where: String,
    pub consume_type: String,
    pub message_model: String,
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// A producer group's live members (`ProducerConnection`): GET_PRODUCER_CONNECTION_LIST.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerConnection {
    pub connection_set: BTreeSet<Connection>,
}

/// Consumer group names (`GroupList`): QUERY_TOPIC_CONSUME_BY_WHO.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupList {
    pub group_list: BTreeSet<String>,
}

/// The version a client or broker names in its requests as mqadmin prints it
/// (`MQVersion.getVersionDesc`): `V4_9_4` for 401, `V5_3_3` for 479. From 4.0.0 on, each
/// release x.y.z is preceded by its SNAPSHOT, so the ordinals run regularly up to V5_9_9;
/// past it RocketMQ names every version `HIGHER_VERSION`. The 3.x line's betas do not run
/// regularly, so a version before 4.0.0 prints as its number (mqadmin prints its V3 name).
pub fn version_desc(version: i32) -> String {
    if version < V4_0_0_SNAPSHOT {
        return version.to_string();
    }
    if version > V5_9_9 {
        return "HIGHER_VERSION".to_owned();
    }
    let step = version - V4_0_0_SNAPSHOT;
    let (release, snapshot) = (step / 2, step % 2 == 0);
    let (major, minor, patch) = (4 + release / 100, release / 10 % 10, release % 10);
    let tail = if snapshot { "_SNAPSHOT" } else { "" };
    format!("V{major}_{minor}_{patch}{tail}")
}

/// `MQVersion.Version.V4_0_0_SNAPSHOT.ordinal()` and `V5_9_9.ordinal()`.
const V4_0_0_SNAPSHOT: i32 = 212;
const V5_9_9: i32 = 611;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_consumption_reads_and_prints_as_rocketmq_s() {
        // What RocketMQ's Java client answers, and mqadmin prints of it.
        let text =
            r#"{"autoCommit":true,"consumeResult":"CR_LATER","order":false,"spentTimeMills":3}"#;
        let result = ConsumeMessageDirectlyResult {
            auto_commit: true,
            consume_result: Some(ConsumeDirectlyStatus::CrLater),
            order: false,
            remark: None,
            spent_time_mills: 3,
        };
        assert_eq!(serde_json::to_string(&result).unwrap(), text);
        assert_eq!(serde_json::from_str::<ConsumeMessageDirectlyResult>(text).unwrap(), result);
        assert_eq!(
            result.to_string(),
            "ConsumeMessageDirectlyResult [order=false, autoCommit=true, consumeResult=CR_LATER, \
             remark=null, spentTimeMills=3]"
        );
    }

    #[test]
    fn versions_print_as_rocketmq_names_them() {
        assert_eq!(version_desc(213), "V4_0_0");
        assert_eq!(version_desc(212), "V4_0_0_SNAPSHOT");
        assert_eq!(version_desc(401), "V4_9_4");
        assert_eq!(version_desc(412), "V5_0_0_SNAPSHOT");
        assert_eq!(version_desc(413), "V5_0_0");
        assert_eq!(version_desc(479), "V5_3_3");
        assert_eq!(version_desc(611), "V5_9_9");
        assert_eq!(version_desc(612), "HIGHER_VERSION");
        assert_eq!(version_desc(9000), "HIGHER_VERSION");
        assert_eq!(version_desc(100), "100");
    }

    #[test]
    fn diff_counts_what_the_group_has_not_committed() {
        let queue = |broker_offset, consumer_offset| OffsetWrapper {
            broker_offset,
            consumer_offset,
            ..OffsetWrapper::default()
        };
        let stats = ConsumeStats {
            consume_tps: 0.0,
            offset_table: vec![
                (MessageQueue::default(), queue(10, 4)),
                (MessageQueue::default(), queue(7, 0)),
            ],
        };
        assert_eq!(stats.diff_total(), 6 + 7);
    }
}
