//! The admin bodies keyed by `MessageQueue` objects (`TopicStatsTable`, `ConsumeStats`,
//! `ResetOffsetBody`, `ConsumerRunningInfo`'s `mqTable`), in fastjson's form: see [`crate::codec::json::write_object_keyed`].

use std::collections::BTreeMap;

use petrel_core::admin::{ConsumeStats, MessageQueue, ProcessQueueInfo, TopicStatsTable};
use petrel_core::broker::filter::SubscriptionData;
use petrel_core::running_info::ConsumerRunningInfo;
use serde_json::Value;

use crate::codec::json::{read_object_keyed, to_json, write_object_keyed, JsonStyle};

/// GET_TOPIC_STATS_INFO's body: `{"offsetTable":{{mq}:{topic offset},..}}`.
pub fn topic_stats_to_json(table: &TopicStatsTable, style: JsonStyle) -> Vec<u8> {
    let mut out = b"{\"offsetTable\":".to_vec();
    write_object_keyed(&mut out, &table.offset_table, style);
    out.push(b'}');
    out
}

pub fn topic_stats_from_json(bytes: &[u8]) -> Result<TopicStatsTable, serde_json::Error> {
    let (_, offset_table) = read_object_keyed(bytes, "offsetTable")?;
    Ok(TopicStatsTable { offset_table })
}

/// GET_CONSUME_STATS's body: `{"consumeTps":0.0,"offsetTable":{{mq}:{offset wrapper},..}}`.
pub fn consume_stats_to_json(stats: &ConsumeStats, style: JsonStyle) -> Vec<u8> {
    let mut out = b"{\"consumeTps\":".to_vec();
    out.extend_from_slice(&to_json(&stats.consume_tps, style));
    out.extend_from_slice(b",\"offsetTable\":");
    write_object_keyed(&mut out, &stats.offset_table, style);
    out.push(b'}');
    out
}

pub fn consume_stats_from_json(bytes: &[u8]) -> Result<ConsumeStats, serde_json::Error> {
    let (fields, offset_table) = read_object_keyed(bytes, "offsetTable")?;
    let consume_tps = fields.get("consumeTps").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    Ok(ConsumeStats { consume_tps, offset_table })
}

/// INVOKE_BROKER_TO_RESET_OFFSET's answer (and RESET_CONSUMER_CLIENT_OFFSET's body):
/// `{"offsetTable":{{mq}:offset,..}}`.
pub fn reset_offsets_to_json(table: &[(MessageQueue, i64)], style: JsonStyle) -> Vec<u8> {
    let mut out = b"{\"offsetTable\":".to_vec();
    write_object_keyed(&mut out, table, style);
    out.push(b'}');
    out
}

pub fn reset_offsets_from_json(
    bytes: &[u8],
) -> Result<Vec<(MessageQueue, i64)>, serde_json::Error> {
    Ok(read_object_keyed(bytes, "offsetTable")?.1)
}

/// RESET_CONSUMER_CLIENT_OFFSET's body as the C++ client reads it (`ResetOffsetBodyForC`): a
/// list of queues with their offsets, `{"offsetTable":[{"brokerName":..,"offset":..,
/// "queueId":..,"topic":..},..]}`, fastjson's field order.
pub fn reset_offsets_for_c_to_json(table: &[(MessageQueue, i64)]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct QueueForC<'a> {
        broker_name: &'a str,
        offset: i64,
        queue_id: i32,
        topic: &'a str,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct BodyForC<'a> {
        offset_table: Vec<QueueForC<'a>>,
    }
    let offset_table = table
        .iter()
        .map(|(queue, offset)| QueueForC {
            broker_name: &queue.broker_name,
            offset: *offset,
            queue_id: queue.queue_id,
            topic: &queue.topic,
        })
        .collect();
    to_json(&BodyForC { offset_table }, JsonStyle::Fastjson)
}

