//! Single requests to one broker, each reporting exactly what happened: send a message, pull
//! a queue, query and commit a consumer offset. The simulator's workloads and the process tests
//! use them to reason about every request; the SDK proper (routing, queue selection, rebalance,
//! retries) is built on top of them later.

use std::time::Duration;

use petrel_core::broker::batch::{encode_batch, BatchItem};
use petrel_core::record::{parse_offset_msg_id, scan_records};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    CreateTopicRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, SendMessageRequestHeader,
    SendMessageRequestHeaderV2, SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use petrel_net::transport::RemotingClient;

/// How long a request may take before the scenario counts it as lost.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The broker acknowledged it at this queue offset (a batch: its first message's, the
    /// others following), each record starting at its `stored_at` offset in the commit log
    /// (from the offset message ids): under SYNC_FLUSH it is durable.
    Acked { queue_offset: i64, stored_at: Vec<u64> },
    /// FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT or SLAVE_NOT_AVAILABLE: stored at this offset
    /// but not (yet) durable or replicated as configured; it may be lost.
    NotDurable { queue_offset: i64 },
    /// The broker answered with an error: the message was not stored.
    Refused { code: i32 },
    /// No answer (timeout, closed connection): it may or may not be stored.
    Unknown,
}

/// The body of message `id`: its id first, then filler up to `len` bytes.
pub fn body(id: u64, len: usize) -> Vec<u8> {
    let mut body = format!("sim-{id:012}|").into_bytes();
    body.resize(len.max(body.len()), b'.');
    body
}

/// The id a body carries.
pub fn body_id(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body.get(4..16)?).ok()?;
    body.starts_with(b"sim-").then(|| text.parse().ok()).flatten()
}

/// The properties of message `id`: a key and a unique key made from its id.
fn properties(id: u64) -> String {
    format!("KEYS\u{1}k{id}\u{2}UNIQ_KEY\u{1}{}\u{2}", unique_key(id))
}

/// A send header for `(topic, queue_id)` from the simulator's producer group.
fn send_header(topic: &str, queue_id: i32) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "SimProducer".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        ..SendMessageRequestHeader::default()
    }
}

/// Sends message `id` to `(topic, queue_id)` with SEND_MESSAGE_V2.
pub async fn send(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
    id: u64,
    body_len: usize,
) -> SendOutcome {
    send_delayed(client, broker, topic, queue_id, id, body_len, 0).await
}

/// Sends message `id` with delay level `level` (0: none): it reaches its queue once due.
pub async fn send_delayed(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
    id: u64,
    body_len: usize,
    level: i32,
) -> SendOutcome {
    let extra = match level > 0 {
        true => format!("DELAY\u{1}{level}\u{2}"),
        false => String::new(),
    };
    send_with(client, broker, topic, queue_id, id, body_len, &extra).await
}

/// Sends message `id` with `extra` encoded properties (`NAME\u{1}value\u{2}...`) after its
/// own, such as a timer message's `TIMER_DELIVER_MS`.
pub async fn send_with(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
    id: u64,
    body_len: usize,
    extra: &str,
) -> SendOutcome {
    let properties = properties(id) + extra;
    let header =
        SendMessageRequestHeader { properties: Some(properties), ..send_header(topic, queue_id) };
    let request = RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_header(&SendMessageRequestHeaderV2::from(header))
        .with_body(body(id, body_len));
    send_request(client, broker, request).await
}

/// The UNIQ_KEY [`send`] and its kin give message `id`.
pub fn unique_key(id: u64) -> String {
    format!("U{id:030}")
}

/// Sends messages `ids` to `(topic, queue_id)` as one SEND_BATCH_MESSAGE: all stored at
/// consecutive offsets, or none answered as stored.
pub async fn send_batch(
    client: &RemotingClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
    ids: &[u64],
    body_len: usize,
) -> SendOutcome {
    let bodies: Vec<(Vec<u8>, String)> =
        ids.iter().map(|id| (body(*id, body_len), properties(*id))).collect();
    let items: Vec<BatchItem<'_>> = bodies
        .iter()
        .map(|(body, properties)| BatchItem { flag: 0, body, properties: properties.as_bytes() })
        .collect();
    let header = SendMessageRequestHeader { batch: Some(true), ..send_header(topic, queue_id) };
    let request = RemotingCommand::request(request::SEND_BATCH_MESSAGE)
        .with_header(&SendMessageRequestHeaderV2::from(header))
        .with_body(encode_batch(&items));
    send_request(client, broker, request).await
}

/// Where a record is in the commit log, from its offset message id.
pub fn stored_at(offset_msg_id: &str) -> Option<u64> {
    parse_offset_msg_id(offset_msg_id).map(|(_, at)| at as u64)
}

/// The outcome of a send request, from its answer.
async fn send_request(
    client: &RemotingClient,
    broker: &str,
    request: RemotingCommand,
) -> SendOutcome {
    match client.invoke(broker, request, REQUEST_TIMEOUT).await {
        Ok(reply) if reply.code == response::SUCCESS => {
            match reply.header::<SendMessageResponseHeader>() {
                Ok(answer) => {
                    let stored_at = answer
                        .msg_id
                        .split(',')
                        .map(|id| {
                            stored_at(id).unwrap_or_else(|| {
                                panic!("a successful send answered a bad offset message id {id:?}")
                            })
                        })
                        .collect();
                    SendOutcome::Acked { queue_offset: answer.queue_offset, stored_at }
                }
                Err(e) => panic!("a successful send answered without its header: {e}"),
            }
        }
        Ok(reply)
            if matches!(
                reply.code,
                response::FLUSH_DISK_TIMEOUT
                    | response::FLUSH_SLAVE_TIMEOUT
                    | response::SLAVE_NOT_AVAILABLE
            ) =>
        {
            match reply.header::<SendMessageResponseHeader>() {
                Ok(answer) => SendOutcome::NotDurable { queue_offset: answer.queue_offset },
                Err(e) => panic!("code {} answered without its header: {e}", reply.code),
            }
        }
        Ok(reply) => SendOutcome::Refused { code: reply.code },
        Err(_) => SendOutcome::Unknown,
    }
}

