//! POP consumption's formats (docs/pop.md): the handle a popped message carries
//! (`extraInfo`, the `POP_CK` property), the answer's offset headers, and the records of the
//! revive topic (checkpoints, acks, batch acks) and BATCH_ACK_MESSAGE's body, in RocketMQ's
//! JSON with its short keys.
//!
//! Pure: strings and bytes in, values out, and back.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::RETRY_PREFIX;

/// The revive topic's name without its cluster (`PopAckConstants.REVIVE_TOPIC`).
pub const REVIVE_TOPIC_PREFIX: &str = "rmq_sys_REVIVE_LOG_";
/// The internal group that reads the revive topic (`PopAckConstants.REVIVE_GROUP`).
pub const REVIVE_GROUP: &str = "CID_RMQ_SYS_REVIVE_GROUP";
/// The revive queue an orderly pop names: it writes no checkpoint
/// (`KeyBuilder.POP_ORDER_REVIVE_QUEUE`).
pub const ORDER_REVIVE_QUEUE: i32 = 999;
/// Tags of the revive topic's records.
pub const CK_TAG: &str = "ck";
pub const ACK_TAG: &str = "ack";
pub const BATCH_ACK_TAG: &str = "bAck";
/// A checkpoint is delivered to its revive queue this long before its revive time, its acks at
/// it (`PopAckConstants.ackTimeInterval`).
pub const ACK_TIME_INTERVAL_MS: i64 = 1_000;
/// The most messages one POP_MESSAGE may ask for.
pub const POP_MAX_MESSAGES: i32 = 32;
/// Offsets a batch ack's bit set may reach past its start offset: what 8 KiB of bits name.
pub const BATCH_ACK_SPAN_MAX: usize = 8 << 13;

/// The revive topic of `cluster`.
pub fn revive_topic(cluster: &str) -> String {
    format!("{REVIVE_TOPIC_PREFIX}{cluster}")
}

/// Where a popped message is: its topic, or one of the group's pop retry topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TopicKind {
    /// The topic itself ("0").
    Normal,
    /// `%RETRY%{group}_{topic}` ("1", RocketMQ's default).
    RetryV1,
    /// `%RETRY%{group}+{topic}` ("2", `enableRetryTopicV2`).
    RetryV2,
}

impl TopicKind {
    /// Of a topic name, as `ExtraInfoUtil.getRetry` tells it.
    pub fn of(topic: &str) -> TopicKind {
        match topic.strip_prefix(RETRY_PREFIX) {
            Some(rest) if rest.contains('+') => TopicKind::RetryV2,
            Some(_) => TopicKind::RetryV1,
            None => TopicKind::Normal,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            TopicKind::Normal => "0",
            TopicKind::RetryV1 => "1",
            TopicKind::RetryV2 => "2",
        }
    }

    pub fn parse(code: &str) -> Result<TopicKind, PopError> {
        match code {
            "0" => Ok(TopicKind::Normal),
            "1" => Ok(TopicKind::RetryV1),
            "2" => Ok(TopicKind::RetryV2),
            other => Err(PopError::Field("retry", other.to_owned())),
        }
    }

    /// The topic a message of `group` popped from `topic` is in (`ExtraInfoUtil.getRealTopic`).
    pub fn real_topic(self, group: &str, topic: &str) -> String {
        match self {
            TopicKind::Normal => topic.to_owned(),
            TopicKind::RetryV1 => pop_retry_topic(group, topic, false),
            TopicKind::RetryV2 => pop_retry_topic(group, topic, true),
        }
    }
}

/// The pop retry topic of `group` for `topic` (`KeyBuilder.buildPopRetryTopic`).
pub fn pop_retry_topic(group: &str, topic: &str, v2: bool) -> String {
    let separator = if v2 { '+' } else { '_' };
    format!("{RETRY_PREFIX}{group}{separator}{topic}")
}

/// Why a POP string or record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PopError {
    #[error("extraInfo has {0} fields, needs 8: startOffset popTime invisibleTime reviveQid retry brokerName queueId offset")]
    Fields(usize),
    #[error("extraInfo field {0} is not valid: {1:?}")]
    Field(&'static str, String),
    #[error("batch ack bit set is not base64: {0}")]
    BitSet(String),
    #[error("batch ack bit set names offsets past {BATCH_ACK_SPAN_MAX} after its start, or more than {POP_MAX_MESSAGES}")]
    BitSetTooLong,
}

