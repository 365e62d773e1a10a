//! updateTopic, deleteTopic, topicList, topicRoute, topicStatus.

use std::collections::BTreeSet;
use std::fmt::Write;

use clap::Args;
use petrel_core::admin::{MessageQueue, TopicOffset};
use petrel_core::model::perm;
use petrel_core::time::human_time;
use petrel_net::bodies::topic_stats_from_json;
use petrel_net::codec::codes::request;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, TopicRequestHeader,
};
use petrel_net::headers::namesrv::{DeleteTopicFromNamesrvRequestHeader, PutKvConfigRequestHeader};
use serde_json::json;

use super::{Admin, Common, Output, Target};

#[derive(Args, Debug)]
pub struct UpdateTopic {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    target: Target,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Read queues.
    #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
    read_queues: i32,
    /// Write queues.
    #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
    write_queues: i32,
    /// Permission: 2 write only, 4 read only, 6 read and write.
    #[arg(short = 'p', long = "perm", default_value_t = 6)]
    perm: i32,
    /// An ordered topic (with -c, its queues are also recorded in the NameServer's orderConf).
    #[arg(short = 'o', long = "order", default_value_t = false, action = clap::ArgAction::Set)]
    order: bool,
}

pub async fn update(args: UpdateTopic) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let brokers = admin.targets(&args.target).await?;
    let header = CreateTopicRequestHeader {
        topic: args.topic.clone(),
        default_topic: "TBW102".into(),
        read_queue_nums: args.read_queues,
        write_queue_nums: args.write_queues,
        perm: args.perm,
        topic_filter_type: "SINGLE_TAG".into(),
        topic_sys_flag: Some(0),
        order: Some(args.order),
        attributes: None,
        force: None,
    };
    let (mut text, mut done) = (String::new(), Vec::new());
    for (_, addr) in &brokers {
        let request =
            RemotingCommand::request(request::UPDATE_AND_CREATE_TOPIC).with_header(&header);
        admin.call(addr, request).await?;
        let _ = writeln!(text, "create topic to {addr} success.");
        done.push(addr.clone());
    }
    if args.order && args.target.cluster.is_some() {
        let conf: Vec<String> =
            brokers.iter().map(|(name, _)| format!("{name}:{}", args.write_queues)).collect();
        let conf = conf.join(";");
        let header = PutKvConfigRequestHeader {
            namespace: "ORDER_TOPIC_CONFIG".into(),
            key: args.topic.clone(),
            value: conf.clone(),
        };
        let request = RemotingCommand::request(request::PUT_KV_CONFIG).with_header(&header);
        for namesrv in &admin.namesrvs {
            admin.call(namesrv, request.clone()).await?;
        }
        let _ = writeln!(text, "set cluster orderConf. isOrder={}, orderConf=[{conf}]", args.order);
    }
    let _ = writeln!(text, "{}", topic_config_text(&args));
    let json = json!({
        "topic": args.topic, "readQueueNums": args.read_queues, "writeQueueNums": args.write_queues,
        "perm": args.perm, "order": args.order, "brokers": done,
    });
    Ok(Output::new(&args.common, text, json))
}

/// RocketMQ's `TopicConfig.toString`, as mqadmin prints it after a create.
fn topic_config_text(args: &UpdateTopic) -> String {
    format!(
        "TopicConfig [topicName={}, readQueueNums={}, writeQueueNums={}, perm={}, \
         topicFilterType=SINGLE_TAG, topicSysFlag=0, order={}, attributes={{}}]",
        args.topic,
        args.read_queues,
        args.write_queues,
        perm_text(args.perm),
        args.order
    )
}

/// `PermName.perm2String`: R, W and X (inherit) in three places.
pub fn perm_text(value: i32) -> String {
    let flag = |bit, c| if value & bit == bit { c } else { '-' };
    [flag(perm::READ, 'R'), flag(perm::WRITE, 'W'), flag(perm::INHERIT, 'X')].iter().collect()
}

#[derive(Args, Debug)]
pub struct DeleteTopic {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// The cluster to delete it from.
    #[arg(short = 'c', long = "clusterName")]
    cluster: String,
}

pub async fn delete(args: DeleteTopic) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let target = Target { broker: None, cluster: Some(args.cluster.clone()) };
    let brokers = admin.targets(&target).await?;
    let header = DeleteTopicRequestHeader { topic: args.topic.clone() };
    for (_, addr) in &brokers {
        let request =
            RemotingCommand::request(request::DELETE_TOPIC_IN_BROKER).with_header(&header);
        admin.call(addr, request).await?;
    }
    let mut text =
        format!("delete topic [{}] from cluster [{}] success.\n", args.topic, args.cluster);
    let header = DeleteTopicFromNamesrvRequestHeader {
        topic: args.topic.clone(),
        cluster_name: Some(args.cluster.clone()),
    };
    let request = RemotingCommand::request(request::DELETE_TOPIC_IN_NAMESRV).with_header(&header);
    for namesrv in &admin.namesrvs {
        admin.call(namesrv, request.clone()).await?;
    }
    let _ = writeln!(text, "delete topic [{}] from NameServer success.", args.topic);
    let brokers: Vec<&String> = brokers.iter().map(|(_, addr)| addr).collect();
    let json = json!({ "topic": args.topic, "cluster": args.cluster, "brokers": brokers });
    Ok(Output::new(&args.common, text, json))
}

