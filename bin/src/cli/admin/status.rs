//! consumerStatus: what each member of a consumer group reports of itself
//! (GET_CONSUMER_RUNNING_INFO through the broker it heartbeats to), as mqadmin prints it.
//!
//! Without `-i` every member is asked; as mqadmin does, each report is written to the file
//! `<now>/<clientId>` under the working directory, whose path the table names, and the group
//! is checked: the same subscriptions everywhere, and no queue that looks stuck. With `-i`
//! one member's report is printed whole. `--json` writes no files and prints the reports.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use clap::Args;
use petrel_core::admin::{version_desc, MessageQueue, ProcessQueueInfo};
use petrel_core::broker::filter::SubscriptionData;
use petrel_core::running_info::{same_subscription, stuck_queues, ConsumerRunningInfo};
use petrel_net::codec::codes::request;
use petrel_net::codec::json::read_object_keyed;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::GetConsumerRunningInfoRequestHeader;
use serde_json::{json, Value};

use super::group::{connections_at, group_broker};
use super::{Admin, Common, Output};

#[derive(Args, Debug)]
pub struct ConsumerStatus {
    #[command(flatten)]
    common: Common,
    /// Consumer group name.
    #[arg(short = 'g', long = "consumerGroup")]
    group: String,
    /// One member's client id: print its whole report.
    #[arg(short = 'i', long = "clientId")]
    client_id: Option<String>,
    /// The broker to ask (default: a master routing the group's retry topic).
    #[arg(short = 'b', long = "brokerAddr")]
    broker: Option<String>,
    /// Ask for each member's thread dump too (a Java client's jstack; others send none).
    #[arg(short = 's', long = "jstack")]
    jstack: bool,
}

pub async fn consumer_status(args: ConsumerStatus) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let addr = match &args.broker {
        Some(addr) => addr.clone(),
        None => group_broker(&admin, &args.group).await?,
    };
    if let Some(client_id) = &args.client_id {
        let info = running_info(&admin, &addr, &args.group, client_id, args.jstack).await?;
        let json = serde_json::to_value(&info).map_err(|e| e.to_string())?;
        return Ok(Output::new(&args.common, info.format_string(), json));
    }
    let members = connections_at(&admin, &addr, &args.group).await?;
    let now = petrel::clock::now_millis() as i64;
    let mut text = format!(
        "{:<10} {:<40} {:<20} {}\n",
        "#Index", "#ClientId", "#Version", "#ConsumerRunningInfoFile"
    );
    let (mut reports, mut rows) = (BTreeMap::new(), Vec::new());
    for member in &members.connection_set {
        let id = &member.client_id;
        let info = match running_info(&admin, &addr, &args.group, id, args.jstack).await {
            Ok(info) => info,
            Err(e) => {
                // As mqadmin does: say why, and go on with the other members.
                eprintln!("{e}");
                continue;
            }
        };
        let file = report_path(now, id);
        if !args.common.json {
            write_report(Path::new(&file), &info.format_string())?;
        }
        let version = version_desc(member.version);
        let _ = writeln!(text, "{:<10} {id:<40} {version:<20} {file}", rows.len() + 1);
        rows.push(json!({ "clientId": id, "version": version, "runningInfo": &info }));
        reports.insert(id.clone(), info);
    }
    let same = same_subscription(&reports, now);
    let stuck: Vec<String> = reports
        .iter()
        .flat_map(|(id, info)| {
            stuck_queues(id, info, now).lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .collect();
    if !reports.is_empty() {
        if same {
            text.push_str("\n\nSame subscription in the same group of consumer");
            text.push_str("\n\nRebalance OK\n");
            for line in &stuck {
                let _ = writeln!(text, "{line}");
            }
        } else {
            text.push_str("\n\nWARN: Different subscription in the same group of consumer!!!");
        }
    }
    let json = json!({ "members": rows, "sameSubscription": same, "stuckQueues": stuck });
    Ok(Output::new(&args.common, text, json))
}

/// Where a member's report goes: `<now>/<clientId>`, as mqadmin names it, with any path
/// separator in the client id (a name the client chose) made `_`, so that the file stays in
/// its directory.
fn report_path(now: i64, client_id: &str) -> String {
    format!("{now}/{}", client_id.replace(['/', '\\'], "_"))
}

/// Writes one member's report where mqadmin would, creating its directory.
fn write_report(file: &Path, report: &str) -> Result<(), String> {
    let written = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(file, report));
    written.map_err(|e| format!("cannot write the report {}: {e}", file.display()))
}

