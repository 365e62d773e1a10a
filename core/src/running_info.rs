//! What a consumer reports of itself (`ConsumerRunningInfo`, GET_CONSUMER_RUNNING_INFO's
//! answer) as an admin reads it, and what mqadmin's `consumerStatus` makes of it: the report
//! as text (`formatString`) and its checks across a group's members (`analyzeSubscription`,
//! `analyzeProcessQueue`). Pure: the time is an input.
//!
//! Times print in UTC (Petrel's admin prints every time in UTC; RocketMQ uses the JVM's zone).
//! Java iterates `properties`, a `Hashtable`, in no set order; here they print sorted.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::admin::{MessageQueue, ProcessQueueInfo};
use crate::broker::filter::SubscriptionData;
use crate::time::compact_time;

/// `ConsumerRunningInfo.PROP_CONSUME_TYPE` and friends: the properties the checks read.
pub const PROP_CONSUME_TYPE: &str = "PROP_CONSUME_TYPE";
pub const PROP_CONSUME_ORDERLY: &str = "PROP_CONSUMEORDERLY";
pub const PROP_CONSUMER_START_TIMESTAMP: &str = "PROP_CONSUMER_START_TIMESTAMP";

/// A push consumer's `PROP_CONSUME_TYPE`.
pub const CONSUME_PASSIVELY: &str = "CONSUME_PASSIVELY";

/// How long a push consumer runs before its group's subscriptions are compared (two minutes,
/// as `analyzeSubscription` waits): members starting together may differ for a moment.
const SUBSCRIPTION_SETTLE_MS: i64 = 2 * 60 * 1000;

/// How long a queue with cached messages may go without a consume before it is called blocked.
const BLOCKED_AFTER_MS: i64 = 60 * 1000;

/// One topic's consume figures (`ConsumeStatus`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumeStatus {
    #[serde(rename = "consumeFailedMsgs")]
    pub consume_failed_msgs: i64,
    #[serde(rename = "consumeFailedTPS")]
    pub consume_failed_tps: f64,
    #[serde(rename = "consumeOKTPS")]
    pub consume_ok_tps: f64,
    #[serde(rename = "consumeRT")]
    pub consume_rt: f64,
    #[serde(rename = "pullRT")]
    pub pull_rt: f64,
    #[serde(rename = "pullTPS")]
    pub pull_tps: f64,
}

/// A consumer's report of itself. `mq_table` is a list of pairs: fastjson writes it as a map
/// keyed by queue objects, which `petrel_net::codec::json::read_object_keyed` reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRunningInfo {
    pub properties: BTreeMap<String, String>,
    pub subscription_set: Vec<SubscriptionData>,
    pub mq_table: Vec<(MessageQueue, ProcessQueueInfo)>,
    pub status_table: BTreeMap<String, ConsumeStatus>,
    pub user_consumer_info: BTreeMap<String, String>,
    pub jstack: Option<String>,
}

impl ConsumerRunningInfo {
    /// A push consumer (`isPushType`).
    pub fn is_push(&self) -> bool {
        self.properties.get(PROP_CONSUME_TYPE).map(String::as_str) == Some(CONSUME_PASSIVELY)
    }

