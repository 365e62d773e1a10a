//! Produce and consume through any RocketMQ-protocol broker with `petrel-client`, checking
//! that every message comes back whole: sync, async and batch sends, then the lite pull
//! consumer and a push consumer, each in a new group reading from the first offset.
//!
//! ```sh
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p petrel-client --example roundtrip -- [TOPIC] [MESSAGES]
//! ```
//!
//! Prints a `PASS` line per phase and exits 1 at the first phase that fails.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petrel_client::raw::{body, body_id};
use petrel_client::{
    ClientError, ConsumeFrom, ConsumeResult, Message, Producer, ProducerConfig, PullConsumer,
    PullConsumerConfig, PushConsumer, PushConsumerConfig, ReceivedMessage,
};

const TAG: &str = "RoundTrip";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "PetrelRoundTrip".to_owned());
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // Ids carry the run so that messages of earlier runs on the same topic are told apart.
    let first = (run as u64 % 1_000_000) * 1_000_000;
    let ids: BTreeSet<u64> = (first..first + count).collect();
    let outcome = async {
        produce(&topic, &ids).await?;
        pull(&topic, &ids, &format!("roundtrip-pull-{run}")).await?;
        push(&topic, &ids, &format!("roundtrip-push-{run}")).await
    };
    if let Err(e) = outcome.await {
        println!("FAIL {e}");
        std::process::exit(1);
    }
}

fn message(topic: &str, id: u64) -> Message {
    Message::new(topic, body(id, 256)).with_tags(TAG).with_keys([format!("k{id}")])
}

async fn produce(topic: &str, ids: &BTreeSet<u64>) -> Result<(), ClientError> {
    let producer = Producer::start(ProducerConfig::default())?;
    let all: Vec<u64> = ids.iter().copied().collect();
    let (sync, rest) = all.split_at(all.len() / 2);
    let (asynchronous, batch) = rest.split_at(rest.len() / 2);
    for id in sync {
        producer.send(&message(topic, *id)).await?;
    }
    let pending: Vec<_> =
        asynchronous.iter().map(|id| producer.send_async(message(topic, *id))).collect();
    for sent in pending {
        sent.await.map_err(|e| ClientError::Transport(e.to_string()))??;
    }
    for chunk in batch.chunks(64) {
        let messages: Vec<Message> = chunk.iter().map(|id| message(topic, *id)).collect();
        producer.send_batch(&messages).await?;
    }
    producer.shutdown().await;
    println!(
        "PASS produce: {} sync, {} async, {} in batches",
        sync.len(),
        asynchronous.len(),
        batch.len()
    );
    Ok(())
}

/// Checks a received message and returns its id if it belongs to this run.
fn check(message: &ReceivedMessage, ids: &BTreeSet<u64>) -> Result<Option<u64>, ClientError> {
    let Some(id) = body_id(&message.body).filter(|id| ids.contains(id)) else { return Ok(None) };
    let key = format!("k{id}");
    if message.tags() != Some(TAG)
        || message.keys() != [key.as_str()]
        || message.body != body(id, 256)
    {
        return Err(ClientError::Protocol(format!("message {id} came back altered: {message:?}")));
    }
    Ok(Some(id))
}

async fn pull(topic: &str, ids: &BTreeSet<u64>, group: &str) -> Result<(), ClientError> {
    let config = PullConsumerConfig {
        group: group.to_owned(),
        consume_from: ConsumeFrom::First,
        ..PullConsumerConfig::default()
    };
    let consumer = PullConsumer::start(config)?;
    consumer.assign(&consumer.queues(topic).await?).await?;
    let (started, mut got) = (Instant::now(), BTreeSet::new());
    while got.len() < ids.len() && started.elapsed() < WAIT {
        for message in consumer.poll(Duration::from_secs(1)).await? {
            got.extend(check(&message, ids)?);
        }
    }
    consumer.shutdown().await?;
    if got.len() < ids.len() {
        return Err(ClientError::Protocol(format!(
            "pull: {} of {} messages",
            got.len(),
            ids.len()
        )));
    }
    println!(
        "PASS pull consumer: all {} messages, whole, in {:.1} s",
        got.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn push(topic: &str, ids: &BTreeSet<u64>, group: &str) -> Result<(), ClientError> {
    let got: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let bad: Arc<Mutex<Option<ClientError>>> = Arc::default();
    let config = PushConsumerConfig {
        group: group.to_owned(),
        subscriptions: [(topic.to_owned(), TAG.into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        ..PushConsumerConfig::default()
    };
    let (seen, wrong, wanted) = (got.clone(), bad.clone(), ids.clone());
    let consumer = PushConsumer::start(config, move |message: &ReceivedMessage| {
        match check(message, &wanted) {
            Ok(id) => seen.lock().unwrap_or_else(|p| p.into_inner()).extend(id),
            Err(e) => *wrong.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
        }
        ConsumeResult::Success
    })?;
    let started = Instant::now();
    let count = || got.lock().unwrap_or_else(|p| p.into_inner()).len();
    while count() < ids.len() && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.shutdown().await;
    if let Some(e) = bad.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    if count() < ids.len() {
        return Err(ClientError::Protocol(format!("push: {} of {} messages", count(), ids.len())));
    }
    println!(
        "PASS push consumer: all {} messages, whole, in {:.1} s",
        count(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