/// A popped message's handle (`extraInfo`, the `POP_CK` property): which pop handed it out and
/// where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraInfo {
    /// Where that pop started reading the message's queue (the checkpoint's `so`).
    pub start_offset: i64,
    pub pop_time: i64,
    pub invisible_time: i64,
    /// The revive queue of the checkpoint; [`ORDER_REVIVE_QUEUE`] for an orderly pop.
    pub revive_qid: i32,
    pub kind: TopicKind,
    pub broker_name: String,
    pub queue_id: i32,
    pub offset: i64,
}

impl ExtraInfo {
    /// Parses the eight space-separated fields.
    pub fn parse(text: &str) -> Result<ExtraInfo, PopError> {
        let fields: Vec<&str> = text.splitn(9, ' ').collect();
        if fields.len() != 8 {
            return Err(PopError::Fields(fields.len()));
        }
        let long = |i: usize, name| {
            fields[i].parse::<i64>().map_err(|_| PopError::Field(name, fields[i].to_owned()))
        };
        let int = |i: usize, name| {
            fields[i].parse::<i32>().map_err(|_| PopError::Field(name, fields[i].to_owned()))
        };
        if fields[5].is_empty() {
            return Err(PopError::Field("brokerName", String::new()));
        }
        Ok(ExtraInfo {
            start_offset: long(0, "startOffset")?,
            pop_time: long(1, "popTime")?,
            invisible_time: long(2, "invisibleTime")?,
            revive_qid: int(3, "reviveQid")?,
            kind: TopicKind::parse(fields[4])?,
            broker_name: fields[5].to_owned(),
            queue_id: int(6, "queueId")?,
            offset: long(7, "offset")?,
        })
    }

    pub fn is_orderly(&self) -> bool {
        self.revive_qid == ORDER_REVIVE_QUEUE
    }

    /// When the pop's checkpoint comes due.
    pub fn revive_time(&self) -> i64 {
        self.pop_time.saturating_add(self.invisible_time)
    }
}

impl fmt::Display for ExtraInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {} {} {}",
            self.start_offset,
            self.pop_time,
            self.invisible_time,
            self.revive_qid,
            self.kind.code(),
            self.broker_name,
            self.queue_id,
            self.offset
        )
    }
}

/// One queue a pop read, for the answer's `startOffsetInfo` and `msgOffsetInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRead {
    pub kind: TopicKind,
    pub queue_id: i32,
    pub start_offset: i64,
    pub offsets: Vec<i64>,
}

/// `startOffsetInfo`: `retry queueId startOffset`, joined by `;`.
pub fn start_offset_info(reads: &[QueueRead]) -> String {
    let items =
        reads.iter().map(|r| format!("{} {} {}", r.kind.code(), r.queue_id, r.start_offset));
    items.collect::<Vec<_>>().join(";")
}

/// `msgOffsetInfo`: `retry queueId offset,offset,...`, joined by `;`.
pub fn msg_offset_info(reads: &[QueueRead]) -> String {
    let items = reads.iter().map(|r| {
        let offsets: Vec<String> = r.offsets.iter().map(i64::to_string).collect();
        format!("{} {} {}", r.kind.code(), r.queue_id, offsets.join(","))
    });
    items.collect::<Vec<_>>().join(";")
}

/// A checkpoint in the revive topic (`PopCheckPoint`): the messages one pop took from one
/// queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PopCheckPoint {
    /// Where the pop started reading.
    pub so: i64,
    pub pt: i64,
    pub it: i64,
    /// Acknowledged messages, bit j for message j; 0 on disk.
    pub bm: i32,
    /// How many messages (at most [`POP_MAX_MESSAGES`]).
    pub n: i32,
    pub q: i32,
    /// The queue's topic: the topic or a pop retry topic.
    pub t: String,
    pub c: String,
    /// Where the checkpoint is in its revive queue; 0 on disk.
    pub ro: i64,
    /// Each message's offset minus `so`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d: Option<Vec<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bn: Option<String>,
    /// How often the reviver wrote it again after a failed revive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rp: Option<String>,
}

impl PopCheckPoint {
    /// When its unacknowledged messages are put again.
    pub fn revive_time(&self) -> i64 {
        self.pt.saturating_add(self.it)
    }

    /// Which of its messages is at `offset` (`indexOfAck`): the position of `offset - so` in
    /// `d`, or without `d` that difference when below `n`.
    pub fn index_of(&self, offset: i64) -> Option<usize> {
        let diff = offset.checked_sub(self.so).filter(|d| *d >= 0)?;
        let index = match self.diffs() {
            Some(diffs) => diffs.iter().position(|d| i64::from(*d) == diff),
            None => usize::try_from(diff).ok(),
        };
        index.filter(|i| *i < self.count())
    }

