//! queryMsgById, queryMsgByUniqueKey, queryMsgByKey, queryMsgByOffset, sendMessage: messages
//! found through the index, the commit log and the consume queues, printed as mqadmin prints
//! them, with where each consumer group is with them (mqadmin's message track).

use std::fmt::Write;
use std::path::PathBuf;

use clap::Args;
use petrel_client::{Message, Producer, ProducerConfig, SendResult, SendStatus};
use petrel_core::admin::{
    ConsumeMessageDirectlyResult, ConsumerConnection, GroupList, MessageQueue,
};
use petrel_core::broker::property;
use petrel_core::model::MASTER_ID;
use petrel_core::record::{
    offset_msg_id, parse_offset_msg_id, properties, scan_record, sys_flag, Checks, Record, Scanned,
};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    ConsumeMessageDirectlyResultRequestHeader, ConsumerGroupRequestHeader,
    PullMessageRequestHeader, QueryConsumerOffsetRequestHeader, QueryMessageRequestHeader,
    TopicRequestHeader, ViewMessageRequestHeader,
};
use serde_json::json;

use super::print::shown_body;
use super::status::running_info;
use super::{decode_body, Admin, Common, Output};
use petrel_core::time::human_time;

/// The group mqadmin's own pulls and queries name (`MixAll.TOOLS_CONSUMER_GROUP`).
pub(super) const TOOLS_GROUP: &str = "TOOLS_CONSUMER";

#[derive(Args, Debug)]
pub struct QueryMsgById {
    #[command(flatten)]
    common: Common,
    /// Offset message ids (as a send answers them), comma-separated.
    #[arg(short = 'i', long = "msgId")]
    ids: String,
    /// The messages' topic: to find one by its unique key when the id is not an offset id.
    #[arg(short = 't', long = "topic")]
    topic: Option<String>,
    /// With -d: have this group's member consume each message now, instead of printing it.
    #[arg(short = 'g', long = "consumerGroup", requires = "client")]
    group: Option<String>,
    /// The member's client id (consumerConnection lists them), with -g.
    #[arg(short = 'd', long = "clientId", requires = "group")]
    client: Option<String>,
    /// true: send each message again through a producer of group `ReSendMsgById`, with its
    /// id, tags, keys and user properties; delivered at once (false: nothing is done).
    #[arg(short = 's', long = "sendMessage", action = clap::ArgAction::Set)]
    resend: Option<bool>,
}

/// The producer group mqadmin's queryMsgById resends through.
const RESEND_GROUP: &str = "ReSendMsgById";

pub async fn by_id(args: QueryMsgById) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let pushing = args.group.is_some();
    let producer = match args.resend {
        Some(true) if !pushing => Some(start_producer(&admin, RESEND_GROUP)?),
        _ => None,
    };
    let found = find_by_id(&admin, &args, producer.as_ref()).await;
    if let Some(producer) = producer {
        producer.shutdown().await;
    }
    let (text, found) = found?;
    Ok(Output::new(&args.common, text, json!(found)))
}

/// Each message `args` names printed, handed to a member (-g -d) or sent again (-s true).
async fn find_by_id(
    admin: &Admin,
    args: &QueryMsgById,
    producer: Option<&Producer>,
) -> Result<(String, Vec<serde_json::Value>), String> {
    let (mut text, mut found) = (String::new(), Vec::new());
    if args.group.is_none() && args.resend == Some(false) {
        return Ok((text, found));
    }
    for id in args.ids.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        let record = match parse_offset_msg_id(id) {
            Some((host, offset)) => {
                view(admin, &host.to_string(), args.topic.as_deref(), offset).await
            }
            None => Err(format!("{id} is not an offset message id")),
        };
        let bytes = match (record, &args.topic) {
            (Ok(bytes), _) => bytes,
            (Err(_), Some(topic)) => {
                let found = by_unique_key(admin, topic, id).await?.into_iter().next();
                found.ok_or_else(|| format!("Message not found: {id}"))?
            }
            // A unique key is 32 hex digits as an offset id is: what it decodes to is no broker.
            (Err(e), None) => {
                return Err(format!(
                    "{e}\nIf {id} is a message's unique key (the id a consumer sees), name its \
                     topic with -t"
                ))
            }
        };
        let (shown, json) = match (&args.group, &args.client, producer) {
            (Some(group), Some(client), _) => push(admin, &bytes, group, client).await?,
            (_, _, Some(producer)) => resend(producer, &bytes, id).await?,
            _ => show(admin, &bytes, 0).await?,
        };
        text.push_str(&shown);
        found.push(json);
    }
    Ok((text, found))
}