/// GET_CONSUMER_RUNNING_INFO's answer (`ConsumerRunningInfo`): fastjson's, whose `mqTable` is keyed by queue objects, or the
/// C++ client's (the same, its keys laid out over lines and its numbers often strings).
pub fn running_info_from_json(body: &[u8]) -> Result<ConsumerRunningInfo, String> {
    let (mut fields, mq_table) =
        read_object_keyed::<MessageQueue, ProcessQueueInfo>(body, "mqTable")
            .map_err(|e| e.to_string())?;
    let mut take = |name: &str| fields.remove(name).unwrap_or(Value::Null);
    let texts = |value: Value| -> BTreeMap<String, String> {
        let Value::Object(map) = value else { return BTreeMap::new() };
        map.into_iter().map(|(k, v)| (k, scalar_text(v))).collect()
    };
    let subscription_set: Vec<SubscriptionData> = match take("subscriptionSet") {
        Value::Null => Vec::new(),
        set => serde_json::from_value(set).map_err(|e| format!("subscriptionSet: {e}"))?,
    };
    let status_table = match take("statusTable") {
        Value::Null => BTreeMap::new(),
        table => serde_json::from_value(table).map_err(|e| format!("statusTable: {e}"))?,
    };
    Ok(ConsumerRunningInfo {
        properties: texts(take("properties")),
        subscription_set,
        mq_table,
        status_table,
        user_consumer_info: texts(take("userConsumerInfo")),
        jstack: match take("jstack") {
            Value::String(dump) if !dump.is_empty() => Some(dump),
            _ => None,
        },
    })
}

