//! The client's pure decisions: which queue a producer sends to and which brokers it avoids
//! for a while (latency fault tolerance), and which queues each member of a consumer group
//! takes (rebalance). The SDK in `client/` drives them; none of them does I/O.

pub mod allocate;
pub mod fault;
pub mod orderly;
pub mod process;

/// One queue of a topic on one broker (`MessageQueue`). Ordered by topic, broker name and
/// queue id, as RocketMQ sorts queues before allocating them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