/// Sends the record again (mqadmin's `sendMsg`), printing its send result as RocketMQ's
/// `SendResult.toString`.
async fn resend(
    producer: &Producer,
    bytes: &[u8],
    id: &str,
) -> Result<(String, serde_json::Value), String> {
    let record = decoded(bytes).ok_or("the broker answered a record that does not decode")?;
    let body = bytes::Bytes::from(body_of(&record)?.into_owned());
    let message = Message::again(record.topic_str(), body, record.flag, record.properties);
    let sent =
        producer.send(&message).await.map_err(|e| format!("the resend of {id} failed: {e}"))?;
    let status = status_name(sent.status);
    let q = &sent.queue;
    let text = format!(
        "prepare resend msg. originalMsgId={id}SendResult [sendStatus={status}, msgId={}, \
         offsetMsgId={}, messageQueue=MessageQueue [topic={}, brokerName={}, queueId={}], \
         queueOffset={}, recallHandle=null]\n",
        sent.msg_id, sent.offset_msg_id, q.topic, q.broker_name, q.queue_id, sent.queue_offset
    );
    Ok((text, sent_json(&sent)))
}

/// A producer of `group` on the admin's NameServers.
fn start_producer(admin: &Admin, group: &str) -> Result<Producer, String> {
    let config = ProducerConfig {
        namesrv_addrs: admin.namesrvs.clone(),
        group: group.into(),
        ..ProducerConfig::default()
    };
    Producer::start(config).map_err(|e| e.to_string())
}

/// RocketMQ's name of a send's status.
fn status_name(status: SendStatus) -> &'static str {
    match status {
        SendStatus::Ok => "SEND_OK",
        SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
        SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
        SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
    }
}

/// A send's result for `--json`.
fn sent_json(sent: &SendResult) -> serde_json::Value {
    json!({
        "brokerName": sent.queue.broker_name, "queueId": sent.queue.queue_id,
        "status": status_name(sent.status), "msgId": sent.msg_id,
        "offsetMsgId": sent.offset_msg_id, "queueOffset": sent.queue_offset,
    })
}

/// CONSUME_MESSAGE_DIRECTLY (mqadmin's `pushMsg`): the member `client` of `group` consumes
/// the record now, asked through the broker that stored it; only a push consumer can, which
/// its running info tells.
async fn push(
    admin: &Admin,
    bytes: &[u8],
    group: &str,
    client: &str,
) -> Result<(String, serde_json::Value), String> {
    let record = decoded(bytes).ok_or("the broker answered a record that does not decode")?;
    let addr = record.store_host.to_string();
    let info = running_info(admin, &addr, group, client, false).await?;
    if !info.is_push() {
        let text = format!("this {client} client is not push consumer ,not support direct push \n");
        return Ok((text, json!({ "clientId": client, "pushConsumer": false })));
    }
    let header = ConsumeMessageDirectlyResultRequestHeader {
        consumer_group: group.to_owned(),
        client_id: Some(client.to_owned()),
        msg_id: Some(offset_msg_id(record.store_host, record.physical_offset)),
        broker_name: None,
        topic: Some(record.topic_str().to_owned()),
        topic_sys_flag: None,
        group_sys_flag: None,
    };
    let request = RemotingCommand::request(request::CONSUME_MESSAGE_DIRECTLY).with_header(&header);
    let answer = admin.call(&addr, request).await?;
    let result: ConsumeMessageDirectlyResult = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("the result {client} answered is not readable: {e}"))?;
    let json = serde_json::to_value(&result).map_err(|e| e.to_string())?;
    Ok((format!("{result}\n"), json))
}