#[derive(Args, Debug)]
pub struct TopicList {
    #[command(flatten)]
    common: Common,
    /// Also print each topic's cluster and consumer groups.
    #[arg(short = 'c', long = "clusterModel")]
    cluster_model: bool,
}

pub async fn list(args: TopicList) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let topics = admin.all_topics().await?;
    if !args.cluster_model {
        let text: String = topics.iter().map(|t| format!("{t}\n")).collect();
        return Ok(Output::new(&args.common, text, json!(topics)));
    }
    let info = admin.cluster_info().await?;
    let mut text =
        format!("{:<20}  {:<48}  {:<48}\n", "#Cluster Name", "#Topic", "#Consumer Group");
    let mut rows = Vec::new();
    for topic in topics.iter().filter(|t| !t.starts_with("%RETRY%") && !t.starts_with("%DLQ%")) {
        let Ok(route) = admin.route(topic).await else { continue };
        let Some(first) = route.broker_datas.first() else { continue };
        let cluster = info
            .cluster_addr_table
            .iter()
            .find(|(_, names)| names.contains(&first.broker_name))
            .map_or_else(String::new, |(cluster, _)| cluster.clone());
        let mut groups = admin.consumers_of(&route, topic).await?;
        if groups.is_empty() {
            groups.insert(String::new());
        }
        for group in groups {
            let _ = writeln!(text, "{cluster:<20}  {topic:<64}  {group:<64}");
            rows.push(json!({ "cluster": cluster, "topic": topic, "consumerGroup": group }));
        }
    }
    Ok(Output::new(&args.common, text, json!(rows)))
}

#[derive(Args, Debug)]
pub struct TopicRoute {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
}

pub async fn route(args: TopicRoute) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let route = admin.route(&args.topic).await?;
    let json = serde_json::to_value(&route).map_err(|e| e.to_string())?;
    let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n";
    Ok(Output::new(&args.common, text, json))
}

/// The clusters whose brokers serve the topic, a line each. mqadmin looks at the route's first
/// broker only; this looks at each, so a topic on two clusters names both.
pub async fn clusters(args: TopicRoute) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let route = admin.route(&args.topic).await?;
    let clusters: BTreeSet<&String> = route.broker_datas.iter().map(|b| &b.cluster).collect();
    let text = clusters.iter().map(|c| format!("{c}\n")).collect();
    Ok(Output::new(&args.common, text, json!(clusters)))
}

#[derive(Args, Debug)]
pub struct TopicStatus {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
}

pub async fn status(args: TopicStatus) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let route = admin.route(&args.topic).await?;
    let mut queues: Vec<(MessageQueue, TopicOffset)> = Vec::new();
    for addr in route.master_addrs() {
        let header = TopicRequestHeader { topic: args.topic.clone() };
        let request = RemotingCommand::request(request::GET_TOPIC_STATS_INFO).with_header(&header);
        let answer = admin.call(addr, request).await?;
        let table = topic_stats_from_json(&answer.body)
            .map_err(|e| format!("the TopicStatsTable {addr} answered is not readable: {e}"))?;
        queues.extend(table.offset_table);
    }
    queues.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = format!(
        "{:<32}  {:<4}  {:<20}  {:<20}    {}\n",
        "#Broker Name", "#QID", "#Min Offset", "#Max Offset", "#Last Updated"
    );
    let mut rows = Vec::new();
    for (queue, offsets) in &queues {
        let updated = match offsets.last_update_timestamp {
            0 => String::new(),
            at => human_time(at),
        };
        let _ = writeln!(
            text,
            "{:<32}  {:<4}  {:<20}  {:<20}    {updated}",
            queue.broker_name, queue.queue_id, offsets.min_offset, offsets.max_offset
        );
        rows.push(json!({
            "brokerName": queue.broker_name, "queueId": queue.queue_id,
            "minOffset": offsets.min_offset, "maxOffset": offsets.max_offset,
            "lastUpdateTimestamp": offsets.last_update_timestamp,
        }));
    }
    // mqadmin never adds up the brokers' put TPS: it always prints 0.0 here.
    text.push_str("\nTopic Put TPS: 0.0\n");
    Ok(Output::new(&args.common, text, json!(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_print_as_perm2string() {
        assert_eq!(perm_text(6), "RW-");
        assert_eq!(perm_text(4), "R--");
        assert_eq!(perm_text(2), "-W-");
        assert_eq!(perm_text(7), "RWX");
    }
}