    /// The offset of message `j`.
    pub fn offset_of(&self, j: usize) -> Option<i64> {
        if j >= self.count() {
            return None;
        }
        match self.diffs() {
            Some(diffs) => diffs.get(j).map(|d| self.so + i64::from(*d)),
            None => Some(self.so + j as i64),
        }
    }

    /// `d`, unless absent or empty (RocketMQ reads both as the old format: no gaps).
    fn diffs(&self) -> Option<&[i32]> {
        self.d.as_deref().filter(|d| !d.is_empty())
    }

    /// How many messages it names (`n`, bounded by the bitmap's width).
    pub fn count(&self) -> usize {
        usize::try_from(self.n).unwrap_or(0).min(POP_MAX_MESSAGES as usize)
    }

    /// The key acks find it by (`t c q so pt bn`).
    pub fn key(&self, default_broker: &str) -> PopKey {
        let broker = self.bn.as_deref().unwrap_or(default_broker);
        PopKey::new(&self.t, &self.c, (self.q, self.so, self.pt), broker)
    }

    /// Its UNIQ_KEY (`genCkUniqueId`).
    pub fn unique_key(&self) -> String {
        let broker = self.bn.as_deref().unwrap_or_default();
        format!("{}@{}@{}@{}@{}@{broker}@{CK_TAG}", self.t, self.q, self.so, self.c, self.pt)
    }
}

/// What a checkpoint and its acks share.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PopKey {
    pub topic: String,
    pub group: String,
    pub queue_id: i32,
    pub start_offset: i64,
    pub pop_time: i64,
    pub broker: String,
}

impl PopKey {
    fn new(
        topic: &str,
        group: &str,
        (queue_id, start_offset, pop_time): (i32, i64, i64),
        broker: &str,
    ) -> PopKey {
        let (topic, group, broker) = (topic.to_owned(), group.to_owned(), broker.to_owned());
        PopKey { topic, group, queue_id, start_offset, pop_time, broker }
    }
}

/// An ack in the revive topic (`AckMsg`; a `BatchAckMsg` when `aol` is there).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AckMsg {
    /// The acknowledged offset; -1 in a batch ack.
    #[serde(alias = "ackOffset")]
    pub ao: i64,
    /// The checkpoint's start offset.
    #[serde(alias = "startOffset")]
    pub so: i64,
    #[serde(alias = "consumerGroup")]
    pub c: String,
    #[serde(alias = "topic")]
    pub t: String,
    #[serde(alias = "queueId")]
    pub q: i32,
    #[serde(alias = "popTime")]
    pub pt: i64,
    #[serde(skip_serializing_if = "Option::is_none", alias = "brokerName")]
    pub bn: Option<String>,
    /// A batch ack's offsets.
    #[serde(skip_serializing_if = "Option::is_none", alias = "ackOffsetList")]
    pub aol: Option<Vec<i64>>,
}

impl AckMsg {
    pub fn key(&self, default_broker: &str) -> PopKey {
        let broker = self.bn.as_deref().unwrap_or(default_broker);
        PopKey::new(&self.t, &self.c, (self.q, self.so, self.pt), broker)
    }

    /// The offsets it acknowledges.
    pub fn offsets(&self) -> Vec<i64> {
        self.aol.clone().unwrap_or_else(|| vec![self.ao])
    }

    /// Its UNIQ_KEY (`genAckUniqueId`).
    pub fn unique_key(&self) -> String {
        let broker = self.bn.as_deref().unwrap_or_default();
        format!("{}@{}@{}@{}@{}@{broker}@{ACK_TAG}", self.t, self.q, self.ao, self.c, self.pt)
    }
}

/// BATCH_ACK_MESSAGE's body (`BatchAckMessageRequestBody`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchAckBody {
    pub broker_name: String,
    pub acks: Vec<BatchAck>,
}

/// One pop's acks of one queue in a batch (`BatchAck`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BatchAck {
    #[serde(alias = "consumerGroup")]
    pub c: String,
    /// The topic (never the retry topic: `r` says which).
    #[serde(alias = "topic")]
    pub t: String,
    #[serde(alias = "retry")]
    pub r: String,
    #[serde(alias = "startOffset")]
    pub so: i64,
    #[serde(alias = "queueId")]
    pub q: i32,
    #[serde(alias = "reviveQueueId")]
    pub rq: i32,
    #[serde(alias = "popTime")]
    pub pt: i64,
    #[serde(alias = "invisibleTime")]
    pub it: i64,
    /// Java's `BitSet.toByteArray()` in base64: bit i acknowledges offset `so + i`.
    #[serde(alias = "bitSet")]
    pub b: String,
}

