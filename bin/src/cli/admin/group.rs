//! updateSubGroup, deleteSubGroup, consumerProgress, consumerConnection, producerConnection.

use std::fmt::Write;

use clap::Args;
use petrel_core::admin::{
    version_desc, ConsumeStats, ConsumerConnection as Connections, ProducerConnection as Producers,
};
use petrel_core::broker::subscriptions::SubscriptionGroupConfig;
use petrel_core::model::TopicList;
use petrel_core::time::human_time;
use petrel_net::bodies::consume_stats_from_json;
use petrel_net::codec::codes::request;
use petrel_net::codec::json::{to_json, JsonStyle};
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    ConsumerGroupRequestHeader, DeleteSubscriptionGroupRequestHeader, DeleteTopicRequestHeader,
    GetConsumeStatsRequestHeader, ProducerGroupRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use petrel_net::headers::namesrv::DeleteTopicFromNamesrvRequestHeader;
use serde_json::json;

use super::{decode_body, Admin, Common, Output, Target};

#[derive(Args, Debug)]
pub struct UpdateSubGroup {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    target: Target,
    /// Consumer group name.
    #[arg(short = 'g', long = "groupName")]
    group: String,
    /// Whether the group may consume.
    #[arg(short = 's', long = "consumeEnable", action = clap::ArgAction::Set)]
    consume_enable: Option<bool>,
    /// Whether a new group starts from the queues' first message.
    #[arg(short = 'm', long = "consumeFromMinEnable", action = clap::ArgAction::Set)]
    consume_from_min: Option<bool>,
    /// Whether the group consumes in broadcast mode.
    #[arg(short = 'd', long = "consumeBroadcastEnable", action = clap::ArgAction::Set)]
    broadcast: Option<bool>,
    /// Whether the group consumes in order.
    #[arg(short = 'o', long = "consumeMessageOrderly", action = clap::ArgAction::Set)]
    orderly: Option<bool>,
    /// Retry queues.
    #[arg(short = 'q', long = "retryQueueNums")]
    retry_queues: Option<i32>,
    /// Retries before a message goes to the dead-letter queue.
    #[arg(short = 'r', long = "retryMaxTimes")]
    retry_max: Option<i32>,
    /// The broker id the group consumes from.
    #[arg(short = 'i', long = "brokerId")]
    broker_id: Option<i64>,
    /// The broker id the group consumes from when it is slow.
    #[arg(short = 'w', long = "whichBrokerWhenConsumeSlowly")]
    slow_broker_id: Option<i64>,
    /// Whether members are told when the group's members change.
    #[arg(short = 'a', long = "notifyConsumerIdsChanged", action = clap::ArgAction::Set)]
    notify: Option<bool>,
}

pub async fn update(args: UpdateSubGroup) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    // mqadmin starts from the class defaults with broadcast and from-min turned off.
    let mut config = SubscriptionGroupConfig {
        consume_broadcast_enable: false,
        consume_from_min_enable: false,
        ..SubscriptionGroupConfig::named(&args.group)
    };
    let set = |target: &mut bool, value: Option<bool>| *target = value.unwrap_or(*target);
    set(&mut config.consume_enable, args.consume_enable);
    set(&mut config.consume_from_min_enable, args.consume_from_min);
    set(&mut config.consume_broadcast_enable, args.broadcast);
    set(&mut config.consume_message_orderly, args.orderly);
    set(&mut config.notify_consumer_ids_changed_enable, args.notify);
    config.retry_queue_nums = args.retry_queues.unwrap_or(config.retry_queue_nums);
    config.retry_max_times = args.retry_max.unwrap_or(config.retry_max_times);
    config.broker_id = args.broker_id.unwrap_or(config.broker_id);
    config.which_broker_when_consume_slowly =
        args.slow_broker_id.unwrap_or(config.which_broker_when_consume_slowly);
    let body = to_json(&config, JsonStyle::Fastjson);
    let mut text = String::new();
    let mut brokers = Vec::new();
    for (_, addr) in admin.targets(&args.target).await? {
        let request = RemotingCommand::request(request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP)
            .with_body(body.clone());
        admin.call(&addr, request).await?;
        let _ = writeln!(text, "create subscription group to {addr} success.");
        brokers.push(addr);
    }
    // mqadmin prints the config without a line end.
    text.push_str(&group_config_text(&config));
    let json = json!({ "brokers": brokers, "config": config });
    Ok(Output::new(&args.common, text, json))
}

