//! A push consumer that prints each message its listener is handed, until it is killed: a
//! group to watch by hand, and a member for the console's browser test to hand a message to.
//!
//! ```sh
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run -p petrel-client --example listen -- TOPIC GROUP
//! ```
//!
//! Prints `member CLIENT_ID` once it has joined, then `TOPIC QUEUE:OFFSET BODY` per message.

use std::io::Write;

use petrel_client::{
    ConsumeFrom, ConsumeResult, PushConsumer, PushConsumerConfig, ReceivedMessage,
};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(topic), Some(group)) = (args.next(), args.next()) else {
        eprintln!("usage: listen TOPIC GROUP (the NameServer from NAMESRV_ADDR)");
        std::process::exit(2);
    };
    let config = PushConsumerConfig {
        group,
        subscriptions: [(topic, "*".into())].into_iter().collect(),
        consume_from: ConsumeFrom::First,
        ..PushConsumerConfig::default()
    };
    let print = |message: &ReceivedMessage| {
        let body = String::from_utf8_lossy(&message.body);
        let (queue, offset) = (message.queue.queue_id, message.queue_offset);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{} {queue}:{offset} {body}", message.topic);
        let _ = out.flush();
        ConsumeResult::Success
    };
    let consumer = match PushConsumer::start(config, print) {
        Ok(consumer) => consumer,
        Err(e) => {
            eprintln!("cannot start the consumer: {e}");
            std::process::exit(1);
        }
    };
    println!("member {}", consumer.client_id());
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
}