    fn orderly(&self) -> bool {
        self.properties.get(PROP_CONSUME_ORDERLY).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn started_ms(&self) -> Option<i64> {
        self.properties.get(PROP_CONSUMER_START_TIMESTAMP)?.trim().parse().ok()
    }

    /// The report as mqadmin prints it (`formatString`), widths and all.
    pub fn format_string(&self) -> String {
        let mut out = String::from("#Consumer Properties#\n");
        for (key, value) in &self.properties {
            let _ = writeln!(out, "{key:<40}: {value}");
        }
        out.push_str("\n\n#Consumer Subscription#\n");
        let mut subscriptions: Vec<&SubscriptionData> = self.subscription_set.iter().collect();
        // A TreeSet of SubscriptionData, ordered by topic then expression.
        subscriptions.sort_by(|a, b| (&a.topic, &a.sub_string).cmp(&(&b.topic, &b.sub_string)));
        for (i, sub) in subscriptions.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:03} Topic: {:<40} ClassFilter: {:<8} SubExpression: {}",
                i + 1,
                sub.topic,
                sub.class_filter_mode,
                sub.sub_string
            );
        }
        self.write_queues(&mut out);
        self.write_rates(&mut out);
        out.push_str("\n\n#User Consume Info#\n");
        for (key, value) in &self.user_consumer_info {
            let _ = writeln!(out, "{key:<40}: {value}");
        }
        if let Some(jstack) = &self.jstack {
            out.push_str("\n\n#Consumer jstack#\n");
            out.push_str(jstack);
        }
        out
    }

    /// The held queues' offsets and details, and the POP queues' (none read here).
    fn write_queues(&self, out: &mut String) {
        queue_section(out, "Consumer Offset", 64, "#Consumer Offset");
        for (queue, info) in &self.mq_table {
            let _ = writeln!(
                out,
                "{:<32}  {:<32}  {:<4}  {:<20}",
                queue.topic, queue.broker_name, queue.queue_id, info.commit_offset
            );
        }
        queue_section(out, "Consumer MQ Detail", 64, "#ProcessQueueInfo");
        for (queue, info) in &self.mq_table {
            let _ = writeln!(
                out,
                "{:<64}  {:<32}  {:<4}  {}",
                queue.topic,
                queue.broker_name,
                queue.queue_id,
                process_queue_text(info)
            );
        }
        queue_section(out, "Consumer Pop Detail", 32, "#ProcessQueueInfo");
    }

    /// Each topic's pull and consume figures.
    fn write_rates(&self, out: &mut String) {
        out.push_str("\n\n#Consumer RT&TPS#\n");
        let _ = writeln!(
            out,
            "{:<64}  {:>14} {:>14} {:>14} {:>14} {:>18} {:>25}",
            "#Topic",
            "#Pull RT",
            "#Pull TPS",
            "#Consume RT",
            "#ConsumeOK TPS",
            "#ConsumeFailed TPS",
            "#ConsumeFailedMsgsInHour"
        );
        for (topic, status) in &self.status_table {
            let _ = writeln!(
                out,
                "{:<32}  {:>14.2} {:>14.2} {:>14.2} {:>14.2} {:>18.2} {:>25}",
                topic,
                status.pull_rt,
                status.pull_tps,
                status.consume_rt,
                status.consume_ok_tps,
                status.consume_failed_tps,
                status.consume_failed_msgs
            );
        }
    }
}

/// A queue section's title and column heads: `#Topic` `width` wide, then broker, queue id and
/// `last`.
fn queue_section(out: &mut String, title: &str, width: usize, last: &str) {
    let _ = write!(out, "\n\n#{title}#\n");
    let _ =
        writeln!(out, "{:<width$}  {:<32}  {:<4}  {last:<20}", "#Topic", "#Broker Name", "#QID");
}

/// `ProcessQueueInfo.toString()`.
pub fn process_queue_text(info: &ProcessQueueInfo) -> String {
    format!(
        "ProcessQueueInfo [commitOffset={}, cachedMsgMinOffset={}, cachedMsgMaxOffset={}, \
         cachedMsgCount={}, cachedMsgSizeInMiB={}, transactionMsgMinOffset={}, \
         transactionMsgMaxOffset={}, transactionMsgCount={}, locked={}, tryUnlockTimes={}, \
         lastLockTimestamp={}, droped={}, lastPullTimestamp={}, lastConsumeTimestamp={}]",
        info.commit_offset,
        info.cached_msg_min_offset,
        info.cached_msg_max_offset,
        info.cached_msg_count,
        info.cached_msg_size_in_mib,
        info.transaction_msg_min_offset,
        info.transaction_msg_max_offset,
        info.transaction_msg_count,
        info.locked,
        info.try_unlock_times,
        compact_time(info.last_lock_timestamp),
        info.droped,
        compact_time(info.last_pull_timestamp),
        compact_time(info.last_consume_timestamp),
    )
}

