//! The broker's pure cores: the metadata it keeps (topics, subscription groups, consumer
//! offsets), the clients it knows (heartbeats, consumer groups), how a subscription filters
//! tags, and when delayed messages are due. The broker service in `bin/` binds them to the
//! store, the sockets and the clock; none of them does I/O.

pub mod batch;
pub mod clients;
pub mod consumer_filters;
pub mod delay;
pub mod filter;
pub mod offsets;
pub mod pop;
pub mod pop_order;
pub mod queue_locks;
pub mod rates;
pub mod replica_read;
pub mod replicas;
pub mod revive;
pub mod schedule;
pub mod send_plan;
pub mod sql92;
pub mod stats;
pub mod subscriptions;
pub mod timer;
pub mod timer_metrics;
pub mod timer_unit;
pub mod timer_wheel;
pub mod topics;
pub mod transaction;
pub mod transaction_check;

/// A request refused: RocketMQ's response code (`crate::codes::response`) and a remark a
/// person can act on. Every refusal of the broker's cores and handlers is one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i32,
    pub remark: String,
}

impl Refusal {
    pub fn new(code: i32, remark: impl Into<String>) -> Refusal {
        Refusal { code, remark: remark.into() }
    }
}

/// The retry topic of a consumer group: failed messages come back to its members through it.
pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

/// The dead-letter topic of a consumer group: messages that failed `retryMaxTimes` times.
pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// Prefix of retry topics (`MixAll.RETRY_GROUP_TOPIC_PREFIX`).
pub const RETRY_PREFIX: &str = "%RETRY%";
/// Prefix of dead-letter topics (`MixAll.DLQ_GROUP_TOPIC_PREFIX`).
pub const DLQ_PREFIX: &str = "%DLQ%";
/// The topic delayed messages wait in, one queue per delay level.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// The topic producers name to have a new topic created from (`TopicValidator.AUTO_CREATE_TOPIC_KEY_TOPIC`).
pub const AUTO_CREATE_TOPIC: &str = "TBW102";

/// Property names RocketMQ gives meaning to (`MessageConst`).
pub mod property {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const DELAY: &str = "DELAY";
    pub const WAIT: &str = "WAIT";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const CLUSTER: &str = "CLUSTER";
    pub const MIN_OFFSET: &str = "MIN_OFFSET";
    pub const MAX_OFFSET: &str = "MAX_OFFSET";
}

/// A message's unique key when its producer sent none (`MessageClientIDSetter`'s layout): 32
/// uppercase hex digits of the host's IPv4 address (4 bytes), a process id (2), a seed that
/// differs between runs (4), milliseconds since `epoch` (4) and a counter (2).
pub fn unique_key(ip: [u8; 4], pid: u16, seed: u32, since_epoch_ms: u64, counter: u16) -> String {
    let mut raw = [0u8; 16];
    raw[..4].copy_from_slice(&ip);
    raw[4..6].copy_from_slice(&pid.to_be_bytes());
    raw[6..10].copy_from_slice(&seed.to_be_bytes());
    raw[10..14].copy_from_slice(&(since_epoch_ms as u32).to_be_bytes());
    raw[14..16].copy_from_slice(&counter.to_be_bytes());
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut key = String::with_capacity(32);
    for byte in raw {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0xF)]));
    }
    key
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_keys_have_rocketmqs_layout() {
        let key = super::unique_key([127, 0, 0, 1], 0x1234, 0xDEADBEEF, 5, 7);
        assert_eq!(key, "7F0000011234DEADBEEF000000050007");
        assert_ne!(key, super::unique_key([127, 0, 0, 1], 0x1234, 0xDEADBEEF, 5, 8));
    }
}

/// Lenient JSON field readers: clients of other languages send enums as ordinals and numbers
/// as strings (the C++ client writes `"consumeType":1` and `"subVersion":"1795..."`).
pub(crate) mod loose {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Integer(i64),
        Float(f64),
        Flag(bool),
    }

    /// A string, or a number or boolean written as one.
    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match Option::<Scalar>::deserialize(d)? {
            None => String::new(),
            Some(Scalar::Text(text)) => text,
            Some(Scalar::Integer(n)) => n.to_string(),
            Some(Scalar::Float(f)) => f.to_string(),
            Some(Scalar::Flag(b)) => b.to_string(),
        })
    }

    /// An integer, or one written as a string; anything else reads as 0.
    pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        Ok(match Option::<Scalar>::deserialize(d)? {
            Some(Scalar::Integer(n)) => n,
            Some(Scalar::Text(text)) => text.trim().parse().unwrap_or(0),
            Some(Scalar::Float(f)) => f as i64,
            _ => 0,
        })
    }

    /// An `int`, or one written as a string; anything else, or out of range, reads as 0.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
        Ok(i32::try_from(integer(d)?).unwrap_or(0))
    }

    /// A boolean, or one written as a string or number.
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(match Option::<Scalar>::deserialize(d)? {
            Some(Scalar::Flag(b)) => b,
            Some(Scalar::Text(text)) => text == "true" || text == "1",
            Some(Scalar::Integer(n)) => n != 0,
            _ => false,
        })
    }
}
