//! What a producer sends and what it gets back.

use std::collections::BTreeMap;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use petrel_core::broker::timer::names as timer;
use petrel_core::client::MessageQueue;
use petrel_core::record::{is_valid_topic, properties, put_property, TOPIC_BYTES_MAX};

/// RocketMQ's `maxMessageSize`: the largest body a broker takes by default.
pub const BODY_BYTES_MAX: usize = 4 << 20;

/// The largest body a consumer inflates from a compressed one; a larger one is an error,
/// not an allocation.
pub const INFLATED_BODY_BYTES_MAX: usize = 16 * BODY_BYTES_MAX;

/// The body its producer sent, from `stored` (a slice of `frame`) and the record's SYSFLAG
/// `flags`: `stored` itself without a copy, or inflated when the producer compressed it.
pub(crate) fn body_as_sent(
    flags: i32,
    frame: &Bytes,
    stored: &[u8],
) -> Result<Bytes, petrel_core::compression::BodyError> {
    Ok(match petrel_core::compression::inflated(flags, stored, INFLATED_BODY_BYTES_MAX)? {
        std::borrow::Cow::Borrowed(stored) => frame.slice_ref(stored),
        std::borrow::Cow::Owned(inflated) => Bytes::from(inflated),
    })
}

/// Properties the client and broker set themselves; a user may not set them.
const RESERVED: [&str; 18] = [
    "UNIQ_KEY",
    "TAGS",
    "KEYS",
    "DELAY",
    "REAL_TOPIC",
    "REAL_QID",
    "RETRY_TOPIC",
    "TRAN_MSG",
    "MSG_REGION",
    "CLUSTER",
    timer::DELIVER_MS,
    timer::DELAY_SEC,
    timer::DELAY_MS,
    timer::OUT_MS,
    timer::ENQUEUE_MS,
    timer::DEQUEUE_MS,
    timer::ROLL_TIMES,
    timer::DEL_UNIQKEY,
];

/// When a timer message is delivered (RocketMQ 5's timer wheel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// At this time, in ms since the epoch (`TIMER_DELIVER_MS`).
    At(i64),
    /// This long after the broker stores it (`TIMER_DELAY_MS`).
    After(Duration),
}

/// A message to send.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub topic: String,
    pub body: Bytes,
    pub tags: Option<String>,
    pub keys: Vec<String>,
    /// Delay level (1 = the broker's first `messageDelayLevel`), 0 for none.
    pub delay_level: i32,
    pub flag: i32,
    /// A timer message's time; `None`: delivered at once.
    pub delivery: Option<Delivery>,
    /// A cancel: the `REAL_TOPIC+UNIQ_KEY` of the timer message it cancels
    /// (`TIMER_DEL_UNIQKEY`); see [`Message::cancel`].
    pub cancels: Option<String>,
    pub properties: BTreeMap<String, String>,
    /// The message's id (`UNIQ_KEY`): `None` draws a fresh one at each send; a message sent
    /// again keeps the id it was stored with, as RocketMQ's client keeps one a message
    /// carries.
    pub id: Option<String>,
}

impl Message {
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Message {
        Message { topic: topic.into(), body: body.into(), ..Message::default() }
    }

    /// A stored message to send again (mqadmin's resend): its topic, body, flag, tags, keys
    /// and id, and every property a user may set, from its encoded `stored` properties. The
    /// ones only the client and broker set (a delay level and timer times among them) stay
    /// behind, so it is delivered at once.
    pub fn again(topic: &str, body: Bytes, flag: i32, stored: &[u8]) -> Message {
        let mut message = Message { flag, ..Message::new(topic, body) };
        for (name, value) in properties(stored) {
            let (name, value) = (String::from_utf8_lossy(name), String::from_utf8_lossy(value));
            match name.as_ref() {
                "TAGS" => message.tags = Some(value.into_owned()),
                "KEYS" => {
                    let keys = value.split(' ').filter(|k| !k.is_empty());
                    message.keys = keys.map(str::to_owned).collect();
                }
                "UNIQ_KEY" => message.id = Some(value.into_owned()),
                reserved if RESERVED.contains(&reserved) => {}
                _ => {
                    message.properties.insert(name.into_owned(), value.into_owned());
                }
            }
        }
        message
    }

    pub fn with_tags(mut self, tags: impl Into<String>) -> Message {
        self.tags = Some(tags.into());
        self
    }

