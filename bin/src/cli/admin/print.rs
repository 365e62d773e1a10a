//! printMsg and consumeMessage: a topic's messages read straight from its queues by pulls
//! that commit nothing (mqadmin's PrintMessageSubCommand and ConsumeMessageCommand), each
//! printed as mqadmin prints it: `MSGID: id MessageExt [...] BODY: text`.

use std::borrow::Cow;
use std::fmt::Write;

use clap::Args;
use petrel_core::admin::MessageQueue;
use petrel_core::compression::{self, BodyError};
use petrel_core::record::{offset_msg_id, properties, sys_flag, Record};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    OffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    TopicQueueRequestHeader,
};
use serde_json::json;

use super::message::{decoded, msg_id, split, TOOLS_GROUP};
use super::{admin_time, Admin, Common, Output};

/// Messages one pull asks for, as mqadmin's printMsg.
const BATCH: i32 = 32;

/// A queue to read, with the address of its master.
struct Queue {
    queue: MessageQueue,
    addr: String,
}

impl Queue {
    /// mqadmin's `MessageQueue.toString`.
    fn shown(&self) -> String {
        let q = &self.queue;
        format!(
            "MessageQueue [topic={}, brokerName={}, queueId={}]",
            q.topic, q.broker_name, q.queue_id
        )
    }
}

