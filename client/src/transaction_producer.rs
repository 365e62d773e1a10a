//! The transaction producer (RocketMQ's `TransactionMQProducer`): a message is sent as a
//! half message, which no consumer sees; the local transaction runs; the producer then
//! commits it (consumers get it) or rolls it back (nobody ever does). A producer that did not
//! say, or whose word was lost, is asked by the broker (CHECK_TRANSACTION_STATE) and answers
//! from its [`TransactionListener::check`].
//!
//! ```no_run
//! use petrel_client::transaction_producer::{LocalTransactionState, TransactionListener, TransactionProducer};
//! use petrel_client::{Message, ProducerConfig, ReceivedMessage, SendResult};
//!
//! struct Orders;
//! impl TransactionListener for Orders {
//!     fn execute(&self, _message: &Message, _sent: &SendResult) -> LocalTransactionState {
//!         // Write the order to the database here.
//!         LocalTransactionState::Commit
//!     }
//!     fn check(&self, _message: &ReceivedMessage) -> LocalTransactionState {
//!         // Is the order in the database?
//!         LocalTransactionState::Commit
//!     }
//! }
//!
//! # async fn run() -> Result<(), petrel_client::ClientError> {
//! let config = ProducerConfig { group: "OrderTx".into(), ..ProducerConfig::default() };
//! let producer = TransactionProducer::start(config, Orders)?;
//! let sent = producer.send(&Message::new("Orders", "order 42")).await?;
//! assert_eq!(sent.state, LocalTransactionState::Commit);
//! producer.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use petrel_core::client::MessageQueue;
use petrel_core::record::{scan_record, sys_flag, Checks, Scanned};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    CheckTransactionStateRequestHeader, EndTransactionRequestHeader,
};
use petrel_net::transport::{not_supported, Connection, Handled, RequestHandler};

use crate::message::{Message, SendResult, SendStatus};
use crate::producer::{Producer, ProducerConfig};
use crate::pull_consumer::{decode, ReceivedMessage};
use crate::raw::stored_at;
use crate::ClientError;

/// What became of the local transaction (`LocalTransactionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalTransactionState {
    /// Deliver the message.
    Commit,
    /// Never deliver it.
    Rollback,
    /// Not known yet: the broker asks again later.
    Unknown,
}

impl LocalTransactionState {
    /// END_TRANSACTION's `commitOrRollback`.
    fn code(self) -> i32 {
        match self {
            LocalTransactionState::Commit => sys_flag::TRANSACTION_COMMIT,
            LocalTransactionState::Rollback => sys_flag::TRANSACTION_ROLLBACK,
            LocalTransactionState::Unknown => 0,
        }
    }
}

/// The application's side of a transaction.
pub trait TransactionListener: Send + Sync + 'static {
    /// Runs the local transaction for a half message the broker stored.
    fn execute(&self, message: &Message, sent: &SendResult) -> LocalTransactionState;
    /// Says what became of the transaction of a half message the broker asks about (its
    /// `msg_id` is the one the send returned).
    fn check(&self, message: &ReceivedMessage) -> LocalTransactionState;
}

/// A transactional send's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionSendResult {
    /// Where the half message went (`queue_offset` is its offset in the half queue).
    pub sent: SendResult,
    /// What the producer told the broker.
    pub state: LocalTransactionState,
}

/// A producer of transaction messages. See the module documentation.
pub struct TransactionProducer {
    producer: Producer,
    listener: Arc<dyn TransactionListener>,
    /// Brokers told already that this producer serves checks of its group.
    known_to: Mutex<BTreeSet<String>>,
}

impl TransactionProducer {
    /// Starts a producer of group `config.group` whose checks `listener` answers.
    pub fn start(
        config: ProducerConfig,
        listener: impl TransactionListener,
    ) -> Result<TransactionProducer, ClientError> {
        let listener: Arc<dyn TransactionListener> = Arc::new(listener);
        let group = config.group.clone();
        let handler = Arc::new(CheckHandler { listener: listener.clone(), group });
        let producer = Producer::start_with(config, Some(handler))?;
        Ok(TransactionProducer { producer, listener, known_to: Mutex::default() })
    }

