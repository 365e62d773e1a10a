//! Compressed bodies through an in-process NameServer and broker: `petrel-client`'s producer
//! compresses a body of 4096 bytes or more and flags it as RocketMQ 5's producers do (SYSFLAG
//! COMPRESSED | its type: ZLIB unless set to LZ4 or ZSTD), the broker stores it as sent, and
//! every consumer path hands the application the body that was sent, also for a body another
//! client deflated under the flag alone (RocketMQ's C++ client and Java clients before 5) and
//! for the LZ4 and Zstandard frames of a Java 5 producer set to those types.
#![cfg(not(madsim))]
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{namesrv, producer, Running};
use petrel_client::{
    Codec, ConsumeFrom, Message, ProducerConfig, PullConsumer, PullConsumerConfig, ReceivedMessage,
};
use petrel_core::compression::{self, TYPE_ZLIB};
use petrel_core::record::{scan_records, sys_flag};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    PullMessageRequestHeader, SendMessageRequestHeader, SendMessageRequestHeaderV2,
};
use petrel_net::transport::{ClientConfig, RemotingClient};

const TOPIC: &str = "Squeezed";
const WAIT: Duration = Duration::from_secs(3);

/// `zlib.compress(TEXT, 5)`: what RocketMQ's C++ producer stores for this body.
const TEXT: &[u8] = b"RocketMQ compresses bodies of 4096 bytes or more with zlib at level 5. \
RocketMQ compresses bodies of 4096 bytes or more with zlib at level 5. ";
const TEXT_ZLIB_LEVEL_5: &str = "785e0bca4fce4e2df10d5448cecf2d284a2d2e4e2d5648ca4fc90452f9690a\
260696660a499525205e91426e7e51aa427966498642554e6692426289424e6a596a8e82a99e4210758c0100ee7f3101";

/// The same text as a Java 5 producer set to LZ4 or ZSTD stores it, by the reference tools
/// with lz4-java's and zstd-jni's settings: `lz4 -B7 --no-frame-crc` and, from standard input,
/// `zstd -5 --no-check`.
const TEXT_LZ4: &str = "04224d1860408252000000f017526f636b65744d5120636f6d707265737365732\
0626f64696573206f662034303936206279740e00ff0e72206d6f72652077697468207a6c6962206174206c6576656c\
20352e2047002f506c20352e2000000000";
const TEXT_ZSTD: &str = "28b52ffd00585d02007244101980c5e9118c61b773a3c5c0bf60d76a85d0800631d\
c0ddaa1010fc6ab82ae9319a955f84935b8edd8edc626017d2044b173635573682c625b805d5a49b280744b01000729688802";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

fn body(len: usize) -> Vec<u8> {
    b"petrel deflates this line; ".iter().copied().cycle().take(len).collect()
}

/// SEND_MESSAGE_V2 of a body another client compressed, flagged `flags`, with key `key`.
fn foreign_send(flags: i32, key: &str, stored: Vec<u8>) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "CppProducers".into(),
        topic: TOPIC.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        sys_flag: flags,
        born_timestamp: 1,
        properties: Some(format!("KEYS\u{1}{key}\u{2}")),
        ..SendMessageRequestHeader::default()
    };
    RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_header(&SendMessageRequestHeaderV2::from(header))
        .with_body(stored)
}

/// Every record of queue 0 as the broker stores it: (key, SYSFLAG, stored body).
async fn stored(client: &RemotingClient, broker: &str) -> Vec<(String, i32, Vec<u8>)> {
    let header = PullMessageRequestHeader {
        consumer_group: "Inspector".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: 0,
        max_msg_nums: 32,
        sys_flag: 0x2 | 0x4,
        commit_offset: 0,
        suspend_timeout_millis: 0,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let pull = RemotingCommand::request(request::PULL_MESSAGE).with_header(&header);
    let answer = client.invoke(broker, pull, WAIT).await.unwrap();
    assert_eq!(answer.code, response::SUCCESS, "{:?}", answer.remark);
    let body = answer.body_bytes();
    scan_records(&body)
        .map(|record| {
            let record = record.unwrap();
            let key = String::from_utf8_lossy(record.property(b"KEYS").unwrap()).into_owned();
            (key, record.sys_flag, record.body.to_vec())
        })
        .collect()
}

/// A lite pull consumer of every queue of the topic, from the first offset.
async fn reader(namesrv: &str) -> PullConsumer {
    let config = PullConsumerConfig {
        namesrv_addrs: vec![namesrv.to_owned()],
        group: "Readers".to_owned(),
        consume_from: ConsumeFrom::First,
        ..PullConsumerConfig::default()
    };
    let consumer = PullConsumer::start(config).unwrap();
    consumer.assign(&consumer.queues(TOPIC).await.unwrap()).await.unwrap();
    consumer
}

async fn receive_all(namesrv: &str, count: usize) -> BTreeMap<String, ReceivedMessage> {
    let consumer = reader(namesrv).await;
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < count && Instant::now() < deadline {
        for message in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            got.insert(message.keys()[0].to_owned(), message);
        }
    }
    consumer.shutdown().await.unwrap();
    got
}

