//! resetOffsetByTime: move a consumer group's offsets of a topic to a time, or one queue's
//! to an offset (INVOKE_BROKER_TO_RESET_OFFSET: RocketMQ 5's server-side reset, or RocketMQ 4's
//! made by the group's members on a broker with `useServerSideResetOffset=false`; when such a
//! broker has no member online, the admin makes it queue by queue, as mqadmin falls back to
//! its resetOffsetByTimeOld).

use std::fmt::Write;

use clap::Args;
use petrel_core::admin::MessageQueue;
use petrel_core::model::{TopicRouteData, MASTER_ID};
use petrel_net::bodies::{consume_stats_from_json, reset_offsets_from_json, topic_stats_from_json};
use petrel_net::codec::codes::{request, response};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    GetConsumeStatsRequestHeader, ResetOffsetRequestHeader, TopicRequestHeader,
    UpdateConsumerOffsetRequestHeader,
};
use serde_json::json;

use super::{accepted, admin_time, Admin, Common, Output};

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
    /// Where the group's members or the admin make the reset (`useServerSideResetOffset=
    /// false`), false moves only queues whose committed offset lies past the time's; a
    /// server-side reset moves back and forward whatever this says (deprecated in mqadmin).
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
        .filter(|b| !b.broker_addrs.contains_key(&MASTER_ID))
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
        let code = request::INVOKE_BROKER_TO_RESET_OFFSET;
        let answer = admin.ask(addr, RemotingCommand::request(code).with_header(&header)).await?;
        if answer.code == response::CONSUMER_NOT_ONLINE {
            // A broker whose members make resets, and none is online: as mqadmin, the admin
            // makes it itself.
            return reset_offline(&admin, &args, &route, millis).await;
        }
        let answer = accepted(addr, code, answer)?;
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
        None => admin.search_offset(broker, &args.topic, queue, millis).await?,
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

/// One queue's line of the offline reset (mqadmin's `RollbackStats`).
struct Rollback {
    queue: MessageQueue,
    broker_offset: i64,
    consumer_offset: i64,
    timestamp_offset: i64,
    reset_offset: i64,
}

/// RocketMQ 4's reset made by the admin itself, which mqadmin's resetOffsetByTime falls back
/// to when a broker answers CONSUMER_NOT_ONLINE (`resetOffsetByTimeOld`): on each master,
/// every queue of the topic the group committed an offset for (each readable queue of the
/// route when it committed none, from the queue's first offset) moves to the time's offset
/// with UPDATE_CONSUMER_OFFSET, unless `-f false` and that lies past the committed offset.
async fn reset_offline(
    admin: &Admin,
    args: &ResetOffsetByTime,
    route: &TopicRouteData,
    millis: i64,
) -> Result<Output, String> {
    let force = args.force.unwrap_or(true);
    let mut table = Vec::new();
    for data in &route.broker_datas {
        let Some(addr) = data.broker_addrs.get(&MASTER_ID) else { continue };
        for (queue, broker_offset, consumer_offset) in
            committed(admin, addr, route, &data.broker_name, args).await?
        {
            let timestamp_offset =
                admin.search_offset(addr, &args.topic, queue.queue_id, millis).await?;
            let mut reset_offset = consumer_offset;
            if force || timestamp_offset <= consumer_offset {
                let header = UpdateConsumerOffsetRequestHeader {
                    consumer_group: args.group.clone(),
                    topic: args.topic.clone(),
                    queue_id: queue.queue_id,
                    commit_offset: timestamp_offset,
                };
                let request =
                    RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET).with_header(&header);
                admin.call(addr, request).await?;
                reset_offset = timestamp_offset;
            }
            let line =
                Rollback { queue, broker_offset, consumer_offset, timestamp_offset, reset_offset };
            table.push(line);
        }
    }
    Ok(offline_output(args, force, millis, &table))
}

/// The queues of `args.topic` on the master `addr` of `broker_name` that the group committed
/// offsets for, with each queue's end and committed offset; when there are none, every
/// readable queue of the route with its end and first offset (GET_TOPIC_STATS_INFO).
async fn committed(
    admin: &Admin,
    addr: &str,
    route: &TopicRouteData,
    broker_name: &str,
    args: &ResetOffsetByTime,
) -> Result<Vec<(MessageQueue, i64, i64)>, String> {
    let header = GetConsumeStatsRequestHeader {
        consumer_group: args.group.clone(),
        topic: None,
        topic_list: None,
    };
    let answer = admin
        .call(addr, RemotingCommand::request(request::GET_CONSUME_STATS).with_header(&header))
        .await?;
    let stats = consume_stats_from_json(&answer.body)
        .map_err(|e| format!("the ConsumeStats {addr} answered is not readable: {e}"))?;
    let mut queues: Vec<(MessageQueue, i64, i64)> = stats
        .offset_table
        .into_iter()
        .filter(|(queue, _)| queue.topic == args.topic)
        .map(|(queue, o)| (queue, o.broker_offset, o.consumer_offset))
        .collect();
    if !queues.is_empty() {
        queues.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(queues);
    }
    let readable = route
        .queue_datas
        .iter()
        .find(|q| q.broker_name == broker_name)
        .map_or(0, |q| q.read_queue_nums);
    let header = TopicRequestHeader { topic: args.topic.clone() };
    let request = RemotingCommand::request(request::GET_TOPIC_STATS_INFO).with_header(&header);
    let answer = admin.call(addr, request).await?;
    let stats = topic_stats_from_json(&answer.body)
        .map_err(|e| format!("the TopicStatsTable {addr} answered is not readable: {e}"))?;
    (0..readable)
        .map(|queue_id| {
            let (queue, offsets) = stats
                .offset_table
                .iter()
                .find(|(q, _)| q.queue_id == queue_id)
                .ok_or_else(|| format!("{addr} has no queue {queue_id} of {}", args.topic))?;
            Ok((queue.clone(), offsets.max_offset, offsets.min_offset))
        })
        .collect()
}

/// The offline reset as mqadmin's resetOffsetByTimeOld prints it.
fn offline_output(
    args: &ResetOffsetByTime,
    force: bool,
    millis: i64,
    table: &[Rollback],
) -> Output {
    let mut text = format!(
        "reset consumer offset by specified consumerGroup[{}], topic[{}], force[{force}], \
         timestamp(string)[{}], timestamp(long)[{millis}]\n",
        args.group,
        args.topic,
        args.timestamp.trim()
    );
    let _ = writeln!(
        text,
        "{:<20}  {:<20}  {:<20}  {:<20}  {:<20}  {:<20}",
        "#brokerName",
        "#queueId",
        "#brokerOffset",
        "#consumerOffset",
        "#timestampOffset",
        "#resetOffset"
    );
    for line in table {
        let _ = writeln!(
            text,
            "{:<20}  {:<20}  {:<20}  {:<20}  {:<20}  {:<20}",
            line.queue.broker_name,
            line.queue.queue_id,
            line.broker_offset,
            line.consumer_offset,
            line.timestamp_offset,
            line.reset_offset
        );
    }
    let rows: Vec<_> = table
        .iter()
        .map(|line| {
            json!({
                "brokerName": line.queue.broker_name, "queueId": line.queue.queue_id,
                "brokerOffset": line.broker_offset, "consumerOffset": line.consumer_offset,
                "timestampOffset": line.timestamp_offset, "resetOffset": line.reset_offset,
            })
        })
        .collect();
    Output::new(&args.common, text, json!(rows))
}