/// GET_CONSUMER_RUNNING_INFO for one member, through the broker at `addr`.
async fn running_info(
    admin: &Admin,
    addr: &str,
    group: &str,
    client_id: &str,
    jstack: bool,
) -> Result<ConsumerRunningInfo, String> {
    let header = GetConsumerRunningInfoRequestHeader {
        consumer_group: group.to_owned(),
        client_id: client_id.to_owned(),
        jstack_enable: Some(jstack),
    };
    let request = RemotingCommand::request(request::GET_CONSUMER_RUNNING_INFO).with_header(&header);
    let answer = admin.call(addr, request).await?;
    decode_running_info(&answer.body)
        .map_err(|e| format!("the running info {client_id} answered is not readable: {e}"))
}

/// A `ConsumerRunningInfo` body: fastjson's, whose `mqTable` is keyed by queue objects, or the
/// C++ client's (the same, its keys laid out over lines and its numbers often strings).
fn decode_running_info(body: &[u8]) -> Result<ConsumerRunningInfo, String> {
    let (mut fields, mq_table) =
        read_object_keyed::<MessageQueue, ProcessQueueInfo>(body, "mqTable")
            .map_err(|e| e.to_string())?;
    let mut take = |name: &str| fields.remove(name).unwrap_or(Value::Null);
    let texts = |value: Value| -> BTreeMap<String, String> {
        let Value::Object(map) = value else { return BTreeMap::new() };
        map.into_iter().map(|(k, v)| (k, scalar_text(v))).collect()
    };
    let subscription_set: Vec<SubscriptionData> = match take("subscriptionSet") {
        Value::Null => Vec::new(),
        set => serde_json::from_value(set).map_err(|e| format!("subscriptionSet: {e}"))?,
    };
    let status_table = match take("statusTable") {
        Value::Null => BTreeMap::new(),
        table => serde_json::from_value(table).map_err(|e| format!("statusTable: {e}"))?,
    };
    Ok(ConsumerRunningInfo {
        properties: texts(take("properties")),
        subscription_set,
        mq_table,
        status_table,
        user_consumer_info: texts(take("userConsumerInfo")),
        jstack: match take("jstack") {
            Value::String(dump) if !dump.is_empty() => Some(dump),
            _ => None,
        },
    })
}

/// A property's value as text: strings as they are, anything else as JSON writes it.
fn scalar_text(value: Value) -> String {
    match value {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_stays_in_its_directory() {
        assert_eq!(report_path(7, "10.0.0.1@12345#99"), "7/10.0.0.1@12345#99");
        assert_eq!(report_path(7, "../../etc/x"), "7/.._.._etc_x");
        assert_eq!(report_path(7, "a\\b"), "7/a_b");
    }

    #[test]
    fn fastjson_and_cpp_reports_both_read() {
        let fastjson = br#"{"mqPopTable":{},"mqTable":{{"brokerName":"broker-a","queueId":1,"topic":"T"}:{"cachedMsgCount":2,"commitOffset":7,"locked":true}},"properties":{"PROP_CONSUME_TYPE":"CONSUME_PASSIVELY","PROP_THREADPOOL_CORE_SIZE":20},"statusTable":{"T":{"consumeOKTPS":1.5,"pullRT":0.0}},"subscriptionSet":[{"classFilterMode":false,"codeSet":[],"subString":"*","subVersion":1,"tagsSet":[],"topic":"T"}],"userConsumerInfo":{}}"#;
        let info = decode_running_info(fastjson).unwrap();
        assert!(info.is_push());
        assert_eq!(info.properties["PROP_THREADPOOL_CORE_SIZE"], "20");
        assert_eq!(info.mq_table.len(), 1);
        let (queue, pq) = &info.mq_table[0];
        assert_eq!(queue, &MessageQueue::new("T", "broker-a", 1));
        assert_eq!((pq.cached_msg_count, pq.commit_offset, pq.locked), (2, 7, true));
        assert_eq!(info.status_table["T"].consume_ok_tps, 1.5);
        assert_eq!(info.subscription_set[0].topic, "T");
        assert_eq!(info.jstack, None);
        // The C++ client: mqTable first, its keys styled over lines, numbers as strings.
        let cpp = b"{\"mqTable\":{{\n   \"brokerName\" : \"broker-a\",\n   \"queueId\" : 0,\n   \"topic\" : \"T\"\n}\n:{\n   \"cachedMsgCount\" : \"3\",\n   \"commitOffset\" : \"41\",\n   \"locked\" : \"false\"\n}\n},\"jstack\":\"\",\"properties\":{\"PROP_CONSUME_TYPE\":\"CONSUME_PASSIVELY\"},\"subscriptionSet\":[{\"classFilterMode\":false,\"codeSet\":[],\"subString\":\"*\",\"subVersion\":\"1\",\"tagsSet\":[],\"topic\":\"T\"}]}";
        let info = decode_running_info(cpp).unwrap();
        let (queue, pq) = &info.mq_table[0];
        assert_eq!(queue.queue_id, 0);
        assert_eq!((pq.cached_msg_count, pq.commit_offset, pq.locked), (3, 41, false));
        assert_eq!(info.jstack, None);
        assert!(decode_running_info(b"{\"mqTable\":}").is_err());
    }
}