/// RocketMQ's `SubscriptionGroupConfig.toString`, as mqadmin prints it after a create.
fn group_config_text(c: &SubscriptionGroupConfig) -> String {
    let attributes: Vec<String> = c.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "SubscriptionGroupConfig{{groupName={}, consumeEnable={}, consumeFromMinEnable={}, \
         consumeBroadcastEnable={}, consumeMessageOrderly={}, retryQueueNums={}, \
         retryMaxTimes={}, groupRetryPolicy=GroupRetryPolicy{{type=CUSTOMIZED, \
         exponentialRetryPolicy=null, customizedRetryPolicy=null}}, brokerId={}, \
         whichBrokerWhenConsumeSlowly={}, notifyConsumerIdsChangedEnable={}, groupSysFlag={}, \
         consumeTimeoutMinute={}, subscriptionDataSet=null, attributes={{{}}}}}",
        c.group_name,
        c.consume_enable,
        c.consume_from_min_enable,
        c.consume_broadcast_enable,
        c.consume_message_orderly,
        c.retry_queue_nums,
        c.retry_max_times,
        c.broker_id,
        c.which_broker_when_consume_slowly,
        c.notify_consumer_ids_changed_enable,
        c.group_sys_flag,
        c.consume_timeout_minute,
        attributes.join(", ")
    )
}

#[derive(Args, Debug)]
pub struct DeleteSubGroup {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    target: Target,
    /// Consumer group name.
    #[arg(short = 'g', long = "groupName")]
    group: String,
    /// Also forget the group's committed offsets.
    #[arg(short = 'r', long = "removeOffset", default_value_t = false, action = clap::ArgAction::Set)]
    remove_offset: bool,
}

pub async fn delete(args: DeleteSubGroup) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let header = DeleteSubscriptionGroupRequestHeader {
        group_name: args.group.clone(),
        clean_offset: Some(args.remove_offset),
    };
    let mut text = String::new();
    let mut brokers = Vec::new();
    for (_, addr) in admin.targets(&args.target).await? {
        let request =
            RemotingCommand::request(request::DELETE_SUBSCRIPTIONGROUP).with_header(&header);
        admin.call(&addr, request).await?;
        let _ = match &args.target.cluster {
            Some(cluster) => writeln!(
                text,
                "delete subscription group [{}] from broker [{addr}] in cluster [{cluster}] success.",
                args.group
            ),
            None => writeln!(text, "delete subscription group [{}] from broker [{addr}] success.", args.group),
        };
        brokers.push(addr);
    }
    if args.target.cluster.is_some() {
        // As mqadmin: the group's retry and dead-letter topics go with it, silently.
        for topic in [format!("%RETRY%{}", args.group), format!("%DLQ%{}", args.group)] {
            // The group is gone already: a topic left behind is said, not a failure.
            let header = DeleteTopicRequestHeader { topic: topic.clone() };
            for addr in &brokers {
                let request =
                    RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER).with_header(&header);
                if let Err(e) = admin.call(addr, request).await {
                    eprintln!("petrel: {topic} was not deleted: {e}");
                }
            }
            let header =
                DeleteTopicFromNamesrvRequestHeader { topic: topic.clone(), cluster_name: None };
            let request =
                RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV).with_header(&header);
            for namesrv in &admin.namesrvs {
                if let Err(e) = admin.call(namesrv, request.clone()).await {
                    eprintln!("petrel: {topic} was not deleted: {e}");
                }
            }
        }
    }
    let json =
        json!({ "group": args.group, "brokers": brokers, "removeOffset": args.remove_offset });
    Ok(Output::new(&args.common, text, json))
}

