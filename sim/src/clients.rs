//! Workloads built on the Rust SDK (`petrel-client`) that record into a run's
//! [`History`]: a producer sending numbered messages, and the event a consumer records for each
//! message it receives.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use madsim::rand::{thread_rng, Rng};
use petrel_client::{
    Codec, ConsumeFrom, ConsumeResult, Message, OrderlyContext, OrderlyResult, Producer,
    ProducerConfig, PushConsumer, PushConsumerConfig, ReceivedMessage, SendStatus, SimpleConsumer,
    SimpleConsumerConfig,
};
use petrel_core::record::parse_offset_msg_id;

use crate::cluster::NAMESRV;
use crate::history::{body_hash, Event, History, Place, SendMode};
use crate::workload;

/// Where a received message was stored.
pub fn place_of(message: &ReceivedMessage) -> Place {
    Place {
        broker: message.queue.broker_name.clone(),
        topic: message.queue.topic.clone(),
        queue: message.queue.queue_id,
        offset: message.queue_offset,
    }
}

/// What `consumer` records for a message it received.
pub fn received(consumer: &str, message: &ReceivedMessage) -> Event {
    Event::Delivered {
        consumer: consumer.to_owned(),
        place: place_of(message),
        id: workload::body_id(&message.body).expect("a simulated body carries its id"),
        body_hash: body_hash(&message.body),
        stored_wall: message.store_timestamp,
    }
}

/// A push consumer of `topic` in `group` from the topic's first message, with the settings the
/// scenarios share (a rebalance every second, commits every 500 ms); a scenario adjusts the
/// rest.
pub fn push_config(group: &str, topic: &str) -> PushConsumerConfig {
    PushConsumerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        group: group.into(),
        subscriptions: [(topic.to_owned(), "*".into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        rebalance_interval: Duration::from_secs(1),
        commit_interval: Duration::from_millis(500),
        ..PushConsumerConfig::default()
    }
}

/// A POP consumer (`SimpleConsumer`) of `topic` in `group`, receiving in order when
/// `orderly`, with the settings the POP scenarios share (a receive waits 2 s at most).
pub fn simple_consumer(group: &str, topic: &str, orderly: bool) -> SimpleConsumer {
    let config = SimpleConsumerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        group: group.into(),
        topic: topic.into(),
        await_duration: Duration::from_secs(2),
        orderly,
        ..SimpleConsumerConfig::default()
    };
    SimpleConsumer::start(config).expect("a POP consumer with a NameServer starts")
}

/// Runs a push consumer with `config` until its node goes, recording each message it reads
/// as delivered to `name`.
pub async fn push_consume(name: String, history: History, config: PushConsumerConfig) {
    let _consumer = PushConsumer::start(config, move |message: &ReceivedMessage| {
        history.record(received(&name, message));
        ConsumeResult::Success
    })
    .expect("a push consumer with a NameServer starts");
    std::future::pending::<()>().await;
}

/// Runs an orderly push consumer with `config` until its node goes, or until `lifetime` when
/// given (then it shuts down: it commits and unlocks its queues). One message in twenty is
/// suspended the first time it comes; each message it consumes is recorded as delivered to
/// `name`, with the lock it consumed under.
pub async fn orderly_consume(
    name: String,
    history: History,
    config: PushConsumerConfig,
    lifetime: Option<Duration>,
) {
    let listener = move |message: &ReceivedMessage, context: &OrderlyContext| {
        if context.suspensions == 0 && thread_rng().gen_bool(0.05) {
            return OrderlyResult::Suspend;
        }
        history.record(received(&name, message));
        if let (Some(lock_asked), Some(lock_answered)) =
            (context.lock_asked_at, context.lock_answered_at)
        {
            let (consumer, place) = (name.clone(), place_of(message));
            history.record(Event::UnderLock { consumer, place, lock_asked, lock_answered });
        }
        OrderlyResult::Success
    };
    let consumer = PushConsumer::start_orderly(config, listener)
        .expect("a push consumer with a NameServer starts");
    let Some(lifetime) = lifetime else { return std::future::pending().await };
    tokio::time::sleep(lifetime).await;
    consumer.shutdown().await;
    std::future::pending::<()>().await;
}

/// Sends messages `ids` to `topic` one at a time with sync sends, `body_bytes` each, pausing
/// a random number of milliseconds from `pause` between sends. An answer other than SEND_OK
/// (FLUSH_DISK_TIMEOUT, say) leaves the message in doubt, and so does a failed send: it may
/// have reached a broker before the error. Returns who acknowledged each acknowledged message
/// (the broker address its offset message id names).
pub async fn produce(
    history: History,
    topic: &str,
    ids: Range<u64>,
    body_bytes: usize,
    pause: Range<u64>,
) -> BTreeMap<u64, String> {
    produce_timed(history, topic, ids, body_bytes, pause, |_| None).await
}

/// [`produce`], where message `id` asks to be delivered `delay(id)` ms after its send when that
/// is some (`TIMER_DELIVER_MS`); when any is, no send is retried, so that a place of a message
/// in its topic beyond the first is the broker's doing. A timer message's acknowledgement names the
/// timer queue's offset, so it is recorded with no place.
pub async fn produce_timed(
    history: History,
    topic: &str,
    ids: Range<u64>,
    body_bytes: usize,
    pause: Range<u64>,
    delay: impl Fn(u64) -> Option<i64>,
) -> BTreeMap<u64, String> {
    let delay = |id| delay(id).map(Some);
    produce_with(history, topic, ids, (&|_| body_bytes, pause), delay, |_| None, |_, m| m).await
}

