//! petrel-client: the Rust SDK for RocketMQ-protocol brokers.
//!
//! - [`producer`]: routes from the NameServers, queue selection with latency fault tolerance,
//!   retries on another broker, sync / async / oneway / batch sends.
//! - [`pull_consumer`]: the lite pull consumer: assign queues, poll, seek, commit.
//! - [`push_consumer`]: a consumer group's member: rebalance, long-polling pulls, a bounded
//!   worker pool, retries through the broker, offsets committed every 5 s and at shutdown.
//! - [`reply`]: request-reply: a producer's request waits for the reply a responder makes.
//! - [`transaction_producer`]: half messages, the local transaction, commit or rollback, and
//!   answers to the broker's checks.
//! - [`local_offsets`]: a broadcasting consumer's offsets file.
//! - [`raw`]: single requests to one broker, each reporting exactly what happened, for the
//!   simulator and tests.
//!
//! The decisions (queue selection, fault tolerance, rebalance) are pure code in
//! `petrel_core::client`.

mod group;
pub mod local_offsets;
pub mod message;
pub mod orderly;
pub mod producer;
pub mod pull_consumer;
pub mod push_consumer;
pub mod raw;
pub mod reply;
pub mod route;
pub mod simple_consumer;
pub mod subscription;
pub mod transaction_producer;

pub use message::{Delivery, Message, SendResult, SendStatus, INFLATED_BODY_BYTES_MAX};
pub use orderly::{OrderlyContext, OrderlyListener, OrderlyResult};
pub use petrel_core::compression::Codec;
pub use producer::{Producer, ProducerConfig};
pub use pull_consumer::{ConsumeFrom, PullConsumer, PullConsumerConfig, ReceivedMessage};
pub use push_consumer::{ConsumeResult, Listener, MessageModel, PushConsumer, PushConsumerConfig};
pub use simple_consumer::{PoppedMessage, SimpleConsumer, SimpleConsumerConfig};
pub use subscription::{ExpressionType, Subscription};
pub use transaction_producer::{
    LocalTransactionState, TransactionListener, TransactionProducer, TransactionSendResult,
};

/// NameServer addresses from `NAMESRV_ADDR` (`host:port;host:port`), as RocketMQ's clients
/// read it.
pub(crate) fn namesrv_from_env() -> Vec<String> {
    let namesrv = std::env::var("NAMESRV_ADDR").unwrap_or_default();
    namesrv.split(';').map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

/// Sends `request` and returns the answer when it is SUCCESS; any other answer is the
/// broker's error, a missing one a transport error.
pub(crate) async fn call(
    client: &petrel_net::transport::RemotingClient,
    addr: &str,
    request: petrel_net::codec::RemotingCommand,
    timeout: std::time::Duration,
) -> Result<petrel_net::codec::RemotingCommand, ClientError> {
    let reply = client
        .invoke(addr, request, timeout)
        .await
        .map_err(|e| ClientError::Transport(e.to_string()))?;
    if reply.code != petrel_net::codec::codes::response::SUCCESS {
        return Err(ClientError::Broker {
            code: reply.code,
            remark: reply.remark.unwrap_or_default(),
        });
    }
    Ok(reply)
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client's settings cannot work.
    #[error("client configuration: {0}")]
    Config(String),
    /// The message would be refused; nothing was sent.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// No broker serves the topic (it does not exist and cannot be created).
    #[error("no route to topic {0}: create it, or enable autoCreateTopicEnable on a broker")]
    NoRoute(String),
    /// A broker or NameServer answered with an error code.
    #[error("broker answered {code}: {remark}")]
    Broker { code: i32, remark: String },
    /// The request got no answer (connection refused or closed, or timed out).
    #[error("transport: {0}")]
    Transport(String),
    /// An answer that does not follow the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A request got no reply in time (RocketMQ's `RequestTimeoutException`).
    #[error("request timeout: no reply message within {0:?}")]
    NoReply(std::time::Duration),
}

impl ClientError {
    /// Whether another attempt, on another broker, may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Broker { code, .. } => producer::is_retry_code(*code),
            _ => false,
        }
    }
}
