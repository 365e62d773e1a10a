//! The body of the `request_bodies` fuzz target, kept here so a normal test replays its corpus:
//! the bodies and header values a broker decodes from a client, each from arbitrary bytes. The
//! first byte picks what the rest is read as. Nothing may panic, and what decodes must encode
//! back to what was decoded.

use petrel_core::broker::batch::{decode_batch, encode_batch};
use petrel_core::broker::clients::HeartbeatData;
use petrel_core::broker::filter::{MessageFilter, TagFilter};
use petrel_core::broker::schedule::{redirect, restore, DelayLevels};
use petrel_core::record::{properties, property};

use super::json::from_json;

pub fn fuzz_request_bodies(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 5 {
        0 => batch(rest),
        1 => heartbeat(rest),
        2 => subscription(rest),
        3 => delay_properties(rest),
        _ => levels(rest),
    }
}

/// A SEND_BATCH_MESSAGE body: decodes or is refused; what decodes accounts for every byte and
/// re-encodes to the same messages (magic and body CRC, which the broker ignores, become 0).
fn batch(body: &[u8]) {
    if let Ok(items) = decode_batch(body, 64) {
        let again = encode_batch(&items);
        assert_eq!(again.len(), body.len(), "a decoded batch accounts for every byte");
        assert_eq!(decode_batch(&again, 64).as_deref(), Ok(&items[..]));
    }
}

/// A HEART_BEAT body, and the filters of the subscriptions it carries.
fn heartbeat(body: &[u8]) {
    let Ok(data) = from_json::<HeartbeatData>(body) else { return };
    for consumer in &data.consumer_data_set {
        for sub in &consumer.subscription_data_set {
            if let Ok(filter) =
                MessageFilter::parse(sub.expression_type.as_deref(), &sub.sub_string)
            {
                filter.by_code(0);
                filter.by_properties(b"a\x011\x02");
            }
        }
    }
}

/// A subscription expression as a pull request carries it.
fn subscription(text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    let (kind, expression) = text.split_once('\n').unwrap_or(("TAG", &text));
    if let Ok(MessageFilter::Tag(TagFilter::Codes(codes))) =
        MessageFilter::parse(Some(kind), expression)
    {
        assert!(!codes.is_empty(), "a tag filter selects at least one tag");
    }
    let _ = MessageFilter::parse(None, expression);
}

/// A producer's properties sent with a delay: redirected to the schedule topic and restored,
/// every other property comes back unchanged.
fn delay_properties(encoded: &[u8]) {
    let stored = redirect(encoded, "RealTopic", 3, 2);
    let (topic, queue, restored) = restore(&stored).expect("a redirected message has its topic");
    assert_eq!((topic.as_str(), queue), ("RealTopic", 3));
    assert_eq!(property(&restored, b"DELAY"), None);
    let kept = |list: &[u8]| -> Vec<(Vec<u8>, Vec<u8>)> {
        properties(list)
            .filter(|(name, _)| !matches!(*name, b"DELAY" | b"REAL_TOPIC" | b"REAL_QID"))
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    };
    assert_eq!(kept(&restored), kept(encoded), "restore keeps the producer's properties");
}

/// A `messageDelayLevel` value.
fn levels(text: &[u8]) {
    if let Ok(levels) = DelayLevels::parse(&String::from_utf8_lossy(text)) {
        for level in [0, 1, levels.count(), levels.count() + 1, i32::MAX] {
            let _ = levels.due_time(level, i64::MAX);
            let _ = levels.clamp(level);
        }
    }
}