#[derive(Args, Debug)]
pub struct ConsumerProgress {
    #[command(flatten)]
    common: Common,
    /// Consumer group name (none: a line for every group).
    #[arg(short = 'g', long = "groupName")]
    group: Option<String>,
    /// Only this topic of the group.
    #[arg(short = 't', long = "topicName")]
    topic: Option<String>,
}

pub async fn progress(args: ConsumerProgress) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let Some(group) = &args.group else { return summary(&admin, &args.common).await };
    let stats = consume_stats(&admin, group, args.topic.as_deref()).await?;
    let mut text = format!(
        "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20} {:<20}{}\n",
        "#Topic",
        "#Broker Name",
        "#QID",
        "#Broker Offset",
        "#Consumer Offset",
        "#Diff",
        "#Inflight",
        "#LastTime"
    );
    let mut rows = Vec::new();
    let (diff_total, mut inflight_total) = (stats.diff_total(), 0);
    for (queue, offsets) in &stats.offset_table {
        let diff = offsets.diff();
        let inflight = offsets.pull_offset - offsets.consumer_offset;
        inflight_total += inflight;
        let last = match offsets.last_timestamp {
            0 => "N/A".to_owned(),
            at => human_time(at)[..19].to_owned(),
        };
        let _ = writeln!(
            text,
            "{:<64}  {:<32}  {:<4}  {:<20}  {:<20}  {:<20} {:<20} {last}",
            queue.topic,
            queue.broker_name,
            queue.queue_id,
            offsets.broker_offset,
            offsets.consumer_offset,
            diff,
            inflight
        );
        rows.push(json!({
            "topic": queue.topic, "brokerName": queue.broker_name, "queueId": queue.queue_id,
            "brokerOffset": offsets.broker_offset, "consumerOffset": offsets.consumer_offset,
            "diff": diff, "lastTimestamp": offsets.last_timestamp,
        }));
    }
    let _ = write!(
        text,
        "\nConsume TPS: {:.2}\nConsume Diff Total: {diff_total}\nConsume Inflight Total: {inflight_total}\n",
        stats.consume_tps
    );
    let json = json!({ "group": group, "queues": rows, "diffTotal": diff_total });
    Ok(Output::new(&args.common, text, json))
}

/// GET_CONSUME_STATS from every master routing the group's retry topic (else `topic`), the
/// queues sorted: mqadmin's `examineConsumeStats`.
pub(super) async fn consume_stats(
    admin: &Admin,
    group: &str,
    topic: Option<&str>,
) -> Result<ConsumeStats, String> {
    let retry = format!("%RETRY%{group}");
    let route = match admin.route(&retry).await {
        Ok(route) => route,
        Err(first) => match topic {
            Some(topic) => admin.route(topic).await?,
            None => return Err(first),
        },
    };
    let header = GetConsumeStatsRequestHeader {
        consumer_group: group.to_owned(),
        topic: topic.map(str::to_owned),
        topic_list: None,
    };
    let mut stats = ConsumeStats::default();
    for addr in route.master_addrs() {
        let request = RemotingCommand::request(request::GET_CONSUME_STATS).with_header(&header);
        let answer = admin.call(addr, request).await?;
        let one = consume_stats_from_json(&answer.body)
            .map_err(|e| format!("the ConsumeStats {addr} answered is not readable: {e}"))?;
        stats.consume_tps += one.consume_tps;
        stats.offset_table.extend(one.offset_table);
    }
    stats.offset_table.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(stats)
}

