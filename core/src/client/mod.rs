//! The client's pure decisions: which queue a producer sends to and which brokers it avoids
//! for a while (latency fault tolerance), and which queues each member of a consumer group
//! takes (rebalance). The SDK in `client/` drives them; none of them does I/O.

pub mod allocate;
pub mod fault;
pub mod orderly;
pub mod process;

/// One queue of a topic on one broker (`MessageQueue`). Ordered by topic, broker name and
/// queue id, as RocketMQ sorts queues before allocating them; in JSON its fields come in
/// fastjson's (alphabetical) order, `{"brokerName":..,"queueId":..,"topic":..}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageQueue {
    pub topic: String,
    pub broker_name: String,
    pub queue_id: i32,
}

impl MessageQueue {
    pub fn new(topic: &str, broker_name: &str, queue_id: i32) -> MessageQueue {
        MessageQueue { topic: topic.to_owned(), broker_name: broker_name.to_owned(), queue_id }
    }
}

impl serde::Serialize for MessageQueue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("MessageQueue", 3)?;
        fields.serialize_field("brokerName", &self.broker_name)?;
        fields.serialize_field("queueId", &self.queue_id)?;
        fields.serialize_field("topic", &self.topic)?;
        fields.end()
    }
}

impl std::fmt::Display for MessageQueue {
    /// RocketMQ's `MessageQueue.toString()`, which consistent hashing hashes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            self.topic, self.broker_name, self.queue_id
        )
    }
}