/// VIEW_MESSAGE_BY_ID: the record at `offset` of the broker at `addr`.
async fn view(
    admin: &Admin,
    addr: &str,
    topic: Option<&str>,
    offset: i64,
) -> Result<Vec<u8>, String> {
    let header = ViewMessageRequestHeader { topic: topic.map(str::to_owned), offset };
    let request = RemotingCommand::request(request::VIEW_MESSAGE_BY_ID).with_header(&header);
    Ok(admin.call(addr, request).await?.body.to_vec())
}

#[derive(Args, Debug)]
pub struct QueryMsgByUniqueKey {
    #[command(flatten)]
    common: Common,
    /// The message's unique key (the id a producer's send answers).
    #[arg(short = 'i', long = "msgId")]
    id: String,
    /// The message's topic.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Print every copy found (up to 32), not only the first stored.
    #[arg(short = 'a', long = "showAll")]
    all: bool,
}

pub async fn by_unique(args: QueryMsgByUniqueKey) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let records = by_unique_key(&admin, &args.topic, &args.id).await?;
    if records.is_empty() {
        let why =
            format!("Message not found: no message of {} has the key {}", args.topic, args.id);
        return Err(why);
    }
    let (mut text, mut found) = (String::new(), Vec::new());
    for (index, bytes) in records.iter().take(if args.all { records.len() } else { 1 }).enumerate()
    {
        let (shown, json) = show(&admin, bytes, index).await?;
        text.push_str(&shown);
        found.push(json);
    }
    Ok(Output::new(&args.common, text, json!(found)))
}

/// QUERY_MESSAGE by unique key on every master routing `topic`: the records, oldest first.
async fn by_unique_key(admin: &Admin, topic: &str, id: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut records = query(admin, topic, id, 32, (0, i64::MAX), true).await?;
    records.sort_by_key(|bytes| decoded(bytes).map_or(0, |r| r.store_timestamp));
    Ok(records)
}

/// QUERY_MESSAGE on every master routing `topic`: each record found, whole.
async fn query(
    admin: &Admin,
    topic: &str,
    key: &str,
    max: i32,
    (begin, end): (i64, i64),
    unique: bool,
) -> Result<Vec<Vec<u8>>, String> {
    let route = admin.route(topic).await?;
    let header = QueryMessageRequestHeader {
        topic: topic.to_owned(),
        key: key.to_owned(),
        max_num: max,
        begin_timestamp: begin,
        end_timestamp: end,
    };
    let mut records = Vec::new();
    for addr in route.master_addrs() {
        let mut request = RemotingCommand::request(request::QUERY_MESSAGE).with_header(&header);
        if unique {
            request.ext_fields.insert("_UNIQUE_KEY_QUERY", "true");
        }
        // QUERY_NOT_FOUND from one broker is no error: another may hold the key.
        match admin.client.invoke(addr, request, super::TIMEOUT).await {
            Ok(answer) if answer.code == response::SUCCESS => records.extend(split(&answer.body)),
            Ok(answer) if answer.code == response::QUERY_NOT_FOUND => {}
            Ok(answer) => {
                return Err(format!(
                    "{addr} refused QUERY_MESSAGE: {} ({})",
                    answer.remark.unwrap_or_default(),
                    answer.code
                ))
            }
            Err(e) => return Err(format!("QUERY_MESSAGE to {addr} failed: {e}")),
        }
    }
    Ok(records)
}

/// The whole records of a body of records back to back.
pub(super) fn split(body: &[u8]) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(Scanned::Record(record)) =
        body.get(at..).map(|rest| scan_record(rest, Checks { physical_offset: None, crc: false }))
    {
        records.push(record.bytes.to_vec());
        at += record.bytes.len();
    }
    records
}

pub(super) fn decoded(bytes: &[u8]) -> Option<Record<'_>> {
    match scan_record(bytes, Checks { physical_offset: None, crc: false }) {
        Scanned::Record(record) => Some(record),
        _ => None,
    }
}