impl BatchAck {
    /// The acknowledged offsets, ascending: at most a pop's [`POP_MAX_MESSAGES`].
    pub fn offsets(&self) -> Result<Vec<i64>, PopError> {
        let bits = decode_bit_set(&self.b)?;
        let offsets = bits.into_iter().map(|i| self.so.checked_add(i as i64));
        offsets.collect::<Option<Vec<i64>>>().ok_or(PopError::BitSetTooLong)
    }
}

/// The set bits of a base64 `BitSet.toByteArray()`: bit i is byte i / 8, mask 1 << (i % 8).
pub fn decode_bit_set(encoded: &str) -> Result<BTreeSet<usize>, PopError> {
    if encoded.len() > BATCH_ACK_SPAN_MAX / 8 * 4 / 3 + 4 {
        return Err(PopError::BitSetTooLong);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| PopError::BitSet(e.to_string()))?;
    let mut bits = BTreeSet::new();
    for (i, byte) in bytes.iter().enumerate() {
        for bit in (0..8).filter(|bit| byte & (1 << bit) != 0) {
            if bits.len() == POP_MAX_MESSAGES as usize {
                return Err(PopError::BitSetTooLong);
            }
            bits.insert(i * 8 + bit);
        }
    }
    Ok(bits)
}

/// The base64 `BitSet.toByteArray()` of `bits` (trailing zero bytes dropped, as Java's).
pub fn encode_bit_set(bits: &BTreeSet<usize>) -> String {
    let len = bits.iter().next_back().map_or(0, |last| last / 8 + 1);
    let mut bytes = vec![0u8; len];
    for bit in bits {
        bytes[bit / 8] |= 1 << (bit % 8);
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_info_reads_and_writes_rocketmqs_eight_fields() {
        let text = "100 1700000000123 60000 2 0 broker-a 1 101";
        let info = ExtraInfo::parse(text).unwrap();
        assert_eq!(info.start_offset, 100);
        assert_eq!((info.pop_time, info.invisible_time), (1_700_000_000_123, 60_000));
        assert_eq!(
            (info.revive_qid, info.kind, info.queue_id, info.offset),
            (2, TopicKind::Normal, 1, 101)
        );
        assert_eq!(info.broker_name, "broker-a");
        assert_eq!(info.to_string(), text);
        assert_eq!(info.revive_time(), 1_700_000_060_123);
        assert!(!info.is_orderly());
        let retried = ExtraInfo::parse("7 1700000070000 60000 5 1 broker-a 0 7").unwrap();
        assert_eq!(retried.kind.real_topic("GID_demo", "TopicA"), "%RETRY%GID_demo_TopicA");
        assert!(ExtraInfo::parse("100 1 2 999 0 b 1 101").unwrap().is_orderly());
    }

    #[test]
    fn a_malformed_handle_says_what_is_wrong() {
        assert_eq!(ExtraInfo::parse("1 2 3"), Err(PopError::Fields(3)));
        let bad = ExtraInfo::parse("x 1 2 3 0 b 1 2").unwrap_err();
        assert_eq!(bad, PopError::Field("startOffset", "x".into()));
        assert!(ExtraInfo::parse("1 1 2 3 9 b 1 2").unwrap_err().to_string().contains("retry"));
        assert!(ExtraInfo::parse("1 1 2 3 0  1 2").is_err(), "no broker name");
    }

    #[test]
    fn topic_kinds_follow_the_retry_topics_names() {
        assert_eq!(TopicKind::of("TopicA"), TopicKind::Normal);
        assert_eq!(TopicKind::of("%RETRY%GID_demo_TopicA"), TopicKind::RetryV1);
        assert_eq!(TopicKind::of("%RETRY%GID_demo+TopicA"), TopicKind::RetryV2);
        assert_eq!(pop_retry_topic("G", "T", true), "%RETRY%G+T");
        assert_eq!(revive_topic("DefaultCluster"), "rmq_sys_REVIVE_LOG_DefaultCluster");
    }

    #[test]
    fn offset_headers_are_rocketmqs_strings() {
        let reads = [
            QueueRead {
                kind: TopicKind::Normal,
                queue_id: 1,
                start_offset: 100,
                offsets: vec![100, 103, 107],
            },
            QueueRead { kind: TopicKind::RetryV1, queue_id: 0, start_offset: 7, offsets: vec![7] },
        ];
        assert_eq!(start_offset_info(&reads), "0 1 100;1 0 7");
        assert_eq!(msg_offset_info(&reads), "0 1 100,103,107;1 0 7");
    }

    #[test]
    fn checkpoints_and_acks_are_rocketmqs_json() {
        let java = r#"{"bm":0,"bn":"broker-a","c":"GID_demo","d":[0,3,7],"it":60000,"n":3,"pt":1700000000123,
            "q":1,"reviveTime":1700000060123,"ro":0,"so":100,"t":"TopicA"}"#;
        let ck: PopCheckPoint = serde_json::from_str(java).unwrap();
        assert_eq!(ck.revive_time(), 1_700_000_060_123);
        assert_eq!(ck.index_of(103), Some(1), "the position of 3 in d, not d[3]");
        assert_eq!((ck.index_of(101), ck.index_of(99), ck.index_of(107)), (None, None, Some(2)));
        assert_eq!((ck.offset_of(2), ck.offset_of(3)), (Some(107), None));
        assert_eq!(ck.unique_key(), "TopicA@1@100@GID_demo@1700000000123@broker-a@ck");
        let written = serde_json::to_string(&ck).unwrap();
        assert_eq!(
            written,
            r#"{"so":100,"pt":1700000000123,"it":60000,"bm":0,"n":3,"q":1,"t":"TopicA","c":"GID_demo","ro":0,"d":[0,3,7],"bn":"broker-a"}"#
        );
        let old = PopCheckPoint { so: 5, n: 2, ..PopCheckPoint::default() };
        assert_eq!((old.index_of(6), old.index_of(7), old.offset_of(1)), (Some(1), None, Some(6)));
        let empty = PopCheckPoint { d: Some(Vec::new()), ..old.clone() };
        assert_eq!(
            (empty.index_of(6), empty.offset_of(1)),
            (Some(1), Some(6)),
            "[] is the old format"
        );
        let long = PopCheckPoint { n: 1, d: Some(vec![0, 1, 2]), ..old };
        assert_eq!((long.index_of(7), long.offset_of(1)), (None, None), "only n messages count");

        let ack: AckMsg = serde_json::from_str(
            r#"{"ao":101,"bn":"broker-a","c":"GID_demo","pt":1700000000123,"q":1,"so":100,"t":"TopicA"}"#,
        )
        .unwrap();
        assert_eq!(ack.key("x"), ck.key("y"), "an ack finds its checkpoint");
        assert_eq!(ack.offsets(), [101]);
        assert_eq!(ack.unique_key(), "TopicA@1@101@GID_demo@1700000000123@broker-a@ack");
        let batch: AckMsg = serde_json::from_str(
            r#"{"ao":-1,"aol":[101,103,105],"bn":"broker-a","c":"GID_demo","pt":1700000000123,"q":1,"so":100,"t":"TopicA"}"#,
        )
        .unwrap();
        assert_eq!(batch.offsets(), [101, 103, 105]);
    }

    #[test]
    fn batch_ack_bodies_carry_javas_bit_sets() {
        let body: BatchAckBody = serde_json::from_str(
            r#"{"acks":[{"b":"Kg==","c":"GID_demo","it":60000,"pt":1700000000123,"q":1,"r":"0","rq":2,"so":100,"t":"TopicA"}],
                "brokerName":"broker-a"}"#,
        )
        .unwrap();
        assert_eq!(body.broker_name, "broker-a");
        assert_eq!(body.acks[0].offsets().unwrap(), [101, 103, 105]);
        let bits: BTreeSet<usize> = [1, 3, 5].into_iter().collect();
        assert_eq!(encode_bit_set(&bits), "Kg==");
        assert_eq!(encode_bit_set(&BTreeSet::new()), "");
        assert_eq!(decode_bit_set("").unwrap(), BTreeSet::new());
        let wide: BTreeSet<usize> = [0, 9, 700].into_iter().collect();
        assert_eq!(decode_bit_set(&encode_bit_set(&wide)).unwrap(), wide);
        assert!(matches!(decode_bit_set("*"), Err(PopError::BitSet(_))));
        assert_eq!(decode_bit_set(&"A".repeat(20_000)), Err(PopError::BitSetTooLong));
        let every: BTreeSet<usize> = (0..33).collect();
        assert_eq!(
            decode_bit_set(&encode_bit_set(&every)),
            Err(PopError::BitSetTooLong),
            "one pop's 32 at most"
        );
    }
}