/// consumerProgress without -g: a line for each group with a retry topic.
async fn summary(admin: &Admin, common: &Common) -> Result<Output, String> {
    let answer = admin
        .call_namesrv(RemotingCommand::request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER))
        .await?;
    let topics: TopicList = decode_body(&answer, "TopicList")?;
    let mut text = format!(
        "{:<64}  {:<6}  {:<24} {:<5}  {:<14}  {:<7}  {}\n",
        "#Group", "#Count", "#Version", "#Type", "#Model", "#TPS", "#Diff Total"
    );
    let mut rows = Vec::new();
    let mut groups: Vec<&str> = Vec::new();
    for group in topics.topic_list.iter().filter_map(|t| retry_group(t)) {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    for group in groups {
        let stats = consume_stats(admin, group, None).await.ok();
        let members = connections(admin, group).await.ok();
        let count = members.as_ref().map_or(0, |m| m.connection_set.len());
        let (version, kind, model) = match members.as_ref().filter(|_| count > 0) {
            Some(m) => {
                let oldest = m.connection_set.iter().map(|c| c.version).min().unwrap_or(0);
                let pull = m.consume_type == "CONSUME_ACTIVELY";
                let passive = m.consume_type == "CONSUME_PASSIVELY";
                let model = if passive { m.message_model.clone() } else { String::new() };
                (version_desc(oldest), if pull { "PULL" } else { "PUSH" }, model)
            }
            None => ("OFFLINE".to_owned(), "", String::new()),
        };
        let tps = stats.as_ref().map_or(0, |s| s.consume_tps as i64);
        let diff = stats.as_ref().map_or(0, ConsumeStats::diff_total);
        let _ = writeln!(
            text,
            "{group:<64}  {count:<6}  {version:<24} {kind:<5}  {model:<14}  {tps:<7}  {diff}"
        );
        rows.push(json!({
            "group": group, "count": count, "version": version, "type": kind,
            "model": model, "tps": tps, "diffTotal": diff,
        }));
    }
    Ok(Output::new(common, text, json!(rows)))
}

/// The group a retry topic belongs to (`KeyBuilder.parseGroup`): `%RETRY%g`, and POP's
/// `%RETRY%g+t`, are `g`'s.
fn retry_group(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix("%RETRY%")?;
    Some(rest.split_once('+').map_or(rest, |(group, _)| group))
}

/// GET_CONSUMER_CONNECTION_LIST from a master routing the group's retry topic.
async fn connections(admin: &Admin, group: &str) -> Result<Connections, String> {
    let addr = group_broker(admin, group).await?;
    connections_at(admin, &addr, group).await
}

/// A master routing the group's retry topic: the broker its members heartbeat to.
pub(super) async fn group_broker(admin: &Admin, group: &str) -> Result<String, String> {
    let route = admin.route(&format!("%RETRY%{group}")).await?;
    let addr = route.master_addrs().next();
    addr.cloned().ok_or_else(|| format!("no master routes the retry topic of {group}"))
}

/// GET_CONSUMER_CONNECTION_LIST from the broker at `addr`; a group with no member is an error.
pub(super) async fn connections_at(
    admin: &Admin,
    addr: &str,
    group: &str,
) -> Result<Connections, String> {
    let header = ConsumerGroupRequestHeader { consumer_group: group.to_owned() };
    let request =
        RemotingCommand::request(request::GET_CONSUMER_CONNECTION_LIST).with_header(&header);
    let answer = admin.call(addr, request).await?;
    let members: Connections = decode_body(&answer, "ConsumerConnection")?;
    if members.connection_set.is_empty() {
        return Err("Not found the consumer group connection".into());
    }
    Ok(members)
}

#[derive(Args, Debug)]
pub struct ConsumerConnection {
    #[command(flatten)]
    common: Common,
    /// Consumer group name.
    #[arg(short = 'g', long = "consumerGroup")]
    group: String,
}

pub async fn consumer_connection(args: ConsumerConnection) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let members = connections(&admin, &args.group).await?;
    let mut text =
        format!("{:<36} {:<22} {:<10} {}\n", "#ClientId", "#ClientAddr", "#Language", "#Version");
    for c in &members.connection_set {
        let _ = writeln!(
            text,
            "{:<36} {:<22} {:<10} {}",
            c.client_id,
            c.client_addr,
            c.language,
            version_desc(c.version)
        );
    }
    let _ = write!(text, "\nBelow is subscription:\n{:<20} #SubExpression\n", "#Topic");
    for sub in members.subscription_table.values() {
        let _ = writeln!(text, "{:<20} {}", sub.topic, sub.sub_string);
    }
    let _ = write!(
        text,
        "\nConsumeType: {}\nMessageModel: {}\nConsumeFromWhere: {}\n",
        members.consume_type, members.message_model, members.consume_from_where
    );
    let json = serde_json::to_value(&members).map_err(|e| e.to_string())?;
    Ok(Output::new(&args.common, text, json))
}