#[derive(Args, Debug)]
pub struct QueryMsgByKey {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// The key (one of a message's KEYS).
    #[arg(short = 'k', long = "msgKey")]
    key: String,
    /// Stored at or after this time (ms).
    #[arg(short = 'b', long = "beginTimestamp", default_value_t = 0)]
    begin: i64,
    /// Stored at or before this time (ms).
    #[arg(short = 'e', long = "endTimestamp", default_value_t = i64::MAX)]
    end: i64,
    /// At most this many messages.
    #[arg(short = 'm', long = "maxNum", default_value_t = 64)]
    max: i32,
}

pub async fn by_key(args: QueryMsgByKey) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let records =
        query(&admin, &args.topic, &args.key, args.max, (args.begin, args.end), false).await?;
    let mut text = format!("{:<50} {:>4} {:>40}\n", "#Message ID", "#QID", "#Offset");
    let mut rows = Vec::new();
    for record in records.iter().filter_map(|bytes| decoded(bytes)) {
        let id = msg_id(&record);
        let _ = writeln!(text, "{id:<50} {:>4} {:>40}", record.queue_id, record.queue_offset);
        rows.push(
            json!({ "msgId": id, "queueId": record.queue_id, "queueOffset": record.queue_offset }),
        );
    }
    Ok(Output::new(&args.common, text, json!(rows)))
}

#[derive(Args, Debug)]
pub struct QueryMsgByOffset {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// The broker group's name.
    #[arg(short = 'b', long = "brokerName")]
    broker_name: String,
    /// Queue id.
    #[arg(short = 'i', long = "queueId")]
    queue_id: i32,
    /// Queue offset.
    #[arg(short = 'o', long = "offset")]
    offset: i64,
}

pub async fn by_offset(args: QueryMsgByOffset) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let route = admin.route(&args.topic).await?;
    let addr = route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == args.broker_name)
        .and_then(|b| b.broker_addrs.get(&MASTER_ID))
        .ok_or_else(|| format!("no master of {} routes {}", args.broker_name, args.topic))?;
    let header = PullMessageRequestHeader {
        consumer_group: TOOLS_GROUP.into(),
        topic: args.topic.clone(),
        queue_id: args.queue_id,
        queue_offset: args.offset,
        max_msg_nums: 1,
        // The subscription travels with the pull (PullSysFlag's subscription bit).
        sys_flag: 0x4,
        commit_offset: -1,
        suspend_timeout_millis: 0,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    let request = RemotingCommand::request(request::PULL_MESSAGE).with_header(&header);
    // As mqadmin: nothing at that offset prints nothing; a refusal is an error.
    let nothing =
        [response::PULL_NOT_FOUND, response::PULL_OFFSET_MOVED, response::PULL_RETRY_IMMEDIATELY];
    let answer = match admin.client.invoke(addr, request, super::TIMEOUT).await {
        Ok(answer) if nothing.contains(&answer.code) => None,
        Ok(answer) if answer.code == response::SUCCESS => split(&answer.body).into_iter().next(),
        Ok(answer) => {
            return Err(format!(
                "{addr} refused PULL_MESSAGE: {} ({})",
                answer.remark.unwrap_or_default(),
                answer.code
            ))
        }
        Err(e) => return Err(format!("PULL_MESSAGE to {addr} failed: {e}")),
    };
    let Some(bytes) = answer else {
        return Ok(Output::new(&args.common, String::new(), json!(null)));
    };
    let (text, json) = show(&admin, &bytes, 0).await?;
    Ok(Output::new(&args.common, text, json))
}

/// The id consumers see: the unique key when the producer set one, else the offset id.
pub(super) fn msg_id(record: &Record<'_>) -> String {
    match record.property(property::UNIQ_KEY.as_bytes()) {
        Some(key) => String::from_utf8_lossy(key).into_owned(),
        None => offset_msg_id(record.store_host, record.physical_offset),
    }
}