/// What one pull found.
enum Pulled {
    Found { next: i64, records: Vec<Vec<u8>>, min: i64, max: i64 },
    NoMatch { next: i64 },
    Finished { next: i64, status: &'static str },
}

/// The readable queues of `topic`, by broker name and queue id, each with its master.
async fn queues(admin: &Admin, topic: &str) -> Result<Vec<Queue>, String> {
    let route = admin.route(topic).await?;
    let mut queues = Vec::new();
    for data in &route.queue_datas {
        let Some(broker) = route.broker_datas.iter().find(|b| b.broker_name == data.broker_name)
        else {
            continue;
        };
        let Some(addr) = broker.broker_addrs.get(&petrel_core::model::MASTER_ID) else { continue };
        for queue_id in 0..data.read_queue_nums {
            let queue = MessageQueue {
                broker_name: data.broker_name.clone(),
                queue_id,
                topic: topic.into(),
            };
            queues.push(Queue { queue, addr: addr.clone() });
        }
    }
    queues.sort_by(|a, b| {
        (&a.queue.broker_name, a.queue.queue_id).cmp(&(&b.queue.broker_name, b.queue.queue_id))
    });
    Ok(queues)
}

/// GET_MIN_OFFSET or GET_MAX_OFFSET of a queue.
async fn bound(admin: &Admin, queue: &Queue, code: i32) -> Result<i64, String> {
    let header = TopicQueueRequestHeader {
        topic: queue.queue.topic.clone(),
        queue_id: queue.queue.queue_id,
    };
    let answer =
        admin.call(&queue.addr, RemotingCommand::request(code).with_header(&header)).await?;
    let offset: OffsetResponseHeader =
        answer.header().map_err(|e| format!("{} answered no offset: {e}", queue.addr))?;
    Ok(offset.offset)
}

/// The queue's first offset stored at or after `millis`.
async fn search(admin: &Admin, queue: &Queue, millis: i64) -> Result<i64, String> {
    let q = &queue.queue;
    admin.search_offset(&queue.addr, &q.topic, q.queue_id, millis).await
}

/// The queue's range: its first and end offsets, or where the times fall.
async fn range(
    admin: &Admin,
    queue: &Queue,
    begin: Option<i64>,
    end: Option<i64>,
) -> Result<(i64, i64), String> {
    let min = match begin {
        Some(millis) => search(admin, queue, millis).await?,
        None => bound(admin, queue, request::GET_MIN_OFFSET).await?,
    };
    let max = match end {
        Some(millis) => search(admin, queue, millis).await?,
        None => bound(admin, queue, request::GET_MAX_OFFSET).await?,
    };
    Ok((min, max))
}

/// One pull of up to `count` messages from `offset`, as `group`, committing nothing.
async fn pull(
    admin: &Admin,
    queue: &Queue,
    (group, expression): (&str, &str),
    offset: i64,
    count: i32,
) -> Result<Pulled, String> {
    let header = PullMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: queue.queue.topic.clone(),
        queue_id: queue.queue.queue_id,
        queue_offset: offset,
        max_msg_nums: count,
        // The subscription travels with the pull (PullSysFlag's subscription bit).
        sys_flag: 0x4,
        commit_offset: -1,
        suspend_timeout_millis: 0,
        subscription: Some(expression.to_owned()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let request = RemotingCommand::request(request::PULL_MESSAGE).with_header(&header);
    let answer = admin
        .client
        .invoke(&queue.addr, request, super::TIMEOUT)
        .await
        .map_err(|e| format!("PULL_MESSAGE to {} failed: {e}", queue.addr))?;
    let code = answer.code;
    let refused = || {
        let remark = answer.remark.clone().unwrap_or_default();
        format!("{} refused PULL_MESSAGE: {remark} ({code})", queue.addr)
    };
    let head: PullMessageResponseHeader = answer.header().map_err(|_| refused())?;
    let next = head.next_begin_offset;
    Ok(match code {
        response::SUCCESS => Pulled::Found {
            next,
            records: split(&answer.body),
            min: head.min_offset,
            max: head.max_offset,
        },
        response::PULL_RETRY_IMMEDIATELY => Pulled::NoMatch { next },
        response::PULL_NOT_FOUND => Pulled::Finished { next, status: "NO_NEW_MSG" },
        response::PULL_OFFSET_MOVED => Pulled::Finished { next, status: "OFFSET_ILLEGAL" },
        _ => return Err(refused()),
    })
}

/// A message as mqadmin prints a pulled one: `MSGID: id MessageExt [...] BODY: text`, the
/// properties with the pull's MIN_OFFSET and MAX_OFFSET added as the Java client adds them,
/// sorted by name (Java prints a HashMap's order).
fn message_line(record: &Record<'_>, broker: &str, (min, max): (i64, i64), body: bool) -> String {
    let mut props: Vec<(String, String)> = properties(record.properties)
        .map(|(k, v)| {
            (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    props.push(("MIN_OFFSET".into(), min.to_string()));
    props.push(("MAX_OFFSET".into(), max.to_string()));
    props.sort();
    let props: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // As Java's decoder: a compressed body shown inflated, its flag cleared.
    let (sys_flag, content, unreadable) = match shown_body(record) {
        Ok(content) => (record.sys_flag & !sys_flag::COMPRESSED, content, None),
        Err(e) => (record.sys_flag, Cow::Borrowed(record.body), Some(e)),
    };
    let bytes: Vec<String> = content.iter().map(|b| (*b as i8).to_string()).collect();
    format!(
        "MSGID: {} MessageExt [brokerName={broker}, queueId={}, storeSize={}, queueOffset={}, \
         sysFlag={}, bornTimestamp={}, bornHost=/{}, storeTimestamp={}, storeHost=/{}, \
         msgId={}, commitLogOffset={}, bodyCRC={}, reconsumeTimes={}, \
         preparedTransactionOffset={}, toString()=Message{{topic='{}', flag={}, \
         properties={{{}}}, body=[{}], transactionId='null'}}] BODY: {}\n",
        msg_id(record),
        record.queue_id,
        record.bytes.len(),
        record.queue_offset,
        sys_flag,
        record.born_timestamp,
        record.born_host,
        record.store_timestamp,
        record.store_host,
        offset_msg_id(record.store_host, record.physical_offset),
        record.physical_offset,
        record.body_crc,
        record.reconsume_times,
        record.prepared_transaction_offset,
        record.topic_str(),
        record.flag,
        props.join(", "),
        bytes.join(", "),
        match (body, unreadable) {
            (true, None) => String::from_utf8_lossy(&content).into_owned(),
            (true, Some(e)) => format!("<{e}>"),
            (false, _) => "NOT PRINT BODY".into(),
        }
    )
}

/// The body as its producer sent it: inflated when the producer compressed it.
pub(super) fn shown_body<'a>(record: &Record<'a>) -> Result<Cow<'a, [u8]>, BodyError> {
    compression::inflated(record.sys_flag, record.body, petrel_client::INFLATED_BODY_BYTES_MAX)
}

/// Reads `queue` from `from` until `to` (or its end), printing as mqadmin: each batch found
/// (after `found_line` when given), a line when a pull matched nothing, and the status that
/// ended it. Returns the messages printed, as JSON.
async fn read_queue(
    admin: &Admin,
    queue: &Queue,
    who: (&str, &str),
    (from, to): (i64, i64),
    (body, found_line): (bool, Option<&str>),
    text: &mut String,
) -> Result<Vec<serde_json::Value>, String> {
    let mut messages = Vec::new();
    let mut offset = from;
    while offset < to {
        let count = BATCH.min(i32::try_from(to - offset).unwrap_or(BATCH));
        match pull(admin, queue, who, offset, count).await? {
            Pulled::Found { next, records, min, max } => {
                if let Some(line) = found_line {
                    text.push_str(line);
                }
                for bytes in &records {
                    let Some(record) = decoded(bytes) else { continue };
                    if record.queue_offset >= to {
                        continue;
                    }
                    text.push_str(&message_line(
                        &record,
                        &queue.queue.broker_name,
                        (min, max),
                        body,
                    ));
                    messages.push(json!({
                        "msgId": msg_id(&record), "queueId": record.queue_id,
                        "queueOffset": record.queue_offset,
                        "body": String::from_utf8_lossy(&shown_body(&record).unwrap_or_default()),
                    }));
                }
                offset = next.max(offset + 1);
            }
            Pulled::NoMatch { next } => {
                let _ = writeln!(
                    text,
                    "{} no matched msg. status=NO_MATCHED_MSG, offset={next}",
                    queue.shown()
                );
                offset = next.max(offset + 1);
            }
            Pulled::Finished { next, status } => {
                let _ = writeln!(
                    text,
                    "{} print msg finished. status={status}, offset={next}",
                    queue.shown()
                );
                break;
            }
        }
    }
    Ok(messages)
}

#[derive(Args, Debug)]
pub struct PrintMsg {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// The body's charset: UTF-8 only (mqadmin takes any Java charset).
    #[arg(short = 'c', long = "charsetName", default_value = "UTF-8")]
    charset: String,
    /// A TAG expression (`TagA || TagB`).
    #[arg(short = 's', long = "subExpression", default_value = "*")]
    expression: String,
    /// Stored at or after: milliseconds or `yyyy-MM-dd#HH:mm:ss:SSS` (UTC).
    #[arg(short = 'b', long = "beginTimestamp")]
    begin: Option<String>,
    /// Stored before: milliseconds or `yyyy-MM-dd#HH:mm:ss:SSS` (UTC).
    #[arg(short = 'e', long = "endTimestamp")]
    end: Option<String>,
    /// Print bodies (true) or not.
    #[arg(short = 'd', long = "printBody", default_value_t = true, action = clap::ArgAction::Set)]
    print_body: bool,
    /// Stop after this many messages (Petrel's; mqadmin prints every one in the range).
    #[arg(long)]
    max: Option<usize>,
}

pub async fn print_msg(args: PrintMsg) -> Result<Output, String> {
    if !args.charset.trim().eq_ignore_ascii_case("UTF-8") {
        return Err(format!("-c {}: bodies print as UTF-8 only", args.charset.trim()));
    }
    let begin = args.begin.as_deref().map(|t| admin_time("-b", t, None)).transpose()?;
    let end = args.end.as_deref().map(|t| admin_time("-e", t, None)).transpose()?;
    let admin = Admin::connect(&args.common)?;
    let (mut text, mut all) = (String::new(), Vec::new());
    for queue in queues(&admin, &args.topic).await? {
        if args.max.is_some_and(|max| all.len() >= max) {
            break;
        }
        let (min, mut max) = range(&admin, &queue, begin, end).await?;
        if let Some(left) = args.max.map(|m| (m - all.len()) as i64) {
            max = max.min(min.saturating_add(left));
        }
        let _ = writeln!(text, "minOffset={min}, maxOffset={max}, {}", queue.shown());
        let who = (TOOLS_GROUP, args.expression.trim());
        let found = read_queue(&admin, &queue, who, (min, max), (args.print_body, None), &mut text);
        all.extend(found.await?);
        text.push_str("--------------------------------------------------------\n");
    }
    Ok(Output::new(&args.common, text, json!(all)))
}

#[derive(Args, Debug)]
pub struct ConsumeMessage {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Only this broker group's queues (needed for -i).
    #[arg(short = 'b', long = "brokerName")]
    broker_name: Option<String>,
    /// Only this queue (with -b).
    #[arg(short = 'i', long = "queueId", requires = "broker_name")]
    queue_id: Option<i32>,
    /// From this offset (with -i).
    #[arg(short = 'o', long = "offset", requires = "queue_id")]
    offset: Option<i64>,
    /// Pull as this group (default TOOLS_CONSUMER); nothing is committed.
    #[arg(short = 'g', long = "consumerGroup")]
    group: Option<String>,
    /// Stored at or after: milliseconds or `yyyy-MM-dd#HH:mm:ss:SSS` (UTC).
    #[arg(short = 's', long = "beginTimestamp")]
    begin: Option<String>,
    /// Stored before: milliseconds or `yyyy-MM-dd#HH:mm:ss:SSS` (UTC).
    #[arg(short = 'e', long = "endTimestamp")]
    end: Option<String>,
    /// At most this many messages.
    #[arg(short = 'c', long = "MessageNumber", default_value_t = 128)]
    count: i64,
}

pub async fn consume_message(args: ConsumeMessage) -> Result<Output, String> {
    if args.count <= 0 {
        return Err("Please input a positive messageNumber!".into());
    }
    let begin = args.begin.as_deref().map(|t| admin_time("-s", t, None)).transpose()?;
    let end = args.end.as_deref().map(|t| admin_time("-e", t, None)).transpose()?;
    if let (Some(b), Some(e)) = (begin, end) {
        if b > e {
            return Err("Please make sure that the beginTimestamp is less than or equal to the endTimestamp".into());
        }
    }
    let admin = Admin::connect(&args.common)?;
    let mut chosen = queues(&admin, &args.topic).await?;
    chosen.retain(|q| {
        args.broker_name.as_ref().is_none_or(|b| *b == q.queue.broker_name)
            && args.queue_id.is_none_or(|id| id == q.queue.queue_id)
    });
    if chosen.is_empty() {
        return Err(format!("no readable queue of {} matches -b and -i", args.topic));
    }
    let group = args.group.clone().unwrap_or_else(|| TOOLS_GROUP.to_owned());
    let (mut text, mut all, mut left) = (String::new(), Vec::new(), args.count);
    for queue in &chosen {
        if left == 0 {
            break;
        }
        let (min, max) = range(&admin, queue, begin, end).await?;
        let min = min.max(args.offset.unwrap_or(min));
        if min >= max {
            let _ = writeln!(text, "{} no matched msg, offset={min}", queue.shown());
            continue;
        }
        let to = match max - min > left {
            true => {
                let _ = writeln!(
                    text,
                    "The older {left} message of the {} queue will be provided",
                    queue.queue.queue_id
                );
                min + left
            }
            false => max,
        };
        left -= to - min;
        let who = (group.as_str(), "*");
        let found =
            read_queue(&admin, queue, who, (min, to), (true, Some("Consume ok\n")), &mut text);
        all.extend(found.await?);
    }
    Ok(Output::new(&args.common, text, json!(all)))
}
