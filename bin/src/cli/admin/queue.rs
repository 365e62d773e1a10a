//! `queryCq`: the units of one consume queue, as mqadmin's QueryConsumeQueueCommand prints
//! them (QUERY_CONSUME_QUEUE).

use std::fmt::Write;

use clap::Args;
use petrel_core::admin::{ConsumeQueueData, QueryConsumeQueueBody};
use petrel_core::model::MASTER_ID;
use petrel_net::codec::codes::request;
use petrel_net::codec::json::to_pretty_json;
use petrel_net::codec::RemotingCommand;
use petrel_net::headers::broker::QueryConsumeQueueRequestHeader;

use super::{decode_body, Admin, Common, Output};

/// mqadmin's separator line.
const RULE: &str = "======================================\n";

#[derive(Args, Debug)]
pub struct QueryCq {
    #[command(flatten)]
    common: Common,
    /// Topic name.
    #[arg(short = 't', long = "topic")]
    topic: String,
    /// Queue id.
    #[arg(short = 'q', long = "queue")]
    queue: i32,
    /// The queue offset to start at.
    #[arg(short = 'i', long = "index")]
    index: i64,
    /// How many units.
    #[arg(short = 'c', long = "count", default_value_t = 10)]
    count: i32,
    /// The broker to ask (default: the master of the topic's first broker group).
    #[arg(short = 'b', long = "broker")]
    broker: Option<String>,
    /// A consumer group: its subscription of the topic and its filter are printed too.
    #[arg(short = 'g', long = "consumer")]
    group: Option<String>,
}

pub async fn query_cq(args: QueryCq) -> Result<Output, String> {
    let admin = Admin::connect(&args.common)?;
    let broker = match &args.broker {
        Some(broker) => broker.clone(),
        None => {
            let route = admin.route(&args.topic).await?;
            let first = route.broker_datas.first().and_then(|b| b.broker_addrs.get(&MASTER_ID));
            first.cloned().ok_or("No topic route data!")?
        }
    };
    let header = QueryConsumeQueueRequestHeader {
        topic: args.topic.clone(),
        queue_id: args.queue,
        index: args.index,
        count: args.count,
        consumer_group: args.group.clone(),
    };
    let request = RemotingCommand::request(request::QUERY_CONSUME_QUEUE).with_header(&header);
    let answer = admin.call(&broker, request).await?;
    // An index outside the queue: SUCCESS with no body, the reason in the remark.
    if answer.body.is_empty() {
        return Err(answer.remark.unwrap_or_else(|| format!("{broker} answered no units")));
    }
    let body: QueryConsumeQueueBody = decode_body(&answer, "QueryConsumeQueueResponseBody")?;
    let text = cq_text(&body, args.index);
    let json = serde_json::to_value(&body).map_err(|e| e.to_string())?;
    Ok(Output::new(&args.common, text, json))
}

/// The text mqadmin prints: the subscription and filter when asked for with a group, the
/// queue's bounds, then each unit with its index.
fn cq_text(body: &QueryConsumeQueueBody, index: i64) -> String {
    let mut text = String::new();
    if let Some(subscription) = &body.subscription_data {
        let _ = write!(text, "Subscription data: \n{}\n{RULE}", to_pretty_json(subscription));
    }
    if let Some(filter) = &body.filter_data {
        let _ = write!(text, "Filter data: \n{filter}\n{RULE}");
    }
    let (max, min) = (body.max_queue_index, body.min_queue_index);
    let _ = write!(text, "Queue data: \nmax: {max}, min: {min}\n{RULE}");
    for (i, unit) in body.queue_data.iter().flatten().enumerate() {
        let _ = write!(text, "idx: {}\n{}\n{RULE}", index + i as i64, unit_text(unit));
    }
    text
}

/// `ConsumeQueueData.toString()`.
fn unit_text(unit: &ConsumeQueueData) -> String {
    let quoted = |field: &Option<String>| field.as_deref().unwrap_or("null").to_owned();
    format!(
        "ConsumeQueueData{{physicOffset={}, physicSize={}, tagsCode={}, extendDataJson='{}', \
         bitMap='{}', eval={}, msg='{}'}}",
        unit.physic_offset,
        unit.physic_size,
        unit.tags_code,
        quoted(&unit.extend_data_json),
        quoted(&unit.bit_map),
        unit.eval,
        quoted(&unit.msg)
    )
}
