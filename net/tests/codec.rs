//! The codec against RocketMQ's own bytes (reference §1, also in docs/protocol.md), and
//! property tests of both header encodings.
#![allow(clippy::unwrap_used)] // Tests may unwrap: a panic is the failure report.

use bytes::{Bytes, BytesMut};
use petrel_net::codec::codes::{request, LanguageCode};
use petrel_net::codec::header::HeaderError;
use petrel_net::codec::{decode_frame, ExtFields, FrameError, RemotingCommand, SerializeType};
use petrel_net::headers::namesrv::GetRouteInfoRequestHeader;
use proptest::prelude::*;

/// GET_ROUTEINFO_BY_TOPIC for topic "T" as Java RocketMQ 5.3.3 writes it with a JSON header.
const JSON_HEADER: &str = r#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;

/// The same request with RocketMQ's binary header.
const BINARY_HEADER: [u8; 33] = [
    0x00, 0x69, 0x00, 0x01, 0xdf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x05, 0x74, 0x6f, 0x70, 0x69, 0x63, 0x00, 0x00, 0x00, 0x01,
    0x54,
];

fn route_request(serialize_type: SerializeType) -> RemotingCommand {
    let header = GetRouteInfoRequestHeader { topic: "T".into(), accept_standard_json_only: None };
    let mut command =
        RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC).with_header(&header);
    command.language = LanguageCode::Java;
    command.opaque = 1;
    command.serialize_type = serialize_type;
    command
}

#[test]
fn json_vector_encodes_byte_for_byte() {
    assert_eq!(JSON_HEADER.len(), 123);
    let frame = route_request(SerializeType::Json).encode_frame().unwrap();
    assert_eq!(&frame[..8], &[0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x00, 0x7b]);
    assert_eq!(&frame[8..], JSON_HEADER.as_bytes());
}

#[test]
fn json_vector_decodes() {
    let mut buf = BytesMut::from(&[0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x00, 0x7b][..]);
    buf.extend_from_slice(JSON_HEADER.as_bytes());
    let command = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
    assert_eq!(command, route_request(SerializeType::Json));
    let header: GetRouteInfoRequestHeader = command.header().unwrap();
    assert_eq!(header.topic, "T");
    assert!(buf.is_empty());
}

#[test]
fn binary_vector_encodes_and_decodes_byte_for_byte() {
    let frame = route_request(SerializeType::RocketMq).encode_frame().unwrap();
    assert_eq!(&frame[..8], &[0x00, 0x00, 0x00, 0x25, 0x01, 0x00, 0x00, 0x21]);
    assert_eq!(&frame[8..], &BINARY_HEADER);
    let mut buf = BytesMut::from(&frame[..]);
    let command = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
    assert_eq!(command, route_request(SerializeType::RocketMq));
}

#[test]
fn real_client_headers_parse() {
    // What the C++ client 1.x and ali-ons send first (reference §14).
    let headers = [
        r#"{"code":105,"extFields":{"AccessKey":"","OnsChannel":"ALIYUN","Signature":"x","topic":"TopicTest"},"flag":0,"language":"CPP","opaque":0,"remark":"","version":63}"#,
        r#"{"code":105,"language":"JAVA","opaque":1,"flag":0,"version":121,"extFields":{"topic":"TopicTest"}}"#,
        r#"{"code":105,"language":"RUST","version":474,"opaque":0,"flag":0,"remark":null,"extFields":{"topic":"TopicTest"},"serializeTypeCurrentRPC":"JSON"}"#,
        r#"{"code":105,"language":"NODE_JS","version":1,"opaque":7,"flag":0,"extFields":{"topic":"TopicTest","queueId":3,"flagged":true,"gone":null}}"#,
    ];
    for text in headers {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&((4 + text.len()) as u32).to_be_bytes());
        buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
        buf.extend_from_slice(text.as_bytes());
        let command = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
        let header: GetRouteInfoRequestHeader = command.header().unwrap();
        assert_eq!(header.topic, "TopicTest", "{text}");
    }
}

#[test]
fn numbers_and_booleans_in_ext_fields_become_strings() {
    let text = r#"{"code":11,"extFields":{"queueId":3,"b":true,"gone":null}}"#;
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&((4 + text.len()) as u32).to_be_bytes());
    buf.extend_from_slice(&(text.len() as u32).to_be_bytes());
    buf.extend_from_slice(text.as_bytes());
    let command = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
    let expected: ExtFields = [("b", "true"), ("queueId", "3")].into_iter().collect();
    assert_eq!(command.ext_fields, expected);
}

#[test]
fn incomplete_is_not_an_error() {
    let frame = route_request(SerializeType::Json).encode_frame().unwrap();
    for cut in 0..frame.len() {
        let mut buf = BytesMut::from(&frame[..cut]);
        assert_eq!(decode_frame(&mut buf, 1 << 20), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut, "an incomplete frame is left in the buffer");
    }
}

