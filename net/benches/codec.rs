//! Frame encode and decode speed: a SEND_MESSAGE_V2 request with a 1 KiB body, and a route
//! response. Run with `cargo bench -p petrel-net --bench codec`.

use std::collections::BTreeMap;

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use petrel_core::model::{BrokerData, QueueData, TopicRouteData};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::{decode_frame, RemotingCommand, SerializeType, FRAME_BYTES_MAX_DEFAULT};
use petrel_net::headers::broker::SendMessageRequestHeaderV2;

fn send_request(serialize_type: SerializeType) -> RemotingCommand {
    let header = SendMessageRequestHeaderV2 {
        a: "please_rename_unique_group_name".into(),
        b: "BenchmarkTest".into(),
        c: "TBW102".into(),
        d: 4,
        e: 3,
        f: 0,
        g: 1_764_000_000_000,
        h: 0,
        i: Some("KEYS\u{1}key-1\u{2}TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}7F0000010001B4AAC6DC3A4B4D6A0000\u{2}WAIT\u{1}true\u{2}".into()),
        j: Some(0),
        k: Some(false),
        l: None,
        m: Some(false),
        n: Some("broker-a".into()),
    };
    let mut command = RemotingCommand::request(request::SEND_MESSAGE_V2)
        .with_header(&header)
        .with_body(vec![b'x'; 1024]);
    command.serialize_type = serialize_type;
    command
}

fn route_response() -> RemotingCommand {
    let mut route = TopicRouteData::default();
    for b in 0..2 {
        let name = format!("broker-{b}");
        route.broker_datas.push(BrokerData {
            broker_addrs: BTreeMap::from([
                (0, format!("10.0.0.{b}:10911")),
                (1, format!("10.0.1.{b}:10911")),
            ]),
            broker_name: name.clone(),
            cluster: "DefaultCluster".into(),
            ..BrokerData::default()
        });
        route.queue_datas.push(QueueData {
            broker_name: name,
            perm: 6,
            read_queue_nums: 8,
            write_queue_nums: 8,
            topic_sys_flag: 0,
        });
    }
    RemotingCommand::response(response::SUCCESS, None)
        .with_body(to_json(&route, JsonStyle::Fastjson))
}

fn bench(c: &mut Criterion) {
    let cases = [
        ("send_v2_1k_json", send_request(SerializeType::Json)),
        ("send_v2_1k_binary", send_request(SerializeType::RocketMq)),
        ("route_response_json", route_response()),
    ];
    for (name, command) in cases {
        let frame = command.encode_frame().expect("bench command encodes");
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function("encode", |b| {
            let mut dst = BytesMut::with_capacity(4096);
            b.iter(|| {
                dst.clear();
                black_box(&command).encode_head(&mut dst).expect("encodes");
            })
        });
        group.bench_function("decode", |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&frame[..]);
                black_box(decode_frame(&mut buf, FRAME_BYTES_MAX_DEFAULT).expect("decodes"))
            })
        });
        group.finish();
    }
    let route: TopicRouteData =
        petrel_net::codec::json::from_json(&route_response().body).expect("parses");
    c.bench_function("route_body_fastjson_encode", |b| {
        b.iter(|| to_json(black_box(&route), JsonStyle::Fastjson))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