#[derive(Args, Debug)]
pub struct ProducerConnection {
    #[command(flatten)]
    common: Common,
    /// Producer group name.
    #[arg(short = 'g', long = "producerGroup")]
    group: String,
    /// A topic the group sends to: the brokers routing it are asked.
    #[arg(short = 't', long = "topic")]
    topic: String,
}

pub async fn producer_connection(args: ProducerConnection) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let route = admin.route(&args.topic).await?;
    let header = ProducerGroupRequestHeader { producer_group: args.group.clone() };
    let (mut members, mut refused) = (Producers::default(), Vec::new());
    for addr in route.master_addrs() {
        let request =
            RemotingCommand::request(request::GET_PRODUCER_CONNECTION_LIST).with_header(&header);
        // A broker the group never reached refuses; the others may still list its members.
        match admin.call(addr, request).await {
            Ok(answer) => {
                let one: Producers = decode_body(&answer, "ProducerConnection")?;
                members.connection_set.extend(one.connection_set);
            }
            Err(e) => refused.push(e),
        }
    }
    if members.connection_set.is_empty() {
        let why = refused.join("; ");
        return Err(format!("Not found the producer group connection: {why}"));
    }
    let mut text = String::new();
    for (i, c) in members.connection_set.iter().enumerate() {
        let _ = writeln!(
            text,
            "{:04}  {:<32} {:<22} {:<8} {}",
            i + 1,
            c.client_id,
            c.client_addr,
            c.language,
            version_desc(c.version)
        );
    }
    let json = serde_json::to_value(&members).map_err(|e| e.to_string())?;
    Ok(Output::new(&args.common, text, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_topics_name_their_groups_as_key_builder_parses_them() {
        assert_eq!(retry_group("%RETRY%orders"), Some("orders"));
        assert_eq!(retry_group("%RETRY%orders+Topic"), Some("orders"));
        assert_eq!(retry_group("%DLQ%orders"), None);
        assert_eq!(retry_group("Topic"), None);
    }
}

#[derive(Args, Debug)]
pub struct CloneGroupOffset {
    #[command(flatten)]
    common: Common,
    /// The group whose offsets are copied.
    #[arg(short = 's', long = "srcGroup")]
    src: String,
    /// The group that takes them (it must exist: updateSubGroup).
    #[arg(short = 'd', long = "destGroup")]
    dest: String,
    /// The topic whose offsets are copied.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Accepted for mqadmin's sake; the copy is the same either way.
    #[arg(short = 'o', long = "offline", action = clap::ArgAction::Set)]
    offline: Option<bool>,
}

pub async fn clone_offsets(args: CloneGroupOffset) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let stats = consume_stats(&admin, &args.src, Some(&args.topic)).await?;
    let route = admin.route(&args.topic).await?;
    let mut copied = Vec::new();
    for (queue, offsets) in stats.offset_table.iter().filter(|(_, o)| o.consumer_offset >= 0) {
        let addr = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == queue.broker_name)
            .and_then(|b| b.broker_addrs.get(&petrel_core::model::MASTER_ID))
            .ok_or_else(|| format!("no master of {} routes {}", queue.broker_name, args.topic))?;
        let header = UpdateConsumerOffsetRequestHeader {
            consumer_group: args.dest.clone(),
            topic: queue.topic.clone(),
            queue_id: queue.queue_id,
            commit_offset: offsets.consumer_offset,
        };
        let request =
            RemotingCommand::request(request::UPDATE_CONSUMER_OFFSET).with_header(&header);
        admin.call(addr, request).await?;
        copied.push(json!({
            "brokerName": queue.broker_name, "queueId": queue.queue_id,
            "offset": offsets.consumer_offset,
        }));
    }
    // mqadmin prints this without a line end.
    let text = format!(
        "clone group offset success. srcGroup[{}], destGroup=[{}], topic[{}]",
        args.src, args.dest, args.topic
    );
    let json = json!({ "srcGroup": args.src, "destGroup": args.dest, "topic": args.topic, "queues": copied });
    Ok(Output::new(&args.common, text, json))
}