#[test]
fn oversized_frame_is_refused_before_any_allocation() {
    let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0][..]);
    let before = buf.capacity();
    assert_eq!(
        decode_frame(&mut buf, 1 << 20),
        Err(FrameError::OverLimit { len: 0x7fff_ffff, max: 1 << 20 })
    );
    assert_eq!(buf.capacity(), before);
}

#[test]
fn malformed_frames_are_errors() {
    let cases: [(&[u8], &str); 5] = [
        (&[0xff, 0xff, 0xff, 0xff], "negative length"),
        (&[0, 0, 0, 2, 0, 0], "length shorter than the header word"),
        (&[0, 0, 0, 6, 0, 0, 0, 9, 0, 0], "header longer than frame"),
        (&[0, 0, 0, 6, 7, 0, 0, 2, b'{', b'}'], "unknown serialize type"),
        (&[0, 0, 0, 6, 0, 0, 0, 2, b'[', b']'], "JSON header that is not an object"),
    ];
    for (bytes, why) in cases {
        let mut buf = BytesMut::from(bytes);
        assert!(decode_frame(&mut buf, 1 << 20).is_err(), "{why}");
    }
}

#[test]
fn binary_header_lengths_are_bounded() {
    // remark length says 1 GiB inside a 40-byte header.
    let mut header = BINARY_HEADER.to_vec();
    header[13..17].copy_from_slice(&0x4000_0000u32.to_be_bytes());
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
    buf.extend_from_slice(&(0x0100_0000u32 | header.len() as u32).to_be_bytes());
    buf.extend_from_slice(&header);
    assert!(matches!(decode_frame(&mut buf, 1 << 20), Err(FrameError::BinaryHeader { .. })));
}

#[test]
fn missing_and_invalid_fields_name_the_field() {
    let command = RemotingCommand::request(request::GET_ROUTEINFO_BY_TOPIC);
    assert_eq!(
        command.header::<GetRouteInfoRequestHeader>(),
        Err(HeaderError::Missing { field: "topic" })
    );
    let mut command = route_request(SerializeType::Json);
    command.ext_fields.insert("queueId", "x");
    let err = command.header::<petrel_net::headers::broker::TopicQueueRequestHeader>().unwrap_err();
    assert!(err.to_string().contains("queueId"), "{err}");
}

fn arb_command() -> impl Strategy<Value = RemotingCommand> {
    (
        any::<i16>(),
        0u8..13,
        any::<i16>(),
        any::<i32>(),
        0i32..4,
        proptest::option::of("[ -~é中]{1,20}"),
        proptest::collection::btree_map("[a-zA-Z_]{1,12}", "[ -~é]{0,24}", 0..8),
        proptest::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(|(code, lang, version, opaque, flag, remark, ext, body, binary)| {
            RemotingCommand {
                code: i32::from(code),
                language: LanguageCode::from_code(lang),
                version: i32::from(version),
                opaque,
                flag,
                remark,
                ext_fields: ext.into_iter().collect(),
                body: Bytes::from(body),
                body_parts: Vec::new(),
                serialize_type: if binary { SerializeType::RocketMq } else { SerializeType::Json },
            }
        })
}

proptest! {
    #[test]
    fn round_trip_both_serialize_types(command in arb_command()) {
        let frame = command.encode_frame().unwrap();
        let mut buf = BytesMut::from(&frame[..]);
        let back = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
        prop_assert_eq!(back, command);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn frames_split_anywhere_decode_the_same(commands in proptest::collection::vec(arb_command(), 1..5), cut in 1usize..64) {
        let mut stream = Vec::new();
        for command in &commands {
            stream.extend_from_slice(&command.encode_frame().unwrap());
        }
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in stream.chunks(cut) {
            buf.extend_from_slice(piece);
            while let Some(command) = decode_frame(&mut buf, 1 << 20).unwrap() {
                decoded.push(command);
            }
        }
        prop_assert_eq!(decoded, commands);
    }
}

/// A body given as zero-copy parts encodes to exactly the frame of the joined body.
#[test]
fn body_parts_encode_like_one_body() {
    let parts = vec![Bytes::from_static(b"first record"), Bytes::new(), Bytes::from_static(b"2nd")];
    let joined =
        RemotingCommand::response(0, None).with_body(Bytes::from_static(b"first record2nd"));
    let split = RemotingCommand::response(0, None).with_body_parts(parts);
    assert_eq!(split.body_len(), 15);
    assert_eq!(split.body_bytes(), joined.body);
    assert_eq!(split.encode_frame().unwrap(), joined.encode_frame().unwrap());
}
