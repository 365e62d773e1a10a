//! Large message bodies between petrel-client and another RocketMQ client: `bodies send TOPIC`
//! sends the bodies below with petrel-client's producer (which deflates those of 4096 bytes
//! and more, as RocketMQ's producers do); `bodies receive TOPIC` reads them back with the lite
//! pull consumer and checks each whole. `tests/clients/run.sh` pairs each with RocketMQ's C++
//! client (PyPI `rocketmq`, whose producer also deflates from 4096 bytes), making the bodies
//! at one end and checking them at the other; `tests/clients/python_client.py` writes the same
//! bodies (`big_body`).
//!
//! ```sh
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p petrel-client --example bodies -- send|receive TOPIC
//! ```
//!
//! Prints a `PASS` line and exits 0, or a `FAIL` line and exits 1.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use petrel_client::{
    ClientError, ConsumeFrom, Message, Producer, ProducerConfig, PullConsumer, PullConsumerConfig,
};

/// How many bodies: the first under the 4096 bytes a producer starts deflating at, the rest
/// over it, up to 20 KiB.
const BODIES: usize = 12;
const WAIT: Duration = Duration::from_secs(60);

/// Body `i`: its own line repeated to `4000 + 1500 i` bytes.
fn big_body(i: usize) -> Vec<u8> {
    let unit = format!("petrel compressed body {i}; ");
    unit.bytes().cycle().take(4000 + 1500 * i).collect()
}

fn key(i: usize) -> String {
    format!("big-{i}")
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mode, topic) = match (args.next(), args.next()) {
        (Some(mode), Some(topic)) => (mode, topic),
        _ => {
            println!("FAIL usage: bodies send|receive TOPIC");
            std::process::exit(2);
        }
    };
    let outcome = match mode.as_str() {
        "send" => send(&topic).await,
        "receive" => receive(&topic).await,
        _ => Err(ClientError::Config(format!("unknown mode {mode}: send or receive"))),
    };
    match outcome {
        Ok(done) => println!("PASS {mode}: {done}"),
        Err(e) => {
            println!("FAIL {mode}: {e}");
            std::process::exit(1);
        }
    }
}

async fn send(topic: &str) -> Result<String, ClientError> {
    let producer = Producer::start(ProducerConfig::default())?;
    for i in 0..BODIES {
        producer.send(&Message::new(topic, big_body(i)).with_keys([key(i)])).await?;
    }
    producer.shutdown().await;
    Ok(format!("{BODIES} bodies of 4000 to {} bytes", big_body(BODIES - 1).len()))
}

async fn receive(topic: &str) -> Result<String, ClientError> {
    let group = format!("bodies-{}", std::process::id());
    let config = PullConsumerConfig {
        group,
        consume_from: ConsumeFrom::First,
        ..PullConsumerConfig::default()
    };
    let consumer = PullConsumer::start(config)?;
    consumer.assign(&consumer.queues(topic).await?).await?;
    let wanted: BTreeMap<String, Vec<u8>> = (0..BODIES).map(|i| (key(i), big_body(i))).collect();
    let (started, mut got) = (Instant::now(), BTreeMap::new());
    while got.len() < BODIES && started.elapsed() < WAIT {
        for message in consumer.poll(Duration::from_secs(1)).await? {
            let keys = message.keys().iter().map(|k| k.to_string()).collect::<Vec<_>>();
            let Some(want) = keys.first().and_then(|k| wanted.get(k)) else { continue };
            if message.body[..] != want[..] {
                let head = String::from_utf8_lossy(&message.body[..message.body.len().min(48)]);
                return Err(ClientError::Protocol(format!(
                    "{} came back as {} bytes beginning {head:?}, not the {} sent",
                    keys[0],
                    message.body.len(),
                    want.len()
                )));
            }
            got.insert(keys[0].clone(), message.body.len());
        }
    }
    consumer.shutdown().await?;
    if got.len() < BODIES {
        return Err(ClientError::Protocol(format!("{} of {BODIES} bodies arrived", got.len())));
    }
    Ok(format!("all {BODIES} bodies whole, {} bytes in all", got.values().sum::<usize>()))
}