/// `analyzeSubscription`: false when push members that have run for two minutes subscribe
/// differently. `members` in client-id order; the first one's type and start time decide, as
/// in RocketMQ.
pub fn same_subscription(members: &BTreeMap<String, ConsumerRunningInfo>, now_ms: i64) -> bool {
    let Some(first) = members.values().next() else { return true };
    let settled = first.started_ms().is_some_and(|at| now_ms - at > SUBSCRIPTION_SETTLE_MS);
    if !(first.is_push() && settled) {
        return true;
    }
    let set = |info: &ConsumerRunningInfo| {
        let mut subs: Vec<(String, String, String)> = info
            .subscription_set
            .iter()
            .map(|s| {
                let kind = s.expression_type.clone().unwrap_or_default();
                (s.topic.clone(), s.sub_string.clone(), kind)
            })
            .collect();
        subs.sort();
        subs
    };
    let expected = set(first);
    members.values().all(|info| set(info) == expected)
}

/// `analyzeProcessQueue`: a push member's queues that look stuck, one line each. Orderly: a
/// queue it holds without the broker's lock, or one dropped whose unlock keeps failing.
/// Concurrent: cached messages and no consume for a minute. A member that does not track when
/// it last consumed (it reports 0, as Petrel's SDK does) is not called blocked.
pub fn stuck_queues(client_id: &str, info: &ConsumerRunningInfo, now_ms: i64) -> String {
    let mut out = String::new();
    if !info.is_push() {
        return out;
    }
    let orderly = info.orderly();
    for (queue, pq) in &info.mq_table {
        if orderly {
            if !pq.locked {
                let since = now_ms - pq.last_lock_timestamp;
                let _ = writeln!(out, "{client_id} {queue} can't lock for a while, {since}ms");
            } else if pq.droped && pq.try_unlock_times > 0 {
                let times = pq.try_unlock_times;
                let _ = writeln!(out, "{client_id} {queue} unlock {times} times, still failed");
            }
        } else if pq.last_consume_timestamp > 0 {
            let since = now_ms - pq.last_consume_timestamp;
            if since > BLOCKED_AFTER_MS && pq.cached_msg_count > 0 {
                let _ = writeln!(
                    out,
                    "{client_id} {queue} can't consume for a while, maybe blocked, {since}ms"
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(push: bool, orderly: bool, started: i64, topics: &[&str]) -> ConsumerRunningInfo {
        let kind = if push { CONSUME_PASSIVELY } else { "CONSUME_ACTIVELY" };
        ConsumerRunningInfo {
            properties: BTreeMap::from([
                (PROP_CONSUME_TYPE.to_owned(), kind.to_owned()),
                (PROP_CONSUME_ORDERLY.to_owned(), orderly.to_string()),
                (PROP_CONSUMER_START_TIMESTAMP.to_owned(), started.to_string()),
            ]),
            subscription_set: topics
                .iter()
                .map(|t| SubscriptionData {
                    topic: (*t).to_owned(),
                    sub_string: "*".into(),
                    ..SubscriptionData::default()
                })
                .collect(),
            ..ConsumerRunningInfo::default()
        }
    }

    #[test]
    fn the_report_prints_as_mqadmin_formats_it() {
        let mut info = member(true, false, 1_700_000_000_000, &["T"]);
        let pq = ProcessQueueInfo {
            commit_offset: 12,
            cached_msg_count: 3,
            cached_msg_min_offset: 12,
            cached_msg_max_offset: 14,
            last_lock_timestamp: 1_700_000_000_123,
            ..ProcessQueueInfo::default()
        };
        info.mq_table = vec![(MessageQueue::new("T", "broker-a", 1), pq)];
        let text = info.format_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#Consumer Properties#");
        assert_eq!(lines[1], format!("{:<40}: false", "PROP_CONSUMEORDERLY"));
        assert_eq!(lines[6], "#Consumer Subscription#");
        assert_eq!(
            lines[7],
            format!("001 Topic: {:<40} ClassFilter: false    SubExpression: *", "T")
        );
        assert_eq!(lines[10], "#Consumer Offset#");
        assert_eq!(
            lines[12],
            format!("{:<32}  {:<32}  1     12                  ", "T", "broker-a")
        );
        let detail = lines[17];
        assert!(detail.starts_with(&format!("{:<64}  {:<32}  1     ProcessQueueInfo [commitOffset=12, cachedMsgMinOffset=12, cachedMsgMaxOffset=14, cachedMsgCount=3,", "T", "broker-a")), "{detail}");
        assert!(detail.ends_with("lastLockTimestamp=20231114221320123, droped=false, lastPullTimestamp=19700101000000000, lastConsumeTimestamp=19700101000000000]"), "{detail}");
        assert!(text.contains("\n\n#Consumer Pop Detail#\n"));
        assert!(text.ends_with("#ConsumeFailedMsgsInHour\n\n\n#User Consume Info#\n"), "{text}");
    }

    #[test]
    fn subscriptions_are_compared_only_between_settled_push_members() {
        let now = 1_700_000_000_000;
        let old = now - 3 * 60 * 1000;
        let group = |a: ConsumerRunningInfo, b: ConsumerRunningInfo| {
            BTreeMap::from([("a".to_owned(), a), ("b".to_owned(), b)])
        };
        let same = group(member(true, false, old, &["T"]), member(true, false, old, &["T"]));
        assert!(same_subscription(&same, now));
        let differ = group(member(true, false, old, &["T"]), member(true, false, old, &["U"]));
        assert!(!same_subscription(&differ, now));
        // Started a moment ago, or pulling: not compared.
        let young =
            group(member(true, false, now - 1000, &["T"]), member(true, false, old, &["U"]));
        assert!(same_subscription(&young, now));
        let pull = group(member(false, false, old, &["T"]), member(false, false, old, &["U"]));
        assert!(same_subscription(&pull, now));
    }

    #[test]
    fn queues_that_look_stuck_are_named() {
        let now = 1_700_000_100_000;
        let queue = MessageQueue::new("T", "broker-a", 0);
        let mut orderly = member(true, true, 0, &["T"]);
        let unlocked = ProcessQueueInfo { last_lock_timestamp: now - 5000, ..Default::default() };
        orderly.mq_table = vec![(queue.clone(), unlocked)];
        assert_eq!(
            stuck_queues("c1", &orderly, now),
            "c1 MessageQueue [topic=T, brokerName=broker-a, queueId=0] can't lock for a while, 5000ms\n"
        );
        let failing = ProcessQueueInfo {
            locked: true,
            droped: true,
            try_unlock_times: 2,
            ..Default::default()
        };
        orderly.mq_table = vec![(queue.clone(), failing)];
        assert!(stuck_queues("c1", &orderly, now).ends_with("unlock 2 times, still failed\n"));

        let mut concurrent = member(true, false, 0, &["T"]);
        let blocked = ProcessQueueInfo {
            cached_msg_count: 4,
            last_consume_timestamp: now - 61_000,
            ..Default::default()
        };
        concurrent.mq_table = vec![(queue.clone(), blocked.clone())];
        assert!(stuck_queues("c1", &concurrent, now).ends_with("maybe blocked, 61000ms\n"));
        // Nothing cached, a recent consume, or no consume time reported: not blocked.
        for quiet in [
            ProcessQueueInfo { cached_msg_count: 0, ..blocked.clone() },
            ProcessQueueInfo { last_consume_timestamp: now - 1000, ..blocked.clone() },
            ProcessQueueInfo { last_consume_timestamp: 0, ..blocked.clone() },
        ] {
            concurrent.mq_table = vec![(queue.clone(), quiet)];
            assert_eq!(stuck_queues("c1", &concurrent, now), "");
        }
        // A pull consumer is not judged.
        let mut pull = member(false, true, 0, &["T"]);
        pull.mq_table = orderly.mq_table.clone();
        assert_eq!(stuck_queues("c1", &pull, now), "");
    }
}