#[tokio::test]
async fn bodies_compressed_by_any_producer_reach_the_consumer_as_sent() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(petrel_client::raw::create_topic(&client, &broker.addr, TOPIC, 1).await);

    // petrel-client: under 4096 bytes as is, from 4096 deflated.
    let producer = producer(&ns);
    for (key, len) in [("small", 4095), ("threshold", 4096), ("large", 200_000)] {
        producer.send(&Message::new(TOPIC, body(len)).with_keys([key])).await.unwrap();
    }
    producer.shutdown().await;
    // petrel-client set to the other types.
    for codec in [Codec::Lz4, Codec::Zstd] {
        let config = ProducerConfig {
            namesrv_addrs: vec![ns.clone()],
            compress_type: codec,
            ..ProducerConfig::default()
        };
        let producer = petrel_client::Producer::start(config).unwrap();
        let message = Message::new(TOPIC, body(200_000)).with_keys([codec.name()]);
        producer.send(&message).await.unwrap();
        producer.shutdown().await;
    }
    // Another client's deflated body under the COMPRESSED flag alone (the C++ client, Java
    // before 5), under RocketMQ 5's flag with the ZLIB type, and Java 5's LZ4 and ZSTD frames.
    let foreign = [
        (sys_flag::COMPRESSED, "cpp", TEXT_ZLIB_LEVEL_5),
        (sys_flag::COMPRESSED | TYPE_ZLIB, "java5", TEXT_ZLIB_LEVEL_5),
        (sys_flag::COMPRESSED | 1 << 8, "java5-lz4", TEXT_LZ4),
        (sys_flag::COMPRESSED | 2 << 8, "java5-zstd", TEXT_ZSTD),
    ];
    for (flags, key, stored) in foreign {
        let sent = client.invoke(&broker.addr, foreign_send(flags, key, hex(stored)), WAIT);
        assert_eq!(sent.await.unwrap().code, response::SUCCESS);
    }

    // The broker stores each body as its producer sent it.
    let records: BTreeMap<String, (i32, Vec<u8>)> = stored(&client, &broker.addr)
        .await
        .into_iter()
        .map(|(key, flags, body)| (key, (flags, body)))
        .collect();
    assert_eq!(records["small"], (0, body(4095)), "a body under 4096 bytes goes as it is");
    for (key, len) in [("threshold", 4096), ("large", 200_000)] {
        let (flags, stored) = &records[key];
        assert_eq!(
            flags & (sys_flag::COMPRESSED | compression::TYPE_MASK),
            sys_flag::COMPRESSED | TYPE_ZLIB
        );
        assert!(stored.len() < len / 4, "{key}: {} bytes stored", stored.len());
        assert_eq!(stored[0], 0x78, "{key}: a zlib stream");
    }
    for (codec, magic) in [(Codec::Lz4, 0x184d_2204u32), (Codec::Zstd, 0xfd2f_b528)] {
        let (flags, stored) = &records[codec.name()];
        assert_eq!(flags & (sys_flag::COMPRESSED | compression::TYPE_MASK), codec.flags());
        assert!(stored.len() < 200_000 / 4, "{codec:?}: {} bytes stored", stored.len());
        assert_eq!(stored[..4], magic.to_le_bytes(), "{codec:?}: its frame's magic number");
    }
    assert_eq!(records["cpp"], (sys_flag::COMPRESSED, hex(TEXT_ZLIB_LEVEL_5)));
    assert_eq!(records["java5-zstd"], (sys_flag::COMPRESSED | 2 << 8, hex(TEXT_ZSTD)));

    // The consumer hands over what was sent.
    let got = receive_all(&ns, 9).await;
    assert_eq!(got.len(), 9, "{:?}", got.keys().collect::<Vec<_>>());
    assert_eq!(got["small"].body, body(4095));
    assert_eq!(got["threshold"].body, body(4096));
    assert_eq!(got["large"].body, body(200_000));
    assert_eq!(got["cpp"].body, TEXT);
    assert_eq!(got["java5"].body, TEXT);
    assert_eq!(got["LZ4"].body, body(200_000));
    assert_eq!(got["ZSTD"].body, body(200_000));
    assert_eq!(got["java5-lz4"].body, TEXT);
    assert_eq!(got["java5-zstd"].body, TEXT);

    broker.stop().await;
    namesrv_handle.shutdown().await;
}

#[tokio::test]
async fn a_body_that_does_not_inflate_is_an_error_that_names_it() {
    let (namesrv_handle, ns) = namesrv().await;
    let broker = Running::start(Some(&ns), |_| {}).await;
    let client = RemotingClient::new(ClientConfig::default(), None);
    assert!(petrel_client::raw::create_topic(&client, &broker.addr, TOPIC, 1).await);
    let lz4 = sys_flag::COMPRESSED | (1 << 8);
    let sent =
        client.invoke(&broker.addr, foreign_send(lz4, "lz4", b"no LZ4 frame".to_vec()), WAIT);
    assert_eq!(sent.await.unwrap().code, response::SUCCESS);

    let consumer = reader(&ns).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let error = loop {
        match consumer.poll(Duration::from_millis(200)).await {
            Err(e) => break e.to_string(),
            Ok(messages) => assert!(messages.is_empty(), "the LZ4 body was handed over as it is"),
        }
        assert!(Instant::now() < deadline, "no poll reported the body");
    };
    assert!(error.contains("LZ4") && error.contains("offset 0"), "{error}");
    consumer.shutdown().await.unwrap();
    broker.stop().await;
    namesrv_handle.shutdown().await;
}