    pub fn with_keys(mut self, keys: impl IntoIterator<Item = impl Into<String>>) -> Message {
        self.keys = keys.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_delay_level(mut self, level: i32) -> Message {
        self.delay_level = level;
        self
    }

    /// Delivered at `at` (not before), up to the broker's `timerMaxDelaySec` ahead (3 days
    /// by default); a time already passed is delivered at once.
    pub fn with_delivery_time(mut self, at: SystemTime) -> Message {
        let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        self.delivery = Some(Delivery::At(ms));
        self
    }

    /// Delivered `delay` after the broker stores it (not before).
    pub fn with_delay(mut self, delay: Duration) -> Message {
        self.delivery = Some(Delivery::After(delay));
        self
    }

    /// A cancel of the timer message `msg_id` (its `SendResult::msg_id`) sent to `topic` for
    /// `delivery_ms`: sent before that time, the message is not delivered (RocketMQ 5's
    /// `TIMER_DEL_UNIQKEY`). The cancel must name the same time as the message.
    pub fn cancel(topic: impl Into<String>, msg_id: &str, delivery_ms: i64) -> Message {
        let topic = topic.into();
        let cancels = Some(format!("{topic}+{msg_id}"));
        let delivery = Some(Delivery::At(delivery_ms));
        Message {
            topic,
            body: Bytes::from_static(b"cancel"),
            delivery,
            cancels,
            ..Message::default()
        }
    }

    /// Checks what a broker would refuse, with a reason a person can act on.
    pub fn validate(&self, body_bytes_max: usize) -> Result<(), String> {
        let topic = &self.topic;
        if topic.is_empty() || topic.len() > TOPIC_BYTES_MAX || !is_valid_topic(topic.as_bytes()) {
            return Err(format!(
                "topic {topic:?} is not valid: use 1 to {TOPIC_BYTES_MAX} characters of letters, digits, %, |, _ and -"
            ));
        }
        if self.body.is_empty() {
            return Err("the message body is empty".to_owned());
        }
        if self.body.len() > body_bytes_max {
            return Err(format!(
                "the message body is {} bytes, over the {body_bytes_max}-byte limit",
                self.body.len()
            ));
        }
        if let Some(name) = self.properties.keys().find(|k| RESERVED.contains(&k.as_str())) {
            return Err(format!("property {name} is reserved; use the message's own field"));
        }
        let bad = |s: &str| s.contains(['\u{1}', '\u{2}']);
        if self.properties.iter().any(|(k, v)| k.is_empty() || bad(k) || bad(v))
            || self.keys.iter().any(|k| bad(k) || k.contains(' '))
            || self.tags.as_deref().is_some_and(bad)
            || self.id.as_deref().is_some_and(bad)
        {
            return Err(
                "keys, tags, ids and properties may not hold \\u0001 or \\u0002, keys no spaces"
                    .into(),
            );
        }
        if self.delay_level < 0 {
            return Err(format!("delay level {} is negative", self.delay_level));
        }
        Ok(())
    }

    /// The encoded properties, with `unique_key` as UNIQ_KEY.
    pub fn encode_properties(&self, unique_key: &str) -> String {
        let mut out = Vec::with_capacity(64);
        if let Some(tags) = &self.tags {
            put_property(&mut out, "TAGS", tags);
        }
        if !self.keys.is_empty() {
            put_property(&mut out, "KEYS", self.keys.join(" "));
        }
        if self.delay_level > 0 {
            put_property(&mut out, "DELAY", self.delay_level.to_string());
        }
        match self.delivery {
            Some(Delivery::At(ms)) => put_property(&mut out, timer::DELIVER_MS, ms.to_string()),
            Some(Delivery::After(delay)) => {
                put_property(&mut out, timer::DELAY_MS, delay.as_millis().to_string())
            }
            None => {}
        }
        if let Some(key) = &self.cancels {
            put_property(&mut out, timer::DEL_UNIQKEY, key);
        }
        put_property(&mut out, "UNIQ_KEY", unique_key);
        for (name, value) in &self.properties {
            put_property(&mut out, name, value);
        }
        String::from_utf8(out).expect("properties are built from strings")
    }
}

/// How the broker took a message it stored (`SendStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    Ok,
    /// Stored, but not flushed within the broker's `syncFlushTimeout`.
    FlushDiskTimeout,
    FlushSlaveTimeout,
    SlaveNotAvailable,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: SendStatus,
    /// The message's UNIQ_KEY, the id consumers see.
    pub msg_id: String,
    /// The broker's id for where it stored the message (`offsetMsgId`).
    pub offset_msg_id: String,
    pub queue: MessageQueue,
    pub queue_offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_says_what_is_wrong() {
        let ok = Message::new("T", "x");
        assert!(ok.validate(BODY_BYTES_MAX).is_ok());
        assert!(Message::new("a b", "x").validate(10).unwrap_err().contains("not valid"));
        assert!(Message::new("T", "").validate(10).unwrap_err().contains("empty"));
        assert!(Message::new("T", "12345").validate(4).unwrap_err().contains("4-byte limit"));
        let mut reserved = ok.clone();
        reserved.properties.insert("DELAY".into(), "3".into());
        assert!(reserved.validate(10).unwrap_err().contains("reserved"));
        assert!(ok.clone().with_keys(["a b"]).validate(10).is_err());
    }

    #[test]
    fn a_message_sent_again_keeps_what_a_user_set_and_its_id() {
        let mut stored = Vec::new();
        for (name, value) in [
            ("TAGS", "TagA"),
            ("KEYS", "k1 k2"),
            ("UNIQ_KEY", "7F00000100002A9F0000000000000001"),
            ("DELAY", "3"),
            ("REAL_TOPIC", "Orders"),
            ("color", "blue"),
        ] {
            put_property(&mut stored, name, value);
        }
        let message = Message::again("Orders", Bytes::from_static(b"x"), 5, &stored);
        assert_eq!((message.topic.as_str(), message.flag), ("Orders", 5));
        assert_eq!(message.tags.as_deref(), Some("TagA"));
        assert_eq!(message.keys, ["k1", "k2"]);
        assert_eq!(message.id.as_deref(), Some("7F00000100002A9F0000000000000001"));
        assert_eq!(message.delay_level, 0, "delivered at once");
        assert_eq!(message.properties.len(), 1);
        assert_eq!(message.properties["color"], "blue");
        assert!(message.validate(BODY_BYTES_MAX).is_ok());
    }

    #[test]
    fn properties_encode_as_rocketmq_does() {
        let message =
            Message::new("T", "x").with_tags("TagA").with_keys(["k1", "k2"]).with_delay_level(2);
        assert_eq!(
            message.encode_properties("U1"),
            "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}DELAY\u{1}2\u{2}UNIQ_KEY\u{1}U1\u{2}"
        );
    }
}