/// [`produce`], where message `id` is sent by sharding key `key(id)`
/// ([`Producer::send_by_key`]): the messages of a key go to one queue, in send order.
pub async fn produce_keyed(
    history: History,
    topic: &str,
    ids: Range<u64>,
    body_bytes: usize,
    pause: Range<u64>,
    key: impl Fn(u64) -> String,
) -> BTreeMap<u64, String> {
    let key = |id| Some(key(id));
    produce_with(history, topic, ids, (&|_| body_bytes, pause), |_| None, key, |_, m| m).await
}

/// [`produce`] with no send retried: each message is stored once at most (a retried send whose
/// first try landed stores it twice).
pub async fn produce_unretried(
    history: History,
    topic: &str,
    ids: Range<u64>,
    body_bytes: usize,
    pause: Range<u64>,
) -> BTreeMap<u64, String> {
    let once = |_| Some(None);
    produce_with(history, topic, ids, (&|_| body_bytes, pause), once, |_| None, |_, m| m).await
}

/// [`produce`], where message `id` is first given what `dress(id, message)` adds (properties,
/// tags).
pub async fn produce_dressed(
    history: History,
    topic: &str,
    ids: Range<u64>,
    body_bytes: usize,
    pause: Range<u64>,
    dress: impl Fn(u64, Message) -> Message,
) -> BTreeMap<u64, String> {
    produce_with(history, topic, ids, (&|_| body_bytes, pause), |_| None, |_| None, dress).await
}

/// Bodies of 100 bytes, but every eighth of 6000, which the producer sends compressed.
pub fn some_compressed(id: u64) -> usize {
    if id % 8 == 3 {
        6000
    } else {
        100
    }
}

/// [`produce`], where message `id`'s body is `body_bytes(id)` long: one of 4096 bytes or more
/// goes compressed (by the codec the seed picks: see [`produce_with`]), and its consumers must
/// inflate it.
pub async fn produce_sized(
    history: History,
    topic: &str,
    ids: Range<u64>,
    body_bytes: impl Fn(u64) -> usize + Sync,
    pause: Range<u64>,
) -> BTreeMap<u64, String> {
    produce_with(history, topic, ids, (&body_bytes, pause), |_| None, |_| None, |_, m| m).await
}

/// Sends as [`produce`] does; `delay(id)` is `Some(..)` when no send may be retried, and then
/// carries message `id`'s delay, if it has one. The producer compresses a body of 4096 bytes
/// or more by the codec the seed picks (seed modulo 3: ZLIB, LZ4, ZSTD), drawing nothing from
/// the simulation's randomness.
async fn produce_with(
    history: History,
    topic: &str,
    ids: Range<u64>,
    (body_bytes, pause): (&(dyn Fn(u64) -> usize + Sync), Range<u64>),
    delay: impl Fn(u64) -> Option<Option<i64>>,
    key: impl Fn(u64) -> Option<String>,
    dress: impl Fn(u64, Message) -> Message,
) -> BTreeMap<u64, String> {
    let once = (ids.start..ids.end).any(|id| delay(id).is_some());
    let delay = |id| delay(id).flatten();
    let config = ProducerConfig {
        namesrv_addrs: vec![NAMESRV.into()],
        retries: if once { 0 } else { ProducerConfig::default().retries },
        compress_type: [Codec::Zlib, Codec::Lz4, Codec::Zstd]
            [(madsim::runtime::Handle::current().seed() % 3) as usize],
        ..ProducerConfig::default()
    };
    let producer = Producer::start(config).expect("a producer with a NameServer starts");
    let mut acked_by = BTreeMap::new();
    for id in ids {
        let body = workload::body(id, body_bytes(id));
        let due_wall = delay(id).map(|delay| crate::history::wall_ms() + delay);
        history.record(Event::Sent {
            id,
            mode: SendMode::Sync,
            body_hash: body_hash(&body),
            due_wall,
        });
        let mut message = dress(id, Message::new(topic, body));
        if let Some(due) = due_wall {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(due as u64);
            message = message.with_delivery_time(at);
        }
        let sent = match key(id) {
            Some(key) => producer.send_by_key(&message, &key).await,
            None => producer.send(&message).await,
        };
        match sent {
            Ok(sent) if sent.status == SendStatus::Ok => {
                let place = Place {
                    broker: sent.queue.broker_name.clone(),
                    topic: sent.queue.topic.clone(),
                    queue: sent.queue.queue_id,
                    offset: sent.queue_offset,
                };
                let parsed = parse_offset_msg_id(&sent.offset_msg_id);
                if let Some((host, _)) = parsed {
                    acked_by.insert(id, host.to_string());
                }
                let stored_at = parsed.map(|(_, at)| at as u64);
                let place = due_wall.is_none().then_some(place);
                history.record(Event::Acked { id, place, stored_at });
            }
            _ => history.record(Event::InDoubt { id }),
        }
        tokio::time::sleep(Duration::from_millis(thread_rng().gen_range(pause.clone()))).await;
    }
    producer.shutdown().await;
    acked_by
}