/// A property's value as text: strings as they are, anything else as JSON writes it.
fn scalar_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use petrel_core::admin::{MessageQueue, OffsetWrapper, TopicOffset};

    use super::*;

    fn queue(id: i32) -> MessageQueue {
        MessageQueue { broker_name: "broker-a".into(), queue_id: id, topic: "T".into() }
    }

    /// What RocketMQ 5's broker writes for a topic of two queues (fastjson: fields sorted,
    /// the MessageQueue object as the key).
    const TOPIC_STATS: &str = concat!(
        r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:"#,
        r#"{"lastUpdateTimestamp":1733390000000,"maxOffset":5,"minOffset":0},"#,
        r#"{"brokerName":"broker-a","queueId":1,"topic":"T"}:"#,
        r#"{"lastUpdateTimestamp":0,"maxOffset":0,"minOffset":0}}}"#
    );

    #[test]
    fn topic_stats_are_keyed_by_queue_objects() {
        let table = TopicStatsTable {
            offset_table: vec![
                (
                    queue(0),
                    TopicOffset {
                        last_update_timestamp: 1_733_390_000_000,
                        max_offset: 5,
                        min_offset: 0,
                    },
                ),
                (queue(1), TopicOffset::default()),
            ],
        };
        let json = topic_stats_to_json(&table, JsonStyle::Fastjson);
        assert_eq!(String::from_utf8(json.clone()).unwrap(), TOPIC_STATS);
        assert_eq!(topic_stats_from_json(&json).unwrap(), table);
    }

    #[test]
    fn consume_stats_read_back_with_space_and_fields_in_any_order() {
        let text = concat!(
            r#"{ "offsetTable" : { {"brokerName":"broker-a","queueId":3,"topic":"T"} : "#,
            r#"{"brokerOffset":9,"consumerOffset":4,"lastTimestamp":7,"pullOffset":4} } , "#,
            r#""consumeTps" : 1.5 }"#
        );
        let stats = consume_stats_from_json(text.as_bytes()).unwrap();
        assert_eq!(stats.consume_tps, 1.5);
        let wrapper = OffsetWrapper {
            broker_offset: 9,
            consumer_offset: 4,
            last_timestamp: 7,
            pull_offset: 4,
        };
        assert_eq!(stats.offset_table, vec![(queue(3), wrapper)]);
        let again = consume_stats_from_json(&consume_stats_to_json(&stats, JsonStyle::Fastjson));
        assert_eq!(again.unwrap(), stats);
        let empty = consume_stats_to_json(&ConsumeStats::default(), JsonStyle::Fastjson);
        assert_eq!(empty, br#"{"consumeTps":0.0,"offsetTable":{}}"#);
    }

    #[test]
    fn reset_offsets_are_keyed_by_queue_objects() {
        // What RocketMQ 5's broker answers a reset of a topic of two queues with.
        let text = concat!(
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"T"}:3,"#,
            r#"{"brokerName":"broker-a","queueId":1,"topic":"T"}:0}}"#
        );
        let table = vec![(queue(0), 3), (queue(1), 0)];
        assert_eq!(reset_offsets_to_json(&table, JsonStyle::Fastjson), text.as_bytes());
        assert_eq!(reset_offsets_from_json(text.as_bytes()).unwrap(), table);
    }

    #[test]
    fn reset_offsets_for_the_cpp_client_are_a_list() {
        // What RocketMQ's Broker2Client sends a C++ member (ResetOffsetBodyForC).
        let text = concat!(
            r#"{"offsetTable":[{"brokerName":"broker-a","offset":3,"queueId":0,"topic":"T"},"#,
            r#"{"brokerName":"broker-a","offset":0,"queueId":1,"topic":"T"}]}"#
        );
        let table = vec![(queue(0), 3), (queue(1), 0)];
        assert_eq!(reset_offsets_for_c_to_json(&table), text.as_bytes());
    }

    #[test]
    fn broker_stats_data_is_written_as_fastjson_writes_it() {
        use petrel_core::admin::{BrokerStatsData, BrokerStatsItem};
        // BrokerStatsData and BrokerStatsItem as RocketMQ 5's broker answers them: fields
        // sorted, doubles with a fraction.
        let data = BrokerStatsData {
            stats_day: BrokerStatsItem { avgpt: 0.0, sum: 20, tps: 0.5 },
            stats_hour: BrokerStatsItem { avgpt: 0.0, sum: 20, tps: 2.0 },
            stats_minute: BrokerStatsItem::default(),
        };
        let text = concat!(
            r#"{"statsDay":{"avgpt":0.0,"sum":20,"tps":0.5},"#,
            r#""statsHour":{"avgpt":0.0,"sum":20,"tps":2.0},"#,
            r#""statsMinute":{"avgpt":0.0,"sum":0,"tps":0.0}}"#
        );
        assert_eq!(String::from_utf8(to_json(&data, JsonStyle::Fastjson)).unwrap(), text);
        assert_eq!(
            crate::codec::json::from_json::<BrokerStatsData>(text.as_bytes()).unwrap(),
            data
        );
    }

    #[test]
    fn damaged_bodies_are_errors() {
        for text in ["", "{", r#"{"offsetTable":{{"queueId":1}"#, r#"{"offsetTable":[1]}"#] {
            assert!(topic_stats_from_json(text.as_bytes()).is_err(), "{text}");
        }
    }

    #[test]
    fn fastjson_and_cpp_reports_both_read() {
        let fastjson = br#"{"mqPopTable":{},"mqTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"cachedMsgCount":2,"commitOffset":7,"locked":true}},"properties":{"PROP_CONSUME_TYPE":"CONSUME_PASSIVELY","PROP_THREADPOOL_CORE_SIZE":20},"statusTable":{"T":{"consumeOKTPS":1.5,"pullRT":0.0}},"subscriptionSet":[{"classFilterMode":false,"codeSet":[],"subString":"*","subVersion":1,"tagsSet":[],"topic":"T"}],"userConsumerInfo":{}}"#;
        let info = running_info_from_json(fastjson).unwrap();
        assert!(info.is_push());
        assert_eq!(info.properties["PROP_THREADPOOL_CORE_SIZE"], "20");
        assert_eq!(info.mq_table.len(), 1);
        let (queue, pq) = &info.mq_table[0];
        assert_eq!(queue, &MessageQueue::new("T", "broker-a", 1));
        assert_eq!((pq.cached_msg_count, pq.commit_offset, pq.locked), (2, 7, true));
        assert_eq!(info.status_table["T"].consume_ok_tps, 1.5);
        assert_eq!(info.subscription_set[0].topic, "T");
        assert_eq!(info.jstack, None);
        // The C++ client: mqTable first, its keys styled over lines, numbers as strings.
        let cpp = b"{\"mqTable\":{{\n   \"brokerName\" : \"broker-a\",\n   \"queueId\" : 0,\n   \"topic\" : \"T\"\n}\n:{\n   \"cachedMsgCount\" : \"3\",\n   \"commitOffset\" : \"41\",\n   \"locked\" : \"false\"\n}\n},\"jstack\":\"\",\"properties\":{\"PROP_CONSUME_TYPE\":\"CONSUME_PASSIVELY\"},\"subscriptionSet\":[{\"classFilterMode\":false,\"codeSet\":[],\"subString\":\"*\",\"subVersion\":\"1\",\"tagsSet\":[],\"topic\":\"T\"}]}";
        let info = running_info_from_json(cpp).unwrap();
        let (queue, pq) = &info.mq_table[0];
        assert_eq!(queue.queue_id, 0);
        assert_eq!((pq.cached_msg_count, pq.commit_offset, pq.locked), (3, 41, false));
        assert_eq!(info.jstack, None);
        assert!(running_info_from_json(b"{\"mqTable\":}").is_err());
    }
}