/// mqadmin's printMsg: the message's fields, its body written to a file, and each consumer
/// group's progress with it.
async fn show(
    admin: &Admin,
    bytes: &[u8],
    index: usize,
) -> Result<(String, serde_json::Value), String> {
    let record = decoded(bytes).ok_or("the broker answered a record that does not decode")?;
    let id = msg_id(&record);
    // The file is named by the id only when the id is a plain name: a producer sets the
    // unique key, and a key like `../x` or `/x` must not pick where the body is written.
    let plain = !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let file_name = match plain {
        true => id.clone(),
        false => offset_msg_id(record.store_host, record.physical_offset),
    };
    let path = body_file(&file_name, index, &body_of(&record)?)?;
    // As Java's decoder leaves it: the body was inflated, so the flag no longer says compressed.
    let sys_flag = record.sys_flag & !sys_flag::COMPRESSED;
    let text_of = |name: &str| {
        record.property(name.as_bytes()).map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let mut props: Vec<(String, String)> = properties(record.properties)
        .map(|(k, v)| {
            (String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    props.sort();
    let props_text: Vec<String> = props.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut text = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(text, "{label:<20} {value}");
    };
    line("OffsetID:", offset_msg_id(record.store_host, record.physical_offset));
    line("Topic:", record.topic_str().to_owned());
    line("Tags:", format!("[{}]", text_of(property::TAGS).unwrap_or_else(|| "null".into())));
    line("Keys:", format!("[{}]", text_of(property::KEYS).unwrap_or_else(|| "null".into())));
    line("Queue ID:", record.queue_id.to_string());
    line("Queue Offset:", record.queue_offset.to_string());
    line("CommitLog Offset:", record.physical_offset.to_string());
    line("Reconsume Times:", record.reconsume_times.to_string());
    line("Born Timestamp:", human_time(record.born_timestamp));
    line("Store Timestamp:", human_time(record.store_timestamp));
    line("Born Host:", record.born_host.to_string());
    line("Store Host:", record.store_host.to_string());
    line("System Flag:", sys_flag.to_string());
    line("Properties:", format!("{{{}}}", props_text.join(", ")));
    line("Message Body Path:", path.display().to_string());
    let tracks = tracks(admin, &record).await?;
    match tracks.is_empty() {
        true => text.push_str("\n\nWARN: No Consumer\n"),
        false => {
            text.push_str("\n\n");
            for (group, track) in &tracks {
                let _ = writeln!(
                    text,
                    "MessageTrack [consumerGroup={group}, trackType={track}, exceptionDesc=null]"
                );
            }
        }
    }
    let json = json!({
        "msgId": id, "offsetMsgId": offset_msg_id(record.store_host, record.physical_offset),
        "topic": record.topic_str(), "queueId": record.queue_id, "queueOffset": record.queue_offset,
        "commitLogOffset": record.physical_offset, "reconsumeTimes": record.reconsume_times,
        "bornTimestamp": record.born_timestamp, "storeTimestamp": record.store_timestamp,
        "bornHost": record.born_host.to_string(), "storeHost": record.store_host.to_string(),
        "sysFlag": sys_flag, "properties": props.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "bodyPath": path, "tracks": tracks.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    });
    Ok((text, json))
}

/// The body as its producer sent it, or why it cannot be read.
fn body_of<'a>(record: &Record<'a>) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    shown_body(record).map_err(|e| format!("the body of {}: {e}", msg_id(record)))
}

/// Writes the body where mqadmin does, `/tmp/rocketmq/msgbodys/<id>` (`_<n>` after the first).
fn body_file(id: &str, index: usize, body: &[u8]) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join("rocketmq").join("msgbodys");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let name = match index {
        0 => id.to_owned(),
        n => format!("{id}_{n}"),
    };
    let path = dir.join(name);
    // A link someone left in the shared directory is replaced, not written through.
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    }
    std::fs::write(&path, body).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// Where each group that consumes the message's topic is with it (mqadmin's