/// One message a pull returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledMessage {
    pub queue_offset: i64,
    pub id: u64,
    /// Where the record is in the commit log (what CONSUMER_SEND_MSG_BACK names).
    pub physical_offset: i64,
    pub reconsume_times: i32,
    pub store_timestamp: i64,
    /// The body's CRC-32 as stored in the record (checked against the body on the way in).
    pub body_crc: u32,
    /// The encoded properties, `name 0x01 value 0x02 ...`.
    pub properties: Vec<u8>,
}

/// What a pull answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub code: i32,
    pub next_begin_offset: i64,
    pub max_offset: i64,
    /// The broker id the answer suggests for the next pull (0, the master, on a refusal).
    pub suggest_which_broker_id: i64,
    pub messages: Vec<PulledMessage>,
}

/// PULL_MESSAGE with the subscription in the request, held up to `hold` when nothing is new.
pub async fn pull(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
    hold: Duration,
) -> Result<Pulled, String> {
    let header = PullMessageRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag: 0x2 | 0x4,
        commit_offset: -1,
        suspend_timeout_millis: hold.as_millis() as i64,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let request = RemotingCommand::request(request::PULL_MESSAGE).with_header(&header);
    let reply =
        client.invoke(broker, request, REQUEST_TIMEOUT + hold).await.map_err(|e| e.to_string())?;
    let answer = match reply.code {
        response::SUCCESS
        | response::PULL_NOT_FOUND
        | response::PULL_RETRY_IMMEDIATELY
        | response::PULL_OFFSET_MOVED => reply
            .header::<PullMessageResponseHeader>()
            .map_err(|e| format!("pull answered {} without its header: {e}", reply.code))?,
        // A refusal carries a remark and no offsets.
        _ => PullMessageResponseHeader::default(),
    };
    let mut messages = Vec::new();
    let body = reply.body_bytes();
    for record in scan_records(&body) {
        let record =
            record.map_err(|at| format!("pull body has an invalid record at byte {at}"))?;
        let id = body_id(record.body).ok_or("a pulled body carries no message id")?;
        messages.push(PulledMessage {
            queue_offset: record.queue_offset,
            id,
            physical_offset: record.physical_offset,
            reconsume_times: record.reconsume_times,
            store_timestamp: record.store_timestamp,
            body_crc: record.body_crc,
            properties: record.properties.to_vec(),
        });
    }
    Ok(Pulled {
        code: reply.code,
        next_begin_offset: answer.next_begin_offset,
        max_offset: answer.max_offset,
        suggest_which_broker_id: answer.suggest_which_broker_id,
        messages,
    })
}

/// The group's committed offset of a queue; `None` when the broker has none. A group that
/// never committed gets 0 while the queue holds its first message, as RocketMQ answers.
pub async fn query_offset(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<Option<i64>, String> {
    query_offset_with(client, broker, (group, topic, queue_id), None).await
}

/// The offset the group committed itself, `None` if it never did (`setZeroIfNotFound=false`),
/// so that the client's own consume-from decides where a new group starts.
pub async fn query_committed_offset(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
) -> Result<Option<i64>, String> {
    query_offset_with(client, broker, (group, topic, queue_id), Some(false)).await
}

async fn query_offset_with(
    client: &RemotingClient,
    broker: &str,
    (group, topic, queue_id): (&str, &str, i32),
    set_zero_if_not_found: Option<bool>,
) -> Result<Option<i64>, String> {
    let header = QueryConsumerOffsetRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        set_zero_if_not_found,
    };
    let request = RemotingCommand::request(request::QUERY_CONSUMER_OFFSET).with_header(&header);
    let reply = client.invoke(broker, request, REQUEST_TIMEOUT).await.map_err(|e| e.to_string())?;
    match reply.code {
        response::SUCCESS => reply
            .header::<OffsetResponseHeader>()
            .map(|h| Some(h.offset))
            .map_err(|e| e.to_string()),
        response::QUERY_NOT_FOUND => Ok(None),
        other => Err(format!("QUERY_CONSUMER_OFFSET answered {other}: {:?}", reply.remark)),
    }
}

/// Commits the group's offset of a queue; true when the broker took it.
pub async fn commit_offset(
    client: &RemotingClient,
    broker: &str,
    group: &str,
    topic: &str,
    queue_id: i32,
    offset: i64,
) -> bool {
    let header = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.into(),
        topic: topic.into(),
        queue_id,
        commit_offset: offset,
    };
    let request = RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET).with_header(&header);
    matches!(client.invoke(broker, request, REQUEST_TIMEOUT).await, Ok(r) if r.code == response::SUCCESS)
}

/// Creates `topic` on one broker with `queues` read and write queues, as an operator does with
/// `mqadmin updateTopic` (UPDATE_AND_CREATE_TOPIC); true when the broker took it.
pub async fn create_topic(client: &RemotingClient, broker: &str, topic: &str, queues: i32) -> bool {
    let header = CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        ..CreateTopicRequestHeader::default()
    };
    let request = RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(&header);
    matches!(client.invoke(broker, request, REQUEST_TIMEOUT).await, Ok(r) if r.code == response::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_id() {
        assert_eq!(body_id(&body(42, 100)), Some(42));
        assert_eq!(body(7, 10).len(), 17, "never shorter than the id");
        assert_eq!(body_id(b"other"), None);
    }
}