    /// Sends `message` as a half message, runs the local transaction, and commits or rolls
    /// back as it says (`sendMessageInTransaction`). A delay level is dropped, as RocketMQ's
    /// client drops it. The end is sent oneway: if it is lost the broker checks.
    pub async fn send(&self, message: &Message) -> Result<TransactionSendResult, ClientError> {
        let mut message = message.clone();
        message.delay_level = 0;
        let sent = self.producer.send_prepared(&message).await?;
        let broker = self.producer.master_of(&sent.queue).await?;
        self.introduce(&broker).await;
        let state = match sent.status {
            SendStatus::Ok => self.listener.execute(&message, &sent),
            // RocketMQ's client rolls back a half message that was not stored safely.
            _ => LocalTransactionState::Rollback,
        };
        let commit_log_offset = stored_at(&sent.offset_msg_id).ok_or_else(|| {
            ClientError::Protocol(format!("offset message id {} unreadable", sent.offset_msg_id))
        })?;
        let header = EndTransactionRequestHeader {
            topic: Some(message.topic.clone()),
            producer_group: self.producer.group().to_owned(),
            tran_state_table_offset: sent.queue_offset,
            commit_log_offset: commit_log_offset as i64,
            commit_or_rollback: state.code(),
            from_transaction_check: Some(false),
            msg_id: sent.msg_id.clone(),
            transaction_id: Some(sent.msg_id.clone()),
        };
        let mut end = RemotingCommand::request(request::END_TRANSACTION).with_header(&header);
        end.mark_oneway();
        self.producer.oneway(&broker, end).await?;
        Ok(TransactionSendResult { sent, state })
    }

    /// Heartbeats a broker this producer has not told of itself yet, so that its checks
    /// reach this producer before the next periodic heartbeat.
    async fn introduce(&self, broker: &str) {
        if self.known_to.lock().unwrap_or_else(|p| p.into_inner()).contains(broker) {
            return;
        }
        match self.producer.heartbeat(broker).await {
            Ok(()) => {
                self.known_to.lock().unwrap_or_else(|p| p.into_inner()).insert(broker.to_owned());
            }
            Err(error) => tracing::debug!(%broker, %error, "heartbeat failed"),
        }
    }

    /// The plain producer underneath (its group is this producer's).
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Stops the producer.
    pub async fn shutdown(&self) {
        self.producer.shutdown().await;
    }
}

/// Answers CHECK_TRANSACTION_STATE from the listener, with END_TRANSACTION on the same
/// connection (`ClientRemotingProcessor.checkTransactionState`).
struct CheckHandler {
    listener: Arc<dyn TransactionListener>,
    group: String,
}

impl RequestHandler for CheckHandler {
    fn handle(&self, conn: &Connection, command: RemotingCommand) -> Handled {
        if command.code != request::CHECK_TRANSACTION_STATE {
            return Handled::Now(not_supported(command.code));
        }
        let answer =
            |code: i32, remark: String| Handled::Now(RemotingCommand::response(code, Some(remark)));
        let header: CheckTransactionStateRequestHeader = match command.header() {
            Ok(header) => header,
            Err(error) => return answer(response::SYSTEM_ERROR, format!("check header: {error}")),
        };
        let queue = match scan_record(&command.body, Checks { physical_offset: None, crc: false }) {
            Scanned::Record(record) => {
                let broker = command.ext_fields.get("bname").unwrap_or("");
                MessageQueue::new(record.topic_str(), broker, record.queue_id)
            }
            _ => return answer(response::SYSTEM_ERROR, "check body holds no message".into()),
        };
        let message = match decode(&queue, &command.body).map(|mut m| m.pop()) {
            Ok(Some(message)) => message,
            _ => return answer(response::SYSTEM_ERROR, "check body holds no message".into()),
        };
        let (listener, group, conn) = (self.listener.clone(), self.group.clone(), conn.clone());
        tokio::spawn(async move {
            let state = listener.check(&message);
            let transaction_id = header.transaction_id.clone().or(header.msg_id.clone());
            let end = EndTransactionRequestHeader {
                topic: header.topic.clone(),
                producer_group: group,
                tran_state_table_offset: header.tran_state_table_offset,
                commit_log_offset: header.commit_log_offset,
                commit_or_rollback: state.code(),
                from_transaction_check: Some(true),
                msg_id: header.msg_id.clone().unwrap_or_default(),
                transaction_id,
            };
            let mut request = RemotingCommand::request(request::END_TRANSACTION).with_header(&end);
            request.mark_oneway();
            if let Err(error) = conn.invoke_oneway(request).await {
                tracing::debug!(%error, "answer to a transaction check not sent");
            }
        });
        Handled::Now(RemotingCommand::response(response::SUCCESS, None))
    }
}