/// `messageTrackDetail`): NOT_ONLINE, PULL, CONSUME_BROADCASTING, CONSUMED,
/// CONSUMED_BUT_FILTERED or NOT_CONSUME_YET.
async fn tracks(admin: &Admin, record: &Record<'_>) -> Result<Vec<(String, &'static str)>, String> {
    let addr = record.store_host.to_string();
    let header = TopicRequestHeader { topic: record.topic_str().to_owned() };
    let request =
        RemotingCommand::request(request::QUERY_TOPIC_CONSUME_BY_WHO).with_header(&header);
    let groups: GroupList = decode_body(&admin.call(&addr, request).await?, "GroupList")?;
    let mut tracks = Vec::new();
    for group in groups.group_list {
        let header = ConsumerGroupRequestHeader { consumer_group: group.clone() };
        let request =
            RemotingCommand::request(request::GET_CONSUMER_CONNECTION_LIST).with_header(&header);
        let members: Option<ConsumerConnection> = admin
            .call(&addr, request)
            .await
            .ok()
            .and_then(|a| decode_body(&a, "ConsumerConnection").ok());
        let track = match members {
            None => "NOT_ONLINE",
            Some(m) if m.consume_type == "CONSUME_ACTIVELY" => "PULL",
            Some(m) if m.message_model == "BROADCASTING" => "CONSUME_BROADCASTING",
            Some(m) => consumed(admin, &addr, &group, record, &m).await,
        };
        tracks.push((group, track));
    }
    Ok(tracks)
}

/// Whether `group` committed past the message, and whether its subscription took it.
async fn consumed(
    admin: &Admin,
    addr: &str,
    group: &str,
    record: &Record<'_>,
    members: &ConsumerConnection,
) -> &'static str {
    let queue = MessageQueue::new(record.topic_str(), "", record.queue_id);
    let header = QueryConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: queue.topic.clone(),
        queue_id: queue.queue_id,
        set_zero_if_not_found: None,
    };
    let request = RemotingCommand::request(request::QUERY_CONSUMER_OFFSET).with_header(&header);
    let committed = match admin.call(addr, request).await {
        Ok(answer) => {
            answer.ext_fields.get("offset").and_then(|o| o.parse::<i64>().ok()).unwrap_or(-1)
        }
        Err(_) => -1,
    };
    if committed <= record.queue_offset {
        return "NOT_CONSUME_YET";
    }
    let tags = record.property(property::TAGS.as_bytes()).map(String::from_utf8_lossy);
    let taken = members.subscription_table.get(record.topic_str()).is_none_or(|sub| {
        sub.sub_string.trim() == "*"
            || sub.sub_string.is_empty()
            || tags.as_deref().is_some_and(|t| sub.sub_string.split("||").any(|s| s.trim() == t))
    });
    if taken {
        "CONSUMED"
    } else {
        "CONSUMED_BUT_FILTERED"
    }
}

#[derive(Args, Debug)]
pub struct SendMessage {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// The body, as UTF-8 text.
    #[arg(short = 'p', long = "body")]
    body: String,
    /// Keys, separated by spaces.
    #[arg(short = 'k', long = "key")]
    keys: Option<String>,
    /// Tag.
    #[arg(short = 'c', long = "tags")]
    tags: Option<String>,
    /// Send to this broker group (with -i).
    #[arg(short = 'b', long = "broker")]
    broker_name: Option<String>,
    /// Send to this queue of the broker (needs -b).
    #[arg(short = 'i', long = "qid", requires = "broker_name")]
    queue_id: Option<i32>,
}

pub async fn send(args: SendMessage) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let producer = start_producer(&admin, "PID_PETREL_ADMIN")?;
    let mut message = Message::new(args.topic.clone(), args.body.clone().into_bytes());
    if let Some(tags) = &args.tags {
        message = message.with_tags(tags.clone());
    }
    if let Some(keys) = &args.keys {
        message = message.with_keys(keys.split(' ').filter(|k| !k.is_empty()).map(str::to_owned));
    }
    let sent = match (&args.broker_name, args.queue_id) {
        (Some(broker), Some(queue_id)) => {
            let queue = MessageQueue::new(&args.topic, broker, queue_id);
            producer.send_to(&message, &queue).await
        }
        _ => producer.send(&message).await,
    };
    producer.shutdown().await;
    let sent = sent.map_err(|e| format!("the send failed: {e}"))?;
    let status = status_name(sent.status);
    let mut text =
        format!("{:<32}  {:<4}  {:<20}    {}\n", "#Broker Name", "#QID", "#Send Result", "#MsgId");
    let _ = writeln!(
        text,
        "{:<32}  {:<4}  {status:<20}    {}",
        sent.queue.broker_name, sent.queue.queue_id, sent.msg_id
    );
    Ok(Output::new(&args.common, text, sent_json(&sent)))
}
