//! resetOffsetByTime: move a consumer group's offsets of a topic to a time, or one queue's
//! to an offset (INVOKE_BROKER_TO_RESET_OFFSET: RocketMQ 5's server-side reset, or RocketMQ 4's
//! made by the group's members on a broker with `useServerSideResetOffset=false`).

use std::fmt::Write;

use clap::Args;
use petrel_core::admin::MessageQueue;
use petrel_net::bodies::reset_offsets_from_json;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    OffsetResponseHeader, ResetOffsetRequestHeader, SearchOffsetRequestHeader,
};
use serde_json::json;

use super::{admin_time, Admin, Common, Output};

#[derive(Args, Debug)]
pub struct ResetOffsetByTime {
    #[command(flatten)]
    common: Common,
    /// The consumer group.
    #[arg(short = 'g', long = "group")]
    group: String,
    /// The topic.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// `now`, milliseconds since the epoch, or `yyyy-MM-dd#HH:mm:ss:SSS` (read in UTC).
    #[arg(short = 's', long = "timestamp")]
    timestamp: String,
    /// Where the group's members make the reset (`useServerSideResetOffset=false`), false
    /// moves only queues whose committed offset lies past the time's; a server-side reset
    /// moves back and forward whatever this says (deprecated in mqadmin).
    #[arg(short = 'f', long = "force", action = clap::ArgAction::Set)]
    force: Option<bool>,
    /// Accepted for mqadmin's sake: the cluster (or LMQ parent topic) is not needed to route.
    #[arg(short = 'c', long = "cluster")]
    cluster: Option<String>,
    /// With -q, reset only that queue of this broker (its address).
    #[arg(short = 'b', long = "broker", requires = "queue")]
    broker: Option<String>,
    /// The queue id, with -b.
    #[arg(short = 'q', long = "queue", requires = "broker")]
    queue: Option<i32>,
    /// With -b and -q: the offset itself rather than the time's.
    #[arg(short = 'o', long = "offset", requires = "queue")]
    offset: Option<i64>,
}

pub async fn reset(args: ResetOffsetByTime) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let now = petrel::clock::now_millis() as i64;
    let millis = admin_time("-s", &args.timestamp, Some(now))?;
    if let (Some(broker), Some(queue)) = (&args.broker, args.queue) {
        return reset_queue(&admin, &args, broker, queue, millis).await;
    }
    let route = admin.route(&args.topic).await?;
    let masterless: Vec<&str> = route
        .broker_datas
        .iter()
        .filter(|b| !b.broker_addrs.contains_key(&petrel_core::model::MASTER_ID))
        .map(|b| b.broker_name.as_str())
        .collect();
    if !masterless.is_empty() {
        return Err(format!(
            "no master of {} routes {}: its offsets cannot be reset now (a slave refuses), so \
             none were",
            masterless.join(", "),
            args.topic
        ));
    }
    let mut table: Vec<(MessageQueue, i64)> = Vec::new();
    for addr in route.master_addrs() {
        let header = ResetOffsetRequestHeader {
            group: args.group.clone(),
            topic: args.topic.clone(),
            queue_id: None,
            offset: None,
            timestamp: millis,
            is_force: args.force.unwrap_or(true),
        };
        let request =
            RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET).with_header(&header);
        let answer = admin.call(addr, request).await?;
        let offsets = reset_offsets_from_json(&answer.body)
            .map_err(|e| format!("the reset offsets {addr} answered are not readable: {e}"))?;
        table.extend(offsets);
    }
    table.sort_by(|a, b| (&a.0.broker_name, a.0.queue_id).cmp(&(&b.0.broker_name, b.0.queue_id)));
    let mut text = format!(
        "start reset consumer offset by specified, group[{}], topic[{}], force[{}], \
         timestamp(string)[{}], timestamp(long)[{millis}]\n",
        args.group,
        args.topic,
        args.force.unwrap_or(true),
        args.timestamp.trim()
    );
    let _ = writeln!(text, "{:<40}  {:<40}  {:<40}", "#brokerName", "#queueId", "#offset");
    for (queue, offset) in &table {
        let _ = writeln!(text, "{:<40}  {:<40}  {:<40}", queue.broker_name, queue.queue_id, offset);
    }
    let rows: Vec<_> = table
        .iter()
        .map(|(q, o)| json!({"brokerName": q.broker_name, "queueId": q.queue_id, "offset": o}))
        .collect();
    Ok(Output::new(&args.common, text, json!(rows)))
}

/// One queue of one broker: to `-o`, or to the time's offset (SEARCH_OFFSET_BY_TIMESTAMP).
async fn reset_queue(
    admin: &Admin,
    args: &ResetOffsetByTime,
    broker: &str,
    queue: i32,
    millis: i64,
) -> Result<Output, String> {
    let mut text = format!(
        "start reset consumer offset by specified, group[{}], topic[{}], queueId[{queue}], \
         broker[{broker}], timestamp(string)[{}], timestamp(long)[{millis}]\n",
        args.group,
        args.topic,
        args.timestamp.trim()
    );
    let offset = match args.offset {
        Some(offset) => offset,
        None => {
            let header = SearchOffsetRequestHeader {
                topic: args.topic.clone(),
                queue_id: queue,
                timestamp: millis,
                boundary_type: None,
            };
            let request =
                RemotingCommand::request(request::SEARCH_OFFSET_BY_TIMESTAMP).with_header(&header);
            let answer = admin.call(broker, request).await?;
            let found: OffsetResponseHeader =
                answer.header().map_err(|e| format!("{broker} answered no offset: {e}"))?;
            found.offset
        }
    };
    let _ = writeln!(text, "reset consumer offset to {offset}");
    let header = ResetOffsetRequestHeader {
        group: args.group.clone(),
        topic: args.topic.clone(),
        queue_id: Some(queue),
        offset: Some(offset),
        timestamp: millis,
        is_force: true,
    };
    let request =
        RemotingCommand::request(request::INVOKE_BROKER_TO_RESET_OFFSET).with_header(&header);
    admin.call(broker, request).await?;
    let json = json!([{"brokerAddr": broker, "queueId": queue, "offset": offset}]);
    Ok(Output::new(&args.common, text, json))
}
